//! `scaivault webhooks …`

use std::path::Path;

use crate::target::Method;
use scaivault_core::{Error, ErrorCode};
use serde_json::json;
use zeroize::Zeroizing;

use crate::args::WebhooksCmd;
use crate::output::{Out, print_table, text as s};
use crate::target::{CliResult, VaultClient, seg};

/// The signing secret: from a file, else SCAIVAULT_WEBHOOK_SECRET.
fn secret(file: Option<&Path>) -> Result<Zeroizing<String>, Error> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::invalid_request(format!("cannot read {}: {e}", f.display())))?;
        return Ok(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        ));
    }
    std::env::var("SCAIVAULT_WEBHOOK_SECRET")
        .map(Zeroizing::new)
        .map_err(|_| {
            Error::new(
                ErrorCode::ValidationError,
                "give the signing secret in SCAIVAULT_WEBHOOK_SECRET or with --secret-file",
            )
        })
}

pub async fn run(target: &VaultClient, cmd: WebhooksCmd, out: &Out) -> CliResult<()> {
    let res = match cmd {
        WebhooksCmd::List => {
            let res = target.call(Method::GET, "/v1/webhooks", None).await?;
            out.emit(&res, || {
                let rows = res["webhooks"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|w| {
                                vec![
                                    s(&w["id"]),
                                    s(&w["name"]),
                                    s(&w["url"]),
                                    w["events"]
                                        .as_array()
                                        .map(|e| e.iter().map(s).collect::<Vec<_>>().join(","))
                                        .unwrap_or_default(),
                                    s(&w["status"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print_table(&["ID", "NAME", "URL", "EVENTS", "STATUS"], rows);
            });
            return Ok(());
        }
        WebhooksCmd::Create {
            name,
            endpoint,
            events,
            secret_file,
            path_prefix,
            secret_type,
            tags,
            disabled,
        } => {
            let sec = secret(secret_file.as_deref())?;
            let body = json!({
                "name": name, "url": endpoint, "events": events, "secret": sec.as_str(),
                "enabled": !disabled,
                "filters": { "path_prefix": path_prefix, "secret_type": secret_type, "tags": tags },
            });
            target
                .call(Method::POST, "/v1/webhooks", Some(&body))
                .await?
        }
        WebhooksCmd::Get { id } => {
            target
                .call(Method::GET, &format!("/v1/webhooks/{}", seg(&id)), None)
                .await?
        }
        WebhooksCmd::Update {
            id,
            endpoint,
            events,
            enable,
            disable,
            rotate_secret,
            new_secret_file,
            previous_secret_ttl,
        } => {
            let mut body = json!({});
            if let Some(u) = endpoint {
                body["url"] = json!(u);
            }
            if let Some(e) = events {
                body["events"] = json!(e);
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            let sec = if rotate_secret || new_secret_file.is_some() {
                Some(secret(new_secret_file.as_deref())?)
            } else {
                None
            };
            if let Some(sec) = &sec {
                body["secret"] = json!(sec.as_str());
            }
            if let Some(t) = previous_secret_ttl {
                body["previous_secret_ttl"] = json!(t);
            }
            target
                .call(
                    Method::PATCH,
                    &format!("/v1/webhooks/{}", seg(&id)),
                    Some(&body),
                )
                .await?
        }
        WebhooksCmd::Delete { id } => {
            {
                target
                    .call(Method::DELETE, &format!("/v1/webhooks/{}", seg(&id)), None)
                    .await?;
            }
            json!({ "deleted": id })
        }
        WebhooksCmd::Test { id } => {
            target
                .call(
                    Method::POST,
                    &format!("/v1/webhooks/{}/test", seg(&id)),
                    None,
                )
                .await?
        }
        WebhooksCmd::Deliveries { id, status, limit } => {
            let res = {
                let mut q = Vec::new();
                if let Some(st) = &status {
                    q.push(format!("status={st}"));
                }
                if let Some(l) = limit {
                    q.push(format!("limit={l}"));
                }
                let qs = if q.is_empty() {
                    String::new()
                } else {
                    format!("?{}", q.join("&"))
                };
                target
                    .call(
                        Method::GET,
                        &format!("/v1/webhooks/{}/deliveries{qs}", seg(&id)),
                        None,
                    )
                    .await?
            };
            out.emit(&res, || {
                let rows = res["deliveries"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|d| {
                                vec![
                                    s(&d["id"]),
                                    s(&d["event_type"]),
                                    s(&d["timestamp"]),
                                    s(&d["status"]),
                                    s(&d["response_code"]),
                                    s(&d["attempts"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print_table(&["ID", "EVENT", "TIME", "STATUS", "CODE", "ATTEMPTS"], rows);
            });
            return Ok(());
        }
    };
    out.emit(&res, || {
        println!("{}", serde_json::to_string_pretty(&res).unwrap_or_default())
    });
    Ok(())
}
