//! Cutting established connections a security-group change no longer allows: the decision
//! is `neutrino_firewall::conntrack` (pure), the listing and deletions the `conntrack` tool
//! in the dataplane namespace.

use std::collections::BTreeMap;

use neutrino_firewall::conntrack::{affected_ports, cuts, parse_list};
use neutrino_firewall::FirewallModel;

use crate::kernel::Kernel;
use crate::AgentError;

/// After the firewall moved from `old` to `new`: deletes the conntrack entries of ports that
/// lost an allowance and that no current rule allows; returns how many went. Lists nothing
/// when no port lost anything.
pub fn cut_lost_connections(
    kernel: &dyn Kernel,
    old: &FirewallModel,
    new: &FirewallModel,
    zones: &BTreeMap<String, u16>,
) -> Result<usize, AgentError> {
    let affected = affected_ports(old, new);
    if affected.is_empty() {
        return Ok(0);
    }
    let entries = parse_list(&kernel.conntrack(&["-L".to_string()])?);
    let cut = cuts(new, zones, &affected, &entries);
    for entry in &cut {
        tracing::info!(
            ?entry,
            "cutting a connection its security groups no longer allow"
        );
        // An entry that ended meanwhile is not an error worth more than a debug line.
        if let Err(e) = kernel.conntrack(&entry.delete_args()) {
            tracing::debug!(error = %e, "conntrack delete");
        }
    }
    Ok(cut.len())
}
