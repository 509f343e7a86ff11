//! A plugin's manifest: who it is, what it provides, what it may use and how much.

use std::collections::BTreeSet;
use std::fmt;

use scaivault_core::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};

/// What the host can grant. A guest import exists only for a granted capability.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Bytes from the host's CSPRNG.
    Random,
    /// Wall-clock time (the engine's clock, which tests can move).
    Clock,
    /// HTTP requests to hosts on the operator's allow-list.
    Http,
    /// A narrow set of PostgreSQL operations on hosts on the operator's allow-list.
    Postgres,
}

impl Capability {
    pub const ALL: &'static [Capability] = &[
        Capability::Random,
        Capability::Clock,
        Capability::Http,
        Capability::Postgres,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::Random => "random",
            Capability::Clock => "clock",
            Capability::Http => "http",
            Capability::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name() == s)
    }

    /// Capabilities that reach nothing outside the process: granted unless the operator says
    /// otherwise.
    pub fn default_allowed() -> BTreeSet<Capability> {
        [Capability::Random, Capability::Clock].into()
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SecretTypes,
    Generators,
    RotationBackend,
}

/// Per-call resource limits. Every call gets a fresh store with exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wasm fuel (roughly, instructions) for one call.
    #[serde(default = "Limits::default_fuel")]
    pub fuel: u64,
    /// Largest linear memory, in bytes.
    #[serde(default = "Limits::default_memory")]
    pub memory_bytes: u64,
    /// Wall-clock deadline for one call, in milliseconds (time spent inside host imports such
    /// as HTTP counts against their own timeouts, checked when the guest resumes).
    #[serde(default = "Limits::default_timeout")]
    pub timeout_ms: u64,
    /// Largest output a call may set.
    #[serde(default = "Limits::default_output")]
    pub max_output_bytes: u64,
}

impl Limits {
    /// About a minute and a half of guest instructions: past the deadline, which is then
    /// what stops a runaway call (RSA key generation needs tens of billions).
    pub const MAX_FUEL: u64 = 1_000_000_000_000;
    pub const MAX_MEMORY: u64 = 128 * 1024 * 1024;
    pub const MAX_TIMEOUT_MS: u64 = 60_000;
    pub const MAX_OUTPUT: u64 = 4 * 1024 * 1024;

    fn default_fuel() -> u64 {
        100_000_000
    }
    fn default_memory() -> u64 {
        16 * 1024 * 1024
    }
    fn default_timeout() -> u64 {
        1_000
    }
    fn default_output() -> u64 {
        64 * 1024
    }

    fn check(&self) -> Result<()> {
        let bad = |field: &str, max: u64| {
            Err(Error::new(
                ErrorCode::InvalidPlugin,
                format!("manifest limits.{field} must be between 1 and {max}"),
            ))
        };
        if self.fuel == 0 || self.fuel > Self::MAX_FUEL {
            return bad("fuel", Self::MAX_FUEL);
        }
        if self.memory_bytes < 65_536 || self.memory_bytes > Self::MAX_MEMORY {
            return bad("memory_bytes", Self::MAX_MEMORY);
        }
        if self.timeout_ms == 0 || self.timeout_ms > Self::MAX_TIMEOUT_MS {
            return bad("timeout_ms", Self::MAX_TIMEOUT_MS);
        }
        if self.max_output_bytes == 0 || self.max_output_bytes > Self::MAX_OUTPUT {
            return bad("max_output_bytes", Self::MAX_OUTPUT);
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Self::default_fuel(),
            memory_bytes: Self::default_memory(),
            timeout_ms: Self::default_timeout(),
            max_output_bytes: Self::default_output(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provides {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotation_backends: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    /// `"1.0"`: the ABI major.minor the plugin was built for.
    pub abi: String,
    #[serde(default)]
    pub description: String,
    /// The SHA-256 of the `.wasm` bytes, lowercase hex. Installing pins it.
    pub wasm_sha256: String,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    #[serde(default)]
    pub provides: Provides,
}

impl Manifest {
    pub fn parse(text: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(text).map_err(|e| {
            Error::new(
                ErrorCode::InvalidPlugin,
                format!("the manifest is not valid: {e}"),
            )
        })?;
        m.check()?;
        Ok(m)
    }

    pub fn check(&self) -> Result<()> {
        let invalid = |msg: String| Err(Error::new(ErrorCode::InvalidPlugin, msg));
        if !valid_name(&self.name) {
            return invalid(format!(
                "plugin name {:?} must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter",
                self.name
            ));
        }
        if self.version.is_empty() || self.version.len() > 32 {
            return invalid("manifest version must be 1-32 characters".into());
        }
        match self.abi.split_once('.') {
            Some((major, minor))
                if major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok() =>
            {
                if major != crate::abi::MAJOR.to_string() {
                    return invalid(format!(
                        "the plugin is built for ABI v{major}; this host speaks v{}",
                        crate::abi::MAJOR
                    ));
                }
            }
            _ => {
                return invalid(format!(
                    "manifest abi {:?} must look like \"1.0\"",
                    self.abi
                ));
            }
        }
        if self.wasm_sha256.len() != 64
            || !self
                .wasm_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return invalid("manifest wasm_sha256 must be 64 lowercase hex digits".into());
        }
        self.limits.check()?;
        let p = &self.provides;
        let (list, what) = match self.kind {
            Kind::SecretTypes => (&p.secret_types, "provides.secret_types"),
            Kind::Generators => (&p.generators, "provides.generators"),
            Kind::RotationBackend => (&p.rotation_backends, "provides.rotation_backends"),
        };
        if list.is_empty() {
            return invalid(format!("a {:?} plugin must list {what}", self.kind));
        }
        for n in p
            .secret_types
            .iter()
            .chain(&p.generators)
            .chain(&p.rotation_backends)
        {
            if !valid_name(n) {
                return invalid(format!("provided name {n:?} is not a valid name"));
            }
        }
        Ok(())
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "name": "acme-token", "version": "1.0.0", "kind": "secret_types", "abi": "1.0",
            "wasm_sha256": "a".repeat(64),
            "provides": {"secret_types": ["acme_token"]}
        })
    }

    fn parse(v: serde_json::Value) -> Result<Manifest> {
        Manifest::parse(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn minimal_manifest_gets_default_limits() {
        let m = parse(base()).unwrap();
        assert_eq!(m.limits, Limits::default());
        assert!(m.capabilities.is_empty());
    }

    #[test]
    fn bad_manifests_are_refused_with_a_reason() {
        let cases: &[(&str, serde_json::Value, &str)] = &[
            ("name", serde_json::json!("Bad Name"), "plugin name"),
            ("abi", serde_json::json!("2.0"), "ABI v2"),
            ("abi", serde_json::json!("one"), "must look like"),
            ("wasm_sha256", serde_json::json!("ABC"), "64 lowercase hex"),
            ("limits", serde_json::json!({"fuel": 0}), "limits.fuel"),
            (
                "limits",
                serde_json::json!({"memory_bytes": 1u64 << 40}),
                "limits.memory_bytes",
            ),
            ("capabilities", serde_json::json!(["network"]), "not valid"),
            ("provides", serde_json::json!({}), "must list"),
            ("surprise", serde_json::json!(1), "unknown field"),
        ];
        for (field, value, expect) in cases {
            let mut v = base();
            v[field] = value.clone();
            let err = parse(v).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidPlugin, "{field}");
            assert!(err.message.contains(expect), "{field}: {}", err.message);
        }
    }
}
