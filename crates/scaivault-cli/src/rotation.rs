//! `scaivault rotation …`

use crate::target::Method;
use scaivault_core::{Error, ErrorCode};
use serde_json::{Value, json};

use crate::args::RotationCmd;
use crate::output::{Out, print_table, text as s};
use crate::target::{CliResult, VaultClient, q, secret_path, seg};

/// `--backend-config` pairs as a JSON object. As `vault write` does, `key=@FILE` takes the value
/// from a file (one trailing newline dropped) and `key=-` from stdin, so a signing secret or
/// password need not sit in the command line, where `ps` and shell history would show it; an
/// inline value for a key named like a secret gets a warning saying so.
fn backend_settings(pairs: &[String]) -> Result<serde_json::Map<String, Value>, Error> {
    let mut cfg = serde_json::Map::new();
    let mut stdin_used = false;
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::new(
                ErrorCode::ValidationError,
                "--backend-config takes key=value (one was given without `=`)",
            )
        })?;
        let value = if v == "-" {
            if std::mem::replace(&mut stdin_used, true) {
                return Err(Error::new(
                    ErrorCode::ValidationError,
                    "only one --backend-config value can be read from stdin (`key=-`)",
                ));
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Error::invalid_request(format!("cannot read {k} from stdin: {e}")))?;
            trim_one_newline(text)
        } else if let Some(file) = v.strip_prefix('@') {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::invalid_request(format!("cannot read {k} from {file}: {e}")))?;
            trim_one_newline(text)
        } else {
            if looks_secret(k) {
                eprintln!(
                    "warning: --backend-config {k}=… puts a secret in the command line (visible to `ps` and kept in shell history); use {k}=@FILE or {k}=- to read it from a file or stdin"
                );
            }
            v.to_owned()
        };
        cfg.insert(k.to_owned(), json!(value));
    }
    Ok(cfg)
}

fn trim_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "password", "token", "key"]
        .iter()
        .any(|w| key.contains(w))
        && !key.ends_with("_path")
}

/// Prints what a rotate-now did, per secret; a failed rotation makes the command fail.
pub(crate) fn report_rotated(res: &Value, out: &Out) -> CliResult<()> {
    out.emit(res, || {
        for r in res["rotated"].as_array().cloned().unwrap_or_default() {
            match r["status"].as_str() {
                Some("completed") => println!(
                    "{}: version {} → {}",
                    s(&r["secret_path"]),
                    r["old_version"],
                    r["new_version"]
                ),
                Some("pending") => println!(
                    "{}: in progress ({}); next attempt {}",
                    s(&r["secret_path"]),
                    s(&r["rotation"]["last_error"]),
                    s(&r["rotation"]["next_attempt_at"])
                ),
                _ => eprintln!(
                    "{}: rotation failed: {} (the current value is unchanged)",
                    s(&r["secret_path"]),
                    s(&r["error"])
                ),
            }
        }
    });
    let failed = res["rotated"]
        .as_array()
        .is_some_and(|a| a.iter().any(|r| r["status"] == "failed"));
    if failed {
        return Err(Error::new(ErrorCode::PluginFailed, "a rotation failed").into());
    }
    Ok(())
}

