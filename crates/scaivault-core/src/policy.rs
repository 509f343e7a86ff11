//! Access policies and their evaluation: a default-deny union of grants (spec §1.5).
//!
//! A caller is allowed when any rule of any active policy bound to it (directly or through one
//! of its groups, bindings not expired) matches the path and grants the permission, with every
//! condition of that rule holding. When a rule matches but only a condition fails, the denial
//! carries the condition's code (`ip_not_allowed`, `mfa_required`, `time_window_violation`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode};
use crate::glob::Glob;
use crate::identity::{IdentityId, IdentityType};
use crate::scope::Permission;
use crate::time::Timestamp;

pub const MAX_RULES: usize = 100;

/// An allow rule. Unknown fields are refused: a rule is never read as something else than
/// what it says (an `"effect": "deny"` that was silently dropped would grant what it meant to
/// deny; there are no deny rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub path_pattern: String,
    pub permissions: Vec<Permission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_ranges: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_mfa: Option<bool>,
    /// UTC wall-clock window, `"09:00"`–`"17:00"`; an end before the start wraps midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub id: String,
    pub identity_type: IdentityType,
    pub identity_id: IdentityId,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_scope")]
    pub scope: String,
    pub is_active: bool,
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn default_scope() -> String {
    "tenant".to_owned()
}

fn invalid_policy(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidPolicy, msg)
}

/// Checks the rules a client sent; a bad glob answers `invalid_glob`, anything else
/// `invalid_policy`, each naming the rule index.
pub fn validate_rules(rules: &[Rule]) -> Result<(), Error> {
    if rules.is_empty() {
        return Err(invalid_policy("a policy needs at least one rule"));
    }
    if rules.len() > MAX_RULES {
        return Err(invalid_policy(format!(
            "a policy holds at most {MAX_RULES} rules"
        )));
    }
    for (i, rule) in rules.iter().enumerate() {
        Glob::parse(&rule.path_pattern).map_err(|e| e.with("rule_index", i))?;
        if rule.permissions.is_empty() {
            return Err(
                invalid_policy(format!("rule {i} grants no permission")).with("rule_index", i)
            );
        }
        if let Some(c) = &rule.conditions {
            // Nothing in this vault can assert MFA (tokens and client credentials are issued
            // without it), so such a rule would silently deny everyone it names.
            if c.require_mfa == Some(true) {
                return Err(invalid_policy(format!(
                    "rule {i} sets require_mfa, but no identity source of this vault can assert MFA, so the rule would deny everyone; remove the condition"
                ))
                .with("rule_index", i)
                .with("field", "conditions.require_mfa"));
            }
            for r in c.ip_ranges.iter().flatten() {
                Cidr::parse(r).map_err(|e| e.with("rule_index", i))?;
            }
            if let Some(w) = &c.time_window {
                parse_clock(&w.start)
                    .and(parse_clock(&w.end))
                    .map_err(|e| e.with("rule_index", i))?;
            }
        }
    }
    Ok(())
}

