//! Flat and VLAN provider networks, as the Linux bridge agent realises them.
//!
//! The agent maps physical networks to host interfaces (`--physical-interface-mappings
//! physnet1:eth1,physnet2:eth2`, reported to the server as `interface_mappings` in the
//! agent's `configurations`). A flat network on a mapped physical network enslaves that
//! interface to the network's bridge; a VLAN network enslaves a VLAN sub-interface
//! `<interface>.<segmentation id>` (created by the agent, deleted with the network). A
//! provider network on an unmapped physical network cannot be realised on this host: its
//! ports are reported `binding_failed`.
//!
//! Enslaved interfaces are "uplinks" in [`HostState`]: the agent recognises them in the
//! kernel as non-agent interfaces whose master is one of its bridges, so a physical interface
//! it was never told about is never touched.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cluster::text;
use crate::plan::Op;
use crate::state::{HostState, Uplink};

/// How one network is carried on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A VXLAN overlay with this VNI.
    Vxlan(u32),
    /// A host interface (flat) or a VLAN sub-interface of one (VLAN), enslaved to the bridge.
    Uplink {
        /// The interface enslaved to the bridge.
        name: String,
        /// The uplink itself.
        uplink: Uplink,
    },
}

/// Parses `physnet1:eth1,physnet2:eth2` (spaces and empty items ignored). Each physical
/// network and each interface may appear once, as the Linux bridge agent requires.
pub fn parse_interface_mappings(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (physnet, iface) = item
            .split_once(':')
            .map(|(p, i)| (p.trim(), i.trim()))
            .filter(|(p, i)| !p.is_empty() && !i.is_empty())
            .ok_or_else(|| format!("invalid mapping {item:?}: expected PHYSNET:INTERFACE"))?;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '@');
        if iface.len() > 15 || !iface.chars().all(valid) {
            return Err(format!("invalid interface name {iface:?}"));
        }
        if out.values().any(|i| i == iface) {
            return Err(format!("interface {iface} is mapped twice"));
        }
        if out.insert(physnet.to_string(), iface.to_string()).is_some() {
            return Err(format!("physical network {physnet} is mapped twice"));
        }
    }
    Ok(out)
}

/// Name of the VLAN sub-interface of `iface` for `vid` (`eth1.100`); the VLAN id is kept
/// and the interface part shortened when the whole would not fit in 15 bytes.
pub fn vlan_interface(iface: &str, vid: u16) -> String {
    let suffix = format!(".{vid}");
    let keep = iface.len().min(15 - suffix.len());
    format!("{}{suffix}", &iface[..keep])
}

/// How a network is carried on a host with `mappings`, or why it cannot be realised there.
pub fn segment(net: &Value, mappings: &BTreeMap<String, String>) -> Result<Segment, String> {
    let network_type = text(net, "provider:network_type");
    let seg_id = net["provider:segmentation_id"].as_u64();
    let physnet = text(net, "provider:physical_network");
    let mapped = || {
        mappings
            .get(physnet)
            .ok_or_else(|| format!("physical network {physnet:?} is not mapped on this host"))
    };
    match network_type {
        "vxlan" => seg_id
            .and_then(|v| u32::try_from(v).ok())
            .map(Segment::Vxlan)
            .ok_or_else(|| "VXLAN network without a segmentation id".to_string()),
        "flat" => Ok(Segment::Uplink {
            name: mapped()?.clone(),
            uplink: Uplink::default(),
        }),
        "vlan" => {
            let iface = mapped()?;
            let vid = seg_id
                .and_then(|v| u16::try_from(v).ok())
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| "VLAN network without a valid segmentation id".to_string())?;
            Ok(Segment::Uplink {
                name: vlan_interface(iface, vid),
                uplink: Uplink {
                    vlan: Some((iface.clone(), vid)),
                    master: None,
                },
            })
        }
        other => Err(format!(
            "network type {other:?} is not supported by this agent (VXLAN, flat, VLAN)"
        )),
    }
}

/// Parses the uplinks out of `ip -d -j link show`: interfaces that are not the agent's own
/// but are enslaved to one of its bridges (`brq…`).
pub fn observe_uplinks(links: &Value, state: &mut HostState) {
    for link in links.as_array().into_iter().flatten() {
        let name = text(link, "ifname");
        let master = text(link, "master");
        if name.is_empty()
            || crate::names::is_managed_link(name)
            || crate::names::is_steering_link(name)
            || !master.starts_with("brq")
        {
            continue;
        }
        let info = &link["linkinfo"];
        let vlan = (info["info_kind"] == "vlan")
            .then(|| {
                let vid = info["info_data"]["id"]
                    .as_u64()
                    .and_then(|v| u16::try_from(v).ok())?;
                Some((text(link, "link").to_string(), vid))
            })
            .flatten();
        let kind = if crate::trunk::is_subport_link(name) {
            &mut state.subports
        } else {
            &mut state.uplinks
        };
        kind.insert(
            name.to_string(),
            Uplink {
                vlan,
                master: Some(master.to_string()),
            },
        );
    }
}

/// Removals, before the bridges go: VLAN sub-interfaces no longer wanted are deleted,
/// physical interfaces released from bridges they no longer belong to.
pub fn remove_uplinks(desired: &HostState, observed: &HostState, ops: &mut Vec<Op>) {
    for (name, have) in &observed.uplinks {
        let want = desired.uplinks.get(name);
        if have.vlan.is_some() && want.is_none_or(|w| w.vlan != have.vlan) {
            ops.push(Op::DelLink(name.clone()));
        } else if have.vlan.is_none() && want.is_none_or(|w| w.master != have.master) {
            ops.push(Op::SetNoMaster(name.clone()));
        }
    }
}

