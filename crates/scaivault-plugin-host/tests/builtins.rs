//! The built-in plugins against real key material made by openssl and ssh-keygen.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use scaivault_core::ErrorCode;
use scaivault_plugin_host::{Capability, HostServices, NoServices, PluginHost};
use serde_json::{Value, json};

fn host() -> PluginHost {
    PluginHost::new(Capability::default_allowed()).unwrap()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate and its key, made by openssl with `keyargs`.
fn cert(dir: &Path, name: &str, keyargs: &[&str], days: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            days,
            "-subj",
            &format!("/CN={name}"),
        ])
        .args(keyargs)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt));
    (
        std::fs::read_to_string(crt).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

fn validate(h: &PluginHost, t: &str, data: Value) -> scaivault_core::Result<Option<String>> {
    h.validate_secret(t, &data.to_string(), Arc::new(NoServices))
}

fn field_error(r: scaivault_core::Result<Option<String>>, field: &str) -> String {
    let e = r.expect_err("must be rejected");
    assert_eq!(e.code, ErrorCode::ValidationError, "{}", e.message);
    e.details["fields"][field]
        .as_str()
        .unwrap_or_else(|| panic!("no fields.{field} in {}", e.details))
        .to_owned()
}

#[test]
fn certificates_of_each_key_kind_validate_and_give_their_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let h = host();
    let kinds: &[(&str, &[&str])] = &[
        ("rsa", &["-newkey", "rsa:2048"]),
        (
            "ec",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        ("ed", &["-newkey", "ed25519"]),
    ];
    for (name, args) in kinds {
        let (crt, key) = cert(dir.path(), name, args, "30");
        let expires = validate(&h, "certificate", json!({"cert_pem": crt, "key_pem": key}))
            .unwrap_or_else(|e| panic!("{name}: {}", e.message))
            .expect("an expiry");
        let want = Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
            .arg(dir.path().join(format!("{name}.crt")))
            .output()
            .unwrap();
        let want = String::from_utf8_lossy(&want.stdout).to_string();
        // openssl prints "notAfter=2026-12-28 10:00:00Z".
        let want = want
            .trim()
            .trim_start_matches("notAfter=")
            .replace(' ', "T");
        assert_eq!(expires, want, "{name}");
    }
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let h = host();
    let (crt_a, _) = cert(dir.path(), "a", &["-newkey", "rsa:2048"], "30");
    let (_, key_b) = cert(dir.path(), "b", &["-newkey", "rsa:2048"], "30");
    let (_, key_ec) = cert(
        dir.path(),
        "c",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "30",
    );
    let (crt_ec, _) = cert(
        dir.path(),
        "d",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "30",
    );
    let (_, key_ed) = cert(dir.path(), "e", &["-newkey", "ed25519"], "30");
    let (crt_ed, _) = cert(dir.path(), "f", &["-newkey", "ed25519"], "30");
    let msg = field_error(
        validate(
            &h,
            "certificate",
            json!({"cert_pem": crt_a, "key_pem": key_b}),
        ),
        "key_pem",
    );
    assert!(msg.contains("does not match"), "{msg}");
    let msg = field_error(
        validate(
            &h,
            "certificate",
            json!({"cert_pem": crt_ec, "key_pem": key_ec}),
        ),
        "key_pem",
    );
    assert!(msg.contains("does not match"), "{msg}");
    let msg = field_error(
        validate(
            &h,
            "certificate",
            json!({"cert_pem": crt_ed, "key_pem": key_ed}),
        ),
        "key_pem",
    );
    assert!(msg.contains("does not match"), "{msg}");
    let msg = field_error(
        validate(
            &h,
            "certificate",
            json!({"cert_pem": crt_a, "key_pem": key_ec}),
        ),
        "key_pem",
    );
    assert!(msg.contains("cannot belong"), "{msg}");
}

#[test]
fn malformed_certificates_are_rejected_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let h = host();
    let (crt, key) = cert(dir.path(), "x", &["-newkey", "rsa:2048"], "30");
    let cases = [
        (json!({"key_pem": key}), "cert_pem", "required"),
        (json!({"cert_pem": "hello"}), "cert_pem", "no CERTIFICATE"),
        (
            json!({"cert_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
            "cert_pem",
            "does not parse",
        ),
        (
            json!({"cert_pem": "-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n"}),
            "cert_pem",
            "base64",
        ),
        (
            json!({"cert_pem": crt.replace("-----END CERTIFICATE-----", "")}),
            "cert_pem",
            "not closed",
        ),
        (
            json!({"cert_pem": format!("{crt}{key}")}),
            "cert_pem",
            "PRIVATE KEY",
        ),
        (
            json!({"cert_pem": crt, "key_pem": "nothing"}),
            "key_pem",
            "no PRIVATE KEY",
        ),
    ];
    for (data, field, expect) in cases {
        let msg = field_error(validate(&h, "certificate", data), field);
        assert!(msg.contains(expect), "{field}: {msg}");
    }
    // A byte flipped inside the DER (not the base64 framing) must not panic the guest.
    let body: String = crt.lines().filter(|l| !l.starts_with("-----")).collect();
    for i in (0..body.len()).step_by(37) {
        let mut b = body.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            String::from_utf8(b).unwrap()
        );
        match validate(&h, "certificate", json!({"cert_pem": pem})) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.code, ErrorCode::ValidationError, "{}", e.message),
        }
    }
}

