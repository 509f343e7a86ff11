//! Where a command goes: every command is written once against [`VaultClient`], which
//! reaches a server over HTTP or a vault file opened in this process (`--vault FILE`).

pub use scaivault_client::{ClientError as CliError, Method, Result as CliResult, VaultClient, q};

/// A secret path, checked before it goes into a URL: a `?`, `#`, space or `%` in it would
/// otherwise change which secret, or which request, the URL names.
pub fn secret_path(p: &str) -> Result<&str, scaivault_core::Error> {
    scaivault_core::path::SecretPath::parse(p)?;
    Ok(p)
}

/// An id or a name as one path segment, percent-encoded (`/` included).
pub fn seg(v: &str) -> String {
    q(v).replace('/', "%2F")
}
