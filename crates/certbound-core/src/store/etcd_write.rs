//! Storing a token response's bindings in etcd: one lease per expiry bucket
//! (granted when no live one is remembered), then one put-if-absent
//! transaction for every key; a lease etcd no longer knows is granted again,
//! once. The shell sends each call and hands the answer back.

use crate::binding::{live_binding, Binding, ToBind};
use crate::store::{etcd_lease_grant, etcd_lease_id, etcd_put_if_absent, etcd_txn_outcome, lease_bucket, TxnOutcome};

pub use crate::keys::{ETCD_LEASE_GRANT as LEASE_GRANT, ETCD_TXN as TXN};

/// The next call to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub path: &'static str,
    pub body: Vec<u8>,
    /// A lease grant for this bucket, or the transaction (`None`).
    pub lease_for: Option<i64>,
}

/// What a transaction's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every binding is stored (written now, or already there to the same certificate).
    Stored,
    /// The remembered leases are gone from etcd: forget these buckets, and send [`EtcdWrite::next`] again.
    RetryWithNewLeases(Vec<i64>),
    /// A live binding of one of the tokens names another certificate.
    Conflict,
    /// etcd's answer could not be read, and why.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdWrite {
    pub entries: Vec<ToBind>,
    /// (bucket end, lease id; 0 until granted).
    leases: Vec<(i64, i64)>,
    lease_retried: bool,
    bucket_seconds: i64,
    key_prefix: String,
}

impl EtcdWrite {
    /// `remembered`: the lease already granted for a bucket, if any.
    pub fn new(
        entries: Vec<ToBind>,
        bucket_seconds: i64,
        key_prefix: &str,
        mut remembered: impl FnMut(i64) -> Option<i64>,
    ) -> EtcdWrite {
        let mut leases: Vec<(i64, i64)> = Vec::new();
        for e in &entries {
            let end = lease_bucket(e.binding.expires_at, bucket_seconds);
            if !leases.iter().any(|(b, _)| *b == end) {
                leases.push((end, remembered(end).unwrap_or(0)));
            }
        }
        EtcdWrite { entries, leases, lease_retried: false, bucket_seconds, key_prefix: key_prefix.to_string() }
    }

    /// The etcd key of a binding key.
    pub fn key(&self, binding_key: &str) -> String {
        format!("{}{binding_key}", self.key_prefix)
    }

    /// The next lease to grant, or the transaction once every lease is known.
    pub fn next(&self, now: i64) -> Call {
        if let Some(&(end, _)) = self.leases.iter().find(|(_, id)| *id == 0) {
            // The lease outlives every binding in its bucket.
            let ttl = (end - now + self.bucket_seconds).max(1);
            return Call { path: LEASE_GRANT, body: etcd_lease_grant(ttl), lease_for: Some(end) };
        }
        let lease_of = |b: &Binding| {
            let end = lease_bucket(b.expires_at, self.bucket_seconds);
            self.leases.iter().find(|(e, _)| *e == end).map_or(0, |(_, id)| *id)
        };
        let puts: Vec<(String, Binding, i64)> =
            self.entries.iter().map(|e| (self.key(&e.key), e.binding, lease_of(&e.binding))).collect();
        Call { path: TXN, body: etcd_put_if_absent(&puts), lease_for: None }
    }

    /// A lease grant's answer: the lease id to remember for the bucket.
    pub fn lease_granted(&mut self, bucket_end: i64, answer: &[u8]) -> Result<i64, String> {
        let id = etcd_lease_id(answer).map_err(|e| e.0)?;
        for l in self.leases.iter_mut().filter(|(e, _)| *e == bucket_end) {
            l.1 = id;
        }
        Ok(id)
    }

