//! Decisions of Neutron's default policy, a table of (action, target, request, caller, expected);
//! the same table against the dumped defaults re-loaded as a file; and overrides that flip cases.

mod common;

use common::{creds, policy_with, roles};
use neutrino_policy::{dump_defaults_yaml, Policy};
use serde_json::{json, Value};

/// One case: `request` holds the explicitly set attributes (for writes), `target` the resource.
struct Case {
    what: &'static str,
    action: &'static str,
    target: Value,
    request: Value,
    role: &'static str,
    project: &'static str,
    allowed: bool,
}

fn case(
    what: &'static str,
    action: &'static str,
    role: &'static str,
    project: &'static str,
) -> Case {
    Case {
        what,
        action,
        target: json!({"project_id": "p1", "tenant_id": "p1"}),
        request: json!({}),
        role,
        project,
        allowed: true,
    }
}

impl Case {
    fn target(mut self, target: Value) -> Case {
        self.target = target;
        self
    }
    fn request(mut self, request: Value) -> Case {
        self.request = request;
        self
    }
    fn denied(mut self) -> Case {
        self.allowed = false;
        self
    }
}

fn cases() -> Vec<Case> {
    let own_port_on_own_net = json!({"project_id": "p1", "network:tenant_id": "p1", "network:project_id": "p1", "network_id": "n1"});
    let foreign_port_on_own_net =
        json!({"project_id": "p2", "network:tenant_id": "p1", "network_id": "n1"});
    let shared_foreign_net = json!({"project_id": "p2", "shared": true});
    vec![
        case("member creates own network", "create_network", "member", "p1")
            .request(json!({"name": "net"})),
        case("member creates a shared network", "create_network", "member", "p1")
            .request(json!({"shared": true}))
            .denied(),
        case("member sets router:external", "create_network", "member", "p1")
            .request(json!({"router:external": true}))
            .denied(),
        case("member sets provider:network_type", "create_network", "member", "p1")
            .request(json!({"provider:network_type": "vlan"}))
            .denied(),
        case("member sets port_security_enabled", "create_network", "member", "p1")
            .request(json!({"port_security_enabled": false})),
        case("admin creates a provider network", "create_network", "admin", "p9")
            .request(json!({"provider:network_type": "vlan", "shared": true, "router:external": true})),
        case("reader creates a network", "create_network", "reader", "p1").denied(),
        case("member creates a network for another project", "create_network", "member", "p2")
            .denied(),
        case("reader gets own network", "get_network", "reader", "p1"),
        case("reader gets another project's network", "get_network", "reader", "p2").denied(),
        case("other project's member gets a shared network", "get_network", "member", "p1")
            .target(shared_foreign_net.clone()),
        case("other project's member gets an external network", "get_network", "member", "p1")
            .target(json!({"project_id": "p2", "router:external": true})),
        case("member updates shared on own network", "update_network", "member", "p1")
            .request(json!({"shared": true}))
            .denied(),
        case("member renames own network", "update_network", "member", "p1")
            .request(json!({"name": "x"})),
        case("member deletes another project's network", "delete_network", "member", "p2")
            .denied(),
        case("admin deletes another project's network", "delete_network", "admin", "p2"),
        case("member creates a subnet on own network", "create_subnet", "member", "p1")
            .target(own_port_on_own_net.clone()),
        case("member creates a subnet on a shared network", "create_subnet", "member", "p1")
            .target(json!({"project_id": "p1", "network:tenant_id": "p2", "shared": true}))
            .denied(),
        case("member creates a port on own network", "create_port", "member", "p1")
            .target(own_port_on_own_net.clone())
            .request(json!({"network_id": "n1", "fixed_ips": [{"ip_address": "10.0.0.5"}], "mac_address": "fa:16:3e:00:00:01"})),
        case("member creates a port on a shared network", "create_port", "member", "p1")
            .target(json!({"project_id": "p1", "network:tenant_id": "p2", "shared": true}))
            .request(json!({"network_id": "n2", "fixed_ips": [{"subnet_id": "s2"}]})),
        case("member picks an address on a shared network", "create_port", "member", "p1")
            .target(json!({"project_id": "p1", "network:tenant_id": "p2", "shared": true}))
            .request(json!({"fixed_ips": [{"subnet_id": "s2", "ip_address": "10.0.0.9"}]}))
            .denied(),
        case("member sets a MAC on a shared network", "create_port", "member", "p1")
            .target(json!({"project_id": "p1", "network:tenant_id": "p2", "shared": true}))
            .request(json!({"mac_address": "fa:16:3e:00:00:01"}))
            .denied(),
        case("member creates a port on a foreign private network", "create_port", "member", "p1")
            .target(json!({"project_id": "p1", "network:tenant_id": "p2", "shared": false}))
            .denied(),
        case("member sets binding:host_id", "create_port", "member", "p1")
            .target(own_port_on_own_net.clone())
            .request(json!({"binding:host_id": "compute-1"}))
            .denied(),
        case("member sets binding:profile", "create_port", "member", "p1")
            .target(own_port_on_own_net.clone())
            .request(json!({"binding:profile": {"a": 1}}))
            .denied(),
        case("service sets binding:host_id", "create_port", "service", "p9")
            .target(own_port_on_own_net.clone())
            .request(json!({"binding:host_id": "compute-1"})),
        case("member of a shared net sets device_owner network:dhcp", "create_port", "member", "p1")
            .target(json!({"project_id": "p1", "network:tenant_id": "p2", "shared": true, "device_owner": "network:dhcp"}))
            .request(json!({"device_owner": "network:dhcp"}))
            .denied(),
        case("member of a shared net sets device_owner compute:nova", "create_port", "member", "p1")
            .target(json!({"project_id": "p1", "network:tenant_id": "p2", "shared": true, "device_owner": "compute:nova"}))
            .request(json!({"device_owner": "compute:nova"})),
        case("member sets allowed_address_pairs on own network", "update_port", "member", "p1")
            .target(own_port_on_own_net.clone())
            .request(json!({"allowed_address_pairs": [{"ip_address": "10.0.0.0/24"}]})),
        case("member deletes a foreign port on its own network", "delete_port", "member", "p1")
            .target(foreign_port_on_own_net.clone()),
        case("reader deletes own port", "delete_port", "reader", "p1").target(own_port_on_own_net.clone()).denied(),
        case("member gets a foreign port on its own network", "get_port", "member", "p1")
            .target(foreign_port_on_own_net),
        case("member creates a router with a gateway", "create_router", "member", "p1")
            .request(json!({"external_gateway_info": {"network_id": "ext"}})),
        case("member disables SNAT", "create_router", "member", "p1")
            .request(json!({"external_gateway_info": {"network_id": "ext", "enable_snat": false}}))
            .denied(),
        case("member picks a gateway address", "update_router", "member", "p1")
            .request(json!({"external_gateway_info": {"network_id": "ext", "external_fixed_ips": [{"ip_address": "172.24.4.9"}]}}))
            .denied(),
        case("member creates a distributed router", "create_router", "member", "p1")
            .request(json!({"distributed": true}))
            .denied(),
        case("member adds an interface to own router", "add_router_interface", "member", "p1"),
        case("member adds routes to another project's router", "add_extraroutes", "member", "p2")
            .denied(),
        case("member creates a floating IP", "create_floatingip", "member", "p1"),
        case("member picks a floating IP address", "create_floatingip", "member", "p1")
            .request(json!({"floating_ip_address": "172.24.4.10"}))
            .denied(),
        case("member adds a rule to own security group", "create_security_group_rule", "member", "p1")
            .target(json!({"project_id": "p1", "security_group:tenant_id": "p1"})),
        case("member adds a rule to a foreign security group", "create_security_group_rule", "member", "p1")
            .target(json!({"project_id": "p1", "security_group:tenant_id": "p2"}))
            .denied(),
        case("member creates a default security group rule", "create_default_security_group_rule", "member", "p1")
            .denied(),
        case("reader lists default security group rules", "get_default_security_group_rule", "reader", "p1"),
        case("member gets a shared subnet pool", "get_subnetpool", "member", "p1")
            .target(json!({"project_id": "p2", "shared": true})),
        case("member creates a shared subnet pool", "create_subnetpool", "member", "p1")
            .request(json!({"shared": true}))
            .denied(),
        case("member adds prefixes to own pool", "add_prefixes", "member", "p1"),
        case("member onboards network subnets", "onboard_network_subnets", "member", "p1"),
        case("member creates a shared address scope", "create_address_scope", "member", "p1")
            .request(json!({"shared": true}))
            .denied(),
        case("member adds addresses to own address group", "add_addresses", "member", "p1"),
        case("member adds subports to own trunk", "add_subports", "member", "p1"),
        case("reader lists subports", "get_subports", "reader", "p1"),
        case("member shares a network with everyone", "create_rbac_policy", "member", "p1")
            .target(json!({"project_id": "p1", "target_tenant": "*", "target_project": "*"}))
            .request(json!({"target_tenant": "*"}))
            .denied(),
        case("member shares a network with one project", "create_rbac_policy", "member", "p1")
            .target(json!({"project_id": "p1", "target_tenant": "p2", "target_project": "p2"}))
            .request(json!({"target_tenant": "p2"})),
        case("member gets own network's IP availability", "get_network_ip_availability", "member", "p1")
            .denied(),
        case("member gets own auto-allocated topology", "get_auto_allocated_topology", "member", "p1"),
        case("member updates a quota", "update_quota", "member", "p1").denied(),
        // Neutrino's deviation: the project's readers see its quota (Neutron master: managers).
        case("reader gets own quota", "get_quota", "reader", "p1"),
        case("reader gets another project's quota", "get_quota", "reader", "p2")
            .target(json!({"project_id": "p1"}))
            .denied(),
        case("manager gets own quota", "get_quota", "manager", "p1"),
        case("member lists agents", "get_agent", "member", "p1").denied(),
        case("admin schedules a router", "create_l3-router", "admin", "p9"),
        case("member lists a router's L3 agents", "get_l3-agents", "member", "p1").denied(),
        case("reader lists availability zones", "get_availability_zone", "reader", "p1"),
        case("reader lists service providers", "get_service_provider", "reader", "p1"),
        case("member creates a port chain", "create_port_chain", "member", "p1"),
        case("member gets another project's port chain", "get_port_chain", "member", "p2").denied(),
        case("member gets own port chain statistics", "get_port_chain_statistics", "member", "p1"),
        case("member deletes own flow classifier", "delete_flow_classifier", "member", "p1"),
        case("member updates another project's service graph", "update_service_graph", "member", "p2").denied(),
        case("agent reports SFC status", "update_sfc_status", "service", "p9"),
        case("member reports SFC status", "update_sfc_status", "member", "p1").denied(),
        case("admin reports SFC status", "update_sfc_status", "admin", "p9"),
        case("member, unknown action, own resource", "frobnicate", "member", "p1"),
        case("member, unknown action, foreign resource", "frobnicate", "member", "p2").denied(),
    ]
}

