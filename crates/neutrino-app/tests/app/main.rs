//! The application layer's tests through its public API, one module per area, linked into
//! one test binary (one link instead of one per file; the tests of all modules run in
//! parallel in one process, each on its own store).

mod common;

mod address_groups;
mod agents;
mod auto_topology;
mod barrier;
mod bgp;
mod conntrack_helpers;
mod consistency;
mod dhcp;
mod flavors;
mod floatingips;
mod host_credentials;
mod identity;
mod isolation;
mod l2gw;
mod l3_ha;
mod local_ips;
mod logging;
mod metering;
mod module_graph;
mod ndp_proxies;
mod policy;
mod pool_props;
mod port_forwardings;
mod port_pools;
mod ports_concurrent;
mod qos;
mod routers;
mod routers_dvr;
mod secgroups;
mod segment_ranges;
mod sfc;
mod tokens;
mod topology;
mod trunks;
mod zones;
