//! The dotenv parser: never panics; whatever it accepts renders back to the same variables.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scaivault_core::dotenv::{parse, render};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(p) = parse(s) {
        let vars: Vec<(String, String)> = p.entries.into_iter().map(|e| (e.key, e.value)).collect();
        let again = parse(&render(&vars)).expect("rendered output parses");
        let back: Vec<(String, String)> = again.entries.into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(back, vars);
    }
});
