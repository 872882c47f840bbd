//! The service-function-chaining model of one host ([`neutrino_sfc::SfcModel`]) from the
//! mirrored networking-sfc documents and the host's desired state: which ports are plugged
//! here (their taps), which are elsewhere and reached through this host's VXLAN device (or
//! provider uplink) of their network, and which pairs cannot take traffic and why.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use neutrino_sfc::{
    Chain, Classifier, Delivery, Family, Group, LbField, Location, NTuple, NTupleMapping,
    NetworkMacs, Pair, Port, SfcModel,
};
use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::desired::{Desired, HostConfig, PortOutcome};
use crate::names;
use crate::provider::{self, Segment};

/// Seconds a flow keeps its instance after its last packet.
pub const PIN_TIMEOUT: u32 = 120;

/// Port pair attribute an agent sets when it finds the function dead (Neutrino extension).
pub const HEALTH: &str = "neutrino:health";
/// Its explanation.
pub const HEALTH_DETAIL: &str = "neutrino:health_detail";

/// The other hosts that take part in the chains steered on `host`: where their sources,
/// logical destinations and functions are bound. A live change waits for them before it
/// switches (see [`neutrino_sfc::transition`]).
pub fn peer_hosts(model: &SfcModel, cluster: &Cluster, host: &str) -> BTreeSet<String> {
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    for chain in &model.chains {
        for c in &chain.classifiers {
            ids.extend(c.sources.iter().map(|p| p.id.as_str()));
            ids.extend(c.destination.iter().map(|p| p.id.as_str()));
        }
        for p in chain.groups.iter().flat_map(|g| &g.pairs) {
            ids.extend([p.ingress.id.as_str(), p.egress.id.as_str()]);
        }
    }
    ids.into_iter()
        .filter_map(|id| cluster.get("port", id))
        .map(|doc| text(doc, "binding:host_id"))
        .filter(|h| !h.is_empty() && *h != host)
        .map(str::to_string)
        .collect()
}

/// Builds the model of `cfg.host`; `ifindex` are the host's interfaces (a device that does
/// not exist yet cannot be steered to).
pub fn sfc_model(
    cluster: &Cluster,
    desired: &Desired,
    cfg: &HostConfig,
    ifindex: &BTreeMap<String, u32>,
) -> SfcModel {
    let mut model = SfcModel {
        pin_timeout: PIN_TIMEOUT,
        ..SfcModel::default()
    };
    if cluster.count("port_pair") == 0 {
        return model;
    }
    let r = Resolver::new(cluster, desired, cfg, ifindex);
    model.ifindex = ifindex.clone();
    let function_ports: BTreeSet<&str> = cluster
        .all("port_pair")
        .flat_map(|pp| [text(pp, "ingress"), text(pp, "egress")])
        .collect();
    model.functions = cluster
        .all("port_pair")
        .filter_map(|pp| r.pair(text(pp, "id")))
        .filter(|p| p.ingress.local_tap().is_some() || p.egress.local_tap().is_some())
        .collect();
    let mut exits: BTreeSet<String> = BTreeSet::new();
    for doc in cluster.all("port_chain") {
        let Some(chain) = r.chain(doc, &function_ports) else {
            continue;
        };
        for g in &chain.groups {
            for p in &g.pairs {
                exits.insert(p.ingress.network.clone());
                exits.insert(p.egress.network.clone());
            }
        }
        model.chains.push(chain);
    }
    let graph = graph_edges(cluster);
    for chain in &mut model.chains {
        if let Some(next) = graph.get(&chain.id) {
            chain.next_chains = next
                .iter()
                .filter_map(|id| cluster.get("port_chain", id))
                .filter_map(|c| c["chain_id"].as_u64())
                .filter_map(|n| u32::try_from(n).ok())
                .collect();
        }
    }
    for net in exits {
        let macs = r.network_macs(&net);
        model.networks.insert(net, macs);
    }
    model
}

/// Service graphs: source chain id → destination chain ids.
fn graph_edges(cluster: &Cluster) -> BTreeMap<String, Vec<String>> {
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in cluster.all("service_graph") {
        for (src, dsts) in g["port_chains"].as_object().into_iter().flatten() {
            let list = edges.entry(src.clone()).or_default();
            list.extend(strings(dsts));
        }
    }
    edges
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

struct Resolver<'a> {
    cluster: &'a Cluster,
    host: &'a str,
    /// Local ports → tap.
    taps: BTreeMap<&'a str, &'a str>,
    /// Network → the device frames from other hosts use on this host.
    tunnels: BTreeMap<String, String>,
    /// Bridges of this host.
    bridges: BTreeSet<&'a str>,
}

