//! `scaivault auth|identity|tokens|policies …`

use scaivault_core::scope::Permission;
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::CreateToken;
use serde_json::{Value, json};

use crate::args::{AuthCmd, IdentityCmd, PoliciesCmd, TokensCmd};
use crate::output::{Out, print_table, text as s};
use crate::target::{CliResult, Method, VaultClient, q, seg};

fn usage(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidRequest, msg)
}

/// `auth login`: the token is checked with `whoami` before it is saved, so a typo or a
/// revoked token is reported now rather than at the next command.
pub async fn login(
    url: String,
    given: Option<&str>,
    trust: &scaivault_client::http::Trust,
    out: &Out,
) -> CliResult<()> {
    use std::io::{BufRead as _, IsTerminal as _};
    let token = zeroize::Zeroizing::new(match given {
        Some(t) if t != "-" => t.to_owned(),
        None if std::io::stdin().is_terminal() => rpassword::prompt_password("Token: ")
            .map_err(|e| usage(format!("cannot read the token: {e}")))?,
        _ => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| usage(format!("cannot read the token from stdin: {e}")))?;
            line.trim().to_owned()
        }
    });
    if token.is_empty() {
        return Err(usage("no token given").into());
    }
    let remote = VaultClient::http(url, Some(token.to_string()), trust)?;
    let me = remote.whoami().await?;
    crate::config::set("token", &token).map_err(usage)?;
    out.emit(&me, || {
        println!(
            "Logged in as {} ({}); token saved in {}",
            me.identity_id,
            me.identity_type,
            crate::config::path().display()
        );
    });
    Ok(())
}

pub async fn auth(target: &VaultClient, cmd: AuthCmd, out: &Out) -> CliResult<()> {
    match cmd {
        AuthCmd::Logout => {
            return Err(usage(
                "auth logout forgets a saved server token; it has no meaning with --vault",
            )
            .into());
        }
        AuthCmd::Login => {
            return Err(usage(
                "auth login saves a token for a server; it has no meaning with --vault",
            )
            .into());
        }
        AuthCmd::Whoami => {
            let me = target.whoami().await?;
            out.emit(&me, || {
                println!("identity:  {} ({})", me.identity_id, me.identity_type);
                println!("scopes:    {}", me.scopes.join(", "));
                println!("groups:    {}", me.groups.join(", "));
                println!(
                    "expires:   {}",
                    me.token_expires_at
                        .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
                );
            });
        }
    }
    Ok(())
}

pub async fn identity(target: &VaultClient, cmd: IdentityCmd, out: &Out) -> CliResult<()> {
    let res = match &cmd {
        IdentityCmd::Create { id, display_name } => {
            target
                .call(
                    Method::POST,
                    "/v1/identities",
                    Some(&json!({"identity_id": id, "display_name": display_name})),
                )
                .await?
        }
        IdentityCmd::List => target.call(Method::GET, "/v1/identities", None).await?,
        IdentityCmd::Delete { id } => {
            target
                .call(Method::DELETE, &format!("/v1/identities/{}", seg(id)), None)
                .await?
        }
        IdentityCmd::AddMember { group, id } => {
            target
                .call(
                    Method::POST,
                    &format!("/v1/identities/{}/members", seg(group)),
                    Some(&json!({"member_id": id})),
                )
                .await?
        }
        IdentityCmd::RemoveMember { group, id } => {
            target
                .call(
                    Method::DELETE,
                    &format!("/v1/identities/{}/members/{}", seg(group), seg(id)),
                    None,
                )
                .await?
        }
        IdentityCmd::Credentials { id, scope } => {
            target
                .call(
                    Method::POST,
                    &format!("/v1/identities/{}/credentials", seg(id)),
                    Some(&json!({"scopes": scope})),
                )
                .await?
        }
        IdentityCmd::ListCredentials { id } => {
            target
                .call(
                    Method::GET,
                    &format!("/v1/identities/{}/credentials", seg(id)),
                    None,
                )
                .await?
        }
        IdentityCmd::RevokeCredential { id, credential_id } => {
            target
                .call(
                    Method::DELETE,
                    &format!(
                        "/v1/identities/{}/credentials/{}",
                        seg(id),
                        seg(credential_id)
                    ),
                    None,
                )
                .await?
        }
    };
    out.emit(&res, || match &cmd {
        IdentityCmd::Create { id, .. } => println!("Created {id}"),
        IdentityCmd::Delete { id } => println!("Deleted {id} and revoked its tokens"),
        IdentityCmd::AddMember { group, id } => println!("Added {id} to {group}"),
        IdentityCmd::RemoveMember { group, id } => println!("Removed {id} from {group}"),
        IdentityCmd::Credentials { .. } => {
            println!("client_id:     {}", s(&res["client_id"]));
            println!("client_secret: {}", s(&res["client_secret"]));
            println!("(the secret is shown only now)");
        }
        IdentityCmd::ListCredentials { .. } => {
            let rows = res["credentials"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    vec![
                        s(&c["credential_id"]),
                        c["scopes"]
                            .as_array()
                            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                            .unwrap_or_default(),
                        s(&c["created_at"]),
                    ]
                })
                .collect();
            print_table(&["CREDENTIAL", "SCOPES", "CREATED"], rows);
        }
        IdentityCmd::RevokeCredential { credential_id, .. } => println!(
            "Revoked {credential_id} and {} token(s) it minted",
            res["tokens_revoked"]
        ),
        IdentityCmd::List => {
            let rows = res["identities"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|i| {
                    vec![
                        s(&i["identity_id"]),
                        s(&i["identity_type"]),
                        s(&i["display_name"]),
                        s(&i["created_at"]),
                    ]
                })
                .collect();
            print_table(&["IDENTITY", "TYPE", "NAME", "CREATED"], rows);
        }
    });
    Ok(())
}

