//! Durations and human times: never panic, never overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scaivault_core::duration::{parse_duration, parse_duration_list};
use scaivault_core::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(d) = parse_duration(s) {
        assert!(d.as_secs() > 0);
        let _ = Timestamp::now().plus(d);
    }
    let _ = parse_duration_list(s);
    let _ = Timestamp::parse_human(s, Timestamp::now());
    let _ = Timestamp::parse_rfc3339(s).map(|t| t.to_rfc3339());
});
