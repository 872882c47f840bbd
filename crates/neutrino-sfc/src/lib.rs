//! Service function chaining on one host, planned without I/O.
//!
//! The agent resolves the chains that touch its host into an [`SfcModel`] (ports with
//! their MAC and location, groups with their usable pairs and weights, classifiers as
//! n-tuples), [`compile`]s it into the desired nftables netdev table, reads the kernel's
//! table with [`observe::LIST_COMMAND`] into an [`observe()`]d [`Table`], and applies
//! [`plan`]`(desired, observed).script()` with one `nft -f`: an atomic transaction that
//! rewrites only the chains, map elements and sets that differ. Applying the same model
//! again plans nothing, so a restarted agent adopts the table (and its flow pins) as it is.
//!
//! Steering never crosses a bridge between hops: a frame is classified where it leaves an
//! instance (netdev ingress of the port's tap), its destination MAC is rewritten to the next
//! function port's and it is forwarded (`fwd to`) to that port's tap, or to the network's
//! VXLAN device when the function runs on another host (whose VXLAN ingress hands it to the
//! function). Ports with port security are the exception at entry: their frames cross the
//! bridge once, so security groups and conntrack see them (see [`steering`]). See
//! [`compile`] for the layout of the table.

pub mod compile;
pub mod model;
pub mod observe;
pub mod probe;
pub mod steering;
pub mod table;
pub mod transition;

pub use compile::{buckets, compile, Compiled, Counted, Direction, BUCKETS};
pub use model::{
    Chain, Classifier, Delivery, Family, Group, LbField, Location, NTuple, NTupleMapping,
    NetworkMacs, Pair, Port, SfcModel,
};
pub use observe::observe;
pub use steering::SteeringPort;
pub use table::{plan, Plan, Table};
pub use transition::{switched, transition};
