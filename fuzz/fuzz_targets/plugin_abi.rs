//! What the plugin host decodes from a plugin: its manifest, its module and the output of its
//! calls. Any bytes give a loaded plugin whose calls succeed or fail cleanly, or a clear
//! refusal; never a panic or a hang (the sandbox's fuel and deadline bound every call).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use scaivault_plugin_host::{Capability, Manifest, NoServices, PluginHost, sha256_hex};

fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(Capability::default_allowed()).expect("sandbox"))
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        // A manifest.
        Some((0, rest)) => {
            if let Ok(m) = Manifest::parse(rest) {
                assert!(m.check().is_ok());
            }
        }
        // A module, pinned to its own bytes so that only the ABI checks can refuse it.
        Some((_, module)) => {
            let manifest = serde_json::json!({
                "name": "fuzzed", "version": "0", "kind": "secret_types", "abi": "1.0",
                "wasm_sha256": sha256_hex(module),
                "limits": {"fuel": 1_000_000, "timeout_ms": 50, "memory_bytes": 1_048_576},
                "provides": {"secret_types": ["fuzzed"]}
            });
            let m = Manifest::parse(manifest.to_string().as_bytes()).expect("valid manifest");
            if host().add_external(m, module.to_vec()).is_ok() {
                let _ = host().call("fuzzed", "validate", &serde_json::json!({"data": {}}), Arc::new(NoServices));
                let _ = host().remove("fuzzed");
            }
        }
        None => {}
    }
});