pub async fn tokens(target: &VaultClient, cmd: TokensCmd, out: &Out) -> CliResult<()> {
    match cmd {
        TokensCmd::Create {
            identity,
            scope,
            ttl,
            name,
        } => {
            let req = CreateToken {
                identity_id: identity.clone(),
                scopes: scope,
                ttl,
                name,
            };
            let body = json!({"identity_id": req.identity_id, "scopes": req.scopes, "ttl": req.ttl, "name": req.name});
            let res = target
                .call(Method::POST, "/v1/auth/tokens", Some(&body))
                .await;
            let res = res.map_err(|mut e| {
                if e.error.code == ErrorCode::IdentityNotFound {
                    e.error.message = format!("{identity} does not exist; create it first: scaivault identity create {identity}");
                }
                e
            })?;
            out.emit(&res, || {
                println!("{}", s(&res["token"]));
                eprintln!(
                    "Token {} for {} (scopes {}; expires {}). It is shown only now.",
                    s(&res["token_id"]),
                    s(&res["identity_id"]),
                    res["scopes"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    if res["expires_at"].is_null() {
                        "never".into()
                    } else {
                        s(&res["expires_at"])
                    }
                );
            });
        }
        TokensCmd::List { identity } => {
            let res = {
                let f = identity
                    .map(|i| format!("?identity_id={}", q(&i)))
                    .unwrap_or_default();
                target
                    .call(Method::GET, &format!("/v1/auth/tokens{f}"), None)
                    .await?
            };
            out.emit(&res, || {
                let rows = res["tokens"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|t| {
                        vec![
                            s(&t["token_id"]),
                            s(&t["identity_id"]),
                            t["scopes"]
                                .as_array()
                                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                                .unwrap_or_default(),
                            s(&t["expires_at"]),
                            if t["revoked_at"].is_null() {
                                "active".into()
                            } else {
                                "revoked".into()
                            },
                        ]
                    })
                    .collect();
                print_table(
                    &["TOKEN ID", "IDENTITY", "SCOPES", "EXPIRES", "STATE"],
                    rows,
                );
            });
        }
        TokensCmd::Revoke { token_id } => {
            let res = target
                .call(
                    Method::DELETE,
                    &format!("/v1/auth/tokens/{}", seg(&token_id)),
                    None,
                )
                .await?;
            out.emit(&res, || println!("Revoked {token_id}"));
        }
    }
    Ok(())
}

/// `PATTERN:perm,perm` → a rule. The pattern cannot contain ':', so the last ':' splits.
fn parse_rule(raw: &str) -> Result<Value, Error> {
    let (pattern, perms) = raw
        .rsplit_once(':')
        .ok_or_else(|| usage(format!("--rule expects PATTERN:perm,perm, got '{raw}'")))?;
    let perms: Vec<&str> = perms
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    for p in &perms {
        Permission::parse(p)?;
    }
    Ok(json!({ "path_pattern": pattern, "permissions": perms }))
}

pub async fn policies(target: &VaultClient, cmd: PoliciesCmd, out: &Out) -> CliResult<()> {
    match cmd {
        PoliciesCmd::Create {
            name,
            rules,
            description,
            file,
        } => {
            let mut body = match file {
                Some(f) => {
                    let text = std::fs::read_to_string(&f)
                        .map_err(|e| usage(format!("cannot read {}: {e}", f.display())))?;
                    serde_json::from_str::<Value>(&text).map_err(|e| {
                        usage(format!(
                            "{} is not valid JSON (line {})",
                            f.display(),
                            e.line()
                        ))
                    })?
                }
                None => json!({}),
            };
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if !rules.is_empty() {
                body["rules"] = Value::Array(
                    rules
                        .iter()
                        .map(|r| parse_rule(r))
                        .collect::<Result<_, _>>()?,
                );
            }
            let res = target
                .call(Method::POST, "/v1/policies", Some(&body))
                .await?;
            out.emit(&res, || {
                println!("Created policy {} ({})", s(&res["name"]), s(&res["id"]))
            });
        }
        PoliciesCmd::List => {
            let res = target
                .all_pages("/v1/policies?include_inactive=true", "policies")
                .await?;
            out.emit(&res, || {
                let rows = res["policies"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        vec![
                            s(&p["id"]),
                            s(&p["name"]),
                            s(&p["rule_count"]),
                            s(&p["binding_count"]),
                            s(&p["is_active"]),
                        ]
                    })
                    .collect();
                print_table(&["ID", "NAME", "RULES", "BINDINGS", "ACTIVE"], rows);
            });
        }
        PoliciesCmd::Get { id } => {
            let res = target
                .call(Method::GET, &format!("/v1/policies/{}", seg(&id)), None)
                .await?;
            out.emit(&res, || {
                println!(
                    "{} ({}){}",
                    s(&res["name"]),
                    s(&res["id"]),
                    if res["is_active"] == json!(false) {
                        " [inactive]"
                    } else {
                        ""
                    }
                );
                let rules = res["rules"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        vec![
                            i.to_string(),
                            s(&r["path_pattern"]),
                            r["permissions"]
                                .as_array()
                                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(&["RULE", "PATH PATTERN", "PERMISSIONS"], rules);
                let bindings = res["bindings"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|b| vec![s(&b["id"]), s(&b["identity_id"]), s(&b["expires_at"])])
                    .collect();
                print_table(&["BINDING", "IDENTITY", "EXPIRES"], bindings);
            });
        }
        PoliciesCmd::Delete { id, force } => {
            {
                target
                    .call(
                        Method::DELETE,
                        &format!(
                            "/v1/policies/{}{}",
                            q(&id),
                            if force { "?force=true" } else { "" }
                        ),
                        None,
                    )
                    .await?;
            }
            out.emit(&json!({"deleted": id}), || println!("Deleted policy {id}"));
        }
        PoliciesCmd::Bind {
            id,
            identity_id,
            identity_type,
            expires_at,
        } => {
            let body = json!({"identity_id": identity_id, "identity_type": identity_type, "expires_at": expires_at});
            let res = target
                .call(
                    Method::POST,
                    &format!("/v1/policies/{}/bindings", seg(&id)),
                    Some(&body),
                )
                .await?;
            out.emit(&res, || {
                println!(
                    "Bound {} to {id} ({})",
                    s(&res["identity_id"]),
                    s(&res["id"])
                )
            });
        }
        PoliciesCmd::Unbind { id, binding } => {
            {
                target
                    .call(
                        Method::DELETE,
                        &format!("/v1/policies/{}/bindings/{}", seg(&id), seg(&binding)),
                        None,
                    )
                    .await?;
            }
            out.emit(&json!({"unbound": binding}), || {
                println!("Removed binding {binding} from {id}")
            });
        }
        PoliciesCmd::Test {
            path,
            permission,
            identity,
        } => {
            let body = json!({"identity_id": identity, "path": path, "permission": permission});
            let res = target
                .call(Method::POST, "/v1/policies/test", Some(&body))
                .await?;
            out.emit(&res, || {
                if res["allowed"] == json!(true) {
                    println!("allowed: {identity} may {permission} {path}");
                    println!(
                        "  policy: {} ({}), rule {}: {}",
                        s(&res["policy_name"]),
                        s(&res["policy_id"]),
                        s(&res["rule_index"]),
                        s(&res["path_pattern"])
                    );
                } else {
                    println!(
                        "denied ({}): {identity} may not {permission} {path}",
                        s(&res["code"])
                    );
                    println!("  reason: {}", s(&res["reason"]));
                }
            });
            // As `test` in a shell: a denial is a non-zero exit (3, as any refusal), after
            // the explanation was printed.
            if res["allowed"] != json!(true) {
                return Err(scaivault_core::Error::new(
                    ErrorCode::AccessDenied,
                    format!("{identity} may not {permission} {path}"),
                )
                .into());
            }
        }
    }
    Ok(())
}
