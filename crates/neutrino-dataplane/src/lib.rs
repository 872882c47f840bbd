//! Pure dataplane planning for one host: no I/O, no async, no kernel.
//!
//! The host agent keeps a [`Cluster`] (its mirror of the server's resources, fed by the
//! snapshot and the change feed), computes the [`HostState`] this host should have
//! ([`desired`]), parses what the kernel has into the same shape ([`observe`]), and turns
//! the difference into a list of typed operations ([`plan`]) that it then executes. Applying
//! a plan and planning again yields an empty plan; that is what makes the agent idempotent
//! and lets it adopt what an earlier run left behind instead of flushing it.

pub mod bgp;
pub mod cluster;
pub mod conntrack_helpers;
pub mod desired;
pub mod dhcp;
pub mod dvr;
pub mod host_op;
pub mod l2gw;
pub mod local_ip;
pub mod meter;
pub mod names;
pub mod observe;
pub mod overlay;
pub mod plan;
pub mod provider;
pub mod qos;
pub mod ra;
pub mod router;
pub mod security;
pub mod sfc;
pub mod state;
pub mod trunk;
pub mod vtep;

pub use cluster::Cluster;
pub use desired::{desired, HostConfig};
pub use plan::{plan, Op, Target};
pub use state::HostState;
