//! The error-code catalogue. A code is the contract with clients: it maps to one HTTP status and
//! one CLI exit code, and its message never carries a secret value.

use std::fmt;

use serde_json::Value;

/// Every stable error code ScaiVault answers with. The string form is what clients match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    AuthenticationRequired,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    InvalidCredentials,
    AccessDenied,
    InsufficientScope,
    MfaRequired,
    IpNotAllowed,
    TimeWindowViolation,
    Forbidden,
    InvalidRequest,
    InvalidPath,
    InvalidSecretType,
    InvalidDuration,
    InvalidCursor,
    InvalidPolicy,
    InvalidGlob,
    InvalidIdentity,
    InvalidConfig,
    InvalidPlugin,
    InvalidRole,
    ValidationError,
    PayloadTooLarge,
    UnsupportedMediaType,
    SecretNotFound,
    VersionNotFound,
    PolicyNotFound,
    BindingNotFound,
    IdentityNotFound,
    RotationPolicyNotFound,
    PluginNotFound,
    WebhookNotFound,
    SubscriptionNotFound,
    SecretPolicyNotFound,
    TokenNotFound,
    RouteNotFound,
    MethodNotAllowed,
    PolicyInUse,
    PolicyExists,
    IdentityExists,
    PluginExists,
    SecretExists,
    SecretExpired,
    VersionConflict,
    RateLimited,
    VaultSealed,
    InvalidPassphrase,
    VaultExists,
    VaultNotFound,
    IntegrityError,
    UnsupportedFormat,
    StorageFull,
    ServiceUnavailable,
    PluginUnavailable,
    PluginFailed,
    NotImplemented,
    InternalError,
}

impl ErrorCode {
    /// All codes, for tests and documentation that must cover the whole catalogue.
    pub const ALL: &'static [ErrorCode] = &[
        Self::AuthenticationRequired,
        Self::TokenExpired,
        Self::TokenInvalid,
        Self::TokenRevoked,
        Self::InvalidCredentials,
        Self::AccessDenied,
        Self::InsufficientScope,
        Self::MfaRequired,
        Self::IpNotAllowed,
        Self::TimeWindowViolation,
        Self::Forbidden,
        Self::InvalidRequest,
        Self::InvalidPath,
        Self::InvalidSecretType,
        Self::InvalidDuration,
        Self::InvalidCursor,
        Self::InvalidPolicy,
        Self::InvalidGlob,
        Self::InvalidIdentity,
        Self::InvalidConfig,
        Self::InvalidPlugin,
        Self::InvalidRole,
        Self::ValidationError,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::SecretNotFound,
        Self::VersionNotFound,
        Self::PolicyNotFound,
        Self::BindingNotFound,
        Self::IdentityNotFound,
        Self::RotationPolicyNotFound,
        Self::PluginNotFound,
        Self::WebhookNotFound,
        Self::SubscriptionNotFound,
        Self::SecretPolicyNotFound,
        Self::TokenNotFound,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::PolicyInUse,
        Self::PolicyExists,
        Self::IdentityExists,
        Self::PluginExists,
        Self::SecretExists,
        Self::SecretExpired,
        Self::VersionConflict,
        Self::RateLimited,
        Self::VaultSealed,
        Self::InvalidPassphrase,
        Self::VaultExists,
        Self::VaultNotFound,
        Self::IntegrityError,
        Self::UnsupportedFormat,
        Self::StorageFull,
        Self::ServiceUnavailable,
        Self::PluginUnavailable,
        Self::PluginFailed,
        Self::NotImplemented,
        Self::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthenticationRequired => "authentication_required",
            Self::TokenExpired => "token_expired",
            Self::TokenInvalid => "token_invalid",
            Self::TokenRevoked => "token_revoked",
            Self::InvalidCredentials => "invalid_credentials",
            Self::AccessDenied => "access_denied",
            Self::InsufficientScope => "insufficient_scope",
            Self::MfaRequired => "mfa_required",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::TimeWindowViolation => "time_window_violation",
            Self::Forbidden => "forbidden",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidPath => "invalid_path",
            Self::InvalidSecretType => "invalid_secret_type",
            Self::InvalidDuration => "invalid_duration",
            Self::InvalidCursor => "invalid_cursor",
            Self::InvalidPolicy => "invalid_policy",
            Self::InvalidGlob => "invalid_glob",
            Self::InvalidIdentity => "invalid_identity",
            Self::InvalidConfig => "invalid_config",
            Self::InvalidPlugin => "invalid_plugin",
            Self::InvalidRole => "invalid_role",
            Self::ValidationError => "validation_error",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::SecretNotFound => "secret_not_found",
            Self::VersionNotFound => "version_not_found",
            Self::PolicyNotFound => "policy_not_found",
            Self::BindingNotFound => "binding_not_found",
            Self::IdentityNotFound => "identity_not_found",
            Self::RotationPolicyNotFound => "rotation_policy_not_found",
            Self::PluginNotFound => "plugin_not_found",
            Self::WebhookNotFound => "webhook_not_found",
            Self::SubscriptionNotFound => "subscription_not_found",
            Self::SecretPolicyNotFound => "secret_policy_not_found",
            Self::TokenNotFound => "token_not_found",
            Self::RouteNotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PolicyInUse => "policy_in_use",
            Self::PolicyExists => "policy_exists",
            Self::IdentityExists => "identity_exists",
            Self::PluginExists => "plugin_exists",
            Self::SecretExists => "secret_exists",
            Self::SecretExpired => "secret_expired",
            Self::VersionConflict => "version_conflict",
            Self::RateLimited => "rate_limited",
            Self::VaultSealed => "vault_sealed",
            Self::InvalidPassphrase => "invalid_passphrase",
            Self::VaultExists => "vault_exists",
            Self::VaultNotFound => "vault_not_found",
            Self::IntegrityError => "integrity_error",
            Self::UnsupportedFormat => "unsupported_format",
            Self::StorageFull => "storage_full",
            Self::ServiceUnavailable => "service_unavailable",
            Self::PluginUnavailable => "plugin_unavailable",
            Self::PluginFailed => "plugin_failed",
            Self::NotImplemented => "not_implemented",
            Self::InternalError => "internal_error",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// The HTTP status every response with this code carries.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            AuthenticationRequired
            | TokenExpired
            | TokenInvalid
            | TokenRevoked
            | InvalidCredentials
            | InvalidPassphrase => 401,
            AccessDenied | InsufficientScope | MfaRequired | IpNotAllowed | TimeWindowViolation
            | Forbidden => 403,
            InvalidRequest | InvalidPath | InvalidSecretType | InvalidDuration | InvalidCursor
            | InvalidPolicy | InvalidGlob | InvalidIdentity | InvalidConfig | InvalidPlugin
            | InvalidRole => 400,
            ValidationError => 422,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            SecretNotFound
            | VersionNotFound
            | PolicyNotFound
            | BindingNotFound
            | IdentityNotFound
            | RotationPolicyNotFound
            | PluginNotFound
            | WebhookNotFound
            | SubscriptionNotFound
            | SecretPolicyNotFound
            | TokenNotFound
            | RouteNotFound
            | VaultNotFound => 404,
            MethodNotAllowed => 405,
            PolicyInUse | PolicyExists | IdentityExists | PluginExists | SecretExists
            | VersionConflict | VaultExists => 409,
            SecretExpired => 410,
            RateLimited => 429,
            VaultSealed | ServiceUnavailable | PluginUnavailable => 503,
            StorageFull => 507,
            NotImplemented => 501,
            IntegrityError | UnsupportedFormat | InternalError | PluginFailed => 500,
        }
    }

    /// The CLI exit code: spec §3.2's 2 authentication, 3 authorization, 4 not found,
    /// 5 validation, and beyond it 6 rate limited (retry later) and 7 unavailable (the vault
    /// is down, sealed, unreachable or not trusted), so a script can tell "try again" from
    /// "fix the request"; 1 anything else. A command line clap cannot parse exits
    /// [`USAGE_EXIT_CODE`].
    pub fn exit_code(self) -> i32 {
        match self.http_status() {
            401 => 2,
            403 => 3,
            404 | 410 => 4,
            400 | 413 | 415 | 422 => 5,
            429 => 6,
            503 => 7,
            _ => 1,
        }
    }
}