pub async fn run(target: &VaultClient, cmd: RotationCmd, out: &Out) -> CliResult<()> {
    match cmd {
        RotationCmd::Create {
            name,
            name_flag,
            interval,
            grace_period,
            auto_generate,
            warn_before,
            fields,
            description,
            secret_policy,
            backend,
            backend_config,
        } => {
            let name = name.or(name_flag);
            let mut body =
                json!({ "name": name, "interval": interval, "auto_generate": auto_generate });
            if let Some(b) = backend {
                body["backend"] = json!(b);
            }
            if !backend_config.is_empty() {
                body["backend_config"] = Value::Object(backend_settings(&backend_config)?);
            }
            for (k, v) in [
                ("grace_period", grace_period),
                ("warn_before", warn_before),
                ("description", description),
                ("secret_policy_id", secret_policy),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if !fields.is_empty() {
                body["fields"] = json!(fields);
            }
            let res = target
                .call(Method::POST, "/v1/rotation/policies", Some(&body))
                .await?;
            out.emit(&res, || {
                println!("{}", s(&res["id"]));
                eprintln!(
                    "every {} ({} grace){}",
                    s(&res["interval"]),
                    s(&res["grace_period"]),
                    if res["auto_generate"] == json!(true) {
                        ", values generated by the vault"
                    } else {
                        ""
                    }
                );
            });
        }
        RotationCmd::List => {
            let res = target.all_pages("/v1/rotation/policies", "data").await?;
            out.emit(&res, || {
                let rows = res["data"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        vec![
                            s(&p["id"]),
                            s(&p["interval"]),
                            s(&p["grace_period"]),
                            s(&p["auto_generate"]),
                            s(&p["secrets_count"]),
                            s(&p["is_active"]),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "INTERVAL", "GRACE", "AUTO", "SECRETS", "ACTIVE"],
                    rows,
                );
            });
        }
        RotationCmd::Get { id } => {
            let res = target
                .call(
                    Method::GET,
                    &format!("/v1/rotation/policies/{}", seg(&id)),
                    None,
                )
                .await?;
            out.emit(&res, || {
                println!("{}", serde_json::to_string_pretty(&res).unwrap_or_default())
            });
        }
        RotationCmd::Delete { id } => {
            {
                target
                    .call(
                        Method::DELETE,
                        &format!("/v1/rotation/policies/{}", seg(&id)),
                        None,
                    )
                    .await?;
            }
            out.emit(&json!({ "deleted": id }), || {
                println!("Deleted {id}; its secrets are detached")
            });
        }
        RotationCmd::Enable { id } => toggle(target, &id, true, out).await?,
        RotationCmd::Disable { id } => toggle(target, &id, false, out).await?,
        RotationCmd::Assign { id, path } => {
            let res = target
                .call(
                    Method::POST,
                    &format!("/v1/rotation/policies/{}/secrets", seg(&id)),
                    Some(&json!({ "secret_path": path })),
                )
                .await?;
            out.emit(&res, || {
                println!(
                    "Attached {path} to {}; next rotation {}",
                    s(&res["policy_id"]),
                    s(&res["next_rotation_at"])
                )
            });
        }
        RotationCmd::Unassign { id, path } => {
            {
                target
                    .call(
                        Method::DELETE,
                        &format!(
                            "/v1/rotation/policies/{}/secrets/{}",
                            seg(&id),
                            secret_path(&path)?
                        ),
                        None,
                    )
                    .await?;
            }
            out.emit(&json!({ "detached": path }), || {
                println!("Detached {path} from {id}")
            });
        }
        RotationCmd::Rotate { id, path } => {
            let res = {
                let body = path
                    .as_ref()
                    .map(|p| json!({ "secret_path": p }))
                    .unwrap_or(json!({}));
                target
                    .call(
                        Method::POST,
                        &format!("/v1/rotation/policies/{}/rotate", seg(&id)),
                        Some(&body),
                    )
                    .await?
            };
            report_rotated(&res, out)?;
        }
        RotationCmd::Status { path } => {
            let res = {
                let f = path
                    .as_ref()
                    .map(|p| format!("?path={}", q(p)))
                    .unwrap_or_default();
                target
                    .call(Method::GET, &format!("/v1/rotation/status{f}"), None)
                    .await?
            };
            out.emit(&res, || {
                let rows = res["secrets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|r| {
                        vec![
                            s(&r["secret_path"]),
                            s(&r["policy_id"]),
                            s(&r["version"]),
                            s(&r["last_rotated_at"]),
                            s(&r["next_rotation_at"]),
                            match r["rotation"]["state"].as_str() {
                                Some("failed") => {
                                    format!("failed: {}", s(&r["rotation"]["last_error"]))
                                }
                                Some(state) => state.replace('_', " "),
                                None if r["due"] == json!(true) => "due".into(),
                                None => String::new(),
                            },
                        ]
                    })
                    .collect();
                print_table(
                    &["PATH", "POLICY", "VERSION", "LAST ROTATED", "NEXT", "STATE"],
                    rows,
                );
            });
        }
    }
    Ok(())
}

async fn toggle(target: &VaultClient, id: &str, on: bool, out: &Out) -> CliResult<()> {
    let verb = if on { "enable" } else { "disable" };
    let res: Value = target
        .call(
            Method::POST,
            &format!("/v1/rotation/policies/{}/{verb}", seg(id)),
            None,
        )
        .await?;
    out.emit(&res, || println!("{id} {verb}d"));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixture files
mod tests {
    use super::*;

    #[test]
    fn backend_settings_read_files_and_warn_only_for_inline_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sig");
        std::fs::write(&file, "s3cret-signing-key-0123\n").unwrap();
        let cfg = backend_settings(&[
            "url=http://127.0.0.1:1/hook".into(),
            format!("signing_secret=@{}", file.display()),
        ])
        .unwrap();
        assert_eq!(cfg["signing_secret"], "s3cret-signing-key-0123");
        assert_eq!(cfg["url"], "http://127.0.0.1:1/hook");
        let missing = backend_settings(&["signing_secret=@/nonexistent/sig".into()]).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/sig"),
            "{missing}"
        );
        let bare = backend_settings(&["signing_secret".into()]).unwrap_err();
        assert_eq!(bare.code, ErrorCode::ValidationError);
        assert!(looks_secret("signing_secret") && looks_secret("API_KEY"));
        assert!(!looks_secret("admin_secret_path") && !looks_secret("host"));
    }
}
