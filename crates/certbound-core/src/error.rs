//! What a refused request is told (an OAuth error), and what the operator
//! sees (a reason that names the log line and the counter).

use serde_json::json;

/// Why a request was refused. Each reason is one counter and one log word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NoCertificate,
    CertificateNotRegistered,
    CertificateExpired,
    UnknownClient,
    MissingClientId,
    ClientIdMismatch,
    MixedClientAuthentication,
    BadRequest,
    BodyTooLarge,
    MethodNotAllowed,
    BindingStoreFailed,
    UnbindableTokenResponse,
    NotConfigured,
    HostError,
    RefreshCertificateMismatch,
    RefreshWithoutCertificate,
    MissingToken,
    UnboundToken,
    TokenWithoutCertificate,
    TokenCertificateMismatch,
    BadCnfClaim,
    TokenInUri,
    CertificateNotYetValid,
    BadCertificateHeader,
    DuplicateCertificateHeader,
    CertificateHeaderTooLarge,
    ConflictingCertificates,
    ChainNotVerified,
    CertificateDoesNotMatch,
    StoreFull,
    StoreUnavailable,
    OtherScheme,
    AmbiguousPath,
    RefreshTokenNotBound,
    AmbiguousParameter,
    MalformedParameter,
    UnsupportedCharset,
    BindingNotFound,
    AmbiguousToken,
}

impl Reason {
    /// Stable name, used in counters and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoCertificate => "no_certificate",
            Reason::CertificateNotRegistered => "certificate_not_registered",
            Reason::CertificateExpired => "certificate_expired",
            Reason::UnknownClient => "unknown_client",
            Reason::MissingClientId => "missing_client_id",
            Reason::ClientIdMismatch => "client_id_mismatch",
            Reason::MixedClientAuthentication => "mixed_client_authentication",
            Reason::BadRequest => "bad_request",
            Reason::BodyTooLarge => "body_too_large",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::BindingStoreFailed => "binding_store_failed",
            Reason::UnbindableTokenResponse => "unbindable_token_response",
            Reason::NotConfigured => "not_configured",
            Reason::HostError => "host_error",
            Reason::RefreshCertificateMismatch => "refresh_certificate_mismatch",
            Reason::RefreshWithoutCertificate => "refresh_without_certificate",
            Reason::MissingToken => "missing_token",
            Reason::UnboundToken => "unbound_token",
            Reason::TokenWithoutCertificate => "token_without_certificate",
            Reason::TokenCertificateMismatch => "token_certificate_mismatch",
            Reason::BadCnfClaim => "bad_cnf_claim",
            Reason::TokenInUri => "token_in_uri",
            Reason::CertificateNotYetValid => "certificate_not_yet_valid",
            Reason::BadCertificateHeader => "bad_certificate_header",
            Reason::DuplicateCertificateHeader => "duplicate_certificate_header",
            Reason::CertificateHeaderTooLarge => "certificate_header_too_large",
            Reason::ConflictingCertificates => "conflicting_certificates",
            Reason::ChainNotVerified => "chain_not_verified",
            Reason::CertificateDoesNotMatch => "certificate_does_not_match",
            Reason::StoreFull => "store_full",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::OtherScheme => "other_scheme",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::RefreshTokenNotBound => "refresh_token_not_bound",
            Reason::AmbiguousParameter => "ambiguous_parameter",
            Reason::MalformedParameter => "malformed_parameter",
            Reason::UnsupportedCharset => "unsupported_charset",
            Reason::BindingNotFound => "binding_not_found",
            Reason::AmbiguousToken => "ambiguous_token",
        }
    }

    pub const ALL: [Reason; 39] = [
        Reason::NoCertificate,
        Reason::CertificateNotRegistered,
        Reason::CertificateExpired,
        Reason::UnknownClient,
        Reason::MissingClientId,
        Reason::ClientIdMismatch,
        Reason::MixedClientAuthentication,
        Reason::BadRequest,
        Reason::BodyTooLarge,
        Reason::MethodNotAllowed,
        Reason::BindingStoreFailed,
        Reason::UnbindableTokenResponse,
        Reason::NotConfigured,
        Reason::HostError,
        Reason::RefreshCertificateMismatch,
        Reason::RefreshWithoutCertificate,
        Reason::MissingToken,
        Reason::UnboundToken,
        Reason::TokenWithoutCertificate,
        Reason::TokenCertificateMismatch,
        Reason::BadCnfClaim,
        Reason::TokenInUri,
        Reason::CertificateNotYetValid,
        Reason::BadCertificateHeader,
        Reason::DuplicateCertificateHeader,
        Reason::CertificateHeaderTooLarge,
        Reason::ConflictingCertificates,
        Reason::ChainNotVerified,
        Reason::CertificateDoesNotMatch,
        Reason::StoreFull,
        Reason::StoreUnavailable,
        Reason::OtherScheme,
        Reason::AmbiguousPath,
        Reason::RefreshTokenNotBound,
        Reason::AmbiguousParameter,
        Reason::MalformedParameter,
        Reason::UnsupportedCharset,
        Reason::BindingNotFound,
        Reason::AmbiguousToken,
    ];
}