fn check_all(policy: &Policy, label: &str) {
    let mut failures = Vec::new();
    for case in cases() {
        let held = roles(case.role);
        let caller = creds(case.project, &held);
        let decision = policy.authorize(case.action, &case.target, &case.request, &caller);
        if decision.is_ok() != case.allowed {
            failures.push(format!(
                "{}: expected {}, got {decision:?}",
                case.what, case.allowed
            ));
        }
    }
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
}

#[test]
fn default_decisions() {
    check_all(&Policy::defaults(), "defaults");
}

#[test]
fn admin_may_do_every_documented_action() {
    let policy = Policy::defaults();
    let admin = roles("admin");
    let caller = creds("p9", &admin);
    let target = json!({"project_id": "p1"});
    let refused: Vec<&str> = neutrino_policy::DEFAULT_RULES
        .iter()
        .filter(|rule| !rule.operations.is_empty())
        .filter(|rule| !policy.enforce(rule.name, &target, &caller))
        .map(|rule| rule.name)
        .collect();
    // Neutron keeps binding:profile for Nova (the service role); Neutrino lets admins set it
    // too, as its agents read settings from it.
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn dumped_defaults_reload_to_the_same_decisions() {
    let yaml = dump_defaults_yaml();
    assert!(yaml.contains("# Create a network\n# POST    /networks\n\"create_network\": "));
    let (policy, unknown) = Policy::with_overrides(&yaml, "dump.yaml").unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    check_all(&policy, "dumped defaults");
}

#[test]
fn an_override_flips_exactly_its_case() {
    let policy = policy_with(&[("create_network:shared", "rule:admin_only or role:member")]);
    let member = roles("member");
    let caller = creds("p1", &member);
    let target = json!({"project_id": "p1"});
    assert!(policy
        .authorize("create_network", &target, &json!({"shared": true}), &caller)
        .is_ok());
    let reader = roles("reader");
    assert!(policy
        .authorize(
            "create_network",
            &target,
            &json!({"shared": true}),
            &creds("p1", &reader)
        )
        .is_err());
    let flipped = cases()
        .into_iter()
        .filter(|case| {
            let held = roles(case.role);
            let caller = creds(case.project, &held);
            policy
                .authorize(case.action, &case.target, &case.request, &caller)
                .is_ok()
                != case.allowed
        })
        .map(|case| case.what)
        .collect::<Vec<_>>();
    assert_eq!(flipped, ["member creates a shared network"]);
}

#[test]
fn never_forbids_even_admins() {
    let policy = policy_with(&[("delete_port", "!")]);
    let admin = roles("admin");
    let denied = policy.authorize(
        "delete_port",
        &json!({"project_id": "p1"}),
        &json!({}),
        &creds("p1", &admin),
    );
    assert_eq!(denied.unwrap_err().rule, "delete_port");
    assert!(policy.enforce(
        "get_port",
        &json!({"project_id": "p1"}),
        &creds("p1", &admin)
    ));
}

#[test]
fn denial_names_the_failing_attribute_rule() {
    let policy = Policy::defaults();
    let member = roles("member");
    let denied = policy.authorize(
        "create_network",
        &json!({"project_id": "p1"}),
        &json!({"name": "n", "shared": true}),
        &creds("p1", &member),
    );
    assert_eq!(denied.unwrap_err().rule, "create_network:shared");
    let denied = policy.enforce(
        "frobnicate",
        &json!({"project_id": "p2"}),
        &creds("p1", &member),
    );
    assert!(!denied);
    let denied = policy.authorize(
        "frobnicate",
        &json!({"project_id": "p2"}),
        &json!({}),
        &creds("p1", &member),
    );
    assert_eq!(denied.unwrap_err().rule, "default");
}

#[test]
fn reads_hide_admin_only_attributes() {
    let policy = Policy::defaults();
    let port = json!({"project_id": "p1", "binding:host_id": "compute-1", "binding:vif_type": "ovs",
                      "binding:vif_details": {}, "binding:profile": {}, "name": "p"});
    let member = roles("member");
    let mut hidden = policy.hidden_attributes("get_port", &port, &creds("p1", &member));
    hidden.sort_unstable();
    assert_eq!(
        hidden,
        [
            "binding:host_id",
            "binding:profile",
            "binding:vif_details",
            "binding:vif_type"
        ]
    );
    let admin = roles("admin");
    assert!(policy
        .hidden_attributes("get_port", &port, &creds("p9", &admin))
        .is_empty());
    let network =
        json!({"project_id": "p1", "provider:network_type": "vxlan", "router:external": false});
    let hidden = policy.hidden_attributes("get_network", &network, &creds("p1", &member));
    assert_eq!(hidden, ["provider:network_type"]);
}

#[test]
fn attribute_rules_split_attributes_and_sub_attributes() {
    let policy = Policy::defaults();
    let rules = policy.attribute_rules("create_port");
    let find = |name: &str| rules.iter().find(|rule| &*rule.name == name).unwrap();
    let host = find("create_port:binding:host_id");
    assert_eq!(
        (&*host.attribute, host.sub_attribute.as_deref()),
        ("binding:host_id", None)
    );
    let address = find("create_port:fixed_ips:ip_address");
    assert_eq!(
        (&*address.attribute, address.sub_attribute.as_deref()),
        ("fixed_ips", Some("ip_address"))
    );
    let pair_mac = find("create_port:allowed_address_pairs:mac_address");
    assert_eq!(&*pair_mac.attribute, "allowed_address_pairs");
    let network = policy.attribute_rules("create_network");
    assert!(network
        .iter()
        .any(|rule| &*rule.attribute == "router:external" && rule.sub_attribute.is_none()));
    let gateway = policy.attribute_rules("update_router");
    assert!(gateway.iter().any(|rule| &*rule.name
        == "update_router:external_gateway_info:external_fixed_ips"
        && rule.sub_attribute.as_deref() == Some("external_fixed_ips")));
    assert!(policy.attribute_rules("create_network_segment").is_empty());
    assert!(policy.attribute_rules("default").is_empty());

    let request = json!({"fixed_ips": [{"subnet_id": "s"}, {"subnet_id": "t"}], "name": "p"});
    let applicable: Vec<&str> = policy
        .applicable_attribute_rules("create_port", &request)
        .map(|rule| &*rule.name)
        .collect();
    assert_eq!(
        applicable,
        ["create_port:fixed_ips", "create_port:fixed_ips:subnet_id"]
    );
}