/// Creations and fixes, after the bridges exist: VLAN sub-interfaces are created, every
/// uplink enslaved to its bridge and brought up.
pub fn add_uplinks(desired: &HostState, observed: &HostState, ops: &mut Vec<Op>) {
    for (name, want) in &desired.uplinks {
        let have = observed
            .uplinks
            .get(name)
            .filter(|h| h.vlan == want.vlan && h.master.is_some());
        if have.is_some_and(|h| h.master == want.master) {
            continue;
        }
        if let (None, Some((parent, vid))) = (have, &want.vlan) {
            ops.push(Op::AddVlan {
                name: name.clone(),
                parent: parent.clone(),
                vid: *vid,
            });
        }
        if let Some(master) = &want.master {
            ops.push(Op::SetMaster {
                name: name.clone(),
                master: master.clone(),
            });
        }
        ops.push(Op::SetUp(name.clone()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn maps() -> BTreeMap<String, String> {
        parse_interface_mappings("physnet1:eth1, physnet2:eth2").unwrap()
    }

    #[test]
    fn mappings_parse_and_refuse_duplicates() {
        assert_eq!(maps().get("physnet2").map(String::as_str), Some("eth2"));
        assert!(parse_interface_mappings("").unwrap().is_empty());
        for bad in [
            "physnet1",
            "physnet1:",
            ":eth1",
            "p:eth1,p:eth2",
            "p:eth1,q:eth1",
        ] {
            assert!(parse_interface_mappings(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_of_each_network_type() {
        let net = |t: &str, p: &str, s: Value| {
            json!({"provider:network_type": t, "provider:physical_network": p,
                   "provider:segmentation_id": s})
        };
        assert_eq!(
            segment(&net("vxlan", "", json!(7)), &maps()),
            Ok(Segment::Vxlan(7))
        );
        assert_eq!(
            segment(&net("flat", "physnet1", Value::Null), &maps()),
            Ok(Segment::Uplink {
                name: "eth1".into(),
                uplink: Uplink::default()
            })
        );
        let Ok(Segment::Uplink { name, uplink }) =
            segment(&net("vlan", "physnet2", json!(100)), &maps())
        else {
            panic!("vlan segment");
        };
        assert_eq!(name, "eth2.100");
        assert_eq!(uplink.vlan, Some(("eth2".into(), 100)));
        let unmapped = segment(&net("flat", "physnet9", Value::Null), &maps());
        assert!(unmapped.unwrap_err().contains("not mapped"));
        assert!(segment(&net("gre", "", json!(1)), &maps()).is_err());
        assert!(segment(&net("vlan", "physnet1", json!(5000)), &maps()).is_err());
    }

    #[test]
    fn vlan_names_fit_in_ifnamsiz() {
        assert_eq!(vlan_interface("eth1", 4094), "eth1.4094");
        let long = vlan_interface("enp0s31f6-abcdef", 4094);
        assert_eq!(long, "enp0s31f6-.4094");
        assert!(long.len() <= 15);
    }

    #[test]
    fn observed_uplinks_are_enslaved_foreign_interfaces() {
        let links = json!([
            {"ifname": "eth1", "master": "brqnet1"},
            {"ifname": "eth2.100", "master": "brqnet2", "link": "eth2",
             "linkinfo": {"info_kind": "vlan", "info_data": {"id": 100}}},
            {"ifname": "eth3"},
            {"ifname": "tapabc", "master": "brqnet1"},
            {"ifname": "eth4", "master": "br-other"}]);
        let mut state = HostState::default();
        observe_uplinks(&links, &mut state);
        assert_eq!(
            state.uplinks.keys().collect::<Vec<_>>(),
            ["eth1", "eth2.100"]
        );
        assert_eq!(state.uplinks["eth2.100"].vlan, Some(("eth2".into(), 100)));
    }

    #[test]
    fn uplink_plan_creates_enslaves_and_releases() {
        let uplink = |vlan: Option<(&str, u16)>, master: &str| Uplink {
            vlan: vlan.map(|(p, v)| (p.to_string(), v)),
            master: Some(master.to_string()),
        };
        let mut want = HostState::default();
        want.uplinks.insert("eth1".into(), uplink(None, "brqflat"));
        want.uplinks
            .insert("eth2.7".into(), uplink(Some(("eth2", 7)), "brqvlan"));
        let mut ops = Vec::new();
        add_uplinks(&want, &HostState::default(), &mut ops);
        let text: Vec<String> = ops.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "ip link set eth1 master brqflat",
                "ip link set eth1 up",
                "ip link add link eth2 name eth2.7 type vlan id 7",
                "ip link set eth2.7 master brqvlan",
                "ip link set eth2.7 up",
            ]
        );
        // Converged: nothing to do either way.
        let mut ops = Vec::new();
        remove_uplinks(&want, &want, &mut ops);
        add_uplinks(&want, &want, &mut ops);
        assert!(ops.is_empty());
        // Gone: the VLAN device is deleted, the physical interface only released.
        remove_uplinks(&HostState::default(), &want, &mut ops);
        let text: Vec<String> = ops.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["ip link set eth1 nomaster", "ip link del eth2.7"]);
    }
}
