//! How a plugin can fail, and what the client sees for each.

use scaivault_core::{Error, ErrorCode};
use serde_json::Value;

/// A sandbox failure: which limit or rule the guest broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `fuel_exhausted`, `deadline_exceeded`, `memory_limit`, `stack_overflow`, `trap`,
    /// `output_too_large` or `bad_output`.
    pub reason: String,
    pub message: String,
}

impl Failure {
    pub fn new(reason: &str, message: &str) -> Self {
        Failure {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn bad(message: &str) -> Self {
        Failure::new("bad_output", message)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PluginError {
    /// The module cannot be loaded: bad bytes, wrong hash, wrong ABI, forbidden imports.
    Refused(String),
    /// The call broke a sandbox limit or the ABI.
    Failed(Failure),
    /// The guest returned a structured error.
    Guest {
        code: String,
        message: String,
        fields: Option<Value>,
        retryable: bool,
    },
    /// Every sandbox slot is in use; try again.
    Busy,
}

impl PluginError {
    /// The client-facing error for a call of `plugin`. A guest error whose code is in our
    /// catalogue keeps it (a type plugin's `validation_error` is the client's mistake, not the
    /// plugin's); any other guest code is reported as `plugin_failed` with the guest's code.
    pub fn into_error(self, plugin: &str) -> Error {
        match self {
            PluginError::Refused(m) => Error::new(
                ErrorCode::PluginUnavailable,
                format!("plugin {plugin} cannot be loaded: it {m}"),
            )
            .with("plugin", plugin),
            PluginError::Failed(f) => Error::new(
                ErrorCode::PluginFailed,
                format!("plugin {plugin} {}", f.message),
            )
            .with("plugin", plugin)
            .with("reason", f.reason),
            PluginError::Busy => Error::new(
                ErrorCode::ServiceUnavailable,
                format!("plugin {plugin} is busy with other calls; retry shortly"),
            )
            .with("retryable", true)
            .with("plugin", plugin),
            PluginError::Guest {
                code,
                message,
                fields,
                retryable,
            } => {
                let known = ErrorCode::ALL.iter().find(|c| c.as_str() == code).copied();
                let mut err = match known {
                    Some(c) if c != ErrorCode::InternalError => Error::new(c, message),
                    _ => Error::new(
                        ErrorCode::PluginFailed,
                        format!("plugin {plugin} failed: {message}"),
                    )
                    .with("reason", "plugin_error")
                    .with("plugin_code", code),
                };
                if let Some(f) = fields {
                    err = err.with("fields", f);
                }
                if retryable {
                    err = err.with("retryable", true);
                }
                err.with("plugin", plugin)
            }
        }
    }
}
