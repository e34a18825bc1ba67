//! certbound as a proxy-wasm filter for Envoy (the `.wasm`): the shell in
//! [`filter`] turns Envoy's callbacks into calls to the core
//! (`certbound-core`, re-exported here) and carries out what it decides.

pub use certbound_core::*;

#[cfg(target_arch = "wasm32")]
mod filter;
