//! The `neutrino-cni` plugin's library part: the pure CNI protocol (`protocol`), used by
//! the binary in `main.rs` and unit-tested without I/O, and the token cache the calls share
//! (`token_cache`).

pub mod protocol;
pub mod token_cache;