struct Future;
impl HostServices for Future {
    fn now_ms(&self) -> i64 {
        // 2200-01-01: every test certificate has expired by then.
        7_258_118_400_000
    }
}

#[test]
fn an_expired_certificate_is_rejected_on_the_engine_clock() {
    let dir = tempfile::tempdir().unwrap();
    let h = host();
    let (crt, _) = cert(dir.path(), "old", &["-newkey", "rsa:2048"], "1");
    let e = h
        .validate_secret(
            "certificate",
            &json!({"cert_pem": crt}).to_string(),
            Arc::new(Future),
        )
        .unwrap_err();
    assert!(
        e.details["fields"]["cert_pem"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn a_chain_must_be_in_issuing_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let h = host();
    let (ca, _) = cert(d, "ca", &["-newkey", "rsa:2048"], "30");
    run(Command::new("openssl")
        .args([
            "req", "-new", "-nodes", "-newkey", "rsa:2048", "-subj", "/CN=leaf",
        ])
        .arg("-keyout")
        .arg(d.join("leaf.key"))
        .arg("-out")
        .arg(d.join("leaf.csr")));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "10"])
        .arg("-in")
        .arg(d.join("leaf.csr"))
        .arg("-CA")
        .arg(d.join("ca.crt"))
        .arg("-CAkey")
        .arg(d.join("ca.key"))
        .arg("-CAcreateserial")
        .arg("-out")
        .arg(d.join("leaf.crt")));
    let leaf = std::fs::read_to_string(d.join("leaf.crt")).unwrap();
    let key = std::fs::read_to_string(d.join("leaf.key")).unwrap();
    validate(
        &h,
        "certificate",
        json!({"cert_pem": leaf, "key_pem": key, "chain_pem": ca}),
    )
    .unwrap();
    validate(
        &h,
        "certificate",
        json!({"cert_pem": format!("{leaf}{ca}")}),
    )
    .unwrap();
    let (other, _) = cert(d, "other", &["-newkey", "rsa:2048"], "30");
    let msg = field_error(
        validate(
            &h,
            "certificate",
            json!({"cert_pem": leaf, "chain_pem": other}),
        ),
        "chain_pem",
    );
    assert!(msg.contains("issuing order"), "{msg}");
}

fn ssh_keygen(dir: &Path, name: &str, kind: &str) -> (String, String) {
    let path = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "test@host", "-f"])
        .arg(&path));
    (
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(path.with_extension("pub")).unwrap(),
    )
}

#[test]
fn ssh_keys_validate_and_mismatched_pairs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let h = host();
    for kind in ["ed25519", "rsa", "ecdsa"] {
        let (private, public) = ssh_keygen(dir.path(), kind, kind);
        validate(
            &h,
            "ssh_key",
            json!({"private_key": private, "public_key": public}),
        )
        .unwrap_or_else(|e| panic!("{kind}: {}", e.message));
        validate(&h, "ssh_key", json!({"public_key": public})).unwrap();
    }
    let (private, _) = ssh_keygen(dir.path(), "one", "ed25519");
    let (_, public) = ssh_keygen(dir.path(), "two", "ed25519");
    let msg = field_error(
        validate(
            &h,
            "ssh_key",
            json!({"private_key": private, "public_key": public}),
        ),
        "private_key",
    );
    assert!(msg.contains("does not belong"), "{msg}");
    let msg = field_error(
        validate(&h, "ssh_key", json!({"public_key": "ssh-ed25519"})),
        "public_key",
    );
    assert!(msg.contains("no key"), "{msg}");
    let msg = field_error(
        validate(
            &h,
            "ssh_key",
            json!({"public_key": "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA=="}),
        ),
        "public_key",
    );
    assert!(
        msg.contains("another type") || msg.contains("truncated"),
        "{msg}"
    );
    field_error(
        validate(&h, "ssh_key", json!({"comment": "x"})),
        "private_key",
    );
}

