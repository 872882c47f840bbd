//! One step of a host-level plan that is neither an `ip -batch` nor the firewall's: a
//! command run in the dataplane namespace, or an `nft -f` script. QoS and Local IPs plan in it.

use std::fmt;

/// A command or an nft script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostOp {
    /// A command with its arguments (`tc ...`, `ip ...`, `bridge ...`).
    Cmd(Vec<String>),
    /// An `nft -f` script.
    Nft(String),
}

impl HostOp {
    /// A command from its words.
    pub fn cmd(args: &[&str]) -> HostOp {
        HostOp::Cmd(args.iter().map(|s| s.to_string()).collect())
    }
}

impl fmt::Display for HostOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostOp::Cmd(args) => write!(f, "{}", args.join(" ")),
            HostOp::Nft(script) => write!(f, "nft -f - <<{} lines>>", script.lines().count()),
        }
    }
}
