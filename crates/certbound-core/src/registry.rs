//! The clients a filter configuration serves, as they change while Envoy
//! runs: the configured ones, those registered in etcd (read every
//! `store.etcd.clients_refresh_seconds`), and the certificates of each
//! client's `jwks_uri` (fetched every `jwks_fetch.refresh_seconds`). The
//! shells send the fetches it asks for and hand back the answers; it says
//! when the configuration new streams get has changed.

use crate::config::{self, Client, ClientAuthMethod, Config, StoreConfig, ETCD_CLIENTS};
use crate::store;
use std::collections::HashMap;
use std::rc::Rc;

/// What a pending fetch is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The clients registered in etcd.
    EtcdClients,
    /// The JWK Set of this client's `jwks_uri`.
    Jwks(String),
}

/// An HTTP request for the shell to send through a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub fetch: Fetch,
    pub cluster: String,
    pub method: &'static str,
    pub path: String,
    pub authority: String,
    /// `content-type` (POST) or `accept` (GET).
    pub media: (&'static str, &'static str),
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

pub struct Registry {
    /// As configured; clients from etcd and fetched JWK Sets are added to a copy of it.
    configured: Rc<Config>,
    /// What new streams get.
    current: Rc<Config>,
    /// Fetches sent and not answered yet.
    pending: Vec<Fetch>,
    /// The clients etcd last answered with (kept while etcd cannot be read).
    etcd_clients: Vec<Client>,
    /// The certificates of each client's last good JWK Set.
    jwks_pins: HashMap<String, Vec<config::Pin>>,
    /// Unix seconds at which each refresh is next due.
    next_etcd: i64,
    next_jwks: i64,
}

impl Registry {
    pub fn new(configured: Rc<Config>) -> Registry {
        Registry {
            current: configured.clone(),
            configured,
            pending: Vec::new(),
            etcd_clients: Vec::new(),
            jwks_pins: HashMap::new(),
            next_etcd: 0,
            next_jwks: 0,
        }
    }

    /// The configuration new streams get.
    pub fn current(&self) -> Rc<Config> {
        self.current.clone()
    }

    /// The shortest refresh period configured (seconds), if any refresh is.
    pub fn refresh_period(&self) -> Option<u64> {
        let etcd = match &self.configured.store {
            StoreConfig::Etcd(e) => e.clients_refresh_seconds,
            _ => 0,
        };
        let jwks = self.configured.jwks_fetch.as_ref().map_or(0, |j| j.refresh_seconds);
        [etcd, jwks].into_iter().filter(|r| *r > 0).min()
    }

    /// The fetches due at `now` (none already pending is asked again).
    pub fn due(&mut self, now: i64) -> Vec<Request> {
        let mut out = Vec::new();
        if let StoreConfig::Etcd(etcd) = &self.configured.store {
            if etcd.clients_refresh_seconds > 0 && now >= self.next_etcd {
                self.next_etcd = now + etcd.clients_refresh_seconds as i64;
                if !self.pending.contains(&Fetch::EtcdClients) {
                    let prefix = format!("{}{ETCD_CLIENTS}", etcd.key_prefix);
                    out.push(Request {
                        fetch: Fetch::EtcdClients,
                        cluster: etcd.cluster.clone(),
                        method: "POST",
                        path: crate::keys::ETCD_RANGE.into(),
                        authority: etcd.authority.clone(),
                        media: ("content-type", "application/json"),
                        body: store::etcd_range_prefix(&prefix),
                        timeout_ms: etcd.timeout_ms,
                    });
                }
            }
        }
        if let Some(fetch) = &self.configured.jwks_fetch {
            if now >= self.next_jwks {
                self.next_jwks = now + fetch.refresh_seconds as i64;
                out.extend(self.jwks_requests(false));
            }
        }
        out
    }

    /// Requests for the JWK Sets of the clients with a `jwks_uri` (only those never fetched, when `missing_only`).
    fn jwks_requests(&self, missing_only: bool) -> Vec<Request> {
        let Some(fetch) = &self.configured.jwks_fetch else { return Vec::new() };
        let mut out = Vec::new();
        for client in self.current.clients.values() {
            let Some(uri) = &client.jwks_uri else { continue };
            if missing_only && self.jwks_pins.contains_key(&client.client_id) {
                continue;
            }
            let fetching = Fetch::Jwks(client.client_id.clone());
            if self.pending.contains(&fetching) {
                continue;
            }
            out.push(Request {
                fetch: fetching,
                cluster: fetch.cluster.clone(),
                method: "GET",
                path: uri.path.clone(),
                authority: uri.authority.clone(),
                media: ("accept", "application/json"),
                body: Vec::new(),
                timeout_ms: fetch.timeout_ms,
            });
        }
        out
    }

    /// The shell sent this fetch (its answer comes through [`Registry::answered`]).
    pub fn sent(&mut self, fetch: Fetch) {
        self.pending.push(fetch);
    }

    /// A fetch answered (the body of a 200, or why not). Returns log lines
    /// (level, text), whether the configuration changed, and fetches to send now.
    pub fn answered(&mut self, fetch: &Fetch, answer: Result<Vec<u8>, String>) -> Answered {
        if let Some(i) = self.pending.iter().position(|f| f == fetch) {
            self.pending.swap_remove(i);
        }
        let mut out = Answered::default();
        match fetch {
            Fetch::EtcdClients => match answer {
                Ok(body) => self.apply_etcd_clients(&body, &mut out),
                // The last known clients stay registered until etcd answers again.
                Err(e) => out.warn(format!("certbound: cannot read clients from etcd: {e}")),
            },
            Fetch::Jwks(client_id) => self.apply_jwks(client_id, answer, &mut out),
        }
        out
    }

