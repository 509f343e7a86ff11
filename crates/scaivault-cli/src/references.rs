//! Secret references: `scaivault://path#field`, in `run --env-file` files and in `inject`
//! templates. The scheme is what tells a reference from a value: `LOG_LEVEL=debug` is a value,
//! `STRIPE_KEY=scaivault://environments/production/billing/stripe#secret_key` a reference.
//! Each referenced secret is read once, through the API, so every read is audited before its
//! value is used.

use std::collections::HashMap;

use scaivault_core::{Error, ErrorCode};
use serde_json::Value;

use crate::migrate;
use crate::target::{CliResult, VaultClient, secret_path};

pub const SCHEME: &str = "scaivault://";

/// One secret field: `scaivault://path#field`; the field defaults to `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub path: String,
    pub field: String,
}

impl Reference {
    /// `None` when `text` is not a reference (no `scaivault://`); an error when it is one
    /// that names no valid secret path.
    pub fn parse(text: &str) -> Option<Result<Reference, Error>> {
        let rest = text.strip_prefix(SCHEME)?;
        let (path, field) = rest.split_once('#').unwrap_or((rest, "value"));
        Some(if field.is_empty() {
            Err(Error::invalid_request(format!(
                "{text}: the field after # is empty"
            )))
        } else {
            secret_path(path).map(|p| Reference {
                path: p.to_owned(),
                field: field.to_owned(),
            })
        })
    }
}

/// Whether a plain value looks like a reference written the old way (`path#field`, without
/// the scheme), which is now taken as the value itself.
pub fn looks_like_old_reference(value: &str) -> bool {
    value.split_once('#').is_some_and(|(p, f)| {
        p.contains('/') && !f.is_empty() && !value.contains([' ', ':']) && secret_path(p).is_ok()
    })
}

/// Reads each referenced secret once and answers the referenced fields as text (JSON for a
/// field that is not a string).
pub struct Resolver<'a> {
    target: &'a VaultClient,
    read: HashMap<String, Value>,
}

impl<'a> Resolver<'a> {
    pub fn new(target: &'a VaultClient) -> Resolver<'a> {
        Resolver {
            target,
            read: HashMap::new(),
        }
    }

    /// The referenced field's value; `whence` (file and line) names the reference in errors.
    pub async fn value(&mut self, r: &Reference, whence: &str) -> CliResult<String> {
        if !self.read.contains_key(&r.path) {
            let secret = migrate::fetch(self.target, &r.path).await?.ok_or_else(|| {
                Error::new(
                    ErrorCode::SecretNotFound,
                    format!("{whence}: {} does not exist", r.path),
                )
                .with("path", r.path.as_str())
            })?;
            self.read.insert(r.path.clone(), secret);
        }
        let v = self.read[&r.path]["data"].get(&r.field).ok_or_else(|| {
            Error::new(
                ErrorCode::ValidationError,
                format!("{whence}: {} has no field {}", r.path, r.field),
            )
            .with("path", r.path.as_str())
        })?;
        Ok(v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_scheme_makes_a_reference() {
        assert_eq!(Reference::parse("debug"), None.map(Ok));
        assert_eq!(
            Reference::parse("scaivault://app/db#password").map(Result::unwrap),
            Some(Reference {
                path: "app/db".into(),
                field: "password".into()
            })
        );
        assert_eq!(
            Reference::parse("scaivault://app/key")
                .map(Result::unwrap)
                .map(|r| r.field),
            Some("value".into())
        );
        for bad in [
            "scaivault://app/db#",
            "scaivault://",
            "scaivault://a b#c",
            "scaivault://../x",
        ] {
            assert!(matches!(Reference::parse(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn old_style_references_are_recognised_for_a_warning() {
        assert!(looks_like_old_reference(
            "environments/prod/stripe#secret_key"
        ));
        for value in [
            "debug",
            "https://example.com/a#frag",
            "a b/c#d",
            "no-field/x#",
            "#x",
        ] {
            assert!(!looks_like_old_reference(value), "{value}");
        }
    }
}
