//! What the agent tells the server about the trunks whose parent is plugged here: the
//! status of each subport's port (`ACTIVE` once its VLAN device is on the parent's tap,
//! `ERROR` when the kernel refused it) and each trunk's status (Neutron's machine, see
//! `neutrino_dataplane::trunk`); and which subports the kernel refused, so that later
//! reconciles stop retrying them.

use std::collections::BTreeMap;

use neutrino_dataplane::cluster::text;
use neutrino_dataplane::desired::{Desired, PortOutcome};
use neutrino_dataplane::trunk::{is_wired, subport_status, trunk_statuses, SubportOutcome};
use neutrino_dataplane::{Cluster, HostState};
use serde_json::{json, Value};

/// Subports the kernel refused, with the outcome that was tried and why it failed.
pub type Refused = BTreeMap<String, (SubportOutcome, String)>;

/// After a plan whose application reported `errors`: the subports whose parent's tap is
/// there but whose VLAN device is not were refused by the kernel (one line of `errors`
/// says why). Adds them to `refused` and returns their ids.
pub fn record_refused(
    want: &Desired,
    have: &HostState,
    errors: &[String],
    refused: &mut Refused,
) -> Vec<String> {
    if errors.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (id, outcome) in &want.subports {
        let SubportOutcome::Plug {
            device,
            parent_tap,
            vid,
        } = outcome
        else {
            continue;
        };
        if !have.taps.contains_key(parent_tap) || is_wired(outcome, have) {
            continue;
        }
        let why = errors
            .iter()
            .find(|e| e.contains("vlan") || e.contains(device.as_str()))
            .unwrap_or(&errors[0]);
        let reason = format!(
            "the kernel did not create VLAN device {device} (id {vid}) on {parent_tap}: {why}"
        );
        refused.insert(id.clone(), (outcome.clone(), reason));
        out.push(id.clone());
    }
    out
}

/// Port status reports (`{"id", "status", "vif_type"}`) for the subports whose status
/// changed.
pub fn subport_reports(cluster: &Cluster, want: &Desired, have: &HostState) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, outcome) in &want.subports {
        let status = subport_status(outcome, have);
        let vif = if status == "ERROR" {
            "binding_failed"
        } else {
            "bridge"
        };
        let Some(port) = cluster.get("port", id) else {
            continue;
        };
        if text(port, "status") != status || text(port, "binding:vif_type") != vif {
            out.push(json!({"id": id, "status": status, "vif_type": vif}));
        }
    }
    out
}

/// Trunk status reports (`{"id", "status"}`) for the trunks whose status changed.
pub fn trunk_reports(cluster: &Cluster, want: &Desired, have: &HostState) -> Vec<Value> {
    let parent_up = |id: &str| match want.ports.get(id) {
        Some(PortOutcome::Plug {
            tap, netns, ifname, ..
        }) => have
            .taps
            .get(tap)
            .is_some_and(|t| t.peer == (netns.clone(), ifname.clone())),
        _ => false,
    };
    trunk_statuses(cluster, want, have, &parent_up)
        .into_iter()
        .filter(|(id, status)| {
            cluster
                .get("trunk", id)
                .is_some_and(|t| text(t, "status") != *status)
        })
        .map(|(id, status)| json!({"id": id, "status": status}))
        .collect()
}
