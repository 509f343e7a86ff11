//! `scaivault auth|identity|tokens|policies …`

use reqwest::Method;
use scaivault_core::scope::{Permission, ScopeSet};
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{
    BindingRequest, CreateIdentity, CreateToken, PolicyRequest, PolicyTestRequest,
};
use serde_json::{Value, json};

use crate::args::{AuthCmd, IdentityCmd, PoliciesCmd, TokensCmd};
use crate::output::{Out, print_table, text as s};
use crate::target::{CliResult, Target, local_caller, q, to_value};

fn usage(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidRequest, msg)
}

/// `auth login`: the token is checked with `whoami` before it is saved, so a typo or a
/// revoked token is reported now rather than at the next command.
pub async fn login(url: String, given: Option<&str>, out: &Out) -> CliResult<()> {
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
    let remote = crate::target::Remote::new(url, Some(token.to_string()));
    let me = remote.call(Method::GET, "/v1/auth/whoami", None).await?;
    crate::config::set("token", &token).map_err(usage)?;
    out.emit(&me, || {
        println!(
            "Logged in as {} ({}); token saved in {}",
            s(&me["identity_id"]),
            s(&me["identity_type"]),
            crate::config::path().display()
        );
    });
    Ok(())
}

pub async fn auth(target: &Target, cmd: AuthCmd, out: &Out) -> CliResult<()> {
    match cmd {
        AuthCmd::Login => {
            return Err(usage(
                "auth login saves a token for a server; it has no meaning with --vault",
            )
            .into());
        }
        AuthCmd::Whoami => {
            let res = match target {
                Target::Remote(r) => r.call(Method::GET, "/v1/auth/whoami", None).await?,
                Target::Local(e) => e.whoami(&local_caller()),
            };
            out.emit(&res, || {
                println!(
                    "identity:  {} ({})",
                    s(&res["identity_id"]),
                    s(&res["identity_type"])
                );
                println!(
                    "scopes:    {}",
                    res["scopes"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
                println!(
                    "groups:    {}",
                    res["groups"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
                println!(
                    "expires:   {}",
                    if res["token_expires_at"].is_null() {
                        "never".into()
                    } else {
                        s(&res["token_expires_at"])
                    }
                );
            });
        }
    }
    Ok(())
}

pub async fn identity(target: &Target, cmd: IdentityCmd, out: &Out) -> CliResult<()> {
    let c = local_caller();
    let res = match (&cmd, target) {
        (IdentityCmd::Create { id, display_name }, Target::Remote(r)) => {
            r.call(
                Method::POST,
                "/v1/identities",
                Some(&json!({"identity_id": id, "display_name": display_name})),
            )
            .await?
        }
        (IdentityCmd::Create { id, display_name }, Target::Local(e)) => to_value(
            e.create_identity(
                &c,
                CreateIdentity {
                    identity_id: id.clone(),
                    display_name: display_name.clone(),
                },
            )
            .await?,
        )?,
        (IdentityCmd::List, Target::Remote(r)) => {
            r.call(Method::GET, "/v1/identities", None).await?
        }
        (IdentityCmd::List, Target::Local(e)) => {
            json!({ "identities": to_value(e.list_identities(&c, None)?)? })
        }
        (IdentityCmd::Delete { id }, Target::Remote(r)) => {
            r.call(Method::DELETE, &format!("/v1/identities/{}", q(id)), None)
                .await?
        }
        (IdentityCmd::Delete { id }, Target::Local(e)) => {
            e.delete_identity(&c, id).await?;
            Value::Null
        }
        (IdentityCmd::AddMember { group, id }, Target::Remote(r)) => {
            r.call(
                Method::POST,
                &format!("/v1/identities/{}/members", q(group)),
                Some(&json!({"member_id": id})),
            )
            .await?
        }
        (IdentityCmd::AddMember { group, id }, Target::Local(e)) => {
            to_value(e.set_membership(&c, group, id, true).await?)?
        }
        (IdentityCmd::RemoveMember { group, id }, Target::Remote(r)) => {
            r.call(
                Method::DELETE,
                &format!("/v1/identities/{}/members/{}", q(group), q(id)),
                None,
            )
            .await?
        }
        (IdentityCmd::RemoveMember { group, id }, Target::Local(e)) => {
            to_value(e.set_membership(&c, group, id, false).await?)?
        }
        (IdentityCmd::Credentials { id, scope }, Target::Remote(r)) => {
            r.call(
                Method::POST,
                &format!("/v1/identities/{}/credentials", q(id)),
                Some(&json!({"scopes": scope})),
            )
            .await?
        }
        (IdentityCmd::Credentials { id, scope }, Target::Local(e)) => {
            e.create_client_credential(&c, id, ScopeSet::parse_list(scope)?)
                .await?
        }
        (IdentityCmd::ListCredentials { id }, Target::Remote(r)) => {
            r.call(
                Method::GET,
                &format!("/v1/identities/{}/credentials", q(id)),
                None,
            )
            .await?
        }
        (IdentityCmd::ListCredentials { id }, Target::Local(e)) => {
            e.list_client_credentials(&c, id)?
        }
        (IdentityCmd::RevokeCredential { id, credential_id }, Target::Remote(r)) => {
            r.call(
                Method::DELETE,
                &format!("/v1/identities/{}/credentials/{}", q(id), q(credential_id)),
                None,
            )
            .await?
        }
        (IdentityCmd::RevokeCredential { id, credential_id }, Target::Local(e)) => {
            e.revoke_client_credential(&c, id, credential_id).await?
        }
    };
    if matches!(cmd, IdentityCmd::Credentials { .. }) {
        crate::record_before_showing(target, "identity", "credentials").await?;
    }
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

pub async fn tokens(target: &Target, cmd: TokensCmd, out: &Out) -> CliResult<()> {
    let c = local_caller();
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
            let res = match target {
                Target::Remote(r) => r.call(Method::POST, "/v1/auth/tokens", Some(&body)).await,
                Target::Local(e) => e
                    .create_token(&c, req)
                    .await
                    .map_err(Into::into)
                    .and_then(to_value),
            };
            let res = res.map_err(|mut e| {
                if e.error.code == ErrorCode::IdentityNotFound {
                    e.error.message = format!("{identity} does not exist; create it first: scaivault identity create {identity}");
                }
                e
            })?;
            crate::record_before_showing(target, "tokens", "create").await?;
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
            let res = match target {
                Target::Remote(r) => {
                    let f = identity
                        .map(|i| format!("?identity_id={}", q(&i)))
                        .unwrap_or_default();
                    r.call(Method::GET, &format!("/v1/auth/tokens{f}"), None)
                        .await?
                }
                Target::Local(e) => e.list_tokens(&c, identity.as_deref())?,
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
            let res = match target {
                Target::Remote(r) => {
                    r.call(
                        Method::DELETE,
                        &format!("/v1/auth/tokens/{}", q(&token_id)),
                        None,
                    )
                    .await?
                }
                Target::Local(e) => e.revoke_token(&c, &token_id).await?,
            };
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

pub async fn policies(target: &Target, cmd: PoliciesCmd, out: &Out) -> CliResult<()> {
    let c = local_caller();
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
            let res = match target {
                Target::Remote(r) => r.call(Method::POST, "/v1/policies", Some(&body)).await?,
                Target::Local(e) => {
                    let req: PolicyRequest = serde_json::from_value(body)
                        .map_err(|err| usage(format!("invalid policy: {err}")))?;
                    to_value(e.create_policy(&c, req).await?)?
                }
            };
            out.emit(&res, || {
                println!("Created policy {} ({})", s(&res["name"]), s(&res["id"]))
            });
        }
        PoliciesCmd::List => {
            let res = target
                .all_pages(
                    "/v1/policies?include_inactive=true",
                    "policies",
                    |e, cursor| e.list_policies(&c, true, Some(1000), cursor),
                )
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
            let res = match target {
                Target::Remote(r) => {
                    r.call(Method::GET, &format!("/v1/policies/{}", q(&id)), None)
                        .await?
                }
                Target::Local(e) => to_value(e.get_policy(&c, &id)?)?,
            };
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
            match target {
                Target::Remote(r) => {
                    r.call(
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
                Target::Local(e) => e.delete_policy(&c, &id, force).await?,
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
            let res = match target {
                Target::Remote(r) => {
                    r.call(
                        Method::POST,
                        &format!("/v1/policies/{}/bindings", q(&id)),
                        Some(&body),
                    )
                    .await?
                }
                Target::Local(e) => {
                    let req: BindingRequest = serde_json::from_value(body)
                        .map_err(|err| usage(format!("invalid binding: {err}")))?;
                    to_value(e.create_binding(&c, &id, req).await?)?
                }
            };
            out.emit(&res, || {
                println!(
                    "Bound {} to {id} ({})",
                    s(&res["identity_id"]),
                    s(&res["id"])
                )
            });
        }
        PoliciesCmd::Unbind { id, binding } => {
            match target {
                Target::Remote(r) => {
                    r.call(
                        Method::DELETE,
                        &format!("/v1/policies/{}/bindings/{}", q(&id), q(&binding)),
                        None,
                    )
                    .await?;
                }
                Target::Local(e) => e.delete_binding(&c, &id, &binding).await?,
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
            let res = match target {
                Target::Remote(r) => {
                    r.call(Method::POST, "/v1/policies/test", Some(&body))
                        .await?
                }
                Target::Local(e) => {
                    let req: PolicyTestRequest =
                        serde_json::from_value(body).map_err(|err| usage(format!("{err}")))?;
                    to_value(e.test_policy(&c, req)?)?
                }
            };
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
        }
    }
    Ok(())
}
