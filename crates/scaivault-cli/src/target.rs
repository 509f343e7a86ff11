//! Where a command goes: every command is written once against [`VaultClient`], which
//! reaches a server over HTTP or a vault file opened in this process (`--vault FILE`).

pub use scaivault_client::{
    ClientError as CliError, Method, Result as CliResult, VaultClient, q, secret_path,
};

/// An id or a name as one path segment, percent-encoded (`/` included).
pub fn seg(v: &str) -> String {
    q(v).replace('/', "%2F")
}