    /// Reads the clients etcd holds. A client registered in the plugin
    /// configuration keeps that registration.
    fn apply_etcd_clients(&mut self, body: &[u8], out: &mut Answered) {
        let StoreConfig::Etcd(etcd) = &self.configured.store else { return };
        let values = match store::etcd_range_values(body) {
            Ok(v) => v,
            Err(e) => return out.warn(format!("certbound: cannot read clients from etcd: {e}")),
        };
        let mut clients = Vec::new();
        for (key, value) in values {
            let field = format!("etcd:{key}");
            match config::parse_client(&value, &field) {
                Ok(c) if self.configured.clients.contains_key(&c.client_id) => {
                    out.warn(format!("certbound: {field} ignored: {:?} is in the plugin configuration", c.client_id))
                }
                Ok(c) if !key.ends_with(&format!("/{}", c.client_id)) => {
                    out.warn(format!("certbound: {field} ignored: its client_id is {:?}", c.client_id))
                }
                Ok(c) if c.jwks_uri.is_some() && self.configured.jwks_fetch.is_none() => {
                    out.warn(format!("certbound: {field} ignored: it has a jwks_uri and jwks_fetch is not configured"))
                }
                Ok(c) => clients.push(c),
                Err(e) => out.warn(format!("certbound: client registration refused: {e}")),
            }
        }
        let added = clients.len();
        let prefix = format!("{}{ETCD_CLIENTS}", etcd.key_prefix);
        self.etcd_clients = clients;
        if self.rebuild() {
            out.changed = true;
            out.info(format!("certbound: {added} client(s) from etcd (prefix {prefix})"));
            // A client new from etcd gets its JWK Set now, not at the next refresh.
            out.send = self.jwks_requests(true);
        }
    }

    /// A client's fetched JWK Set: its certificates become the client's pins
    /// (beside the configured ones) until the next good fetch.
    fn apply_jwks(&mut self, client_id: &str, answer: Result<Vec<u8>, String>, out: &mut Answered) {
        match answer.and_then(|body| crate::jwks::parse_document(&body)) {
            Ok(certs) => {
                if certs.is_empty() {
                    out.warn(format!("certbound: the JWK Set of {client_id:?} has no key with x5c"));
                }
                let pins =
                    certs.into_iter().map(|c| config::Pin { thumbprint: c.thumbprint, validity: Some(c.validity) });
                self.jwks_pins.insert(client_id.to_string(), pins.collect());
                if self.rebuild() {
                    out.changed = true;
                    out.info(format!("certbound: registered certificates of {client_id:?} updated from its jwks_uri"));
                }
            }
            // The last good set stays.
            Err(e) => out.warn(format!("certbound: cannot use the jwks_uri of {client_id:?}: {e}")),
        }
    }

    /// The configuration new streams get: the configured one, the clients
    /// from etcd, and the certificates of fetched JWK Sets. True when it changed.
    fn rebuild(&mut self) -> bool {
        let mut merged = (*self.configured).clone();
        for c in &self.etcd_clients {
            merged.clients.entry(c.client_id.clone()).or_insert_with(|| c.clone());
        }
        for (client_id, fetched) in &self.jwks_pins {
            if let Some(ClientAuthMethod::SelfSignedTlsClientAuth { pins }) =
                merged.clients.get_mut(client_id).map(|c| &mut c.method)
            {
                for p in fetched {
                    if !pins.iter().any(|q| q.thumbprint.ct_eq(&p.thumbprint)) {
                        pins.push(p.clone());
                    }
                }
            }
        }
        let changed = self.current.clients != merged.clients;
        if changed {
            self.current = Rc::new(merged);
        }
        changed
    }
}

/// What an answer changed.
#[derive(Debug, Default)]
pub struct Answered {
    /// The configuration new streams get changed.
    pub changed: bool,
    /// Fetches to send now.
    pub send: Vec<Request>,
    /// Log lines (level, text).
    pub log: Vec<(log::Level, String)>,
}

impl Answered {
    fn warn(&mut self, line: String) {
        self.log.push((log::Level::Warn, line));
    }
    fn info(&mut self, line: String) {
        self.log.push((log::Level::Info, line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd_config(refresh: u64) -> Rc<Config> {
        let raw = format!(
            r#"{{"clients": [], "store": {{"backend": "etcd", "etcd": {{"cluster": "etcd", "key_prefix": "p/", "clients_refresh_seconds": {refresh}}}}}}}"#
        );
        Rc::new(config::parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn etcd_clients_are_fetched_when_due_and_not_twice_while_pending() {
        let mut r = Registry::new(etcd_config(5));
        assert_eq!(r.refresh_period(), Some(5));
        let first = r.due(100);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].fetch, Fetch::EtcdClients);
        assert_eq!(first[0].path, crate::keys::ETCD_RANGE);
        r.sent(Fetch::EtcdClients);
        assert!(r.due(103).is_empty(), "not due yet");
        assert!(r.due(105).is_empty(), "due, but still pending");
        let a = r.answered(&Fetch::EtcdClients, Err("down".into()));
        assert!(!a.changed);
        assert_eq!(a.log.len(), 1);
        assert_eq!(r.due(110).len(), 1);
    }

    #[test]
    fn no_refresh_configured_fetches_nothing() {
        let mut r = Registry::new(etcd_config(0));
        assert_eq!(r.refresh_period(), None);
        assert!(r.due(1_000).is_empty());
    }
}
