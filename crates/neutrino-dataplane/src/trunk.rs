//! Trunks (VLAN-aware instances): a parent port plugged as usual carries subports, each told
//! apart on the wire by a VLAN id.
//!
//! A subport (`device_owner` `trunk:subport`; the server binds it to its parent's host and
//! writes `parent_name` and `tag` into its `binding:profile`) gets a VLAN device
//! `spt<11 characters of the subport id>` on the parent's tap (id = the tag), enslaved to
//! the bridge of the subport's network: frames the instance tags leave the parent's bridge
//! path and enter the subport's network untagged, and the firewall filters that device with
//! the subport's security groups and anti-spoofing like any port's tap. Deleting the subport
//! (or its parent's tap) deletes the device.
//!
//! The trunk's status follows Neutron's machine: `ACTIVE` when the parent and every subport
//! are wired, `BUILD` while some are still being wired, `DEGRADED` when some subports cannot
//! be wired (a kernel without 802.1q, a bad tag), `ERROR` when the parent itself cannot be
//! plugged; `DOWN` (parent unbound) is the server's to set, since no agent has the trunk then.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::desired::{Desired, PortOutcome};
use crate::names;
use crate::plan::Op;
use crate::state::{HostState, Uplink};

/// `device_owner` of trunk subports.
pub const SUBPORT_OWNER: &str = "trunk:subport";

/// What should happen to one subport bound to this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubportOutcome {
    /// A VLAN device `device` with id `vid` on the parent's tap `parent_tap`.
    Plug {
        /// The VLAN device.
        device: String,
        /// The parent port's tap.
        parent_tap: String,
        /// VLAN id.
        vid: u16,
    },
    /// Cannot be wired here (reported `ERROR`, and the trunk `DEGRADED`).
    Fail(String),
}

/// Whether a host interface is a subport's VLAN device.
pub fn is_subport_link(name: &str) -> bool {
    name.starts_with("spt")
}

/// Wires the subports bound here: `pending` holds each subport's port and the bridge of its
/// network (already in `out`); their parents' outcomes are in `out.ports`.
pub(crate) fn add_subports(pending: &[(&Value, String)], out: &mut Desired) {
    for (port, bridge) in pending {
        let id = text(port, "id");
        let parent = port["binding:profile"]["parent_name"]
            .as_str()
            .unwrap_or_default();
        let vid = port["binding:profile"]["tag"]
            .as_u64()
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| (1..=4094).contains(v));
        let outcome = match (out.ports.get(parent), vid) {
            (_, None) => SubportOutcome::Fail(format!(
                "subport {id} has no valid VLAN tag ({})",
                port["binding:profile"]["tag"]
            )),
            (Some(PortOutcome::Plug { tap, .. }), Some(vid)) => {
                let device = names::subport(id);
                out.state.subports.insert(
                    device.clone(),
                    Uplink {
                        vlan: Some((tap.clone(), vid)),
                        master: Some(bridge.clone()),
                    },
                );
                SubportOutcome::Plug {
                    device,
                    parent_tap: tap.clone(),
                    vid,
                }
            }
            (Some(PortOutcome::Fail(_)), _) => {
                SubportOutcome::Fail(format!("its parent port {parent} cannot be plugged"))
            }
            (None, _) => SubportOutcome::Fail(format!(
                "its parent port {parent:?} is not plugged on this host"
            )),
        };
        out.subports.insert(id.to_string(), outcome);
    }
}

/// Turns the subports whose VLAN device the kernel refused (`failed`: subport id → reason,
/// kept by the agent for the same device, parent and VLAN id) into failures, and takes their
/// devices out of the desired state: the next plans do not try them again, so one subport
/// the kernel cannot wire does not fail every reconcile of the host. Returns the ids.
pub fn drop_failed_subports(
    desired: &mut Desired,
    failed: &BTreeMap<String, (SubportOutcome, String)>,
) -> Vec<String> {
    let mut dropped = Vec::new();
    for (id, outcome) in desired.subports.iter_mut() {
        let Some((was, reason)) = failed.get(id) else {
            continue;
        };
        if was != outcome {
            continue;
        }
        if let SubportOutcome::Plug { device, .. } = outcome {
            desired.state.subports.remove(device);
        }
        *outcome = SubportOutcome::Fail(reason.clone());
        dropped.push(id.clone());
    }
    dropped
}

