//! `scaivault audit …`

use std::io::Write as _;

use crate::target::Method;
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{AuditQuery, SummaryQuery};
use serde_json::{Value, json};

use crate::args::{AuditCmd, AuditFilter};
use crate::output::{Out, print_table, text as s};
use crate::target::{CliResult, VaultClient, q};

fn time(raw: &Option<String>) -> Result<Option<Timestamp>, Error> {
    raw.as_deref()
        .map(|r| Timestamp::parse_human(r, Timestamp::now()))
        .transpose()
}

/// An end bound: a bare date means the whole of that day (`--to 2026-12-02` includes it).
fn end_time(raw: &Option<String>) -> Result<Option<Timestamp>, Error> {
    let t = time(raw)?;
    let bare_date = raw.as_deref().is_some_and(|r| {
        let r = r.trim();
        r.len() == 10 && r.as_bytes()[4] == b'-' && r.as_bytes()[7] == b'-'
    });
    Ok(t.map(|t| {
        if bare_date {
            t.plus(std::time::Duration::from_micros(86_400_000_000 - 1))
        } else {
            t
        }
    }))
}

fn query_of(f: &AuditFilter, limit: usize, cursor: Option<String>) -> Result<AuditQuery, Error> {
    Ok(AuditQuery {
        from: time(&f.start)?,
        to: end_time(&f.end)?,
        action: f.action.clone(),
        identity_id: f.identity_id.clone(),
        path_prefix: f.path_prefix.clone(),
        success: f.success,
        limit: Some(limit),
        cursor,
        ..Default::default()
    })
}

fn query_string(aq: &AuditQuery) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", q(&v)));
        }
    };
    add("from", aq.from.map(|t| t.to_rfc3339()));
    add("to", aq.to.map(|t| t.to_rfc3339()));
    add("action", aq.action.clone());
    add("identity_id", aq.identity_id.clone());
    add("path_prefix", aq.path_prefix.clone());
    add("secret_path", aq.secret_path.clone());
    add("success", aq.success.map(|s| s.to_string()));
    add("limit", aq.limit.map(|l| l.to_string()));
    add("cursor", aq.cursor.clone());
    parts.join("&")
}

async fn page(target: &VaultClient, aq: &AuditQuery) -> CliResult<Value> {
    target
        .call(
            Method::GET,
            &format!("/v1/audit/logs?{}", query_string(aq)),
            None,
        )
        .await
}

