//! The extensions this server implements, as `GET /v2.0/extensions` lists them: exactly
//! what the code does, nothing more.

use serde_json::{json, Value};

/// `(alias, name, description)`.
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("address-group", "Address group", "Support address group"),
    ("address-scope", "Address scope", "Address scopes extension."),
    ("agent", "agent", "The agent management extension."),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("auto-allocated-topology", "Auto Allocated Topology Services", "Auto Allocated Topology Services."),
    ("bgp", "Neutron BGP Dynamic Routing Extension", "Discover and advertise routes for Neutron prefixes dynamically via BGP"),
    ("bgp_4byte_asn", "4-byte ASN Support for BGP Dynamic Routing", "Support bgp 4-byte ASN"),
    ("bgp_dragent_scheduler", "BGP Dynamic Routing Agent Scheduler", "Schedules BgpSpeakers on BgpDynamicRoutingAgent"),
    ("availability_zone", "Availability Zone", "The availability zone extension."),
    ("availability_zone_filter", "Availability Zone Filter Extension", "Add filter parameters to AvailabilityZone resource"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a subnetpool as the default."),
    ("dhcp_agent_scheduler", "DHCP Agent Scheduler", "Schedule networks among dhcp agents"),
    ("dns-domain-ports", "dns_domain for ports", "Allows the DNS domain to be specified for a network port."),
    ("dns-integration", "DNS Integration", "Provides integration with DNS."),
    ("dvr", "Distributed Virtual Router", "Enables configuration of Distributed Virtual Routers."),
    ("empty-string-filtering", "Empty String Filtering Extension", "Allow filtering by attributes with empty string value"),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("extraroute-atomic", "Atomically add/remove extra routes", "Edit extra routes of a router on server side by atomically adding/removing extra routes"),
    ("extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for DHCP."),
    ("fip-port-details", "Floating IP Port Details Extension", "Add port_details attribute to Floating IP resource"),
    ("floating-ip-router-writable", "Floating IP router writable", "Allows the router hosting a floating IP to be set on create and update"),
    ("flavors", "Neutron Service Flavors", "Flavor specification for Neutron advanced services."),
    ("floatingip-pools", "Floating IP Pools Extension", "Provides a floating IP pools API."),
    ("flow_classifier", "Flow Classifier", "Flow Classifier Extension."),
    ("filter-validation", "Filter parameters validation", "Provides validation on filter parameters."),
    ("networking-sfc-tap", "Networking SFC Passive Tap Service Function support", "Extension for Passive TAP Service Function support"),
    ("l2-gateway", "L2 Gateway", "Connects Neutron networks with external networks at layer 2."),
    ("l2-gateway-connection", "L2 Gateway connection", "Connects Neutron networks with external networks at layer 2."),
    ("l2-remote-gateway", "L2 Remote Gateway", "Neutrino extension: the border gateway of another cloud, reached over VXLAN (networking-l2gw border-gateway spec)."),
    ("l2-remote-gateway-connection", "L2 Remote Gateway connection", "Neutrino extension: stretches a network connected to a local L2 gateway to a remote gateway."),
    ("l2-remote-mac", "L2 Remote MAC", "Neutrino extension: MAC addresses known behind a remote gateway connection."),
    ("l3-ha", "HA Router extension", "Adds HA capability to routers."),
    ("l3-flavors", "Router Flavor Extension", "Flavor support for routers."),
    ("l3-ndp-proxy", "Router NDP Proxy", "Router NDP Proxy Extension"),
    ("l3-ext-ndp-proxy", "Router Extension NDP Proxy", "Allow to enable/disable ndp proxy on router"),
    ("l3-conntrack-helper", "L3 Conntrack helper", "Allow adding CT target rules for conntrack helper"),
    ("expose-l3-conntrack-helper", "Expose CT target rules for conntrack helper", "Expose the conntrack helper rules of a router in its attributes"),
    ("local_ip", "Local IP", "Support Node Local Virtual IP"),
    ("l3_agent_scheduler", "L3 Agent Scheduler", "Schedule routers among l3 agents"),
    ("network-segment-range", "Neutron Network Segment Range", "Provides support for the network segment range management"),
    ("network-ip-availability", "Network IP Availability", "Provides IP availability data for each network and subnet."),
    ("logging", "Logging API Extension", "Provides a logging API."),
    ("network-log", "Network logging", "Neutrino: security group logging through the agents' nftables log statements."),
    ("metering", "Neutron Metering", "Neutron Metering extension."),
    ("metering_source_and_destination_fields", "Neutron Metering with source and destination filtering", "Neutron Metering extension that enables the use of source and destination IP prefixes to create metering label rules."),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource."),
    ("network_availability_zone", "Network Availability Zone", "Availability zone support for network."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("port-mac-address-regenerate", "Neutron Port MAC address regenerate", "Network port MAC address regenerate"),
    ("port-security", "Port Security", "Provides port security"),
    ("port-trusted-vif", "Port trusted vif", "Expose port 'trusted' attribute (kept in binding:profile)"),
    ("ip-substring-filtering", "IP address substring filtering", "Provides IP address substring filtering when listing ports"),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("quota-check-limit", "Quota engine limit check", "Support for checking the resource usage before applying a new quota limit"),
    ("quota-check-limit-default", "Quota engine limit check by default", "Quota limits are checked against usage unless force is set"),
    ("expose-port-forwarding-in-fip", "Expose port forwarding in floating IP", "Expose the port forwarding rules of a floating IP in its attributes"),
    ("floating-ip-port-forwarding", "Floating IP Port Forwarding", "Allow port forwarding from floating IP port to an internal port"),
    ("floating-ip-port-forwarding-description", "Floating IP port forwarding description", "Add a description field to floating IP port forwarding rules"),
    ("floating-ip-port-forwarding-detail", "Floating IP port forwarding detail", "Allow list floating ip return more port forwarding data, include 'id' and 'internal_port_id'"),
    ("floating-ip-port-forwarding-port-ranges", "Floating IP port forwarding port ranges", "Allow port forwarding with port ranges"),
    ("qos", "Quality of Service", "The Quality of Service extension."),
    ("qos-bw-limit-direction", "Direction for QoS bandwidth limit rule", "Allow to configure QoS bandwidth limit rule with specific direction: ingress or egress"),
    ("qos-bw-minimum-ingress", "Ingress direction for QoS minimum bandwidth rule", "Allow to configure QoS minumum bandwidth rule with ingress direction."),
    ("qos-default", "QoS default policy", "Expose the QoS default policy per project"),
    ("qos-pps-minimum", "QoS minimum packet rate rule", "Allow to configure QoS minimum packet rate rule."),
    ("qos-rule-type-details", "Details of QoS rule types", "Expose details about QoS rule types supported by loaded backend drivers"),
    ("qos-rules-alias", "Quality of Service rules alias API", "API to enable GET, PUT and DELETE operations on QoS policy rules without specifying policy ID"),
    ("quotas", "Quota management support", "Expose functions for quotas management per project"),
    ("quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project"),
    ("rbac-policies", "RBAC Policies", "Allows creation and modification of policies that control tenant access to resources."),
    ("rbac-address-group", "Add address_group type to RBAC", "Add address_group type to network RBAC"),
    ("rbac-address-scope", "Add address_scope type to RBAC", "Add address_scope type to RBAC"),
    ("rbac-security-groups", "RBAC Security Groups", "Add RBAC support to security groups"),
    ("rbac-subnetpool", "Add subnetpool type to RBAC", "Add subnetpool type to RBAC"),
    ("revision-if-match", "If-Match constraints based on revision_number", "Extension indicating that If-Match based on revision_number is supported."),
    ("router-admin-state-down-before-update", "Enforce Router's Admin State Down Before Update Extension", "Ensure that the admin state of a router is down (admin_state_up=False) before updating the distributed attribute"),
    ("router-interface-fip", "Router interface FIP Extension", "Router interface FIP Extension"),
    ("router_availability_zone", "Router Availability Zone", "Availability zone support for router."),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway."),
    ("security-groups-default-rules", "Default rules for security groups", "Configure set of security group rules used as default rules for every new security group"),
    ("security-groups-remote-address-group", "Remote address group id field for security group rules", "Add new field of remote address group id in SG rules"),
    ("security-groups-normalized-cidr", "Normalized CIDR field for security group rules", "Add new field with normalized remote_ip_prefix cidr in SG rule"),
    ("security-group", "security-group", "The security groups extension."),
    ("service_graph", "Service Graph", "Service Graph extension."),
    ("sfc", "Service Function Chaining", "Service Function Chain extension."),
    ("service-type", "Neutron Service Type Management", "API for retrieving service providers for Neutron advanced services"),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("standard-attr-tag", "Tag support for resources with standard attribute: subnet, trunk, network_segment_range, router, network, policy, subnetpool, port, security_group, floatingip", "Enables to set tag on resources with standard attribute."),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("stateful-security-group", "Stateful security group", "Indicates if the security group is stateful or not"),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool"),
    ("subnet_onboard", "Subnet Onboard", "Provides support for onboarding subnets into subnet pools"),
    ("subnetpool-prefix-ops", "Subnet Pool Prefix Operations", "Provides support for adjusting the prefix list of subnet pools"),
    ("tag-ports-during-bulk-creation", "Tag Ports During Bulk Creation", "Allow to tag ports during bulk creation"),
    ("subnet-service-types", "Subnet service types", "Provides ability to set the subnet service_types field"),
    ("tag", "Tag support", "Enables to set tag on resources."),
    ("trunk", "Trunk Extension", "Provides support for trunk ports"),
    ("trunk-details", "Trunk port details", "Expose trunk port details"),
    ("tag-creation", "Tag support for resources during create", "Enables to set tag on resources during create."),
];

/// Extensions that keep their upstream `updated` stamp (networking-sfc's, the floating IP
/// ones of neutron-lib).
const UPDATED: &[(&str, &str)] = &[
    ("fip-port-details", "2018-04-09T10:00:00-00:00"),
    ("floatingip-pools", "2018-03-21T10:00:00-00:00"),
    ("router-interface-fip", "2015-11-11T10:00:00-00:00"),
    ("flow_classifier", "2015-10-05T10:00:00-00:00"),
    ("sfc", "2015-10-05T10:00:00-00:00"),
    ("service_graph", "2017-09-20T00:00:00-00:00"),
    ("networking-sfc-tap", "2017-10-20T10:00:00-00:00"),
    ("l2-gateway", "2015-01-01T00:00:00-00:00"),
    ("l2-gateway-connection", "2014-01-01T00:00:00-00:00"),
    ("bgp", "2016-05-10T15:37:00-00:00"),
    ("bgp_dragent_scheduler", "2015-07-30T10:00:00-00:00"),
    ("bgp_4byte_asn", "2017-09-07T00:00:00-00:00"),
];

fn render(alias: &str, name: &str, description: &str) -> Value {
    let updated = UPDATED
        .iter()
        .find(|(a, _)| *a == alias)
        .map_or("2026-11-25T00:00:00-00:00", |(_, u)| u);
    json!({"alias": alias, "name": name, "description": description,
           "updated": updated, "links": []})
}

/// `GET /v2.0/extensions`.
pub fn list() -> Value {
    json!({"extensions": EXTENSIONS.iter().map(|(a, n, d)| render(a, n, d)).collect::<Vec<_>>()})
}

/// `GET /v2.0/extensions/{alias}`.
pub fn get(alias: &str) -> Option<Value> {
    EXTENSIONS
        .iter()
        .find(|(a, _, _)| *a == alias)
        .map(|(a, n, d)| json!({"extension": render(a, n, d)}))
}

/// Whether an extension is implemented.
pub fn has(alias: &str) -> bool {
    EXTENSIONS.iter().any(|(a, _, _)| *a == alias)
}
