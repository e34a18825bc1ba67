//! The decisions certbound counts (beside the refusals, one per [`crate::error::Reason`]);
//! the shell turns them into Envoy counters `certbound.<name>`.

/// Every counter but the refusals (which are one per `Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    ClientAuthenticated,
    TokensBound,
    UnboundTokenResponses,
    IntrospectionPatched,
    IntrospectionUnpatched,
    IntrospectionDeactivated,
    MetadataPatched,
    MetadataUnpatched,
    ResourceAllowed,
    ResourceAllowedUnbound,
    UntrustedHeaderRemoved,
    CertificateConflicts,
    StoreErrors,
    StoreRetries,
}

impl Counter {
    pub const ALL: [Counter; 14] = [
        Counter::ClientAuthenticated,
        Counter::TokensBound,
        Counter::UnboundTokenResponses,
        Counter::IntrospectionPatched,
        Counter::IntrospectionUnpatched,
        Counter::IntrospectionDeactivated,
        Counter::MetadataPatched,
        Counter::MetadataUnpatched,
        Counter::ResourceAllowed,
        Counter::ResourceAllowedUnbound,
        Counter::UntrustedHeaderRemoved,
        Counter::CertificateConflicts,
        Counter::StoreErrors,
        Counter::StoreRetries,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::ClientAuthenticated => "client_authenticated",
            Counter::TokensBound => "tokens_bound",
            Counter::UnboundTokenResponses => "unbound_token_responses",
            Counter::IntrospectionPatched => "introspection_patched",
            Counter::IntrospectionUnpatched => "introspection_unpatched",
            Counter::IntrospectionDeactivated => "introspection_deactivated",
            Counter::MetadataPatched => "metadata_patched",
            Counter::MetadataUnpatched => "metadata_unpatched",
            Counter::ResourceAllowed => "resource_allowed",
            Counter::ResourceAllowedUnbound => "resource_allowed_unbound",
            Counter::UntrustedHeaderRemoved => "untrusted_header_removed",
            Counter::CertificateConflicts => "certificate_conflicts",
            Counter::StoreErrors => "store_errors",
            Counter::StoreRetries => "store_retries",
        }
    }
}
/// Every counter a shell defines, in one table: the decisions, then one
/// refusal and one report-only refusal per [`Reason`]. Both shells define them
/// from here and count by [`Metric::index`], so a new counter is named once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Count(Counter),
    Refused(crate::error::Reason),
    Reported(crate::error::Reason),
}

impl Metric {
    /// Its place in [`metrics`], the same in every shell.
    pub fn index(self) -> usize {
        let reasons = crate::error::Reason::ALL.len();
        let reason = |r| crate::error::Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        match self {
            Metric::Count(c) => Counter::ALL.iter().position(|x| *x == c).unwrap_or(0),
            Metric::Refused(r) => Counter::ALL.len() + reason(r),
            Metric::Reported(r) => Counter::ALL.len() + reasons + reason(r),
        }
    }

    /// The counter's name as Envoy shows it (after the shell's prefix).
    pub fn name(self) -> String {
        match self {
            Metric::Count(c) => format!("certbound.{}", c.name()),
            Metric::Refused(r) => format!("certbound.refused.{}", r.as_str()),
            Metric::Reported(r) => format!("certbound.reported.{}", r.as_str()),
        }
    }
}

/// Every counter, in [`Metric::index`] order.
pub fn metrics() -> impl Iterator<Item = Metric> {
    let reasons = crate::error::Reason::ALL;
    Counter::ALL
        .into_iter()
        .map(Metric::Count)
        .chain(reasons.into_iter().map(Metric::Refused))
        .chain(reasons.into_iter().map(Metric::Reported))
}

#[cfg(test)]
mod metric_tests {
    use super::*;

    #[test]
    fn every_counter_has_its_own_place_and_name_in_one_table() {
        let all: Vec<Metric> = metrics().collect();
        for (i, m) in all.iter().enumerate() {
            assert_eq!(m.index(), i, "{m:?}");
        }
        let names: std::collections::HashSet<String> = all.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), all.len());
        assert!(names.contains("certbound.tokens_bound"));
        assert!(names.contains("certbound.refused.unbound_token"));
        assert!(names.contains("certbound.reported.unbound_token"));
    }
}