#[test]
fn kv_and_api_key_shapes() {
    let h = host();
    validate(&h, "kv", json!({"a": "b", "n": 1, "t": true})).unwrap();
    let e = validate(&h, "kv", json!({"a": {"nested": 1}})).unwrap_err();
    assert!(e.details["fields"]["data.a"].is_string());
    validate(&h, "json", json!({"a": {"nested": [1, 2]}})).unwrap();
    validate(
        &h,
        "api_key",
        json!({"key": "sk_live_123", "endpoint": "https://api"}),
    )
    .unwrap();
    field_error(validate(&h, "api_key", json!({"endpoint": "x"})), "key");
    validate(
        &h,
        "api_key",
        json!({"secret_key": "sk_live_123", "publishable_key": "pk_1"}),
    )
    .unwrap();
    field_error(
        validate(&h, "api_key", json!({"access_token": ""})),
        "access_token",
    );
    let out = h
        .call(
            "types",
            "redact",
            &json!({"type": "api_key", "data": {"secret_key": "s", "endpoint": "e"}}),
            Arc::new(NoServices),
        )
        .unwrap();
    assert_eq!(out, json!({"secret_fields": ["secret_key"]}));
    field_error(validate(&h, "api_key", json!({"key": "a\nb"})), "key");
    let e = validate(&h, "nonsense", json!({"a": "b"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidSecretType);
}

#[test]
fn redact_names_the_secret_fields() {
    let h = host();
    let out = h
        .call(
            "types",
            "redact",
            &json!({"type": "certificate", "data": {"cert_pem": "c", "key_pem": "k"}}),
            Arc::new(NoServices),
        )
        .unwrap();
    assert_eq!(out, json!({"secret_fields": ["key_pem"]}));
    let out = h
        .call(
            "types",
            "redact",
            &json!({"type": "kv", "data": {"a": "1", "b": "2"}}),
            Arc::new(NoServices),
        )
        .unwrap();
    assert_eq!(out, json!({"secret_fields": ["a", "b"]}));
}

fn generate(h: &PluginHost, g: &str, config: Value) -> scaivault_core::Result<Value> {
    h.generate(g, &config, Arc::new(NoServices))
}

#[test]
fn random_generator_honours_length_charset_and_classes() {
    let h = host();
    for _ in 0..20 {
        let v = generate(
            &h,
            "random",
            json!({"length": 12, "charset": "ascii", "require_upper": true,
            "require_lower": true, "require_digit": true, "require_symbol": true}),
        )
        .unwrap();
        let s = v["value"].as_str().unwrap();
        assert_eq!(s.chars().count(), 12);
        assert!(
            s.chars().any(|c| c.is_ascii_uppercase()) && s.chars().any(|c| c.is_ascii_lowercase())
        );
        assert!(
            s.chars().any(|c| c.is_ascii_digit()) && s.chars().any(|c| !c.is_ascii_alphanumeric())
        );
    }
    let v = generate(&h, "random", json!({"length": 64, "charset": "numeric"})).unwrap();
    assert!(
        v["value"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_digit())
    );
    let a = generate(&h, "random", json!({})).unwrap();
    let b = generate(&h, "random", json!({})).unwrap();
    assert_eq!(a["value"].as_str().unwrap().len(), 32);
    assert_ne!(a, b);
    for bad in [
        json!({"length": 0}),
        json!({"length": 100000}),
        json!({"charset": "emoji"}),
        json!({"charset": "numeric", "require_upper": true}),
        json!({"length": 2, "require_upper": true, "require_lower": true, "require_digit": true}),
    ] {
        let e = generate(&h, "random", bad.clone()).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError, "{bad}");
    }
}

#[test]
fn hex_uuid_template_and_static() {
    let h = host();
    let hex = generate(&h, "hex", json!({"length": 31})).unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        hex.len() == 31
            && hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    for (version, nibble) in [(4, '4'), (7, '7')] {
        let u = generate(&h, "uuid", json!({"version": version})).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert_eq!(parts[2].chars().next(), Some(nibble));
        assert!(matches!(
            parts[3].chars().next(),
            Some('8' | '9' | 'a' | 'b')
        ));
    }
    let t = generate(
        &h,
        "template",
        json!({"template": "pk_{{hex:8}}_{{random:4}}_{{uuid}}_{{timestamp}}"}),
    )
    .unwrap();
    let s = t["value"].as_str().unwrap();
    let parts: Vec<&str> = s.split('_').collect();
    assert_eq!(parts[0], "pk");
    assert_eq!(parts[1].len(), 8);
    assert_eq!(parts[2].len(), 4);
    assert_eq!(parts[3].len(), 36);
    assert!(parts[4].parse::<i64>().unwrap() > 1_700_000_000);
    for bad in ["{{nope}}", "{{random:x}}", "{{hex", "{{random:99999}}"] {
        assert_eq!(
            generate(&h, "template", json!({"template": bad}))
                .unwrap_err()
                .code,
            ErrorCode::ValidationError,
            "{bad}"
        );
    }
    assert_eq!(
        generate(&h, "static", json!({"value": "fixed"})).unwrap()["value"],
        "fixed"
    );
    assert_eq!(
        generate(&h, "nope", json!({})).unwrap_err().code,
        ErrorCode::ValidationError
    );
    for (g, bad) in [
        ("rsa_keypair", json!({"bits": 1024})),
        ("rsa_keypair", json!({"bits": 4096})),
        ("ec_keypair", json!({"curve": "P-521"})),
        ("ssh_keypair", json!({"key_type": "dsa"})),
        ("ssh_keypair", json!({"key_type": "ed25519", "bits": 4096})),
        ("bcrypt_hash", json!({"rounds": 4})),
        ("bcrypt_hash", json!({"length": 73})),
        // A misspelt setting is refused, not ignored into another key than asked for.
        ("ssh_keypair", json!({"type": "rsa"})),
        ("rsa_keypair", json!({"bit": 3072})),
        ("bcrypt_hash", json!({"cost": 14})),
        ("random", json!({"lenght": 8})),
        ("ssh_keypair", json!({"comment": "c".repeat(257)})),
    ] {
        assert_eq!(
            generate(&h, g, bad.clone()).unwrap_err().code,
            ErrorCode::ValidationError,
            "{g} {bad}"
        );
    }
}

/// Runs `openssl ARGS` with `input` on stdin; its stdout.
fn openssl(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What OpenSSL makes of a generated pair: the private key checks out, its public half is the
/// public key given, and the text names the algorithm and size.
fn check_pem_pair(v: &Value, algorithm: &str, size: &str) {
    let private = v["values"]["private_key"].as_str().unwrap();
    let public = v["values"]["public_key"].as_str().unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{v}");
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{v}");
    let derived = openssl(&["pkey", "-pubout"], private);
    assert_eq!(derived, public);
    let text = openssl(&["pkey", "-pubin", "-noout", "-text"], public);
    assert!(text.contains(size), "{algorithm} {size}: {text}");
    if algorithm == "rsa" {
        openssl(&["pkey", "-noout", "-check"], private);
    }
}

#[test]
fn rsa_and_ec_keypairs_are_keys_openssl_accepts() {
    let h = host();
    let v = generate(&h, "rsa_keypair", json!({"bits": 3072})).unwrap();
    check_pem_pair(&v, "rsa", "Public-Key: (3072 bit)");
    let v = generate(&h, "rsa_keypair", json!({})).unwrap();
    check_pem_pair(&v, "rsa", "Public-Key: (2048 bit)");
    for (curve, name) in [("P-256", "prime256v1"), ("P-384", "secp384r1")] {
        let v = generate(&h, "ec_keypair", json!({"curve": curve})).unwrap();
        check_pem_pair(&v, "ec", name);
    }
    let v = generate(&h, "ec_keypair", json!({})).unwrap();
    check_pem_pair(&v, "ec", "prime256v1");
    // Two runs, two keys.
    let a = generate(&h, "ec_keypair", json!({})).unwrap();
    assert_ne!(a["values"]["private_key"], v["values"]["private_key"]);
}

#[test]
fn bcrypt_hash_gives_a_password_and_a_hash_that_verifies_it() {
    let h = host();
    let v = generate(
        &h,
        "bcrypt_hash",
        json!({"length": 72, "charset": "ascii", "rounds": 11}),
    )
    .unwrap();
    let password = v["values"]["password"].as_str().unwrap();
    let hash = v["values"]["hash"].as_str().unwrap();
    assert_eq!(password.len(), 72);
    assert!(hash.starts_with("$2b$11$") && hash.len() == 60, "{hash}");
    // Checked by the `bcrypt` crate's own parser and verifier, built for the host (the
    // guest has only its raw function and formats the string itself).
    assert!(bcrypt::verify(password, hash).unwrap(), "{hash}");
    assert!(!bcrypt::verify("not-the-password", hash).unwrap());
    let again = generate(&h, "bcrypt_hash", json!({})).unwrap();
    assert!(
        again["values"]["hash"]
            .as_str()
            .unwrap()
            .starts_with("$2b$10$")
    );
    assert_ne!(again["values"]["password"], v["values"]["password"]);
}

#[test]
fn ssh_keypair_is_a_real_openssh_key() {
    let h = host();
    for config in [
        json!({"comment": "deploy@billing"}),
        json!({"key_type": "rsa", "bits": 2048, "comment": "deploy@billing"}),
    ] {
        ssh_key_checks_out(&h, config);
    }
}

fn ssh_key_checks_out(h: &PluginHost, config: Value) {
    let dir = tempfile::tempdir().unwrap();
    let v = generate(h, "ssh_keypair", config.clone()).unwrap();
    let private = v["values"]["private_key"].as_str().unwrap();
    let public = v["values"]["public_key"].as_str().unwrap();
    let path = dir.path().join("id");
    std::fs::write(&path, private).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let derived = String::from_utf8(out.stdout).unwrap();
    assert_eq!(derived.trim(), public, "{config}");
    let want = if config["key_type"] == "rsa" {
        "ssh-rsa "
    } else {
        "ssh-ed25519 "
    };
    assert!(public.starts_with(want), "{public}");
    // And the type plugin accepts what the generator made.
    validate(
        h,
        "ssh_key",
        json!({"private_key": private, "public_key": public}),
    )
    .unwrap();
}

#[test]
fn batch_validation_keeps_order_and_reports_each_item() {
    let h = host();
    let mut items: Vec<(String, Value)> = (0..600)
        .map(|i| {
            (
                "kv".to_owned(),
                json!({ format!("VAR_{i}"): format!("value-{i}") }),
            )
        })
        .collect();
    items[7] = ("kv".into(), json!({"nested": {"no": 1}}));
    items[300] = ("api_key".into(), json!({"endpoint": "x"}));
    items[599] = ("nonsense".into(), json!({"a": "b"}));
    let texts: Vec<(String, String)> = items
        .iter()
        .map(|(t, d)| (t.clone(), d.to_string()))
        .collect();
    let pairs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(t, d)| (t.as_str(), d.as_str()))
        .collect();
    let out = h.validate_secrets(&pairs, Arc::new(NoServices));
    assert_eq!(out.len(), 600);
    for (i, r) in out.iter().enumerate() {
        match i {
            7 | 300 => assert_eq!(
                r.as_ref().unwrap_err().code,
                ErrorCode::ValidationError,
                "{i}"
            ),
            599 => assert_eq!(r.as_ref().unwrap_err().code, ErrorCode::InvalidSecretType),
            _ => assert!(r.is_ok(), "{i}: {:?}", r),
        }
    }
    assert!(out[7].as_ref().unwrap_err().details["fields"]["data.nested"].is_string());
}

/// Data that is not the JSON text of an object never reaches a plugin's input, so it cannot
/// reshape the envelope it is spliced into; in a batch, only that item fails.
#[test]
fn data_that_is_not_a_json_object_is_refused_before_the_sandbox() {
    let h = host();
    for bad in [
        r#"{"k":"v"},"type":"json""#,
        r#"["k"]"#,
        "1",
        "",
        r#"{"k": "unterminated}"#,
    ] {
        let e = h
            .validate_secret("kv", bad, Arc::new(NoServices))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError, "{bad}");
        assert!(!e.message.contains("unterminated"), "the data was echoed");
    }
    let out = h.validate_secrets(
        &[
            ("kv", r#"{"a":"b"}"#),
            ("kv", r#"{"a":"b"},{"#),
            ("kv", r#"{"c":"d"}"#),
        ],
        Arc::new(NoServices),
    );
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    assert_eq!(
        out[1].as_ref().unwrap_err().code,
        ErrorCode::ValidationError
    );
}
