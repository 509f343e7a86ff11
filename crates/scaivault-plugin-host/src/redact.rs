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
pub(crate) const MARK: &str = "[redacted]";

#[derive(Default)]
pub(crate) struct Redactor {
    needles: Vec<Zeroizing<String>>,
}

impl Redactor {
    /// Adds the strings of a JSON document (the call's input, its output, a host reply).
    pub(crate) fn add_json(&mut self, bytes: &[u8]) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(bytes) {
            self.add_value(&v);
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
        r.add_json(
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
    fn documents_that_are_not_json_add_nothing() {
        let mut r = Redactor::default();
        r.add_json(b"not json \"hunter22\"");
        assert!(r.needles.is_empty());
        let mut line = "hunter22".to_owned();
        r.apply_all(&mut [&mut line]);
        assert_eq!(line, "hunter22");
    }
}
