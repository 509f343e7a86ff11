//! `scaivault init`, `dev`, `server` and `operator …`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scaivault_core::duration::parse_duration;
use scaivault_core::{Error, ErrorCode};
use scaivault_crypto::KdfParams;
use scaivault_engine::{Capability, Clock, Engine, ManualClock, PluginSettings, SystemClock};
use scaivault_server::{AppState, Listen, RateLimits, ServerConfig, TestClock};
use scaivault_store::{Unlock, Vault};
use serde_json::json;
use zeroize::Zeroizing;

use crate::args::{DevArgs, Global, InitArgs, LimitArgs, OperatorCmd, ServerArgs};
use crate::output::Out;
use crate::passphrase;
use crate::target::{CliResult, Method, VaultClient};

/// The offline recovery key as printed: `svrk_` and 64 hex digits.
fn format_recovery_key(key: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "svrk_{}",
        key.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Reads a recovery key file (as written or printed by `init` / `operator rekey`).
fn read_recovery_key(p: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let bad = || {
        Error::new(
            ErrorCode::InvalidRequest,
            format!("{} does not hold a recovery key (svrk_…)", p.display()),
        )
    };
    let text = Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!("cannot read {}: {e}", p.display()),
        )
    })?);
    let hex: String = text
        .trim()
        .strip_prefix("svrk_")
        .ok_or_else(bad)?
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let hex = Zeroizing::new(hex);
    if hex.len() != 64 {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    Ok(Zeroizing::new(bytes.ok_or_else(bad)?))
}

/// Makes a new recovery key, stores its wrap in the vault, and shows it once (or writes it).
async fn new_recovery_key(
    vault: &Vault,
    out: Option<&Path>,
) -> Result<Option<Zeroizing<String>>, Error> {
    let key = Zeroizing::new(scaivault_crypto::random_bytes::<32>().to_vec());
    let text = format_recovery_key(&key);
    let Some(p) = out else {
        warn_dropped(&vault.set_recovery_key(key).await?);
        return Ok(Some(text));
    };
    // The new key is on disk (beside the file it replaces) before the vault switches to it,
    // and takes the file's name only once the vault did: a failure at any point leaves a key
    // that opens the vault under the name the operator gave (a crash between the two leaves
    // the new key in `<file>.new`, and says so below).
    let staged = std::path::PathBuf::from(format!("{}.new", p.display()));
    let _ = std::fs::remove_file(&staged);
    crate::config::write_private(&staged, format!("{}\n", text.as_str()).as_bytes())
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", staged.display())))?;
    match vault.set_recovery_key(key).await {
        Ok(change) => warn_dropped(&change),
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e.into());
        }
    }
    std::fs::rename(&staged, p).map_err(|e| {
        Error::internal(format!(
            "the vault now opens with the key in {}, but it could not be renamed to {}: {e}",
            staged.display(),
            p.display()
        ))
    })?;
    Ok(None)
}

/// Says which ways in stopped working when the root key was replaced (slots of a file made
/// before format 2, which cannot be re-wrapped without their key).
fn warn_dropped(change: &scaivault_store::RootChange) {
    for what in &change.dropped {
        eprintln!(
            "warning: the {what} set up before this version no longer opens the vault; set it up again (`scaivault operator {}`)",
            if *what == "key file" {
                "key-file"
            } else {
                "rekey"
            }
        );
    }
}

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
    warn_if_exposed(path);
    let pass = passphrase::require(
        g.passphrase_file.as_deref(),
        "SCAIVAULT_PASSPHRASE",
        "Vault passphrase: ",
        false,
    )?;
    let vault = Vault::open(path, Unlock::Passphrase(&pass))?;
    Ok(Arc::new(Engine::load_with(
        Arc::new(vault),
        Arc::new(SystemClock),
        plugin_settings(g)?,
    )?))
}