/// An OAuth error response (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u32,
    pub error: &'static str,
    pub description: String,
    pub reason: Reason,
}

impl OAuthError {
    pub fn invalid_client(reason: Reason, description: impl Into<String>) -> Self {
        OAuthError { status: 401, error: "invalid_client", description: description.into(), reason }
    }

    pub fn invalid_request(reason: Reason, description: impl Into<String>) -> Self {
        OAuthError { status: 400, error: "invalid_request", description: description.into(), reason }
    }

    pub fn invalid_grant(reason: Reason, description: impl Into<String>) -> Self {
        OAuthError { status: 400, error: "invalid_grant", description: description.into(), reason }
    }

    pub fn too_large(description: impl Into<String>) -> Self {
        OAuthError {
            status: 413,
            error: "invalid_request",
            description: description.into(),
            reason: Reason::BodyTooLarge,
        }
    }

    pub fn method_not_allowed(description: impl Into<String>) -> Self {
        OAuthError {
            status: 405,
            error: "invalid_request",
            description: description.into(),
            reason: Reason::MethodNotAllowed,
        }
    }

    /// The store could not take a binding: the token must not leave.
    pub fn store_unavailable(description: impl Into<String>) -> Self {
        OAuthError {
            status: 503,
            error: "temporarily_unavailable",
            description: description.into(),
            reason: Reason::BindingStoreFailed,
        }
    }

    pub fn unbindable(description: impl Into<String>) -> Self {
        OAuthError {
            status: 502,
            error: "server_error",
            description: description.into(),
            reason: Reason::UnbindableTokenResponse,
        }
    }

    pub fn not_configured() -> Self {
        OAuthError {
            status: 500,
            error: "server_error",
            description: "certbound has no valid configuration".into(),
            reason: Reason::NotConfigured,
        }
    }

    /// The proxy could not do its part (a host call failed): fail closed.
    pub fn internal(description: impl Into<String>) -> Self {
        OAuthError { status: 500, error: "server_error", description: description.into(), reason: Reason::HostError }
    }

    pub fn body(&self) -> Vec<u8> {
        json!({ "error": self.error, "error_description": self.description }).to_string().into_bytes()
    }

    /// Headers of the error response (RFC 6749 §5.1: no caching).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
            ("pragma", "no-cache".to_string()),
        ];
        if self.status == 503 {
            h.push(("retry-after", "1".to_string()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_rfc6749_json() {
        let e = OAuthError::invalid_client(Reason::UnknownClient, "client \"x\" is not registered");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"], "invalid_client");
        assert_eq!(v["error_description"], "client \"x\" is not registered");
        assert_eq!(e.status, 401);
    }

    #[test]
    fn error_responses_are_not_cached() {
        let e = OAuthError::invalid_request(Reason::BadRequest, "x");
        assert!(e.headers().contains(&("cache-control", "no-store".to_string())));
        assert!(e.headers().contains(&("content-type", "application/json".to_string())));
    }

    #[test]
    fn reason_names_are_unique() {
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
