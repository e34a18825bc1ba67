//! The differential test's oracle (`tests/decoders/`): certbound's own
//! verdict on query strings and form bodies, through the same functions the
//! flows call. One JSON case per line on stdin, one verdict per line on stdout.
//!
//! In:  `{"id": 1, "where": "query" | "form", "content_type": "..." | null, "data": "<base64>"}`
//! Out: `{"id": 1, "resource": V, "endpoint_query": V}` for a query and
//!      `{"id": 1, "resource": V, "token": V, "introspection": V}` for a form body, where
//!      V is `{"refused": true, "reason": "..."}` or `{"refused": false, "value": "..." | null}`
//!      (the `refresh_token` / `token` certbound judges, or none).
use base64::Engine;
use certbound_core::{client_auth, flow, form, introspection, resource};
use serde_json::{json, Value};
use std::io::{BufRead, Write};

fn refused(reason: &str) -> Value {
    json!({"refused": true, "reason": reason})
}

fn judged(value: Option<&str>) -> Value {
    json!({"refused": false, "value": value})
}

fn verdict(case: &Value) -> Value {
    let id = case.get("id").cloned().unwrap_or(Value::Null);
    let content_type = case.get("content_type").and_then(Value::as_str);
    let data = case
        .get("data")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .unwrap_or_default();
    if case.get("where").and_then(Value::as_str) == Some("query") {
        // A query is bytes on the request line; Envoy hands certbound text (non-UTF-8 as U+FFFD).
        let query = String::from_utf8_lossy(&data);
        let resource = match resource::check_query(&format!("/api/x?{query}"), content_type) {
            Ok(()) => judged(None),
            Err(e) => refused(e.reason.as_str()),
        };
        let path = format!("/oauth2/token?{query}");
        let endpoint = match flow::endpoint_query_check(&path, content_type) {
            Ok(()) => judged(None),
            Err(e) => match form::body_only_parameter_in_query(&path) {
                Some(name) => refused(&format!("body_only_parameter:{name}")),
                None => refused(e.reason.as_str()),
            },
        };
        return json!({"id": id, "resource": resource, "endpoint_query": endpoint});
    }
    let resource = match resource::check_form_body(content_type, &data) {
        Ok(()) => judged(None),
        Err(e) => refused(e.reason.as_str()),
    };
    let is_form = content_type.is_some_and(form::is_form_content_type);
    let token = match client_auth::token_parameters(content_type, &data) {
        _ if !is_form => refused("bad_request"),
        Ok(j) => judged(j.get("refresh_token").filter(|t| !t.is_empty())),
        Err(e) => refused(e.reason().as_str()),
    };
    let introspection = match introspection::token_param(content_type, &data) {
        _ if !is_form => refused("bad_request"),
        Ok(t) => judged(t.as_deref()),
        Err(e) => refused(e.reason().as_str()),
    };
    json!({"id": id, "resource": resource, "token": token, "introspection": introspection})
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let case: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if writeln!(out, "{}", verdict(&case)).is_err() {
            break;
        }
    }
}
