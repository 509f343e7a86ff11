//! Secret paths: `a-z 0-9 - _` segments joined by `/`, at most 10 segments and 512 characters.
//! Validation is strict (upper case, dots, encoded characters are all rejected), which is also
//! what makes traversal like `..` or `%2e%2e` impossible to express.

use std::fmt;

use crate::error::{Error, ErrorCode};

pub const MAX_PATH_LEN: usize = 512;
pub const MAX_SEGMENTS: usize = 10;

/// A validated secret path. Holding one proves the path obeys every rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretPath(String);

impl SecretPath {
    pub fn parse(raw: &str) -> Result<SecretPath, Error> {
        validate(raw)?;
        Ok(SecretPath(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(raw: &str, why: &str) -> Error {
    // The path is echoed in details, truncated: it is not secret, but it may be huge.
    let shown: String = raw.chars().take(80).collect();
    Error::new(
        ErrorCode::InvalidPath,
        format!("invalid secret path: {why}"),
    )
    .with("path", shown)
    .with("reason", why)
}

fn validate(raw: &str) -> Result<(), Error> {
    if raw.is_empty() {
        return Err(invalid(raw, "path is empty"));
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(invalid(raw, "path is longer than 512 characters"));
    }
    if raw.starts_with('/') || raw.ends_with('/') {
        return Err(invalid(raw, "path must not start or end with '/'"));
    }
    let mut segments = 0;
    for segment in raw.split('/') {
        segments += 1;
        if segment.is_empty() {
            return Err(invalid(raw, "path has an empty segment ('//')"));
        }
        if let Some(bad) = segment.chars().find(|c| !is_path_char(*c)) {
            let why = if bad.is_ascii_uppercase() {
                "upper-case letters are not allowed".to_owned()
            } else {
                format!("character {bad:?} is not allowed (only a-z, 0-9, '-', '_' and '/')")
            };
            return Err(invalid(raw, &why));
        }
    }
    if segments > MAX_SEGMENTS {
        return Err(invalid(raw, "path has more than 10 segments"));
    }
    Ok(())
}

pub(crate) fn is_path_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// A listing prefix: empty, or a path prefix that may end with `/` or stop mid-segment.
pub fn validate_prefix(prefix: &str) -> Result<(), Error> {
    if prefix.is_empty() {
        return Ok(());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return Err(invalid(prefix, "prefix must not start with '/'"));
    }
    validate(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(raw: &str) -> Option<ErrorCode> {
        SecretPath::parse(raw).err().map(|e| e.code)
    }

    #[test]
    fn accepts_spec_examples() {
        for ok in [
            "app/db",
            "environments/production/billing/stripe",
            "a",
            "a-b_c/0-9",
            "x/y/z",
        ] {
            assert!(SecretPath::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_every_rule() {
        for bad in [
            "", "/a", "a/", "a//b", "A/b", "a/B", "a/b.c", "..", "a/../b", "%2e%2e/a", "a%2Fb",
            "a b", "a\\b", "a/./b", "é", "a\0b",
        ] {
            assert_eq!(code(bad), Some(ErrorCode::InvalidPath), "{bad:?}");
        }
    }

    #[test]
    fn length_limit_is_exact() {
        let at = |n: usize| "a".repeat(n);
        assert!(SecretPath::parse(&at(MAX_PATH_LEN - 1)).is_ok());
        assert!(SecretPath::parse(&at(MAX_PATH_LEN)).is_ok());
        assert_eq!(code(&at(MAX_PATH_LEN + 1)), Some(ErrorCode::InvalidPath));
    }

    #[test]
    fn segment_limit_is_exact() {
        let segs = |n: usize| vec!["s"; n].join("/");
        assert!(SecretPath::parse(&segs(9)).is_ok());
        assert!(SecretPath::parse(&segs(10)).is_ok());
        assert_eq!(code(&segs(11)), Some(ErrorCode::InvalidPath));
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("environments/production/").is_ok());
        assert!(validate_prefix("environments/prod").is_ok());
        assert!(validate_prefix("/").is_err());
        assert!(validate_prefix("a//").is_err());
        assert!(validate_prefix("../").is_err());
    }

    proptest! {
        #[test]
        fn valid_paths_round_trip(segs in proptest::collection::vec("[a-z0-9_-]{1,12}", 1..=10)) {
            let raw = segs.join("/");
            let parsed = SecretPath::parse(&raw).unwrap();
            prop_assert_eq!(parsed.as_str(), raw.as_str());
        }

        #[test]
        fn anything_with_a_foreign_char_is_rejected(s in "[a-z]{0,5}[^a-z0-9_/-][a-z]{0,5}") {
            prop_assert!(SecretPath::parse(&s).is_err());
        }
    }
}
