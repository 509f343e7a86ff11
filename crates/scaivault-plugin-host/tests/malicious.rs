//! Purpose-built hostile guests (WAT, assembled in the test): each must fail its own call with
//! a clear reason, within its limits, while other plugins keep working.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scaivault_core::ErrorCode;
use scaivault_plugin_host::{Capability, Manifest, NoServices, PluginHost, sha256_hex};
use serde_json::json;

/// A minimal ABI v1 module whose `sv_call` body is `body`; `extra` adds module fields.
fn guest(body: &str, extra: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
          (import "scaivault" "output" (func $output (param i32 i32)))
          {extra}
          (memory (export "memory") 2)
          (global $heap (mut i32) (i32.const 4096))
          (data (i32.const 0) "{{\"ok\":true}}")
          (func (export "scaivault_abi_v1") (result i32) (i32.const 0))
          (func (export "sv_alloc") (param $n i32) (result i32) (local $p i32)
            (local.set $p (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (local.get $n)))
            (local.get $p))
          (func $recurse (param i32) (result i32)
            (call $recurse (i32.add (local.get 0) (i32.const 1))))
          (func (export "sv_call") (param i32 i32 i32 i32) (result i32)
            {body}))"#
    );
    wat::parse_str(text).expect("test guest assembles")
}

fn manifest(name: &str, bytes: &[u8], limits: serde_json::Value, caps: &[&str]) -> Manifest {
    Manifest::parse(
        &serde_json::to_vec(&json!({
            "name": name, "version": "0.0.1", "kind": "secret_types", "abi": "1.0",
            "wasm_sha256": sha256_hex(bytes), "limits": limits, "capabilities": caps,
            "provides": {"secret_types": [name.replace('-', "_")]}
        }))
        .unwrap(),
    )
    .unwrap()
}

fn host() -> PluginHost {
    PluginHost::new(Capability::default_allowed()).unwrap()
}

const OK_BODY: &str = "(call $output (i32.const 0) (i32.const 11)) (i32.const 0)";

/// Installs a guest and calls it once; returns the error's (code, reason, message).
fn call_fails(body: &str, extra: &str, limits: serde_json::Value) -> (ErrorCode, String, String) {
    let h = host();
    let bytes = guest(body, extra);
    h.add_external(manifest("hostile", &bytes, limits, &[]), bytes)
        .expect("the module itself is well-formed");
    let err = h
        .call("hostile", "validate", &json!({}), Arc::new(NoServices))
        .expect_err("the call must fail");
    let reason = err.details["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (err.code, reason, err.message)
}

#[test]
fn a_well_behaved_guest_works() {
    let h = host();
    let bytes = guest(OK_BODY, "");
    h.add_external(manifest("fine", &bytes, json!({}), &[]), bytes)
        .unwrap();
    let out = h
        .call("fine", "validate", &json!({}), Arc::new(NoServices))
        .unwrap();
    assert_eq!(out, json!({"ok": true}));
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let (code, reason, _) = call_fails(
        "(loop $l (br $l)) (i32.const 0)",
        "",
        json!({"fuel": 1_000_000}),
    );
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::PluginFailed, "fuel_exhausted")
    );
}

#[test]
fn infinite_loop_with_plenty_of_fuel_hits_the_deadline() {
    let started = Instant::now();
    let (code, reason, _) = call_fails(
        "(loop $l (br $l)) (i32.const 0)",
        "",
        json!({"fuel": 10_000_000_000u64, "timeout_ms": 50}),
    );
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::PluginFailed, "deadline_exceeded")
    );
    // A generous bound: the deadline is 50 ms; this only catches a deadline that never fires.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn memory_bomb_is_stopped_at_the_cap() {
    let (code, reason, _) = call_fails(
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i32.const 0)",
        "",
        json!({"memory_bytes": 4_194_304}),
    );
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::PluginFailed, "memory_limit")
    );
}

#[test]
fn runaway_recursion_overflows_the_stack() {
    let (code, reason, _) = call_fails("(call $recurse (i32.const 0))", "", json!({}));
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::PluginFailed, "stack_overflow")
    );
}

#[test]
fn a_trap_fails_the_call() {
    let (code, reason, msg) = call_fails("unreachable", "", json!({}));
    assert_eq!((code, reason.as_str()), (ErrorCode::PluginFailed, "trap"));
    assert!(msg.contains("unreachable"), "{msg}");
}

#[test]
fn huge_output_is_refused() {
    let (code, reason, _) = call_fails(
        "(call $output (i32.const 0) (i32.const 100000)) (i32.const 0)",
        "",
        json!({"max_output_bytes": 65536}),
    );
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::PluginFailed, "output_too_large")
    );
}