pub async fn init(g: &Global, args: InitArgs, out: &Out) -> CliResult<()> {
    let path = need_vault(g)?.to_owned();
    warn_if_exposed(&path);
    // (A database is checked for an existing vault when it is connected to.)
    if scaivault_store::database_url(&path).is_none() && path.exists() {
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
    let engine = Engine::load_with(Arc::new(vault), Arc::new(SystemClock), plugin_settings(g)?)?;
    let root = engine.create_root_token(None).await?;
    let recovery = new_recovery_key(engine.vault(), args.recovery_key_file.as_deref()).await?;
    // As the vault names itself: a database without its password.
    let path = engine.vault().path().to_owned();
    engine.vault().shutdown();
    let res = json!({
        "vault": path, "root_token": root.token, "token_id": root.token_id,
        "recovery_key": recovery.as_ref().map(|r| r.as_str()), "recovery_key_file": args.recovery_key_file,
    });
    out.emit(&res, || {
        println!("Created vault {}", path.display());
        println!("Root token: {}", root.token);
        match (&recovery, &args.recovery_key_file) {
            (Some(r), _) => println!(
                "Recovery key: {} (unseals the vault if the passphrase is lost; keep it offline)",
                r.as_str()
            ),
            (None, Some(f)) => println!(
                "Recovery key written to {} (keep it offline, apart from the vault)",
                f.display()
            ),
            _ => {}
        }
        println!();
        println!("The root token is shown only now. Use it to create identities, policies and");
        println!(
            "narrower tokens, then revoke it: scaivault tokens revoke {}",
            root.token_id
        );
    });
    Ok(())
}

/// The operator's plugin settings from the global flags (or the server's TOML file).
pub fn plugin_settings(g: &Global) -> Result<PluginSettings, Error> {
    let mut allow = Capability::default_allowed();
    for name in &g.plugin_capabilities {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let cap = Capability::parse(name).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("unknown plugin capability {name:?}; one of random, clock, http, postgres"),
            )
        })?;
        allow.insert(cap);
    }
    Ok(PluginSettings {
        dir: g.plugin_dir.clone(),
        allow,
        allow_hosts: g
            .allow_hosts
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect(),
    })
}

fn server_config(l: &LimitArgs, dev: bool, plugins: PluginSettings) -> CliResult<ServerConfig> {
    let d = ServerConfig::default();
    let duration = |v: &Option<String>, default: std::time::Duration| match v {
        Some(s) => scaivault_core::duration::parse_duration(s),
        None => Ok(default),
    };
    Ok(ServerConfig {
        max_body_bytes: l.max_body_bytes,
        rate_limits: RateLimits {
            enabled: !l.no_rate_limit,
            multiplier: l
                .rate_limit_multiplier
                .unwrap_or(if dev { 100.0 } else { 1.0 }),
        },
        preauth: scaivault_server::PreAuthLimits {
            enabled: !l.no_rate_limit,
            failures_per_minute: l
                .auth_failures_per_minute
                .unwrap_or(d.preauth.failures_per_minute),
        },
        max_connections: l.max_connections.unwrap_or(d.max_connections),
        max_connections_per_address: l
            .max_connections_per_address
            .unwrap_or(d.max_connections_per_address),
        header_timeout: duration(&l.header_timeout, d.header_timeout)?,
        idle_timeout: duration(&l.idle_timeout, d.idle_timeout)?,
        plugins,
        ..d
    })
}

/// Sets what must be set before the vault file is opened: its page cache. The flag's range is
/// checked by clap; a config file's value is checked here.
fn apply_memory_limits(l: &LimitArgs) -> CliResult<()> {
    let mib = l
        .cache_mib
        .map_or(scaivault_store::DEFAULT_CACHE_MIB, usize::from);
    if !(1..=4096).contains(&mib) {
        return Err(Error::new(
            ErrorCode::InvalidConfig,
            format!("cache_mib must be between 1 and 4096 (MiB), not {mib}"),
        )
        .into());
    }
    scaivault_store::set_cache_mib(mib);
    Ok(())
}