/// Whether subport `outcome` is wired in `have`.
pub fn is_wired(outcome: &SubportOutcome, have: &HostState) -> bool {
    match outcome {
        SubportOutcome::Plug {
            device,
            parent_tap,
            vid,
        } => have
            .subports
            .get(device)
            .is_some_and(|u| u.vlan == Some((parent_tap.clone(), *vid)) && u.master.is_some()),
        SubportOutcome::Fail(_) => false,
    }
}

/// A subport port's status: `ACTIVE` when wired, `ERROR` when it cannot be, else `BUILD`.
pub fn subport_status(outcome: &SubportOutcome, have: &HostState) -> &'static str {
    match outcome {
        SubportOutcome::Fail(_) => "ERROR",
        o if is_wired(o, have) => "ACTIVE",
        _ => "BUILD",
    }
}

/// The status of each trunk whose parent is bound to this host, by trunk id. `parent_up`
/// says whether a port's tap is plugged (the agent's port status).
pub fn trunk_statuses(
    cluster: &Cluster,
    desired: &Desired,
    have: &HostState,
    parent_up: &dyn Fn(&str) -> bool,
) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    for trunk in cluster.all("trunk") {
        let parent = text(trunk, "port_id");
        let Some(parent_outcome) = desired.ports.get(parent) else {
            continue;
        };
        let subs: BTreeSet<&str> = trunk["sub_ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| text(s, "port_id"))
            .collect();
        let outcomes: Vec<Option<&SubportOutcome>> =
            subs.iter().map(|s| desired.subports.get(*s)).collect();
        let status = if matches!(parent_outcome, PortOutcome::Fail(_)) {
            "ERROR"
        } else if !parent_up(parent) {
            "BUILD"
        } else if outcomes
            .iter()
            .any(|o| matches!(o, Some(SubportOutcome::Fail(_))))
        {
            "DEGRADED"
        } else if outcomes
            .iter()
            .all(|o| o.is_some_and(|o| is_wired(o, have)))
        {
            "ACTIVE"
        } else {
            "BUILD"
        };
        out.insert(text(trunk, "id").to_string(), status);
    }
    out
}

/// Removes the subport devices that are not wanted (or wanted on another tap or VLAN id);
/// those on a tap this plan deletes go with it.
pub(crate) fn remove_links(desired: &HostState, observed: &HostState, ops: &mut Vec<Op>) {
    for (name, have) in &observed.subports {
        let tap_deleted = have
            .vlan
            .as_ref()
            .is_some_and(|(tap, _)| ops.iter().any(|o| matches!(o, Op::DelLink(n) if n == tap)));
        if desired.subports.get(name) != Some(have) && !tap_deleted {
            ops.push(Op::DelLink(name.clone()));
        }
    }
}

/// Creates the missing subport devices (after the taps they ride on) and enslaves them.
/// A device whose tap this plan (re)creates is made again: it went with the old tap.
pub(crate) fn add_links(desired: &HostState, observed: &HostState, ops: &mut Vec<Op>) {
    for (name, want) in &desired.subports {
        let Some((tap, vid)) = &want.vlan else {
            continue;
        };
        let tap_recreated = ops
            .iter()
            .any(|o| matches!(o, Op::DelLink(n) | Op::AddVeth { tap: n, .. } if n == tap));
        if observed.subports.get(name) == Some(want) && !tap_recreated {
            continue;
        }
        ops.push(Op::AddVlan {
            name: name.clone(),
            parent: tap.clone(),
            vid: *vid,
        });
        if let Some(master) = &want.master {
            ops.push(Op::SetMaster {
                name: name.clone(),
                master: master.clone(),
            });
        }
        ops.push(Op::SetUp(name.clone()));
    }
}
