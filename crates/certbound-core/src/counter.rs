//! The decisions certbound counts (beside the refusals, one per [`crate::error::Reason`]);
//! the shell turns them into Envoy counters `certbound.<name>`.

/// Every counter but the refusals (which are one per `Reason`).
#[derive(Debug, Clone, Copy)]
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