pub async fn dev(g: &Global, args: DevArgs, out: &Out) -> CliResult<()> {
    apply_memory_limits(&args.limits)?;
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
    // `--test-clock`: one manual clock for the engine and the server, moved by
    // `POST /v1/sys/test/clock`, so tests can let 90 days pass.
    let manual = args
        .test_clock
        .then(|| Arc::new(ManualClock::new(scaivault_core::time::Timestamp::now())));
    let clock: Arc<dyn Clock> = match &manual {
        Some(m) => m.clone(),
        None => Arc::new(SystemClock),
    };
    let engine = Engine::load_with(Arc::new(vault), clock.clone(), plugin_settings(g)?)?;
    let root = engine.create_root_token(None).await?;
    let mut config = server_config(&args.limits, true, plugin_settings(g)?)?;
    config.test_clock = manual.map(TestClock);
    let state = AppState::new(path.clone(), Some(engine), clock, config);
    let json_out = out.json;
    let token = Zeroizing::new(root.token.clone());
    drop(root);
    let temporary = _tmp.is_some();
    let shown = path.clone();
    // `_tmp` lives until `serve` returns (after a graceful shutdown), then the temporary vault
    // is deleted with its directory.
    let result = scaivault_server::serve(state, Listen { addr: args.listen, tls: None, insecure: false }, move |addr| {
        let path = shown;
        let url = format!("http://{addr}");
        if json_out {
            println!("{}", json!({ "url": url, "root_token": token.as_str(), "vault": path }));
        } else {
            println!("ScaiVault dev server listening on {url}");
            println!("Vault file: {}{}", path.display(), if temporary { " (temporary)" } else { "" });
            println!("Root token: {}", token.as_str());
            println!();
            println!("  export SCAIVAULT_URL={url}");
            println!("  export SCAIVAULT_TOKEN={}", token.as_str());
            println!();
            println!("Development mode: loopback only, unsealed, data in a temporary file. Ctrl-C stops it.");
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    })
    .await;
    drop(_tmp);
    result.map_err(|e| Error::new(ErrorCode::InvalidConfig, e.to_string()))?;
    Ok(())
}

/// Warns (on stderr) when other local users can read the vault file.
fn warn_if_exposed(path: &std::path::Path) {
    if let Some(url) = scaivault_store::database_url(path) {
        // A password in a connection string on the command line is in the process list,
        // readable by every local user.
        let has_password = carries_password(url);
        if has_password && std::env::args().any(|a| a.contains(url)) {
            eprintln!(
                "warning: the database password is on the command line, where every local user can read it; give the connection string in SCAIVAULT_STORAGE or the server's config file"
            );
        }
        return;
    }
    if let Some(why) = scaivault_store::private_fs::exposure(path) {
        eprintln!("warning: {why}");
    }
}

/// Removes a copy that did not verify: the file, or the database's records.
fn discard_copy(to: &std::path::Path) {
    match scaivault_store::database_url(to) {
        Some(url) => {
            if let Ok(db) = scaivault_store::PgBackend::connect(url, false) {
                let _ = db.clear();
            }
        }
        None => {
            let _ = std::fs::remove_file(to);
        }
    }
}

/// Whether a connection string carries a password (`postgresql://u:pw@h/db` or `password=`).
fn carries_password(url: &str) -> bool {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || url.contains("password=")
}

pub async fn server(g: &Global, args: ServerArgs) -> CliResult<()> {
    apply_memory_limits(&args.limits)?;
    let path = need_vault(g)?.to_owned();
    warn_if_exposed(&path);
    // Fail early on a missing or unreadable file, without ever writing to it.
    Vault::read_header(&path)?;
    let engine = if args.sealed {
        None
    } else if let Some(rk) = &args.recovery_key_file {
        let key = read_recovery_key(rk)?;
        let vault = Vault::open(&path, Unlock::RecoveryKey(&key))?;
        Some(Engine::load_with(
            Arc::new(vault),
            Arc::new(SystemClock),
            plugin_settings(g)?,
        )?)
    } else if let Some(kf) = &args.key_file {
        let key = Zeroizing::new(std::fs::read(kf).map_err(|e| {
            Error::new(
                ErrorCode::InvalidRequest,
                format!("cannot read {}: {e}", kf.display()),
            )
        })?);
        let vault = Vault::open(&path, Unlock::KeyFile(&key))?;
        Some(Engine::load_with(
            Arc::new(vault),
            Arc::new(SystemClock),
            plugin_settings(g)?,
        )?)
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
                Some(Engine::load_with(
                    Arc::new(vault),
                    Arc::new(SystemClock),
                    plugin_settings(g)?,
                )?)
            }
            None => None,
        }
    };
    let sealed = engine.is_none();
    let mut config = server_config(&args.limits, false, plugin_settings(g)?)?;
    config.audit_retention = args
        .audit_retention
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    if let Some(dir) = &args.backup_dir {
        scaivault_store::private_fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let every = parse_duration(&args.backup_interval)?;
        config.backups = Some((dir.clone(), every, args.backup_keep.max(1)));
    }
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

/// The engine of `--vault FILE`, for what works on the file itself and has no route.
fn file_engine(g: &Global, what: &str) -> Result<Arc<Engine>, Error> {
    if g.vault.is_none() {
        return Err(Error::invalid_request(format!("{what}: give --vault FILE")));
    }
    open_local(g)
}