impl<'a> Resolver<'a> {
    fn new(
        cluster: &'a Cluster,
        desired: &'a Desired,
        cfg: &'a HostConfig,
        ifindex: &BTreeMap<String, u32>,
    ) -> Resolver<'a> {
        let taps = desired
            .ports
            .iter()
            .filter_map(|(id, o)| match o {
                PortOutcome::Plug { tap, .. } if ifindex.contains_key(tap) => {
                    Some((id.as_str(), tap.as_str()))
                }
                _ => None,
            })
            .collect();
        let mut tunnels = BTreeMap::new();
        for net in cluster.all("network") {
            let dev = match provider::segment(net, &cfg.interface_mappings) {
                Ok(Segment::Vxlan(vni)) => {
                    let dev = names::vxlan(vni);
                    desired.state.vxlans.contains_key(&dev).then_some(dev)
                }
                Ok(Segment::Uplink { name, .. }) => {
                    desired.state.uplinks.contains_key(&name).then_some(name)
                }
                Err(_) => None,
            };
            if let Some(dev) = dev.filter(|d| ifindex.contains_key(d)) {
                tunnels.insert(text(net, "id").to_string(), dev);
            }
        }
        Resolver {
            cluster,
            host: &cfg.host,
            taps,
            tunnels,
            bridges: desired.state.bridges.keys().map(String::as_str).collect(),
        }
    }

    fn port(&self, id: &str) -> Option<Port> {
        let doc = self.cluster.get("port", id)?;
        let network = text(doc, "network_id").to_string();
        let location = if let Some(tap) = self.taps.get(id) {
            Location::Local(tap.to_string())
        } else {
            let host = text(doc, "binding:host_id");
            match self.tunnels.get(&network) {
                Some(dev) if !host.is_empty() && host != self.host => Location::Remote(dev.clone()),
                _ => Location::Unreachable,
            }
        };
        let mut addresses: Vec<IpAddr> = doc["fixed_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["ip_address"].as_str()?.parse().ok())
            .collect();
        for pair in doc["allowed_address_pairs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let a = text(pair, "ip_address");
            if let Ok(ip) = a.parse::<IpAddr>() {
                addresses.push(ip);
            } else if let Ok(net) = a.parse::<IpNet>() {
                if net.prefix_len() == net.max_prefix_len() {
                    addresses.push(net.addr());
                }
            }
        }
        let bridge = names::bridge(&network);
        let bridge = (matches!(location, Location::Local(_))
            && self.bridges.contains(bridge.as_str()))
        .then_some(bridge);
        Some(Port {
            id: id.to_string(),
            mac: text(doc, "mac_address").to_ascii_lowercase(),
            network,
            location,
            bridge,
            addresses,
            port_security: doc["port_security_enabled"].as_bool().unwrap_or(true),
        })
    }

    fn pair(&self, id: &str) -> Option<Pair> {
        let doc = self.cluster.get("port_pair", id)?;
        let ingress = self.port(text(doc, "ingress"))?;
        let egress = self.port(text(doc, "egress"))?;
        let params = &doc["service_function_parameters"];
        let weight = params["weight"]
            .as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .unwrap_or(1);
        let correlation = params["correlation"].as_str().unwrap_or_default();
        let out_of_service = (text(doc, HEALTH) == "DOWN").then(|| {
            let detail = text(doc, HEALTH_DETAIL);
            if detail.is_empty() {
                "the function does not forward".to_string()
            } else {
                detail.to_string()
            }
        });
        Some(Pair {
            id: id.to_string(),
            ingress,
            egress,
            weight,
            out_of_service,
            proxied: (!correlation.is_empty()).then(|| correlation.to_string()),
        })
    }

    fn group(&self, id: &str) -> Option<Group> {
        let doc = self.cluster.get("port_pair_group", id)?;
        let number = u32::try_from(doc["group_id"].as_u64()?).ok()?;
        let params = &doc["port_pair_group_parameters"];
        let lb_fields = params["lb_fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| LbField::parse(f.as_str()?))
            .collect();
        let egress = &params["ppg_n_tuple_mapping"]["egress_n_tuple"];
        let egress_mapping = NTupleMapping {
            source: egress["source_ip_prefix"]
                .as_str()
                .and_then(|p| p.parse().ok()),
            destination: egress["destination_ip_prefix"]
                .as_str()
                .and_then(|p| p.parse().ok()),
            source_ports: range(egress, "source_port_range_min", "source_port_range_max"),
            destination_ports: range(
                egress,
                "destination_port_range_min",
                "destination_port_range_max",
            ),
        };
        let mut pair_ids = strings(&doc["port_pairs"]);
        pair_ids.sort();
        Some(Group {
            id: id.to_string(),
            number,
            tap: doc["tap_enabled"].as_bool().unwrap_or(false),
            lb_fields,
            egress_mapping,
            fail_open: params["fail_open"].as_bool().unwrap_or(false),
            pairs: pair_ids.iter().filter_map(|p| self.pair(p)).collect(),
        })
    }

    fn classifier(
        &self,
        id: &str,
        chain_network: Option<&str>,
        function_ports: &BTreeSet<&str>,
    ) -> Option<Classifier> {
        let doc = self.cluster.get("flow_classifier", id)?;
        let family = if text(doc, "ethertype").eq_ignore_ascii_case("ipv6") {
            Family::V6
        } else {
            Family::V4
        };
        let protocol = match text(doc, "protocol") {
            "tcp" => Some(6),
            "udp" => Some(17),
            "icmp" => Some(if family == Family::V6 { 58 } else { 1 }),
            _ => None,
        };
        let prefix = |k: &str| doc[k].as_str().and_then(|p| p.parse::<IpNet>().ok());
        let tuple = NTuple {
            family,
            protocol,
            source: prefix("source_ip_prefix"),
            destination: prefix("destination_ip_prefix"),
            source_ports: range(doc, "source_port_range_min", "source_port_range_max"),
            destination_ports: range(
                doc,
                "destination_port_range_min",
                "destination_port_range_max",
            ),
        };
        let destination = doc["logical_destination_port"]
            .as_str()
            .and_then(|p| self.port(p));
        let sources = match doc["logical_source_port"].as_str() {
            Some(p) => self.port(p).into_iter().collect(),
            None => {
                // Every instance port of the chain's network, functions excepted.
                let net = destination
                    .as_ref()
                    .map(|d| d.network.as_str())
                    .or(chain_network);
                self.cluster
                    .all("port")
                    .filter(|p| Some(text(p, "network_id")) == net)
                    .filter(|p| !text(p, "device_owner").starts_with("network:"))
                    .filter(|p| !function_ports.contains(text(p, "id")))
                    .filter_map(|p| self.port(text(p, "id")))
                    .filter(|p| p.local_tap().is_some())
                    .collect()
            }
        };
        Some(Classifier {
            id: id.to_string(),
            tuple,
            sources,
            destination,
        })
    }

    fn chain(&self, doc: &Value, function_ports: &BTreeSet<&str>) -> Option<Chain> {
        let number = u32::try_from(doc["chain_id"].as_u64()?).ok()?;
        let groups: Vec<Group> = strings(&doc["port_pair_groups"])
            .iter()
            .filter_map(|g| self.group(g))
            .collect();
        let chain_network = groups
            .iter()
            .flat_map(|g| &g.pairs)
            .map(|p| p.ingress.network.clone())
            .next();
        let classifiers = strings(&doc["flow_classifiers"])
            .iter()
            .filter_map(|fc| self.classifier(fc, chain_network.as_deref(), function_ports))
            .collect();
        Some(Chain {
            id: text(doc, "id").to_string(),
            number,
            symmetric: doc["chain_parameters"]["symmetric"]
                .as_bool()
                .unwrap_or(false),
            groups,
            classifiers,
            next_chains: Vec::new(),
        })
    }

    /// The addresses on a network with their MACs, its gateways' MACs, its tunnel here.
    fn network_macs(&self, network: &str) -> NetworkMacs {
        let mut macs = NetworkMacs {
            tunnel: self.tunnels.get(network).cloned(),
            ..NetworkMacs::default()
        };
        let mut by_ip: BTreeMap<IpAddr, (String, String)> = BTreeMap::new();
        for p in self
            .cluster
            .all("port")
            .filter(|p| text(p, "network_id") == network)
        {
            let mac = text(p, "mac_address").to_ascii_lowercase();
            for f in p["fixed_ips"].as_array().into_iter().flatten() {
                if let Some(ip) = f["ip_address"].as_str().and_then(|a| a.parse().ok()) {
                    by_ip.insert(ip, (mac.clone(), text(p, "device_owner").to_string()));
                }
            }
        }
        for s in self
            .cluster
            .all("subnet")
            .filter(|s| text(s, "network_id") == network)
        {
            let (Ok(cidr), Ok(gw)) = (
                text(s, "cidr").parse::<IpNet>(),
                text(s, "gateway_ip").parse::<IpAddr>(),
            ) else {
                continue;
            };
            if let Some((mac, owner)) = by_ip.get(&gw) {
                if owner.starts_with("network:router_interface")
                    || owner == "network:ha_router_replicated_interface"
                {
                    macs.gateways.insert(cidr, mac.clone());
                }
            }
        }
        macs.hosts = by_ip.into_iter().map(|(ip, (mac, _))| (ip, mac)).collect();
        // Instance ports without port security: no security group to cross the bridge for.
        for doc in self.cluster.all("port").filter(|p| {
            text(p, "network_id") == network
                && p["port_security_enabled"] == Value::Bool(false)
                && !text(p, "device_owner").starts_with("network:")
        }) {
            let Some(port) = self.port(text(doc, "id")) else {
                continue;
            };
            let Some(device) = port.egress_device() else {
                continue;
            };
            for f in doc["fixed_ips"].as_array().into_iter().flatten() {
                if let Some(ip) = f["ip_address"].as_str().and_then(|a| a.parse().ok()) {
                    let to = Delivery {
                        port: port.id.clone(),
                        mac: port.mac.clone(),
                        device: device.to_string(),
                    };
                    macs.direct.insert(ip, to);
                }
            }
        }
        macs
    }
}

fn range(doc: &Value, min: &str, max: &str) -> Option<(u16, u16)> {
    let lo = doc[min].as_u64().and_then(|v| u16::try_from(v).ok());
    let hi = doc[max].as_u64().and_then(|v| u16::try_from(v).ok());
    match (lo, hi) {
        (None, None) => None,
        (lo, hi) => Some((lo.unwrap_or(0), hi.unwrap_or(u16::MAX))),
    }
}
