//! `scaivault init`, `dev`, `server` and `operator …`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::Method;
use scaivault_core::duration::parse_duration;
use scaivault_core::{Error, ErrorCode};
use scaivault_crypto::KdfParams;
use scaivault_engine::{Engine, SystemClock};
use scaivault_server::{AppState, Listen, RateLimits, ServerConfig};
use scaivault_store::{Unlock, Vault};
use serde_json::json;
use zeroize::Zeroizing;

use crate::args::{DevArgs, Global, InitArgs, LimitArgs, OperatorCmd, ServerArgs};
use crate::output::Out;
use crate::passphrase;
use crate::target::{CliResult, Target};

fn need_vault(g: &Global) -> Result<&Path, Error> {
    g.vault.as_deref().ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidRequest,
            "give the vault file with --vault FILE (or SCAIVAULT_VAULT)",
        )
    })
}

/// Opens a vault file for local mode, unsealing it with the passphrase from the usual sources.
pub fn open_local(g: &Global) -> Result<Arc<Engine>, Error> {
    let path = need_vault(g)?;
    let pass = passphrase::require(
        g.passphrase_file.as_deref(),
        "SCAIVAULT_PASSPHRASE",
        "Vault passphrase: ",
        false,
    )?;
    let vault = Vault::open(path, Unlock::Passphrase(&pass))?;
    Ok(Arc::new(Engine::load(
        Arc::new(vault),
        Arc::new(SystemClock),
    )?))
}

pub async fn init(g: &Global, args: InitArgs, out: &Out) -> CliResult<()> {
    let path = need_vault(g)?.to_owned();
    if path.exists() {
        return Err(Error::new(
            ErrorCode::VaultExists,
            format!("{} exists; refusing to overwrite a vault", path.display()),
        )
        .into());
    }
    let kdf = KdfParams {
        m_cost_kib: args.kdf_memory_mib.saturating_mul(1024),
        t_cost: args.kdf_passes,
        p_cost: 4,
    };
    if kdf.check().is_err() {
        return Err(Error::new(
            ErrorCode::InvalidConfig,
            "KDF parameters below the floor (19 MiB, 2 passes) or above 4 GiB",
        )
        .into());
    }
    let pass = passphrase::require(
        g.passphrase_file.as_deref(),
        "SCAIVAULT_PASSPHRASE",
        "New vault passphrase: ",
        true,
    )?;
    let p2 = path.clone();
    let vault = tokio::task::spawn_blocking(move || Vault::create(&p2, &pass, kdf))
        .await
        .map_err(|_| Error::internal("init task failed"))?
        .map_err(Error::from)?;
    let engine = Engine::load(Arc::new(vault), Arc::new(SystemClock))?;
    let root = engine.create_root_token(None).await?;
    engine.vault().shutdown();
    let res = json!({ "vault": path, "root_token": root.token, "token_id": root.token_id });
    out.emit(&res, || {
        println!("Created vault {}", path.display());
        println!("Root token: {}", root.token);
        println!();
        println!("The root token is shown only now. Use it to create identities, policies and");
        println!(
            "narrower tokens, then revoke it: scaivault tokens revoke {}",
            root.token_id
        );
    });
    Ok(())
}

fn server_config(l: &LimitArgs, dev: bool) -> ServerConfig {
    ServerConfig {
        max_body_bytes: l.max_body_bytes,
        rate_limits: RateLimits {
            enabled: !l.no_rate_limit,
            multiplier: l
                .rate_limit_multiplier
                .unwrap_or(if dev { 100.0 } else { 1.0 }),
        },
        public_metrics: true,
        audit_retention: None,
    }
}