pub async fn run(target: &VaultClient, cmd: AuditCmd, out: &Out) -> CliResult<()> {
    match cmd {
        AuditCmd::Query { filter, limit } => {
            let res = page(target, &query_of(&filter, limit.clamp(1, 1000), None)?).await?;
            out.emit(&json!({ "logs": res["logs"] }), || {
                let rows = res["logs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|e| {
                        vec![
                            s(&e["timestamp"]),
                            s(&e["identity_id"]),
                            s(&e["action"]),
                            s(&e["secret_path"]),
                            if e["success"] == json!(true) {
                                "ok".into()
                            } else {
                                s(&e["extra_data"]["error_code"])
                            },
                        ]
                    })
                    .collect();
                print_table(&["TIME", "IDENTITY", "ACTION", "PATH", "RESULT"], rows);
            });
        }
        AuditCmd::Summary {
            start,
            end,
            identity_id,
            path,
        } => {
            let sq = SummaryQuery {
                from: time(&start)?,
                to: end_time(&end)?,
                identity_id,
                secret_path: path,
            };
            let res = {
                let aq = AuditQuery {
                    from: sq.from,
                    to: sq.to,
                    identity_id: sq.identity_id.clone(),
                    secret_path: sq.secret_path.clone(),
                    ..Default::default()
                };
                target
                    .call(
                        Method::GET,
                        &format!("/v1/audit/summary?{}", query_string(&aq)),
                        None,
                    )
                    .await?
            };
            out.emit(&res, || print_summary(&res));
        }
        AuditCmd::Verify { fast } => {
            let res = target
                .call(Method::GET, &format!("/v1/audit/verify?fast={fast}"), None)
                .await?;
            out.emit(&res, || {
                if res["ok"] == json!(true) {
                    println!(
                        "ok: {} entries verified from {}; head {} ({})",
                        res["verified"],
                        res["from_seq"],
                        res["head_seq"],
                        s(&res["head_hash"])
                    );
                } else {
                    println!(
                        "BROKEN at entry {}: {}",
                        res["broken_at"],
                        s(&res["problem"])
                    );
                }
            });
            if res["ok"] != json!(true) {
                return Err(Error::new(
                    ErrorCode::IntegrityError,
                    format!("the audit chain is broken at entry {}", res["broken_at"]),
                )
                .into());
            }
        }
        AuditCmd::Prune { older_than } => {
            let res = target
                .call(
                    Method::POST,
                    "/v1/audit/prune",
                    Some(&json!({ "older_than": older_than })),
                )
                .await?;
            out.emit(&res, || {
                println!(
                    "Removed {} entries; the log now starts after entry {}",
                    res["removed"], res["pruned_through"]
                )
            });
        }
        AuditCmd::Export { filter, out: file } => {
            // `--format csv`, else JSON lines (`jsonl`, or `json` as a synonym).
            let format = if out.format == crate::args::Format::Csv {
                "csv"
            } else {
                "jsonl"
            };
            let mut w =
                std::io::BufWriter::new(scaivault_store::private_fs::create(&file).map_err(
                    |e| Error::internal(format!("cannot create {}: {e}", file.display())),
                )?);
            let io = |e: std::io::Error| {
                Error::internal(format!("cannot write {}: {e}", file.display()))
            };
            const COLS: [&str; 11] = [
                "id",
                "timestamp",
                "action",
                "identity_type",
                "identity_id",
                "secret_path",
                "source_ip",
                "user_agent",
                "success",
                "duration_ms",
                "request_id",
            ];
            if format == "csv" {
                writeln!(w, "{}", COLS.join(",")).map_err(io)?;
            }
            let mut cursor = None;
            let mut n = 0usize;
            loop {
                let res = page(target, &query_of(&filter, 1000, cursor)?).await?;
                for e in res["logs"].as_array().cloned().unwrap_or_default() {
                    if format == "jsonl" {
                        writeln!(w, "{e}").map_err(io)?;
                    } else {
                        let row: Vec<String> = COLS.iter().map(|c| csv_field(&s(&e[*c]))).collect();
                        writeln!(w, "{}", row.join(",")).map_err(io)?;
                    }
                    n += 1;
                }
                cursor = res["cursor"].as_str().map(str::to_owned);
                if cursor.is_none() {
                    break;
                }
            }
            w.flush().map_err(io)?;
            out.emit(&json!({ "exported": n, "file": file }), || {
                println!("Exported {n} entries to {}", file.display())
            });
        }
    }
    Ok(())
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

/// A summary as tables: the totals, then each breakdown largest first.
fn print_summary(res: &Value) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    println!(
        "{} events, {} failed, from {} to {}{}",
        n(&res["total_events"]),
        n(&res["failures"]),
        res["first_at"].as_str().unwrap_or("-"),
        res["last_at"].as_str().unwrap_or("-"),
        if res["complete"] == Value::Bool(false) {
            " (the newest part of the log only: give --start)"
        } else {
            ""
        }
    );
    for (key, title, by_count) in [
        ("by_identity", "IDENTITY", true),
        ("by_path", "PATH", true),
        ("by_action", "ACTION", true),
        ("by_hour", "HOUR", false),
    ] {
        let Some(map) = res[key].as_object().filter(|m| !m.is_empty()) else {
            continue;
        };
        let mut rows: Vec<(&String, u64)> = map.iter().map(|(k, v)| (k, n(v))).collect();
        if by_count {
            rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        }
        println!();
        print_table(
            &[title, "EVENTS"],
            rows.into_iter()
                .map(|(k, c)| vec![k.clone(), c.to_string()])
                .collect(),
        );
    }
}
