//! Neutron's authorisation policy (oslo.policy) as data, for Neutrino.
//!
//! * [`Policy::defaults`] compiles Neutron's policy-in-code defaults ([`defaults`], with the
//!   Neutron, neutron-lib and networking-sfc commits they were read from);
//!   [`Policy::with_overrides`] puts an operator's `policy.yaml`/`policy.json` on top and
//!   reports the names no default defines.
//! * Check strings are parsed once (the parser follows `oslo_policy/_parser.py`) into a tree
//!   whose `rule:` references are indices; dangling references and cycles fail the load, with
//!   the file's line in the message.
//! * [`Policy::enforce`] evaluates an action's rule; [`Policy::authorize`] adds Neutron's
//!   attribute rules (`create_port:binding:host_id`, `create_port:fixed_ips:ip_address`, …)
//!   for writes, and [`Policy::hidden_attributes`] lists what a read must strip.
//!
//! The crate does no I/O: the caller reads the file and passes its text.
//!
//! # Integrating it the way Neutron does
//!
//! * **Writes** (`create_*`, `update_*`, `add_*`, `remove_*`, …): call [`Policy::authorize`]
//!   with the action's name, the target and the attributes the request *explicitly sets*. Neutron
//!   counts an attribute of a create as set only when it differs from the attribute's default
//!   (`"shared": false` triggers nothing), and of an update when it is in the body; dropping the
//!   default-valued keys is the caller's job. Attribute rules are named `ACTION:ATTR`
//!   (`create_network:router:external`) and `ACTION:ATTR:SUB` for keys inside an object or a
//!   list of objects (`create_port:fixed_ips:ip_address`,
//!   `update_router:external_gateway_info:enable_snat`). A refusal names the failing rule.
//! * **Reads** (`get_*`): check [`Policy::enforce`] per resource (Neutron answers 404, not 403,
//!   when a caller may not see a resource, and filters lists), then remove what
//!   [`Policy::hidden_attributes`] lists (`get_port:binding:host_id`,
//!   `get_network:provider:network_type`, …) from the response. Reads never run the write
//!   rules, and writes never the `get_*:ATTR` ones.
//! * **Deletes** check the action's rule only.
//! * **Targets** are the resource plus what Neutron adds (use [`Overlay`]): `network:tenant_id`
//!   and `network:project_id` (the network's owner) for ports and subnets, `shared` (the
//!   network's) for ports and subnets, `security_group:tenant_id` for security group rules,
//!   `ext_parent:project_id` for sub-resources; a missing key makes its check false, where Neutron
//!   would have fetched the parent from its database. Owner keys are tried under both spellings
//!   (`…tenant_id` and `…project_id`). For creates, the target is the request merged with
//!   `project_id`/`tenant_id`.
//! * **Credentials** carry the token's lower-case roles with the implied ones added
//!   (`admin` ⇒ `manager` ⇒ `member` ⇒ `reader`); Neutron's defaults need `manager` for
//!   quotas and `service` for `binding:profile`.
//! * Look actions up once with [`Policy::action_id`] and use [`Policy::enforce_id`] on hot
//!   paths if the name lookup shows up in profiles; evaluation itself allocates nothing but
//!   multi-part `%(…)s` templates.

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
