//! JSON from the AS: token responses to bind, introspection responses and
//! metadata to patch. A patched body is always valid JSON.
#![no_main]
use certbound::binding::bindings_for_response;
use certbound::cert::Thumbprint;
use certbound::config::BindingPolicy;
use certbound::introspection::{add_cnf, Patch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t = Thumbprint::of_der(b"fuzz");
    let _ = bindings_for_response(data, t, &BindingPolicy::default(), 1_800_000_000);
    if let Patch::Patched(out) = add_cnf(data, &t) {
        // Valid JSON by the grammar (numbers of any size: serde_json's Value refuses infinities).
        serde_json::from_slice::<serde::de::IgnoredAny>(&out).expect("a patched body is JSON");
        let text = std::str::from_utf8(&out).expect("UTF-8");
        assert!(text.contains(&format!("\"x5t#S256\":\"{}\"", t.x5t_s256())));
    }
    if let Patch::Patched(out) = certbound::discovery::patch_metadata(data, Some("mtls.example")) {
        let v: serde_json::Value = serde_json::from_slice(&out).expect("patched metadata is JSON");
        assert_eq!(v["tls_client_certificate_bound_access_tokens"], true);
    }
});