/// Validates a policy name: it becomes part of CLI output and ids, so keep it simple.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid_policy(
            "policy name must be 1-128 of a-z A-Z 0-9 - _ .",
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(raw: &str) -> Result<Cidr, Error> {
        let bad = || invalid_policy(format!("invalid CIDR {raw:?} in ip_ranges"));
        let (a, b) = match raw.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (raw, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match b {
            Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rem = bits % 8;
    rem == 0 || {
        let mask = 0xffu8 << (8 - rem);
        a[full] & mask == b[full] & mask
    }
}

fn parse_clock(raw: &str) -> Result<u32, Error> {
    let bad = || {
        invalid_policy(format!(
            "invalid time {raw:?} in time_window (expected HH:MM)"
        ))
    };
    let (h, m) = raw.split_once(':').ok_or_else(bad)?;
    let h: u32 = h.parse().ok().filter(|h| *h < 24).ok_or_else(bad)?;
    let m: u32 = m.parse().ok().filter(|m| *m < 60).ok_or_else(bad)?;
    Ok(h * 3600 + m * 60)
}

/// A policy with its globs compiled once, for the hot path.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub policy: Policy,
    globs: Vec<Glob>,
}

impl CompiledPolicy {
    pub fn compile(policy: Policy) -> Result<CompiledPolicy, Error> {
        let globs = policy
            .rules
            .iter()
            .map(|r| Glob::parse(&r.path_pattern))
            .collect::<Result<_, _>>()?;
        Ok(CompiledPolicy { policy, globs })
    }

    fn bound_to(&self, subject: &Subject, now: Timestamp) -> bool {
        self.policy.bindings.iter().any(|b| {
            b.expires_at.is_none_or(|e| e > now)
                && (b.identity_id == subject.identity_id || subject.groups.contains(&b.identity_id))
        })
    }
}

/// Who is asking: the identity and the groups it belongs to.
#[derive(Debug, Clone)]
pub struct Subject {
    pub identity_id: IdentityId,
    pub groups: Vec<IdentityId>,
}

/// What the request looks like beyond the path.
#[derive(Debug, Clone)]
pub struct Context {
    pub source_ip: Option<IpAddr>,
    pub mfa_verified: bool,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    pub reason: String,
}

impl Decision {
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code.and_then(ErrorCode::parse)
    }
}

