//! The `neutrino-cni` plugin's library part: the pure CNI protocol (`protocol`), used by
//! the binary in `main.rs` and unit-tested without I/O.

pub mod protocol;
