//! Paths and globs: no input panics; a valid path used as a pattern matches itself; a glob
//! matches only valid paths' segment structure.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scaivault_core::glob::Glob;
use scaivault_core::path::{SecretPath, validate_prefix};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (a, b) = s.split_once('\n').unwrap_or((s, "a/b"));
    let _ = validate_prefix(a);
    if let Ok(p) = SecretPath::parse(a) {
        let g = Glob::parse(p.as_str()).expect("every valid path is a valid literal pattern");
        assert!(g.matches(p.as_str()), "a literal pattern must match its own path");
    }
    if let (Ok(g), Ok(p)) = (Glob::parse(a), SecretPath::parse(b)) {
        let _ = g.matches(p.as_str());
        let _ = g.could_match_below(p.as_str());
    }
});
