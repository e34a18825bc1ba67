//! `certbound`: the native companion of the filter. Thumbprints of
//! certificates in every format the filter reads, the filter's own config
//! check, and client registration in etcd.

use certbound::cert::parse_der;
use certbound::cert_header::{self, HeaderFormat, XfccElement};
use certbound::config::{self, ETCD_CLIENTS};
use certbound::{keys, store};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "certbound: OAuth 2.0 mTLS (RFC 8705) in the proxy, the command-line companion

usage:
  certbound thumbprint [--format F] FILE|-   x5t#S256 (and hex SHA-256) of a certificate
  certbound check-config FILE|-              validate a plugin configuration as the filter does
  certbound client add FILE|-                register a client in etcd (a clients[] entry, JSON)
  certbound client list                      list the clients registered in etcd
  certbound client remove CLIENT_ID          remove a client from etcd
  certbound COMMAND --help                   help for a command

client options: --etcd URL (default http://127.0.0.1:2379), --prefix P (the store's etcd.key_prefix)";

const THUMBPRINT_HELP: &str = "usage: certbound thumbprint [--format F] FILE|-

Reads one certificate (DER, or text in any format the filter reads from a
header: PEM on one line or several, URL-encoded PEM, base64 DER, RFC 9440
:base64:, Envoy XFCC, Traefik) and prints its x5t#S256 (RFC 8705 §3.1) and
the hex SHA-256 that Envoy's XFCC Hash= and connection digest use.
--format F: auto (default), pem, url_encoded_pem, base64_der, rfc9440, xfcc, traefik.";

const CHECK_HELP: &str = "usage: certbound check-config FILE|-

Validates a plugin configuration (JSON) with the filter's own code. Prints the
error the filter would log and exits 1, or prints a summary and exits 0.";

const CLIENT_HELP: &str = "usage: certbound client add FILE|- | list | remove CLIENT_ID [--etcd URL] [--prefix P]

Registered clients live in etcd under <prefix>certbound/clients/<client_id>,
each a clients[] entry as JSON; certbound reads them every
store.etcd.clients_refresh_seconds. add validates the entry first.";

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("certbound: {msg}");
    ExitCode::from(1)
}

fn read_input(path: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    if path == "-" {
        std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("cannot read stdin: {e}"))?;
    } else {
        buf = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    }
    Ok(buf)
}

fn thumbprint(args: &[String]) -> ExitCode {
    let mut format = HeaderFormat::Auto;
    let mut file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{THUMBPRINT_HELP}");
                return ExitCode::SUCCESS;
            }
            "--format" => match it.next().and_then(|f| HeaderFormat::parse(f)) {
                Some(f) => format = f,
                None => return fail("--format takes auto, pem, url_encoded_pem, base64_der, rfc9440, xfcc or traefik"),
            },
            f if file.is_none() => file = Some(f.to_string()),
            other => return fail(format!("unexpected argument {other:?} (see certbound thumbprint --help)")),
        }
    }
    let Some(file) = file else { return fail("thumbprint needs FILE or - (see certbound thumbprint --help)") };
    let bytes = match read_input(&file) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let cert = match std::str::from_utf8(&bytes) {
        Ok(text) => {
            cert_header::parse(text, format, XfccElement::Last).map(|c| c.thumbprint()).map_err(|e| e.to_string())
        }
        Err(_) => parse_der(&bytes).map(|c| c.thumbprint).map_err(|e| e.to_string()),
    };
    match cert {
        Ok(t) => {
            println!("x5t#S256: {}", t.x5t_s256());
            println!("sha256:   {}", t.hex());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{file}: {e}")),
    }
}