#[test]
fn output_outside_memory_traps() {
    let (code, _, _) = call_fails(
        "(call $output (i32.const 131000) (i32.const 60000)) (i32.const 0)",
        "",
        json!({}),
    );
    assert_eq!(code, ErrorCode::PluginFailed);
}

#[test]
fn output_never_set_is_an_error() {
    let (code, reason, msg) = call_fails("(i32.const 0)", "", json!({}));
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::PluginFailed, "bad_output")
    );
    assert!(msg.contains("without setting an output"), "{msg}");
}

#[test]
fn an_undefined_status_is_an_error() {
    let (code, reason, _) = call_fails(
        "(call $output (i32.const 0) (i32.const 11)) (i32.const 7)",
        "",
        json!({}),
    );
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::PluginFailed, "bad_output")
    );
}

fn install_fails(bytes: Vec<u8>, m: Manifest, granted: BTreeSet<Capability>) -> String {
    let h = PluginHost::new(granted).unwrap();
    let err = h.add_external(m, bytes).expect_err("must be refused");
    assert_eq!(err.code, ErrorCode::InvalidPlugin, "{}", err.message);
    assert!(h.get("bad").is_err(), "nothing is added on failure");
    err.message
}

#[test]
fn an_import_the_manifest_did_not_declare_is_refused() {
    let bytes = guest(
        OK_BODY,
        r#"(import "scaivault" "http" (func (param i32 i32) (result i32)))"#,
    );
    let m = manifest("bad", &bytes, json!({}), &[]);
    let msg = install_fails(bytes, m, Capability::default_allowed());
    assert!(
        msg.contains("does not declare the http capability"),
        "{msg}"
    );
}

#[test]
fn a_declared_capability_the_operator_did_not_allow_is_refused() {
    let bytes = guest(
        OK_BODY,
        r#"(import "scaivault" "http" (func (param i32 i32) (result i32)))"#,
    );
    let m = manifest("bad", &bytes, json!({}), &["http"]);
    let msg = install_fails(bytes, m, Capability::default_allowed());
    assert!(msg.contains("operator has not allowed"), "{msg}");
}

