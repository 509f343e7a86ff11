//! `scaivault secrets …`

use std::io::Read as _;

use reqwest::Method;
use scaivault_core::{Error, ErrorCode};
use serde_json::{Map, Value, json};

use crate::args::{SecretsCmd, WriteArgs};
use crate::output::{Out, print_table};
use crate::target::{CliResult, VaultClient, q, secret_path};

fn usage(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidRequest, msg)
}

fn read_stdin() -> Result<String, Error> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
    Ok(s)
}

/// A key that may stand alone (to be prompted for): what a variable name looks like.
fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Builds the `data` object from `k=v` pairs (`k=@file`, `k=-` for stdin, a bare `k` to be
/// prompted for) or a JSON file.
fn data_from(args: &WriteArgs) -> Result<Value, Error> {
    if let Some(src) = &args.json_file {
        if !args.pairs.is_empty() {
            return Err(usage(
                "give either key=value pairs or --json-file, not both",
            ));
        }
        let text = if src == "-" {
            read_stdin()?
        } else {
            std::fs::read_to_string(src).map_err(|e| usage(format!("cannot read {src}: {e}")))?
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            usage(format!(
                "{} is not valid JSON (line {}, column {})",
                if src == "-" { "stdin" } else { src },
                e.line(),
                e.column()
            ))
        })?;
        if !v.is_object() {
            return Err(usage("the JSON data must be an object"));
        }
        return Ok(v);
    }
    if args.pairs.is_empty() {
        return Err(usage(
            "nothing to write: give key=value pairs or --json-file",
        ));
    }
    let mut map = Map::new();
    let mut stdin_used = false;
    for (n, pair) in args.pairs.iter().enumerate() {
        // A bare key asks for its value at a hidden prompt, so it never enters the command
        // line (which every local user can read in /proc) nor the shell's history.
        let prompted;
        let (k, v) = match pair.split_once('=') {
            Some(kv) => kv,
            None if std::io::IsTerminal::is_terminal(&std::io::stdin()) && valid_key(pair) => {
                prompted = rpassword::prompt_password(format!("Value for {pair}: "))
                    .map_err(|e| usage(format!("cannot read the value of {pair}: {e}")))?;
                (pair.as_str(), prompted.as_str())
            }
            // The argument is not echoed: without '=' it may well be a value typed on its own.
            None => {
                return Err(usage(format!(
                    "argument {} after the path is not key=value (give key=@file, key=- for stdin, or a bare key on a terminal to be asked for its value)",
                    n + 1
                )));
            }
        };
        if k.is_empty() {
            return Err(usage("a key=value pair has an empty key"));
        }
        let value = if v == "-" {
            if stdin_used {
                return Err(usage("only one value can come from stdin"));
            }
            stdin_used = true;
            read_stdin()?
        } else if let Some(file) = v.strip_prefix('@') {
            std::fs::read_to_string(file)
                .map_err(|e| usage(format!("cannot read {file} for {k}: {e}")))?
        } else {
            v.to_owned()
        };
        if map.insert(k.to_owned(), Value::String(value)).is_some() {
            return Err(usage(format!("key {k} is given twice")));
        }
    }
    Ok(Value::Object(map))
}

fn write_body(args: &WriteArgs) -> Result<Value, Error> {
    let mut body = json!({ "data": data_from(args)? });
    if let Some(t) = &args.secret_type {
        body["secret_type"] = json!(t);
    }
    let tags = crate::output::split_tags(&args.tags);
    if !tags.is_empty() || args.description.is_some() || args.owner.is_some() {
        let mut m = Map::new();
        if !tags.is_empty() {
            m.insert("tags".into(), json!(tags));
        }
        if let Some(d) = &args.description {
            m.insert("description".into(), json!(d));
        }
        if let Some(o) = &args.owner {
            m.insert("owner".into(), json!(o));
        }
        body["metadata"] = Value::Object(m);
    }
    let mut options = Map::new();
    if let Some(e) = &args.expires_in {
        options.insert("expires_in".into(), json!(e));
    }
    if let Some(n) = args.max_versions {
        options.insert("max_versions".into(), json!(n));
    }
    if let Some(c) = args.cas {
        options.insert("cas".into(), json!(c));
    }
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    Ok(body)
}

