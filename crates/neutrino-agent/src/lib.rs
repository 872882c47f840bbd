//! `neutrino agent`: one per host. It registers with the server, mirrors the resources it
//! needs (a snapshot, then the change feed from that revision on), and after every change
//! observes the kernel, plans the difference to the desired state (pure code in
//! `neutrino-dataplane`) and applies it. Port status goes back to the server (ACTIVE once
//! plugged). A lost connection resumes from the last revision; a compacted one refetches the
//! snapshot; a restart adopts what is in the kernel instead of flushing it.

mod agent;
pub mod bird;
pub mod client;
mod conntrack;
mod daemon;
mod dnsmasq;
pub mod kernel;
mod mac_exchange;
mod meter_report;
pub mod metrics;
mod nft_netlink;
pub mod overlay;
pub mod ovsdb;
mod phases;
mod prober;
mod radvd;
mod sfc_report;
mod sg_log;
mod trunk_report;
pub mod vtep;
pub mod vtep_tls;

pub use agent::{run, AgentConfig};
pub use client::ServerClient;
pub use kernel::{IpRoute2, Kernel};
pub use neutrino_keystone::Credentials;

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Login or the catalog lookup failed (or an `OS_*` variable is missing).
    #[error(transparent)]
    Keystone(#[from] neutrino_keystone::KeystoneError),
    /// The server could not be reached (or its certificate not verified: the causes say).
    #[error("server unreachable: {}", neutrino_keystone::error_chain(.0))]
    Http(#[from] reqwest::Error),
    /// The server refused a call.
    #[error("server answered {status}: {body}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The server is letting a crowd in (a start-up storm): come back after `after`.
    #[error("server busy: retry after {after:?}")]
    Busy {
        /// The server's `Retry-After`.
        after: std::time::Duration,
    },
    /// The server speaks an agent protocol version this agent does not follow (see
    /// `neutrino_types::agent_protocol`): the agent waits and tries again.
    #[error(
        "the server speaks agent protocol version {server}, this agent version {agent} \
         (it follows servers of its version and the next): {advice}"
    )]
    Incompatible {
        /// This agent's version.
        agent: u32,
        /// What the server named.
        server: String,
        /// What to upgrade.
        advice: &'static str,
    },
    /// The watch stream went quiet for longer than the server's bookmark interval.
    #[error("watch stream stalled")]
    Stalled,
    /// A kernel command could not run.
    #[error("{command}: {message}")]
    Command {
        /// The command.
        command: String,
        /// What went wrong.
        message: String,
    },
}