#[test]
fn wasi_and_unknown_imports_are_refused() {
    let bytes = guest(
        OK_BODY,
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
    );
    let m = manifest("bad", &bytes, json!({}), &[]);
    assert!(install_fails(bytes, m, Capability::default_allowed()).contains("no WASI"));
    let bytes = guest(OK_BODY, r#"(import "scaivault" "exec" (func))"#);
    let m = manifest("bad", &bytes, json!({}), &[]);
    assert!(install_fails(bytes, m, Capability::default_allowed()).contains("does not define"));
}

#[test]
fn a_wrong_hash_is_refused() {
    let bytes = guest(OK_BODY, "");
    let other = guest("(i32.const 0)", "");
    let m = manifest("bad", &other, json!({}), &[]);
    let msg = install_fails(bytes, m, Capability::default_allowed());
    assert!(
        msg.contains("does not match the manifest's wasm_sha256"),
        "{msg}"
    );
}

#[test]
fn a_garbage_file_is_refused() {
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let m = manifest("bad", &bytes, json!({}), &[]);
    let msg = install_fails(bytes, m, Capability::default_allowed());
    assert!(msg.contains("not a valid WebAssembly module"), "{msg}");
}

#[test]
fn other_abis_and_missing_exports_are_refused() {
    let v2 = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "scaivault_abi_v2") (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let m = manifest("bad", &v2, json!({}), &[]);
    let msg = install_fails(v2, m, Capability::default_allowed());
    assert!(msg.contains("ABI v2"), "{msg}");

    let minor9 = wat::parse_str(
        r#"(module (import "scaivault" "output" (func (param i32 i32)))
            (memory (export "memory") 1)
            (func (export "scaivault_abi_v1") (result i32) (i32.const 9))
            (func (export "sv_alloc") (param i32) (result i32) (i32.const 0))
            (func (export "sv_call") (param i32 i32 i32 i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let m = manifest("bad", &minor9, json!({}), &[]);
    assert!(install_fails(minor9, m, Capability::default_allowed()).contains("v1.9"));

    let no_call = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "scaivault_abi_v1") (result i32) (i32.const 0))
            (func (export "sv_alloc") (param i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let m = manifest("bad", &no_call, json!({}), &[]);
    assert!(install_fails(no_call, m, Capability::default_allowed()).contains("sv_call"));
}

#[test]
fn a_start_function_that_never_returns_is_bounded() {
    let bytes = guest(OK_BODY, "(func $spin (loop $l (br $l))) (start $spin)");
    let m = manifest("bad", &bytes, json!({"fuel": 1_000_000}), &[]);
    let h = host();
    let err = h.add_external(m, bytes).expect_err("refused");
    assert!(err.message.contains("fuel"), "{}", err.message);
}

/// While hostile calls spin until their deadline, calls to a healthy plugin keep completing:
/// every healthy call finishes before the hostile ones do.
#[test]
fn other_calls_keep_working_during_and_after_hostile_calls() {
    let h = Arc::new(host());
    let bad = guest("(loop $l (br $l)) (i32.const 0)", "");
    h.add_external(
        manifest(
            "spinner",
            &bad,
            json!({"fuel": 10_000_000_000u64, "timeout_ms": 1500}),
            &[],
        ),
        bad,
    )
    .unwrap();
    let good = guest(OK_BODY, "");
    h.add_external(manifest("fine", &good, json!({}), &[]), good)
        .unwrap();

    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            std::thread::spawn(move || {
                let r = h.call("spinner", "validate", &json!({}), Arc::new(NoServices));
                (r.is_err(), Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut last_good = Instant::now();
    for _ in 0..200 {
        h.call("fine", "validate", &json!({}), Arc::new(NoServices))
            .unwrap();
        last_good = Instant::now();
    }
    for s in spinners {
        let (failed, ended) = s.join().unwrap();
        assert!(failed);
        assert!(
            last_good < ended,
            "healthy calls waited for the hostile ones"
        );
    }
    for _ in 0..50 {
        h.call("fine", "validate", &json!({}), Arc::new(NoServices))
            .unwrap();
    }
}

/// Collects what the plugin host logs, to look for values in it.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plugin that logs its whole input and names the secret in its error: neither the log
/// line nor the error that reaches a client holds the value, and the rest of both survives.
#[test]
fn a_plugin_that_echoes_secret_values_has_them_redacted() {
    let error = r#"{"code":"bad","message":"leaked hunter2-secret here","fields":{"password":"was hunter2-secret"}}"#;
    let bytes = guest(
        &format!(
            "(call $log (i32.const 2) (local.get 2) (local.get 3))
             (call $output (i32.const 100) (i32.const {}))
             (i32.const 1)",
            error.len()
        ),
        &format!(
            r#"(import "scaivault" "log" (func $log (param i32 i32 i32)))
               (data (i32.const 100) "{}")"#,
            error.replace('"', "\\\"")
        ),
    );
    let h = host();
    h.add_external(manifest("echo", &bytes, json!({}), &[]), bytes)
        .unwrap();
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let err = tracing::subscriber::with_default(subscriber, || {
        h.call(
            "echo",
            "validate",
            &json!({"data": {"password": "hunter2-secret", "user": "al"}}),
            Arc::new(NoServices),
        )
        .expect_err("the plugin reports an error")
    });
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("password") && logged.contains("[redacted]"),
        "{logged}"
    );
    assert!(!logged.contains("hunter2-secret"), "{logged}");
    let shown = format!("{} {}", err.message, err.details);
    assert!(shown.contains("leaked [redacted] here"), "{shown}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
}

/// The same through a bulk validation: no value of the batch is left in any item's error.
#[test]
fn batch_validation_errors_are_redacted_per_item() {
    let out = r#"{"results":[{"error":{"code":"bad","message":"bad value hunter2-secret"}},{"error":{"code":"bad","message":"bad value hunter2-secret"}}]}"#;
    let bytes = guest(
        &format!(
            "(call $output (i32.const 100) (i32.const {})) (i32.const 0)",
            out.len()
        ),
        &format!(r#"(data (i32.const 100) "{}")"#, out.replace('"', "\\\"")),
    );
    let h = host();
    h.add_external(manifest("echo-batch", &bytes, json!({}), &[]), bytes)
        .unwrap();
    let results = h.validate_secrets(
        &[
            ("echo_batch", r#"{"password": "hunter2-secret"}"#),
            ("echo_batch", r#"{"password": "another-one"}"#),
        ],
        Arc::new(NoServices),
    );
    let first = results[0].as_ref().unwrap_err();
    assert!(
        first.message.contains("bad value [redacted]"),
        "{}",
        first.message
    );
    let second = results[1].as_ref().unwrap_err();
    assert!(
        second.message.contains("bad value [redacted]"),
        "{}",
        second.message
    );
}
