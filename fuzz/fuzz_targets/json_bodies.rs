//! The HTTP JSON bodies: any bytes deserialize or fail cleanly, and the validation behind
//! them (rules, identities, scopes) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scaivault_engine::{BatchReadRequest, PolicyRequest, PolicyTestRequest, WriteRequest};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<WriteRequest>(data);
    let _ = serde_json::from_slice::<BatchReadRequest>(data);
    let _ = serde_json::from_slice::<PolicyTestRequest>(data);
    if let Ok(p) = serde_json::from_slice::<PolicyRequest>(data) {
        if let Some(rules) = &p.rules {
            let _ = scaivault_core::policy::validate_rules(rules);
        }
        if let Some(n) = &p.name {
            let _ = scaivault_core::policy::validate_name(n);
        }
    }
    if let Ok(v) = serde_json::from_slice::<Vec<String>>(data) {
        let _ = scaivault_core::scope::ScopeSet::parse_list(&v);
        for s in &v {
            let _ = scaivault_core::identity::IdentityId::parse(s);
        }
    }
});
