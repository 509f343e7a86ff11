//! `scaivault plugins …`

use base64::Engine as _;
use reqwest::Method;
use scaivault_core::{Error, ErrorCode};
use serde_json::{Map, Value, json};

use crate::args::PluginsCmd;
use crate::output::{Out, print_table, text as s};
use crate::target::{CliResult, Target, local_caller};

pub async fn run(target: &Target, cmd: PluginsCmd, out: &Out) -> CliResult<()> {
    let c = local_caller();
    match cmd {
        PluginsCmd::List => {
            let res = match target {
                Target::Remote(r) => r.call(Method::GET, "/v1/plugins", None).await?,
                Target::Local(e) => scaivault_engine::plugins_json(&e.list_plugins(&c)?),
            };
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
            let res = match target {
                Target::Remote(r) => {
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
                    r.call(Method::POST, "/v1/plugins", Some(&body)).await?
                }
                Target::Local(e) => json!(e.install_plugin(&c, &manifest_bytes, wasm).await?),
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
            match target {
                Target::Remote(r) => {
                    r.call(Method::DELETE, &format!("/v1/plugins/{name}"), None)
                        .await?;
                }
                Target::Local(e) => e.remove_plugin(&c, &name).await?,
            }
            out.emit(&json!({ "removed": name }), || println!("removed {name}"));
        }
        PluginsCmd::Verify => {
            let res = match target {
                Target::Remote(r) => r.call(Method::POST, "/v1/plugins/verify", None).await?,
                Target::Local(e) => {
                    let checks = e.verify_plugins(&c)?;
                    json!({ "ok": checks.iter().all(|c| c.ok), "plugins": checks })
                }
            };
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
            let res = match target {
                Target::Remote(r) => {
                    r.call(
                        Method::POST,
                        &format!("/v1/generators/{generator}/generate"),
                        Some(&json!({ "config": cfg })),
                    )
                    .await?
                }
                Target::Local(e) => e.generate_value(&c, &generator, Value::Object(cfg)).await?,
            };
            crate::record_before_showing(target, "plugins", "generate").await?;
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
