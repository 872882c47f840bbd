//! Neutron's authorisation policy (oslo.policy) as data, for Neutrino.
//!
//! * [`Policy::defaults`] compiles Neutron's policy-in-code defaults ([`defaults`], with the
//!   Neutron, neutron-lib and networking-sfc commits they were read from);
//!   [`Policy::with_overrides`] puts an operator's `policy.yaml`/`policy.json` on top and
//!   reports the names no default defines.
//! * Check strings are parsed once ([`parse`] follows `oslo_policy/_parser.py`) into a tree
//!   whose `rule:` references are indices; dangling references and cycles fail the load, with
//!   the file's line in the message.
//! * [`Policy::enforce`] evaluates an action's rule; [`Policy::authorize`] adds Neutron's
//!   attribute rules (`create_port:binding:host_id`, `create_port:fixed_ips:ip_address`, …)
//!   for writes, and [`Policy::hidden_attributes`] lists what a read must strip.
//!
//! The crate does no I/O: the caller reads the file and passes its text.

mod check;
pub mod defaults;
mod dump;
mod error;
mod file;
mod parse;
mod policy;
mod target;

pub use defaults::{DefaultRule, DEFAULT_RULES};
pub use dump::dump_defaults_yaml;
pub use error::PolicyError;
pub use policy::{AttributeRule, Denied, Policy, RuleId};
pub use target::{Credentials, Overlay, Target};