pub async fn dev(g: &Global, args: DevArgs, out: &Out) -> CliResult<()> {
    let (path, _tmp, pass): (PathBuf, Option<tempfile::TempDir>, Zeroizing<Vec<u8>>) =
        match &args.dev_vault {
            Some(p) => {
                let pass = passphrase::require(
                    g.passphrase_file.as_deref(),
                    "SCAIVAULT_PASSPHRASE",
                    "Dev vault passphrase: ",
                    false,
                )?;
                (p.clone(), None, pass)
            }
            None => {
                let dir = tempfile::tempdir()
                    .map_err(|e| Error::internal(format!("cannot create a temp dir: {e}")))?;
                // A throwaway vault: its passphrase is random and forgotten, like `vault server -dev`.
                let pass = Zeroizing::new(scaivault_crypto::random_token_body().into_bytes());
                (dir.path().join("dev-vault.db"), Some(dir), pass)
            }
        };
    let vault = if path.exists() {
        Vault::open(&path, Unlock::Passphrase(&pass))
    } else {
        Vault::create(&path, &pass, KdfParams::FLOOR)
    }
    .map_err(Error::from)?;
    let engine = Engine::load(Arc::new(vault), Arc::new(SystemClock))?;
    let root = engine.create_root_token(None).await?;
    let state = AppState::new(
        path.clone(),
        Some(engine),
        Arc::new(SystemClock),
        server_config(&args.limits, true),
    );
    let json_out = out.json;
    let token = Zeroizing::new(root.token.clone());
    drop(root);
    scaivault_server::serve(state, Listen { addr: args.listen, tls: None, insecure: false }, move |addr| {
        let url = format!("http://{addr}");
        if json_out {
            println!("{}", json!({ "url": url, "root_token": token.as_str(), "vault": path }));
        } else {
            println!("ScaiVault dev server listening on {url}");
            println!("Vault file: {}{}", path.display(), if _tmp.is_some() { " (temporary)" } else { "" });
            println!("Root token: {}", token.as_str());
            println!();
            println!("  export SCAIVAULT_URL={url}");
            println!("  export SCAIVAULT_TOKEN={}", token.as_str());
            println!();
            println!("Development mode: loopback only, unsealed, data in a temporary file. Ctrl-C stops it.");
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        // The temp dir must outlive the server: keep it alive until the process exits.
        std::mem::forget(_tmp);
    })
    .await
    .map_err(|e| Error::new(ErrorCode::InvalidConfig, e.to_string()))?;
    Ok(())
}

pub async fn server(g: &Global, args: ServerArgs) -> CliResult<()> {
    let path = need_vault(g)?.to_owned();
    // Fail early on a missing or unreadable file, without ever writing to it.
    Vault::read_header(&path)?;
    let engine = if args.sealed {
        None
    } else if let Some(kf) = &args.key_file {
        let key = Zeroizing::new(std::fs::read(kf).map_err(|e| {
            Error::new(
                ErrorCode::InvalidRequest,
                format!("cannot read {}: {e}", kf.display()),
            )
        })?);
        let vault = Vault::open(&path, Unlock::KeyFile(&key))?;
        Some(Engine::load(Arc::new(vault), Arc::new(SystemClock))?)
    } else {
        match passphrase::obtain(
            g.passphrase_file.as_deref(),
            "SCAIVAULT_PASSPHRASE",
            "Vault passphrase: ",
            false,
        )? {
            Some(pass) => {
                let p = path.clone();
                let vault =
                    tokio::task::spawn_blocking(move || Vault::open(&p, Unlock::Passphrase(&pass)))
                        .await
                        .map_err(|_| Error::internal("unseal task failed"))??;
                Some(Engine::load(Arc::new(vault), Arc::new(SystemClock))?)
            }
            None => None,
        }
    };
    let sealed = engine.is_none();
    let mut config = server_config(&args.limits, false);
    config.audit_retention = args
        .audit_retention
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    let state = AppState::new(path.clone(), engine, Arc::new(SystemClock), config);
    let tls = args.tls_cert.zip(args.tls_key);
    let scheme = if tls.is_some() { "https" } else { "http" };
    scaivault_server::serve(
        state,
        Listen {
            addr: args.listen,
            tls,
            insecure: args.insecure_listen,
        },
        move |addr| {
            eprintln!(
                "ScaiVault listening on {scheme}://{addr} ({})",
                if sealed {
                    "sealed: run scaivault operator unseal"
                } else {
                    "unsealed"
                }
            );
        },
    )
    .await
    .map_err(|e| Error::new(ErrorCode::InvalidConfig, e.to_string()))?;
    Ok(())
}

pub async fn operator(
    g: &Global,
    target: impl FnOnce() -> CliResult<Target>,
    cmd: OperatorCmd,
    out: &Out,
) -> CliResult<()> {
    match cmd {
        OperatorCmd::Unseal => {
            let Target::Remote(r) = target()? else {
                return Err(Error::invalid_request(
                    "unseal talks to a server; local mode unseals with the passphrase itself",
                )
                .into());
            };
            let pass = passphrase::require(
                g.passphrase_file.as_deref(),
                "SCAIVAULT_PASSPHRASE",
                "Vault passphrase: ",
                false,
            )?;
            let pass = Zeroizing::new(
                String::from_utf8(pass.to_vec())
                    .map_err(|_| Error::invalid_request("the passphrase is not UTF-8"))?,
            );
            let res = r
                .call(
                    Method::POST,
                    "/v1/sys/unseal",
                    Some(&json!({ "passphrase": pass.as_str() })),
                )
                .await?;
            out.emit(&res, || println!("Unsealed"));
        }
        OperatorCmd::Seal => {
            let Target::Remote(r) = target()? else {
                return Err(Error::invalid_request("seal talks to a server").into());
            };
            let res = r.call(Method::POST, "/v1/sys/seal", None).await?;
            out.emit(&res, || println!("Sealed"));
        }
        OperatorCmd::Status => {
            let res = match &g.vault {
                Some(p) => {
                    let h = Vault::read_header(p)?;
                    json!({ "vault": p, "file_format_version": h.format_version, "kdf": h.kdf, "key_file": h.wrapped_root_keyfile.is_some() })
                }
                None => match target()? {
                    Target::Remote(r) => r.call(Method::GET, "/v1/sys/status", None).await?,
                    Target::Local(_) => unreachable!("local mode needs --vault"),
                },
            };
            out.emit(&res, || {
                println!("{}", serde_json::to_string_pretty(&res).unwrap_or_default())
            });
        }
        OperatorCmd::Passphrase {
            new_passphrase_file,
        } => {
            let Target::Local(engine) = target()? else {
                return Err(Error::invalid_request(
                    "changing the passphrase works on the file: give --vault FILE",
                )
                .into());
            };
            let new = passphrase::require(
                new_passphrase_file.as_deref(),
                "SCAIVAULT_NEW_PASSPHRASE",
                "New passphrase: ",
                true,
            )?;
            let header = Vault::read_header(engine.vault().path()).ok();
            let kdf = header.map(|h| h.kdf).unwrap_or(KdfParams::DEFAULT);
            engine.vault().change_passphrase(new, kdf).await?;
            out.emit(&json!({"changed": true}), || {
                println!(
                    "Passphrase changed (the root key was re-wrapped; no record was rewritten)"
                )
            });
        }
        OperatorCmd::RotateKey => {
            let res = match target()? {
                Target::Remote(r) => r.call(Method::POST, "/v1/sys/rotate-key", None).await?,
                Target::Local(e) => {
                    json!({ "active_data_key": e.vault().rotate_data_key().await.map_err(Error::from)? })
                }
            };
            out.emit(&res, || {
                println!(
                    "New data key {} is active; older records keep their key",
                    res["active_data_key"]
                )
            });
        }
        OperatorCmd::KeyFile { out: file } => {
            let Target::Local(engine) = target()? else {
                return Err(Error::invalid_request(
                    "a key file is set up on the file: give --vault FILE",
                )
                .into());
            };
            if file.exists() {
                return Err(Error::invalid_request(format!(
                    "{} exists; refusing to overwrite",
                    file.display()
                ))
                .into());
            }
            let key = Zeroizing::new(scaivault_crypto::random_bytes::<32>().to_vec());
            crate::config::write_private(&file, &key)
                .map_err(|e| Error::internal(format!("cannot write {}: {e}", file.display())))?;
            engine.vault().set_key_file(key).await?;
            out.emit(&json!({"key_file": file}), || {
                println!("Wrote {}; `scaivault server --key-file {}` unseals with it. Keep it apart from the vault file.", file.display(), file.display())
            });
        }
    }
    Ok(())
}