pub async fn operator(
    g: &Global,
    target: impl FnOnce() -> CliResult<VaultClient>,
    cmd: OperatorCmd,
    out: &Out,
) -> CliResult<()> {
    match cmd {
        OperatorCmd::Unseal => {
            if g.vault.is_some() {
                return Err(Error::invalid_request(
                    "unseal talks to a server; local mode unseals with the passphrase itself",
                )
                .into());
            }
            let r = target()?;
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
            if g.vault.is_some() {
                return Err(Error::invalid_request("seal talks to a server").into());
            }
            let r = target()?;
            let res = r.call(Method::POST, "/v1/sys/seal", None).await?;
            out.emit(&res, || println!("Sealed"));
        }
        OperatorCmd::Status => {
            let res = match &g.vault {
                Some(p) => {
                    warn_if_exposed(p);
                    let h = Vault::read_header(p)?;
                    json!({ "vault": scaivault_store::shown_location(p), "file_format_version": h.format_version, "kdf": h.kdf, "key_file": h.wrapped_root_keyfile.is_some() })
                }
                None => target()?.get("/v1/sys/status").await?,
            };
            out.emit(&res, || {
                println!("{}", serde_json::to_string_pretty(&res).unwrap_or_default())
            });
        }
        OperatorCmd::Passphrase {
            new_passphrase_file,
        } => {
            let engine = file_engine(g, "changing the passphrase works on the file")?;
            let new = passphrase::require(
                new_passphrase_file.as_deref(),
                "SCAIVAULT_NEW_PASSPHRASE",
                "New passphrase: ",
                true,
            )?;
            // The Argon2id parameters stay as the file has them.
            let change = engine.vault().change_passphrase(new, None).await?;
            warn_dropped(&change);
            out.emit(&json!({"changed": true, "dropped_unlock_methods": change.dropped}), || {
                println!(
                    "Passphrase changed and the root key replaced (no record was rewritten): the old passphrase opens nothing written from now on, even with a later copy of the file"
                )
            });
        }
        OperatorCmd::RotateKey => {
            let res = target()?
                .call(Method::POST, "/v1/sys/rotate-key", None)
                .await?;
            out.emit(&res, || {
                println!(
                    "New data key {} is active and the root key replaced; older records keep their key",
                    res["active_data_key"]
                )
            });
        }
        OperatorCmd::Rekey { out: file } => {
            let engine = file_engine(g, "the recovery key is replaced on the file")?;
            let shown = new_recovery_key(engine.vault(), file.as_deref()).await?;
            let res = json!({ "recovery_key": shown.as_ref().map(|s| s.as_str()), "recovery_key_file": file });
            out.emit(&res, || match &shown {
                Some(k) => println!(
                    "New recovery key: {} (the previous one no longer works)",
                    k.as_str()
                ),
                None => println!("New recovery key written; the previous one no longer works"),
            });
        }
        OperatorCmd::Backup { out: file } => {
            let res = target()?.download("/v1/sys/backup", &file).await?;
            out.emit(&res, || {
                println!(
                    "Wrote backup {} ({} bytes of vault, audit head {}, sha256 {})",
                    file.display(),
                    res["vault_bytes"],
                    res["audit_head_seq"],
                    res["sha256"].as_str().unwrap_or("")
                )
            });
        }
        OperatorCmd::Restore {
            from,
            to,
            path,
            version,
        } => {
            let res = match (to, path) {
                (Some(to), None) => {
                    let t = scaivault_store::extract_backup(&from, &to)?;
                    // A backup made before trailers were authenticated (format 1) has only
                    // its checksum: restored whole, with a warning, as before.
                    if t.backup_format < 2 {
                        eprintln!(
                            "warning: this backup was made before backup trailers were authenticated; only its checksum was checked"
                        );
                    } else {
                        // The trailer is authenticated under the vault's own key: open the copy
                        // with the passphrase and check it, or keep nothing.
                        let pass = passphrase::require(
                            g.passphrase_file.as_deref(),
                            "SCAIVAULT_PASSPHRASE",
                            "Passphrase of the backed-up vault: ",
                            false,
                        );
                        let checked = pass.and_then(|pass| {
                            let restored = Vault::open(&to, Unlock::Passphrase(&pass))?;
                            restored.check_backup_trailer(&t)?;
                            restored.shutdown();
                            Ok::<_, Error>(())
                        });
                        if let Err(e) = checked {
                            let _ = std::fs::remove_file(&to);
                            return Err(e.into());
                        }
                    }
                    json!({ "restored_to": to, "backup": t })
                }
                (None, Some(p)) => {
                    let v = version.map(|v| format!("&version={v}")).unwrap_or_default();
                    target()?
                        .upload(
                            &format!("/v1/sys/restore?path={}{v}", crate::target::q(&p)),
                            &from,
                        )
                        .await?
                }
                _ => {
                    return Err(Error::invalid_request(
                        "give --into NEW_VAULT_FILE, or --path P [--version N]",
                    )
                    .into());
                }
            };
            out.emit(&res, || match res.get("restored_to") {
                Some(to) => println!(
                    "Restored the backup into {}; open it with the vault's passphrase",
                    to.as_str().unwrap_or("")
                ),
                None => println!(
                    "Restored {} as version {}",
                    res["path"].as_str().unwrap_or(""),
                    res["version"]
                ),
            });
        }
        OperatorCmd::DestroyDamaged { path } => {
            let res = target()?.destroy_damaged(&path).await?;
            out.emit(&res, || {
                println!(
                    "Destroyed the damaged secret {path} ({} version records removed)",
                    res.versions_removed
                );
                if res.other_unreferenced > 0 {
                    println!(
                        "{} other version records belong to no intact secret (another damaged secret's, or left by a head rolled back outside the vault): they were left in place, and `scaivault operator verify` names them",
                        res.other_unreferenced
                    );
                }
            });
        }
        OperatorCmd::Verify => {
            let res = target()?.call(Method::POST, "/v1/sys/verify", None).await?;
            out.emit(&res, || {
                if res["ok"] == json!(true) {
                    println!("ok: {}", res["checked"]);
                } else {
                    for p in res["problems"].as_array().cloned().unwrap_or_default() {
                        println!("problem: {}", p.as_str().unwrap_or(""));
                    }
                }
            });
            if res["ok"] != json!(true) {
                return Err(Error::new(
                    ErrorCode::IntegrityError,
                    "the vault has problems (listed above)",
                )
                .into());
            }
        }
        OperatorCmd::Migrate { from, to } => {
            warn_if_exposed(&from);
            warn_if_exposed(&to);
            let pass = passphrase::require(
                g.passphrase_file.as_deref(),
                "SCAIVAULT_PASSPHRASE",
                "Vault passphrase (to verify the copy): ",
                false,
            )?;
            let (f, t) = (from.clone(), to.clone());
            let report = tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let copied = Vault::copy_store(&f, &t)?;
                // The copy must open with the vault's key and pass every check, or it is
                // not kept.
                let checked = (|| {
                    let vault = Vault::open(&t, Unlock::Passphrase(&pass))?;
                    let engine = Engine::load_with(
                        Arc::new(vault),
                        Arc::new(SystemClock),
                        Default::default(),
                    )?;
                    let report = engine.verify_vault(&scaivault_engine::Caller::local_operator());
                    engine.vault().shutdown();
                    report
                })();
                match checked {
                    Ok(r) if r.ok => Ok((copied, r)),
                    other => {
                        discard_copy(&t);
                        match other {
                            Err(e) => Err(e),
                            Ok(r) => Err(Error::new(
                                ErrorCode::IntegrityError,
                                "the copy does not verify; nothing was kept",
                            )
                            .with("problems", r.problems)),
                        }
                    }
                }
            })
            .await
            .map_err(|_| Error::internal("migrate task failed"))??;
            let (copied, r) = report;
            let shown = |p: &std::path::Path| {
                scaivault_store::database_url(p).map_or_else(
                    || p.display().to_string(),
                    scaivault_store::redacted_location,
                )
            };
            let res = json!({
                "from": shown(&from), "to": shown(&to), "records": copied, "verified": r.checked,
            });
            out.emit(&res, || {
                println!(
                    "Copied {copied} records from {} to {} and verified the copy: {}",
                    shown(&from),
                    shown(&to),
                    res["verified"]
                )
            });
        }
        OperatorCmd::KeyFile { out: file } => {
            let engine = file_engine(g, "a key file is set up on the file")?;
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
            warn_dropped(&engine.vault().set_key_file(key).await?);
            out.emit(&json!({"key_file": file}), || {
                println!("Wrote {}; `scaivault server --key-file {}` unseals with it. Keep it apart from the vault file.", file.display(), file.display())
            });
        }
    }
    Ok(())
}
