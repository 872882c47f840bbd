//! Kernel object names (interface names are at most 15 bytes). They follow the Linux bridge
//! agent's conventions, so an operator who knows Neutron recognises them, and each kind has a
//! prefix that marks it as the agent's own: anything else on the host is never touched.

/// Bridge of a network: `brq` + the first 11 characters of the network id.
pub fn bridge(network_id: &str) -> String {
    format!("brq{}", short(network_id))
}

/// VXLAN device of a segment.
pub fn vxlan(vni: u32) -> String {
    format!("vxlan-{vni}")
}

/// Host-side end of a port's veth pair: `tap` + the first 11 characters of the port id.
pub fn tap(port_id: &str) -> String {
    format!("tap{}", short(port_id))
}

/// VLAN device of a trunk subport on its parent's tap: `spt` + the first 11 characters of
/// the subport's port id.
pub fn subport(port_id: &str) -> String {
    format!("spt{}", short(port_id))
}

/// Network namespace standing for an instance (`device_id`); ports without a device get one
/// of their own.
pub fn instance_netns(prefix: &str, device_id: &str, port_id: &str) -> String {
    let raw = if device_id.is_empty() {
        format!("port-{port_id}")
    } else {
        device_id.to_string()
    };
    format!("{prefix}vm-{}", clean_id(&raw))
}

/// Managed name of a container's namespace (`device_id` = the CNI container id): the
/// runtime's namespace bind-mounted at `/run/netns/<prefix>ctr-<id>`.
pub fn container_netns(prefix: &str, device_id: &str) -> String {
    format!("{prefix}ctr-{}", clean_id(device_id))
}

/// The agent's parking namespace of pooled container ports (`<prefix>pool`): a pool's ports
/// are wired and filtered here before a container takes one.
pub fn pool_netns(prefix: &str) -> String {
    format!("{prefix}pool")
}

/// A parked pool port's interface in the parking namespace: `pp` + the first 11 characters
/// of the port id.
pub fn pool_interface(port_id: &str) -> String {
    format!("pp{}", short(port_id))
}

fn clean_id(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect()
}

/// Network namespace of a router.
pub fn router_netns(prefix: &str, router_id: &str) -> String {
    format!("{prefix}qrouter-{router_id}")
}

/// Interface of a router on an internal subnet (`qr-`) or on the external network (`qg-`).
pub fn router_interface(port_id: &str, gateway: bool) -> String {
    format!("{}{}", if gateway { "qg-" } else { "qr-" }, short(port_id))
}

/// Network namespace of a network's DHCP server.
pub fn dhcp_netns(prefix: &str, network_id: &str) -> String {
    format!("{prefix}qdhcp-{network_id}")
}

/// Interface of a DHCP server in its namespace: `ns-` + the first 11 characters of the port id.
pub fn dhcp_interface(port_id: &str) -> String {
    format!("ns-{}", short(port_id))
}

/// Whether a namespace name is one this agent manages.
pub fn is_managed_netns(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest == "pool"
            || ["vm-", "ctr-", "qrouter-", "qdhcp-", "snat-"]
                .iter()
                .any(|p| rest.starts_with(p))
    })
}

/// Whether a managed namespace is a router's.
pub fn is_router_netns(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with("qrouter-") || rest.starts_with("snat-"))
}

/// Namespace of a distributed router's central SNAT part on its SNAT host.
pub fn snat_netns(prefix: &str, router_id: &str) -> String {
    format!("{prefix}snat-{router_id}")
}

/// Interface of a distributed router's SNAT port inside the SNAT namespace.
pub fn snat_interface(port_id: &str) -> String {
    format!("sg-{}", short(port_id))
}

/// The MAC a host gives its copy of a distributed router interface: locally administered
/// (`fa:16:3f`, Neutron's DVR base), the rest a digest of host and port, so every host
/// computes every other host's router MACs.
pub fn dvr_mac(host: &str, port_id: &str) -> String {
    let h = host
        .bytes()
        .chain([0])
        .chain(port_id.bytes())
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    let [_, a, b, c] = h.to_be_bytes();
    format!("fa:16:3f:{a:02x}:{b:02x}:{c:02x}")
}

/// Whether a host interface name is one this agent manages.
pub fn is_managed_link(name: &str) -> bool {
    ["brq", "vxlan-", "tap"].iter().any(|p| name.starts_with(p))
}

/// Whether a host interface is a steering port of service function chaining (`sfs…`, its
/// peer `sfp…`): the steering reconcile owns those, this plan leaves them alone.
pub fn is_steering_link(name: &str) -> bool {
    name.starts_with("sfs") || name.starts_with("sfp")
}

fn short(id: &str) -> &str {
    let end = id
        .char_indices()
        .nth(11)
        .map(|(i, _)| i)
        .unwrap_or(id.len());
    &id[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_in_ifnamsiz() {
        let id = "3f2a9c1e-4b7d-4c1e-9a0b-123456789abc";
        for name in [bridge(id), tap(id), vxlan(16_777_215)] {
            assert!(name.len() <= 15, "{name}");
        }
        assert_eq!(tap(id), "tap3f2a9c1e-4b");
        assert_eq!(instance_netns("h1-", "vm 1/x", id), "h1-vm-vm_1_x");
        assert!(is_managed_netns("h1-", "h1-vm-a"));
        assert!(!is_managed_netns("h1-", "h2-vm-a"));
        assert!(is_managed_netns("h1-", &dhcp_netns("h1-", id)));
        assert_eq!(dhcp_interface(id), "ns-3f2a9c1e-4b");
    }
}
