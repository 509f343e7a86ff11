//! What the host offers a plugin beyond its sandbox, supplied by the embedder (the engine),
//! which owns the clock, the allow-lists and the vault.

use serde_json::Value;

/// A capability call's failure, passed back to the guest as a structured error.
#[derive(Debug, Clone)]
pub struct HostCallError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl HostCallError {
    pub fn new(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        HostCallError {
            code: code.into(),
            message: message.into(),
            retryable,
        }
    }
}

pub trait HostServices: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch on the engine's clock.
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn http(&self, _plugin: &str, _request: Value) -> Result<Value, HostCallError> {
        Err(HostCallError::new(
            "capability_unavailable",
            "no HTTP service in this context",
            false,
        ))
    }

    fn postgres(&self, _plugin: &str, _request: Value) -> Result<Value, HostCallError> {
        Err(HostCallError::new(
            "capability_unavailable",
            "no PostgreSQL service in this context",
            false,
        ))
    }
}

/// The services of a context that offers only the clock (validation, generation).
pub struct NoServices;

impl HostServices for NoServices {}
