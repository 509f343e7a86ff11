//! A plugin's own words — log lines, error messages — with the call's values cut out.
//!
//! A plugin sees secret values (the data it validates, the value it generates, what a
//! rotation backend hears back), and its words reach places values must not: the server's
//! log, an error returned to a client, a rotation job's record and its webhook. So before they
//! leave the host, every string the call carried in either direction is replaced, wherever
//! it appears in them, by `[redacted]`. This catches a value logged as it is, not one the
//! plugin encodes first; what it cannot catch is why plugins are sandboxed and pinned.

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

/// Shorter strings are too common to be told from ordinary words ("true", "prod").
const MIN_LEN: usize = 4;
/// Top-level fields of a call's input that name things rather than hold values: a plugin's
/// words may keep them ("rotating environments/production/billing/db failed", "cert_pem is
/// required for a certificate secret": a type call's input names its type in `type`).
const NAMES: &[&str] = &["secret_path", "policy_id", "secret_type", "type"];
pub(crate) const MARK: &str = "[redacted]";

#[derive(Default)]
pub(crate) struct Redactor {
    needles: Vec<Zeroizing<String>>,
}

impl Redactor {
    /// Adds every string of a JSON document (a secret's data).
    pub(crate) fn add_json(&mut self, bytes: &[u8]) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
            self.add_value(&v);
            wipe(&mut v);
        }
    }

    /// Adds the strings of a call's input, but for the fields that only name things.
    pub(crate) fn add_input(&mut self, bytes: &[u8]) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
            match &v {
                Value::Object(map) => map
                    .iter()
                    .filter(|(k, _)| !NAMES.contains(&k.as_str()))
                    .for_each(|(_, item)| self.add_value(item)),
                other => self.add_value(other),
            }
            wipe(&mut v);
        }
    }

    /// Adds what a capability call brought back (`{"ok": …}`); an `{"error": …}` reply is the
    /// host's own words, which a plugin may pass on as they are.
    pub(crate) fn add_reply(&mut self, bytes: &[u8]) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
            if let Some(ok) = v.get("ok") {
                self.add_value(ok);
            }
            wipe(&mut v);
        }
    }

    pub(crate) fn add_value(&mut self, v: &Value) {
        match v {
            Value::String(s) if s.len() >= MIN_LEN => {
                self.needles.push(Zeroizing::new(s.clone()));
            }
            Value::Array(items) => items.iter().for_each(|i| self.add_value(i)),
            Value::Object(map) => map.values().for_each(|i| self.add_value(i)),
            _ => {}
        }
    }

    fn matcher(&self) -> Option<AhoCorasick> {
        if self.needles.is_empty() {
            return None;
        }
        // Leftmost-longest: a value that contains another is cut out whole.
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(self.needles.iter().map(|n| n.as_bytes()))
            .ok()
    }

    /// Redacts several texts with one matcher.
    pub(crate) fn apply_all(&self, texts: &mut [&mut String]) {
        let Some(m) = self.matcher() else { return };
        for t in texts.iter_mut() {
            if m.is_match(t.as_str()) {
                let mut clean = m.replace_all(t.as_str(), &vec![MARK; self.needles.len()]);
                std::mem::swap(&mut clean, *t);
                clean.zeroize();
            }
        }
    }

    /// Redacts every string inside a JSON value (an error's `fields`).
    pub(crate) fn apply_value(&self, v: &mut Value) {
        let mut texts = Vec::new();
        strings_mut(v, &mut texts);
        self.apply_all(&mut texts);
    }
}

fn strings_mut<'a>(v: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter_mut().for_each(|i| strings_mut(i, out)),
        Value::Object(map) => map.values_mut().for_each(|i| strings_mut(i, out)),
        _ => {}
    }
}

/// Overwrites the strings of a parsed document before it is dropped.
fn wipe(v: &mut Value) {
    let mut texts = Vec::new();
    strings_mut(v, &mut texts);
    texts.into_iter().for_each(|s| s.zeroize());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_out_wherever_they_appear() {
        let mut r = Redactor::default();
        r.add_input(
            br#"{"data": {"password": "hunter22", "api_key": "sk_live_hunter22x", "pin": "123"}}"#,
        );
        let mut line = "got sk_live_hunter22x and hunter22; pin 123; password field".to_owned();
        let mut other = "nothing here".to_owned();
        r.apply_all(&mut [&mut line, &mut other]);
        assert_eq!(
            line, "got [redacted] and [redacted]; pin 123; password field",
            "the longer value is cut out whole, short strings and keys stay"
        );
        assert_eq!(other, "nothing here");

        // The secret's type names it; its data is cut out.
        let mut r = Redactor::default();
        r.add_input(br#"{"type": "certificate", "data": {"x": "certificate-pem"}}"#);
        let mut msg =
            "cert_pem: is required for a certificate secret, not certificate-pem".to_owned();
        r.apply_all(&mut [&mut msg]);
        assert_eq!(
            msg,
            "cert_pem: is required for a certificate secret, not [redacted]"
        );
    }

    #[test]
    fn error_fields_are_redacted_too() {
        let mut r = Redactor::default();
        r.add_value(&serde_json::json!({"new_value": "s3cr3t-value"}));
        let mut fields =
            serde_json::json!({"value": "bad: s3cr3t-value", "n": [1, "s3cr3t-value"]});
        r.apply_value(&mut fields);
        assert_eq!(
            fields,
            serde_json::json!({"value": "bad: [redacted]", "n": [1, "[redacted]"]})
        );
    }

    #[test]
    fn names_in_the_input_stay_readable() {
        let mut r = Redactor::default();
        r.add_input(br#"{"secret_path": "app/db", "policy_id": "rot_daily", "pending": {"password": "app/db-pw-123"}, "config": {"role": "app_user"}}"#);
        let mut line = "rotating app/db (rot_daily): role app_user, value app/db-pw-123".to_owned();
        r.apply_all(&mut [&mut line]);
        assert_eq!(
            line,
            "rotating app/db (rot_daily): role [redacted], value [redacted]"
        );
    }

    #[test]
    fn a_host_error_reply_is_not_redacted_but_its_ok_reply_is() {
        let mut r = Redactor::default();
        r.add_reply(br#"{"error": {"code": "refused", "message": "db.internal:5432 is not on the allow-list"}}"#);
        r.add_reply(br#"{"ok": {"token": "tok-from-the-api"}}"#);
        let mut line =
            "failed: db.internal:5432 is not on the allow-list; got tok-from-the-api".to_owned();
        r.apply_all(&mut [&mut line]);
        assert_eq!(
            line,
            "failed: db.internal:5432 is not on the allow-list; got [redacted]"
        );
    }

    #[test]
    fn inputs_that_are_not_json_add_nothing() {
        let mut r = Redactor::default();
        r.add_input(b"not json \"hunter22\"");
        assert!(r.needles.is_empty());
        let mut line = "hunter22".to_owned();
        r.apply_all(&mut [&mut line]);
        assert_eq!(line, "hunter22");
    }
}