fn check_config(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        None => fail("check-config needs FILE or - (see certbound check-config --help)"),
        Some("--help" | "-h") => {
            println!("{CHECK_HELP}");
            ExitCode::SUCCESS
        }
        Some(file) => {
            let bytes = match read_input(file) {
                Ok(b) => b,
                Err(e) => return fail(e),
            };
            match config::parse(&bytes) {
                Ok(c) => {
                    println!(
                        "ok: {} client(s), token path {}, introspection path {}, {} protected route(s)",
                        c.clients.len(),
                        c.token_path,
                        c.introspection_path,
                        c.protected_routes.len()
                    );
                    ExitCode::SUCCESS
                }
                // The same line the filter logs when it refuses the configuration.
                Err(e) => fail(format!("certbound refuses its configuration: {e}")),
            }
        }
    }
}

/// A small HTTP/1.1 client for etcd's JSON gateway (no TLS: use a local port or a proxy).
fn etcd_post(base: &str, path: &str, body: &[u8]) -> Result<serde_json::Value, String> {
    let hostport = base.strip_prefix("http://").ok_or("--etcd must be an http:// URL")?.trim_end_matches('/');
    let mut stream = TcpStream::connect(hostport).map_err(|e| format!("cannot reach etcd at {base}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(body);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("etcd: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("etcd: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("etcd answered no HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    if status != "200" {
        return Err(format!("etcd answered {status}: {}", body.trim()));
    }
    serde_json::from_str(&body).map_err(|e| format!("etcd answered something that is not JSON: {e}"))
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 {
            break;
        }
        out.push_str(after.get(..n).unwrap_or(after));
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

fn client(args: &[String]) -> ExitCode {
    let mut etcd = "http://127.0.0.1:2379".to_string();
    let mut prefix = String::new();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{CLIENT_HELP}");
                return ExitCode::SUCCESS;
            }
            "--etcd" => match it.next() {
                Some(v) => etcd = v.clone(),
                None => return fail("--etcd needs a URL"),
            },
            "--prefix" => match it.next() {
                Some(v) => prefix = v.clone(),
                None => return fail("--prefix needs a value"),
            },
            _ => positional.push(a.clone()),
        }
    }
    let base = format!("{prefix}{ETCD_CLIENTS}");
    let result = match positional.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["add", file] => read_input(file).and_then(|bytes| {
            let c = config::parse_client(&bytes, file).map_err(|e| format!("certbound refuses the client: {e}"))?;
            let key = format!("{base}{}", c.client_id);
            let value = String::from_utf8_lossy(&bytes).trim().to_string();
            etcd_post(&etcd, keys::ETCD_PUT, &store::etcd_put(&key, value.as_bytes()))?;
            println!("registered {} at {key}", c.client_id);
            Ok(())
        }),
        ["list"] => etcd_post(&etcd, keys::ETCD_RANGE, &store::etcd_range_prefix(&base)).and_then(|v| {
            let body = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
            let kvs = store::etcd_range_values(&body).map_err(|e| e.to_string())?;
            for (key, value) in kvs {
                let id = key.strip_prefix(&base).unwrap_or(&key).to_string();
                let method = serde_json::from_slice::<serde_json::Value>(&value)
                    .ok()
                    .and_then(|v| v.get("token_endpoint_auth_method").and_then(|m| m.as_str()).map(str::to_string))
                    .unwrap_or_else(|| "?".into());
                println!("{id}\t{method}");
            }
            Ok(())
        }),
        ["remove", id] => {
            let key = format!("{base}{id}");
            etcd_post(&etcd, keys::ETCD_DELETE_RANGE, &store::etcd_delete(&key)).and_then(|v| {
                if v.get("deleted").and_then(|d| d.as_str()).unwrap_or("0") == "0" {
                    Err(format!("no client {id} at {key}"))
                } else {
                    println!("removed {id}");
                    Ok(())
                }
            })
        }
        _ => Err("client takes add FILE|-, list, or remove CLIENT_ID (see certbound client --help)".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("thumbprint") => thumbprint(&args[1..]),
        Some("check-config") => check_config(&args[1..]),
        Some("client") => client(&args[1..]),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("certbound {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
