//! `scaivault plugins …`

use crate::target::Method;
use base64::Engine as _;
use scaivault_core::{Error, ErrorCode};
use serde_json::{Map, Value, json};

use crate::args::PluginsCmd;
use crate::output::{Out, print_table, text as s};
use crate::target::{CliResult, VaultClient, seg};

pub async fn run(target: &VaultClient, cmd: PluginsCmd, out: &Out) -> CliResult<()> {
    match cmd {
        PluginsCmd::List => {
            let res = target.call(Method::GET, "/v1/plugins", None).await?;
            out.emit(&res, || {
                let rows = res["data"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                let provides = ["secret_types", "generators", "rotation_backends"]
                                    .iter()
                                    .filter_map(|k| p["provides"][k].as_array())
                                    .flatten()
                                    .map(s)
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                vec![
                                    s(&p["name"]),
                                    s(&p["version"]),
                                    s(&p["origin"]),
                                    provides,
                                    s(&p["wasm_sha256"])[..16.min(s(&p["wasm_sha256"]).len())]
                                        .to_string(),
                                    match p["problem"].as_str() {
                                        Some(why) => format!("refused: {why}"),
                                        None => s(&p["status"]),
                                    },
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print_table(
                    &["NAME", "VERSION", "ORIGIN", "PROVIDES", "SHA-256", "STATUS"],
                    rows,
                );
            });
        }
        PluginsCmd::Install { file, manifest } => {
            let wasm = std::fs::read(&file).map_err(|e| {
                Error::invalid_request(format!("cannot read {}: {e}", file.display()))
            })?;
            let manifest_bytes = std::fs::read(&manifest).map_err(|e| {
                Error::invalid_request(format!("cannot read {}: {e}", manifest.display()))
            })?;
            let res = {
                let manifest: Value = serde_json::from_slice(&manifest_bytes).map_err(|e| {
                    Error::new(
                        ErrorCode::InvalidPlugin,
                        format!("{} is not JSON: {e}", manifest.display()),
                    )
                })?;
                let body = json!({
                    "manifest": manifest,
                    "wasm_base64": base64::engine::general_purpose::STANDARD.encode(&wasm),
                });
                target
                    .call(Method::POST, "/v1/plugins", Some(&body))
                    .await?
            };
            out.emit(&res, || {
                println!(
                    "installed {} {} (sha256 {})",
                    s(&res["name"]),
                    s(&res["version"]),
                    s(&res["wasm_sha256"])
                );
            });
        }
        PluginsCmd::Remove { name } => {
            {
                target
                    .call(Method::DELETE, &format!("/v1/plugins/{}", seg(&name)), None)
                    .await?;
            }
            out.emit(&json!({ "removed": name }), || println!("removed {name}"));
        }
        PluginsCmd::Verify => {
            let res = target
                .call(Method::POST, "/v1/plugins/verify", None)
                .await?;
            out.emit(&res, || {
                for p in res["plugins"].as_array().into_iter().flatten() {
                    let mark = if p["ok"] == json!(true) {
                        "ok  "
                    } else {
                        "FAIL"
                    };
                    println!("{mark} {}: {}", s(&p["name"]), s(&p["detail"]));
                }
            });
            if res["ok"] != json!(true) {
                return Err(Error::new(
                    ErrorCode::IntegrityError,
                    "a plugin does not match its pinned hash",
                )
                .into());
            }
        }
        PluginsCmd::Generate { generator, config } => {
            let mut cfg = Map::new();
            for pair in config {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| Error::invalid_request(format!("{pair:?} is not key=value")))?;
                let value = match v {
                    "true" => json!(true),
                    "false" => json!(false),
                    n if n.parse::<u64>().is_ok() => json!(n.parse::<u64>().unwrap_or(0)),
                    other => json!(other),
                };
                cfg.insert(k.to_owned(), value);
            }
            let res = target
                .call(
                    Method::POST,
                    &format!("/v1/generators/{}/generate", seg(&generator)),
                    Some(&json!({ "config": cfg })),
                )
                .await?;
            out.emit(&res, || {
                if let Some(v) = res["value"].as_str() {
                    println!("{v}");
                } else if let Some(m) = res["values"].as_object() {
                    for (k, v) in m {
                        println!("{k}:\n{}", s(v));
                    }
                }
            });
        }
    }
    Ok(())
}