/// The exit code of a command line that does not parse (BSD's `EX_USAGE`): distinct from a
/// request the vault refused as invalid (5).
pub const USAGE_EXIT_CODE: i32 = 64;

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a client may see: a stable code, a human message and code-specific details.
///
/// Messages are written by ScaiVault itself and must never contain a secret value; paths,
/// identity ids and field names are fine, data never.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            details: Value::Object(Default::default()),
        }
    }

    /// Adds one `details` entry.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(map) = &mut self.details {
            map.insert(key.to_owned(), value.into());
        }
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
    }

    #[test]
    fn statuses_follow_the_spec_catalogue() {
        assert_eq!(ErrorCode::AuthenticationRequired.http_status(), 401);
        assert_eq!(ErrorCode::InsufficientScope.http_status(), 403);
        assert_eq!(ErrorCode::ValidationError.http_status(), 422);
        assert_eq!(ErrorCode::PolicyInUse.http_status(), 409);
        assert_eq!(ErrorCode::RateLimited.http_status(), 429);
        assert_eq!(ErrorCode::VaultSealed.http_status(), 503);
    }

    #[test]
    fn exit_codes_follow_the_cli_contract() {
        assert_eq!(ErrorCode::TokenExpired.exit_code(), 2);
        assert_eq!(ErrorCode::AccessDenied.exit_code(), 3);
        assert_eq!(ErrorCode::SecretNotFound.exit_code(), 4);
        assert_eq!(ErrorCode::InvalidPath.exit_code(), 5);
        assert_eq!(ErrorCode::ValidationError.exit_code(), 5);
        assert_eq!(ErrorCode::InternalError.exit_code(), 1);
        assert_eq!(ErrorCode::RateLimited.exit_code(), 6);
        assert_eq!(ErrorCode::VaultSealed.exit_code(), 7);
        assert_eq!(ErrorCode::ServiceUnavailable.exit_code(), 7);
        assert_eq!(ErrorCode::VersionConflict.exit_code(), 1);
    }
}
