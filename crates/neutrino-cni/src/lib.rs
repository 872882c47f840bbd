//! The `neutrino-cni` plugin's library part: the pure CNI protocol (`protocol`), used by
//! the binary in `main.rs` and unit-tested without I/O, the token cache the calls share
//! (`token_cache`), and the rules of nested containers (`nested`).

pub mod nested;
pub mod protocol;
pub mod token_cache;