/// Evaluates `permission` on `path` for `subject` against every policy.
pub fn evaluate(
    policies: &[CompiledPolicy],
    subject: &Subject,
    path: &str,
    permission: Permission,
    ctx: &Context,
) -> Decision {
    let mut bound = 0usize;
    let mut condition_failure: Option<(ErrorCode, String)> = None;
    for cp in policies {
        if !cp.policy.is_active || !cp.bound_to(subject, ctx.now) {
            continue;
        }
        bound += 1;
        for (i, (rule, glob)) in cp.policy.rules.iter().zip(&cp.globs).enumerate() {
            if !rule.permissions.iter().any(|p| p.grants(permission)) || !glob.matches(path) {
                continue;
            }
            match check_conditions(rule.conditions.as_ref(), ctx) {
                Ok(()) => {
                    return Decision {
                        allowed: true,
                        policy_id: Some(cp.policy.id.clone()),
                        policy_name: Some(cp.policy.name.clone()),
                        rule_index: Some(i),
                        path_pattern: Some(rule.path_pattern.clone()),
                        code: None,
                        reason: format!(
                            "rule {i} ({} → {}) of policy {} grants {permission}",
                            rule.path_pattern,
                            rule.permissions
                                .iter()
                                .map(|p| p.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            cp.policy.name
                        ),
                    };
                }
                Err(failure) => {
                    condition_failure.get_or_insert((
                        failure.0,
                        format!(
                            "rule {i} of policy {} matches, but {}",
                            cp.policy.name, failure.1
                        ),
                    ));
                }
            }
        }
    }
    let (code, reason) = condition_failure.unwrap_or_else(|| {
        let reason = if bound == 0 {
            format!("no active policy is bound to {} or its groups", subject.identity_id)
        } else {
            format!(
                "none of the {bound} policies bound to {} has a rule granting {permission} on {path}",
                subject.identity_id
            )
        };
        (ErrorCode::AccessDenied, reason)
    });
    Decision {
        allowed: false,
        policy_id: None,
        policy_name: None,
        rule_index: None,
        path_pattern: None,
        code: Some(code.as_str()),
        reason,
    }
}

fn check_conditions(c: Option<&Conditions>, ctx: &Context) -> Result<(), (ErrorCode, String)> {
    let Some(c) = c else { return Ok(()) };
    if let Some(ranges) = &c.ip_ranges {
        let ok = ctx.source_ip.is_some_and(|ip| {
            ranges
                .iter()
                .filter_map(|r| Cidr::parse(r).ok())
                .any(|cidr| cidr.contains(ip))
        });
        if !ok {
            return Err((
                ErrorCode::IpNotAllowed,
                "the caller's address is outside its ip_ranges".into(),
            ));
        }
    }
    if c.require_mfa == Some(true) && !ctx.mfa_verified {
        return Err((ErrorCode::MfaRequired, "it requires MFA".into()));
    }
    if let Some(w) = &c.time_window {
        let (Ok(start), Ok(end)) = (parse_clock(&w.start), parse_clock(&w.end)) else {
            return Err((
                ErrorCode::TimeWindowViolation,
                "its time window is invalid".into(),
            ));
        };
        let t = ctx.now.seconds_of_day();
        let inside = if start <= end {
            t >= start && t < end
        } else {
            t >= start || t < end
        };
        if !inside {
            return Err((
                ErrorCode::TimeWindowViolation,
                format!(
                    "the request is outside its time window {}-{} UTC",
                    w.start, w.end
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> IdentityId {
        IdentityId::parse(s).unwrap()
    }

    fn policy(name: &str, rules: Vec<Rule>, bound: &[&str]) -> CompiledPolicy {
        let t = Timestamp(0);
        CompiledPolicy::compile(Policy {
            id: format!("pol_{name}"),
            name: name.into(),
            description: String::new(),
            scope: "tenant".into(),
            is_active: true,
            rules,
            bindings: bound
                .iter()
                .enumerate()
                .map(|(i, b)| Binding {
                    id: format!("bnd_{i}"),
                    identity_type: id(b).identity_type(),
                    identity_id: id(b),
                    expires_at: None,
                    created_at: t,
                })
                .collect(),
            created_at: t,
            updated_at: t,
        })
        .unwrap()
    }

    fn rule(p: &str, perms: &[Permission]) -> Rule {
        Rule {
            path_pattern: p.into(),
            permissions: perms.to_vec(),
            conditions: None,
        }
    }

    fn ctx() -> Context {
        Context {
            source_ip: Some("127.0.0.1".parse().unwrap()),
            mfa_verified: false,
            now: Timestamp(1_000_000),
        }
    }

    fn subject(s: &str, groups: &[&str]) -> Subject {
        Subject {
            identity_id: id(s),
            groups: groups.iter().map(|g| id(g)).collect(),
        }
    }

    #[test]
    fn billing_reader_story() {
        let p = vec![policy(
            "billing-prod-reader",
            vec![rule(
                "environments/production/billing/**",
                &[Permission::Read],
            )],
            &["sa:billing-prod"],
        )];
        let s = subject("sa:billing-prod", &[]);
        let d = evaluate(
            &p,
            &s,
            "environments/production/billing/stripe",
            Permission::Read,
            &ctx(),
        );
        assert!(d.allowed);
        assert_eq!(d.policy_name.as_deref(), Some("billing-prod-reader"));
        assert_eq!(d.rule_index, Some(0));
        let d = evaluate(
            &p,
            &s,
            "environments/production/reporting/database",
            Permission::Read,
            &ctx(),
        );
        assert!(!d.allowed);
        assert_eq!(d.code, Some("access_denied"));
        assert!(
            !evaluate(
                &p,
                &s,
                "environments/production/billing/stripe",
                Permission::Write,
                &ctx()
            )
            .allowed
        );
        let other = subject("sa:reporting", &[]);
        let d = evaluate(
            &p,
            &other,
            "environments/production/billing/stripe",
            Permission::Read,
            &ctx(),
        );
        assert!(!d.allowed);
        assert!(d.reason.contains("no active policy"));
    }

    #[test]
    fn groups_expand_and_admin_grants_all() {
        let p = vec![policy(
            "sre",
            vec![rule("infra/**", &[Permission::Admin])],
            &["group:sre"],
        )];
        let s = subject("user:bob@x", &["group:sre"]);
        assert!(evaluate(&p, &s, "infra/dns/key", Permission::Delete, &ctx()).allowed);
        assert!(
            !evaluate(
                &p,
                &subject("user:bob@x", &[]),
                "infra/dns/key",
                Permission::Read,
                &ctx()
            )
            .allowed
        );
    }

    #[test]
    fn inactive_policies_and_expired_bindings_do_not_apply() {
        let mut p = policy("p", vec![rule("a/**", &[Permission::Read])], &["sa:x"]);
        p.policy.is_active = false;
        assert!(
            !evaluate(
                &[p.clone()],
                &subject("sa:x", &[]),
                "a/b",
                Permission::Read,
                &ctx()
            )
            .allowed
        );
        p.policy.is_active = true;
        p.policy.bindings[0].expires_at = Some(Timestamp(10));
        assert!(!evaluate(&[p], &subject("sa:x", &[]), "a/b", Permission::Read, &ctx()).allowed);
    }

    #[test]
    fn conditions_give_their_own_codes() {
        let mut r = rule("a/**", &[Permission::Read]);
        r.conditions = Some(Conditions {
            ip_ranges: Some(vec!["10.0.0.0/8".into()]),
            ..Default::default()
        });
        let p = vec![policy("p", vec![r], &["sa:x"])];
        let d = evaluate(&p, &subject("sa:x", &[]), "a/b", Permission::Read, &ctx());
        assert_eq!(d.code, Some("ip_not_allowed"));
        let mut c = ctx();
        c.source_ip = Some("10.1.2.3".parse().unwrap());
        assert!(evaluate(&p, &subject("sa:x", &[]), "a/b", Permission::Read, &c).allowed);

        let mut r = rule("a/**", &[Permission::Read]);
        r.conditions = Some(Conditions {
            require_mfa: Some(true),
            ..Default::default()
        });
        let p = vec![policy("p", vec![r], &["sa:x"])];
        assert_eq!(
            evaluate(&p, &subject("sa:x", &[]), "a/b", Permission::Read, &ctx()).code,
            Some("mfa_required")
        );

        let mut r = rule("a/**", &[Permission::Read]);
        r.conditions = Some(Conditions {
            time_window: Some(TimeWindow {
                start: "09:00".into(),
                end: "17:00".into(),
            }),
            ..Default::default()
        });
        let p = vec![policy("p", vec![r], &["sa:x"])];
        let mut c = ctx();
        c.now = Timestamp::from_unix_seconds(3 * 3600);
        assert_eq!(
            evaluate(&p, &subject("sa:x", &[]), "a/b", Permission::Read, &c).code,
            Some("time_window_violation")
        );
        c.now = Timestamp::from_unix_seconds(10 * 3600);
        assert!(evaluate(&p, &subject("sa:x", &[]), "a/b", Permission::Read, &c).allowed);
    }

    #[test]
    fn validation() {
        assert!(validate_rules(&[]).is_err());
        // require_mfa cannot be satisfied by any token this vault issues: refused, not stored.
        let mfa: Vec<Rule> = serde_json::from_value(serde_json::json!([{
            "path_pattern": "a/**", "permissions": ["read"],
            "conditions": { "require_mfa": true }
        }]))
        .unwrap();
        let e = validate_rules(&mfa).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPolicy);
        assert!(e.message.contains("require_mfa"), "{}", e.message);
        let no_mfa: Vec<Rule> = serde_json::from_value(serde_json::json!([{
            "path_pattern": "a/**", "permissions": ["read"],
            "conditions": { "require_mfa": false }
        }]))
        .unwrap();
        assert!(validate_rules(&no_mfa).is_ok());
        assert_eq!(
            validate_rules(&[rule("a//b", &[Permission::Read])])
                .unwrap_err()
                .code,
            ErrorCode::InvalidGlob
        );
        assert_eq!(
            validate_rules(&[rule("a/b", &[])]).unwrap_err().code,
            ErrorCode::InvalidPolicy
        );
        let mut r = rule("a", &[Permission::Read]);
        r.conditions = Some(Conditions {
            ip_ranges: Some(vec!["10.0.0.0/33".into()]),
            ..Default::default()
        });
        assert_eq!(
            validate_rules(&[r]).unwrap_err().code,
            ErrorCode::InvalidPolicy
        );
        assert!(validate_name("billing-prod-reader").is_ok());
        assert!(validate_name("bad name").is_err());
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("192.168.1.0/24").unwrap();
        assert!(c.contains("192.168.1.77".parse().unwrap()));
        assert!(!c.contains("192.168.2.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.1.5".parse().unwrap()));
        assert!(
            Cidr::parse("::1/128")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("10.0.0.0/7")
                .unwrap()
                .contains("11.255.0.1".parse().unwrap())
        );
    }
}