    /// The transaction's answer. It is atomic: when it did not write, it is
    /// fine only if every key already holds a live binding to the same
    /// certificate (a retried write).
    pub fn written(&mut self, answer: Result<&[u8], String>, now: i64) -> Outcome {
        let outcome = match answer {
            Ok(body) => etcd_txn_outcome(body).map_err(|e| e.0),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(TxnOutcome::Written) => Outcome::Stored,
            Ok(TxnOutcome::Existing(kvs)) => {
                let all_same = self.entries.iter().all(|e| {
                    let key = self.key(&e.key);
                    kvs.iter().any(|(k, v)| {
                        *k == key
                            && live_binding(Some(v), now).is_some_and(|b| b.thumbprint.ct_eq(&e.binding.thumbprint))
                    })
                });
                if all_same {
                    Outcome::Stored
                } else {
                    Outcome::Conflict
                }
            }
            Err(msg) if msg.contains("lease not found") && !self.lease_retried => {
                self.lease_retried = true;
                let forget = self.leases.iter().map(|(end, _)| *end).collect();
                for l in self.leases.iter_mut() {
                    l.1 = 0;
                }
                Outcome::RetryWithNewLeases(forget)
            }
            Err(msg) => Outcome::Failed(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{key_for_token, TokenKind};
    use crate::cert::Thumbprint;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde_json::{json, Value};

    use crate::store::tests::{b, NOW};

    fn entry(token: &str, cert: &[u8], ttl: i64) -> ToBind {
        ToBind { key: key_for_token(token).unwrap(), binding: b(cert, NOW + ttl) }
    }

    fn write() -> EtcdWrite {
        EtcdWrite::new(vec![entry("at", b"c", 600), entry("rt", b"c", 86400)], 60, "p/", |_| None)
    }

    fn body(c: &Call) -> Value {
        serde_json::from_slice(&c.body).unwrap()
    }

    #[test]
    fn leases_are_granted_per_bucket_then_one_transaction_puts_every_key_if_absent() {
        let mut w = write();
        let first = w.next(NOW);
        assert_eq!((first.path, first.lease_for.is_some()), (LEASE_GRANT, true));
        assert!(body(&first)["TTL"].as_str().unwrap().parse::<i64>().unwrap() >= 600);
        w.lease_granted(first.lease_for.unwrap(), br#"{"ID":"7","TTL":"660"}"#).unwrap();
        let second = w.next(NOW);
        assert_eq!(second.path, LEASE_GRANT);
        w.lease_granted(second.lease_for.unwrap(), br#"{"ID":"8"}"#).unwrap();
        let txn = w.next(NOW);
        assert_eq!((txn.path, txn.lease_for), (TXN, None));
        let t = body(&txn);
        let keys: Vec<String> = t["success"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| String::from_utf8(STANDARD.decode(op["request_put"]["key"].as_str().unwrap()).unwrap()).unwrap())
            .collect();
        assert_eq!(
            keys,
            vec![format!("p/{}", key_for_token("at").unwrap()), format!("p/{}", key_for_token("rt").unwrap())]
        );
        assert_eq!(t["compare"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_remembered_lease_is_used_without_a_grant() {
        let w = EtcdWrite::new(vec![entry("at", b"c", 600)], 60, "", |_| Some(42));
        let c = w.next(NOW);
        assert_eq!(c.path, TXN);
        assert_eq!(body(&c)["success"][0]["request_put"]["lease"], json!("42"));
    }

    #[test]
    fn a_lease_etcd_no_longer_knows_is_granted_again_once() {
        let mut w = EtcdWrite::new(vec![entry("at", b"c", 600)], 60, "", |_| Some(42));
        let gone = || Err("status 400: etcdserver: requested lease not found".to_string());
        let Outcome::RetryWithNewLeases(forget) = w.written(gone(), NOW) else { panic!() };
        assert_eq!(forget.len(), 1);
        assert_eq!(w.next(NOW).path, LEASE_GRANT);
        assert!(matches!(w.written(gone(), NOW), Outcome::Failed(_)));
    }

    #[test]
    fn an_existing_binding_is_fine_only_to_the_same_certificate() {
        let mut w = EtcdWrite::new(vec![entry("at", b"c", 600)], 60, "p/", |_| Some(1));
        let key = STANDARD.encode(format!("p/{}", key_for_token("at").unwrap()));
        let existing = |cert: &[u8]| {
            let record =
                Binding { thumbprint: Thumbprint::of_der(cert), kind: TokenKind::Access, expires_at: NOW + 600 };
            json!({"succeeded": false, "responses": [{"response_range": {"kvs": [
                {"key": key, "value": STANDARD.encode(record.encode())}]}}]})
            .to_string()
        };
        assert_eq!(w.written(Ok(existing(b"c").as_bytes()), NOW), Outcome::Stored);
        assert_eq!(w.written(Ok(existing(b"other").as_bytes()), NOW), Outcome::Conflict);
        assert_eq!(w.written(Ok(br#"{"succeeded":true}"#), NOW), Outcome::Stored);
        assert!(matches!(w.written(Ok(b"<html>"), NOW), Outcome::Failed(_)));
    }
}
