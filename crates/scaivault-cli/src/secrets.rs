//! `scaivault secrets …`

use std::io::Read as _;

use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{SecretData, WriteOptions, WriteRequest};
use serde_json::{Map, Value, json};

use crate::args::{SecretsCmd, WriteArgs};
use crate::output::{Out, print_table, shown};
use crate::target::{CliResult, VaultClient, secret_path};

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

fn write_body(args: &WriteArgs) -> Result<WriteRequest, Error> {
    let data = data_from(args)?;
    let tags = crate::output::split_tags(&args.tags);
    let metadata = if !tags.is_empty() || args.description.is_some() || args.owner.is_some() {
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
        Some(m)
    } else {
        None
    };
    Ok(WriteRequest {
        data: SecretData::from_json_text(data.to_string()),
        secret_type: args.secret_type.clone(),
        metadata,
        options: WriteOptions {
            max_versions: args.max_versions,
            expires_in: args.expires_in.clone(),
            rotation_policy_id: None,
            cas: args.cas,
        },
        cas: None,
    })
}

fn tags_of(metadata: &Map<String, Value>) -> Vec<&str> {
    metadata
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default()
}

pub async fn run(target: &VaultClient, cmd: SecretsCmd, out: &Out) -> CliResult<()> {
    match cmd {
        SecretsCmd::Write(args) => {
            // Checked before a value is read from a prompt or stdin for it.
            secret_path(&args.path)?;
            let res = target.write_secret(&args.path, &write_body(&args)?).await?;
            out.emit(&res, || {
                println!(
                    "Wrote {} version {} ({})",
                    res.path, res.version, res.secret_type
                );
            });
        }
        SecretsCmd::Read {
            path,
            version,
            field,
        } => {
            let res = target.read_secret(&path, version).await?;
            let data = res.data.to_value();
            if let Some(f) = field {
                let v = data.get(&f).ok_or_else(|| {
                    Error::new(
                        ErrorCode::ValidationError,
                        format!("{path} has no field {f}"),
                    )
                    .with("field", f.as_str())
                })?;
                // The value alone, exactly, for a pipe or a file; escaped for a terminal.
                let v = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    println!("{}", crate::output::shown(&v));
                } else {
                    println!("{v}");
                }
                return Ok(());
            }
            if out.format == crate::args::Format::Env {
                // The variables `run --prefix` would give, quoted as `export dotenv` quotes.
                let one = serde_json::json!({ "path": res.path, "data": data });
                let vars = crate::migrate::to_vars(&[one], &Default::default())?;
                print!("{}", crate::dotenv::render(&vars));
                return Ok(());
            }
            out.emit(&res, || {
                println!("path:     {}", res.path);
                println!("type:     {}", res.secret_type);
                println!("version:  {}", res.version);
                if res.metadata.contains_key("tags") {
                    println!("tags:     {}", tags_of(&res.metadata).join(", "));
                }
                // One `key: value` line per field, never boxed or wrapped: what is copied
                // from the terminal is the value (`--field K` prints it alone).
                if let Value::Object(data) = &data {
                    println!("data:");
                    for (k, v) in data {
                        let v = v
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string());
                        println!("  {}: {}", shown(k), shown(&v));
                    }
                }
            });
        }
        SecretsCmd::List { prefix, limit } => {
            // `--limit N` caps what is listed; without it, every page is fetched.
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            let mut more;
            loop {
                let room = limit.map(|l| l.saturating_sub(all.len()));
                let page = target
                    .list_secrets(&prefix, room.map(|r| r.min(1000)), cursor.as_deref())
                    .await?;
                all.extend(page.secrets);
                cursor = page.cursor;
                more = page.has_more && cursor.is_some();
                let full = limit.is_some_and(|l| all.len() >= l);
                if full || !more {
                    break;
                }
            }
            if let Some(l) = limit {
                more |= all.len() > l;
                all.truncate(l);
            }
            // `has_more`: the limit cut the list (a script can tell it saw everything).
            out.emit(&json!({ "secrets": all, "has_more": more }), || {
                let rows = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.path.clone(),
                            s.secret_type.clone(),
                            s.version.to_string(),
                            tags_of(&s.metadata).join(","),
                            s.updated_at.to_rfc3339(),
                        ]
                    })
                    .collect();
                print_table(&["PATH", "TYPE", "VERSION", "TAGS", "UPDATED"], rows);
            });
        }
        SecretsCmd::Delete { path, hard } => {
            let res = target.delete_secret(&path, hard).await?;
            out.emit(&res, || match res.recoverable_until {
                Some(until) if !hard => println!(
                    "Deleted {path}; restorable until {} (scaivault secrets restore {path})",
                    until.to_rfc3339()
                ),
                _ => println!("Destroyed {path} and every version"),
            });
        }
        SecretsCmd::Restore { path } => {
            let res = target.restore_secret(&path).await?;
            out.emit(&res, || {
                println!("Restored {path} at version {}", res.version)
            });
        }
        SecretsCmd::Versions { path } => {
            let res = target.secret_versions(&path).await?;
            out.emit(&res, || {
                let rows = res
                    .versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.version.to_string(),
                            v.created_at.to_rfc3339(),
                            v.created_by.clone(),
                            if v.version == res.current_version {
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
        SecretsCmd::Rotate { path } => {
            let res = target.rotate_secret(&path).await?;
            let res = serde_json::to_value(&res)
                .map_err(|_| Error::internal("could not show the rotation"))?;
            crate::rotation::report_rotated(&res, out)?;
        }
        SecretsCmd::Expiring {
            days,
            prefix,
            limit,
        } => {
            let res = target.expiring_secrets(&prefix, days, limit).await?;
            out.emit(&res, || {
                let rows = res
                    .secrets
                    .iter()
                    .map(|e| {
                        vec![
                            e.path.clone(),
                            e.expires_at.to_rfc3339(),
                            if e.expired {
                                "expired".into()
                            } else {
                                e.days_remaining.to_string()
                            },
                            e.secret_type.clone(),
                        ]
                    })
                    .collect();
                print_table(&["PATH", "EXPIRES", "DAYS LEFT", "TYPE"], rows);
                if res.truncated {
                    eprintln!("(the soonest shown; more match: raise --limit)");
                }
            });
        }
        SecretsCmd::Metadata { path, set } => {
            let res = if set.is_empty() {
                target.secret_metadata(&path).await?
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
                target.update_metadata(&path, patch).await?
            };
            out.emit(&res, || {
                println!("path:      {}", res.path);
                println!("type:      {}", res.secret_type);
                println!("version:   {} ({} kept)", res.version, res.version_count);
                println!("updated:   {}", res.updated_at.to_rfc3339());
                println!(
                    "expires:   {}",
                    res.expires_at
                        .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
                );
                println!("metadata:  {}", Value::Object(res.metadata.clone()));
            });
        }
    }
    Ok(())
}
