//! certbound's core: OAuth 2.0 mutual-TLS client authentication and
//! certificate-bound access tokens (RFC 8705), with no proxy-wasm dependency.
//! The `.wasm` shell (the `certbound` crate) turns Envoy's callbacks into
//! calls here and carries out what they decide.
//!
//! The data path, one module per step: [`cert`], [`cert_header`] and
//! [`cert_source`] (certificate in) -> [`client_auth`] with [`dn`] and
//! [`jwks`] (client authenticated) -> [`binding`] (token bound) -> [`store`]
//! (binding stored and looked up) -> [`introspection`] and [`discovery`]
//! (responses patched) -> [`resource`] (binding enforced at resource
//! servers). [`path`] says which endpoint a request is for; [`form`] reads
//! bodies and credentials; [`config`] compiles the plugin configuration;
//! [`error`] holds the OAuth errors and the reasons counted.

pub mod binding;
pub mod cert;
pub mod cert_header;
pub mod cert_source;
pub mod client_auth;
pub mod config;
pub mod counter;
pub mod decision;
pub mod discovery;
pub mod dn;
pub mod error;
pub mod flow;
pub mod form;
pub mod header;
pub mod introspection;
pub mod jwks;
pub mod keys;
pub mod params;
pub mod path;
pub mod registry;
pub mod resource;
pub mod store;
/// The store's parts under their old names (the shells, the fuzz targets and the benches use them).
pub use store::{etcd_write, shared, vm_cache};
pub mod stream;
pub mod token_key;
