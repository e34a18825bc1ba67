//! certbound: OAuth 2.0 mutual-TLS client authentication and
//! certificate-bound access tokens (RFC 8705) as a proxy-wasm filter.
//!
//! The data path, one module per step, none of them touching the host:
//! [`cert`] (certificate in) -> [`client_auth`] (client authenticated) ->
//! [`binding`] (token bound, binding looked up) -> [`introspection`]
//! (response patched) -> [`resource`] (binding enforced at resource
//! servers). [`filter`] is the proxy-wasm glue that wires them.

pub mod binding;
pub mod cert;
pub mod cert_header;
pub mod cert_source;
pub mod client_auth;
pub mod config;
pub mod discovery;
pub mod dn;
pub mod error;
pub mod form;
pub mod introspection;
pub mod jwks;
pub mod path;
pub mod resource;
pub mod store;

#[cfg(target_arch = "wasm32")]
mod filter;
