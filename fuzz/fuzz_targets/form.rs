//! Form bodies, HTTP Basic and Bearer credentials, and the client
//! authentication decision on them.
#![no_main]
use certbound::{client_auth, config, form, introspection, resource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = form::Form::parse(data) {
        let _ = (f.single("client_id").is_ok(), f.single("grant_type").is_ok(), f.contains("token"));
    }
    let _ = introspection::token_param(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = form::parse_basic(text);
        let _ = resource::bearer_token(Some(text));
        let _ = resource::query_has_access_token(text);
        let _ = form::is_form_content_type(text);
    }
    let cfg = config::parse(br#"{"clients":[{"client_id":"c","token_endpoint_auth_method":"none"}]}"#);
    if let Ok(cfg) = cfg {
        let req = client_auth::TokenRequest {
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: None,
            body: data,
            certificate: None,
            now: 1_800_000_000,
        };
        let _ = client_auth::authenticate(&cfg, &req);
    }
});