pub async fn run(target: &VaultClient, cmd: SecretsCmd, out: &Out) -> CliResult<()> {
    let named = match &cmd {
        SecretsCmd::Write(a) => Some(&a.path),
        SecretsCmd::Read { path, .. }
        | SecretsCmd::Delete { path, .. }
        | SecretsCmd::Restore { path }
        | SecretsCmd::Versions { path }
        | SecretsCmd::Metadata { path, .. } => Some(path),
        SecretsCmd::List { .. } => None,
    };
    if let Some(p) = named {
        secret_path(p)?;
    }
    match cmd {
        SecretsCmd::Write(args) => {
            let body = write_body(&args)?;
            let res = target
                .call(
                    Method::PUT,
                    &format!("/v1/secrets/{}", args.path),
                    Some(&body),
                )
                .await?;
            out.emit(&res, || {
                println!(
                    "Wrote {} version {} ({})",
                    res["path"].as_str().unwrap_or(""),
                    res["version"],
                    res["secret_type"].as_str().unwrap_or("")
                );
            });
        }
        SecretsCmd::Read {
            path,
            version,
            field,
        } => {
            let v = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let res = target.get(&format!("/v1/secrets/{path}{v}")).await?;
            if let Some(f) = field {
                let v = res["data"].get(&f).ok_or_else(|| {
                    Error::new(
                        ErrorCode::ValidationError,
                        format!("{path} has no field {f}"),
                    )
                    .with("field", f.as_str())
                })?;
                match v {
                    Value::String(s) => println!("{s}"),
                    other => println!("{other}"),
                }
                return Ok(());
            }
            out.emit(&res, || {
                println!("path:     {}", res["path"].as_str().unwrap_or(""));
                println!("type:     {}", res["secret_type"].as_str().unwrap_or(""));
                println!("version:  {}", res["version"]);
                if let Some(tags) = res["metadata"]["tags"].as_array() {
                    let t: Vec<&str> = tags.iter().filter_map(|t| t.as_str()).collect();
                    println!("tags:     {}", t.join(", "));
                }
                if let Value::Object(data) = &res["data"] {
                    let rows: Vec<Vec<String>> = data
                        .iter()
                        .map(|(k, v)| {
                            vec![
                                k.clone(),
                                v.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| v.to_string()),
                            ]
                        })
                        .collect();
                    print_table(&["KEY", "VALUE"], rows);
                }
            });
        }
        SecretsCmd::List { prefix, limit } => {
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("/v1/secrets?prefix={}", q(&prefix));
                if let Some(l) = limit {
                    url.push_str(&format!("&limit={l}"));
                }
                if let Some(c) = &cursor {
                    url.push_str(&format!("&cursor={}", q(c)));
                }
                let page = target.get(&url).await?;
                all.extend(page["secrets"].as_array().cloned().unwrap_or_default());
                cursor = page["cursor"].as_str().map(str::to_owned);
                if !page["has_more"].as_bool().unwrap_or(false) || cursor.is_none() {
                    break;
                }
            }
            let res = json!({ "secrets": all });
            out.emit(&res, || {
                let rows = all
                    .iter()
                    .map(|s| {
                        let tags: Vec<&str> = s["metadata"]["tags"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
                            .unwrap_or_default();
                        vec![
                            s["path"].as_str().unwrap_or("").to_owned(),
                            s["secret_type"].as_str().unwrap_or("").to_owned(),
                            s["version"].to_string(),
                            tags.join(","),
                            s["updated_at"].as_str().unwrap_or("").to_owned(),
                        ]
                    })
                    .collect();
                print_table(&["PATH", "TYPE", "VERSION", "TAGS", "UPDATED"], rows);
            });
        }
        SecretsCmd::Delete { path, hard } => {
            let res = target
                .call(
                    Method::DELETE,
                    &format!(
                        "/v1/secrets/{path}{}",
                        if hard { "?permanent=true" } else { "" }
                    ),
                    None,
                )
                .await?;
            out.emit(&res, || match res["recoverable_until"].as_str() {
                Some(until) if !hard => println!(
                    "Deleted {path}; restorable until {until} (scaivault secrets restore {path})"
                ),
                _ => println!("Destroyed {path} and every version"),
            });
        }
        SecretsCmd::Restore { path } => {
            let res = target
                .call(Method::POST, &format!("/v1/restore/{path}"), None)
                .await?;
            out.emit(&res, || {
                println!("Restored {path} at version {}", res["version"])
            });
        }
        SecretsCmd::Versions { path } => {
            let res = target.get(&format!("/v1/versions/{path}")).await?;
            out.emit(&res, || {
                let cur = res["current_version"].as_u64();
                let rows = res["versions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|v| {
                        vec![
                            v["version"].to_string(),
                            v["created_at"].as_str().unwrap_or("").to_owned(),
                            v["created_by"].as_str().unwrap_or("").to_owned(),
                            if v["version"].as_u64() == cur {
                                "current".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect();
                print_table(&["VERSION", "CREATED", "BY", ""], rows);
            });
        }
        SecretsCmd::Metadata { path, set } => {
            let res = if set.is_empty() {
                target.get(&format!("/v1/metadata/{path}")).await?
            } else {
                let mut patch = Map::new();
                for kv in &set {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| usage(format!("--set expects key=value, got '{kv}'")))?;
                    let value = match (k, v) {
                        (_, "") => Value::Null,
                        ("tags", v) => json!(
                            v.split(',')
                                .map(str::trim)
                                .filter(|t| !t.is_empty())
                                .collect::<Vec<_>>()
                        ),
                        (_, v) => json!(v),
                    };
                    patch.insert(k.to_owned(), value);
                }
                target
                    .call(
                        Method::PATCH,
                        &format!("/v1/metadata/{path}"),
                        Some(&json!({ "metadata": patch })),
                    )
                    .await?
            };
            out.emit(&res, || {
                println!("path:      {}", res["path"].as_str().unwrap_or(""));
                println!("type:      {}", res["secret_type"].as_str().unwrap_or(""));
                println!(
                    "version:   {} ({} kept)",
                    res["version"], res["version_count"]
                );
                println!("updated:   {}", res["updated_at"].as_str().unwrap_or(""));
                println!(
                    "expires:   {}",
                    res["expires_at"].as_str().unwrap_or("never")
                );
                println!("metadata:  {}", res["metadata"]);
            });
        }
    }
    Ok(())
}
