//! The `scaivault` command line: argument parsing and output. Every command is written once
//! against `scaivault_client::VaultClient`, which reaches a server over HTTP or, with
//! `--vault FILE`, the same API served in this process. Business rules live in the engine.

#![forbid(unsafe_code)]

mod admin;
mod args;
mod audit;
mod bench;
mod config;
pub use scaivault_core::dotenv;
mod harden;
mod inject;
mod migrate;
mod output;
mod passphrase;
mod plugins;
mod references;
mod rotation;
mod run;
mod secrets;
mod serve;
mod server_config;
mod target;
mod webhooks;

use clap::Parser;
use scaivault_core::{Error, ErrorCode};

use crate::args::{Cli, Command, ConfigCmd, Global};
use crate::output::Out;
use crate::target::{CliError, CliResult, VaultClient};

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    // A reader that closes the pipe early (`| head`) ends the command quietly, as it ends
    // `cat`: `println!` panics on a closed stdout, and that one panic is not an error.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = match Cli::try_parse() {
        Ok(mut c) => {
            // A vault on PostgreSQL is named by SCAIVAULT_STORAGE as well (the and
            // the operator guide's name for it); --vault/--storage and SCAIVAULT_VAULT first.
            if c.global.vault.is_none()
                && let Some(s) = std::env::var_os("SCAIVAULT_STORAGE").filter(|s| !s.is_empty())
            {
                c.global.vault = Some(s.into());
            }
            c
        }
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            // A command line that does not parse: with --json anywhere on it, the error is
            // the API's JSON envelope too (clap's text, uncoloured, as its message).
            if std::env::args()
                .take_while(|a| a != "--")
                .any(|a| a == "--json")
            {
                let message = e.render().to_string();
                eprintln!(
                    "{}",
                    serde_json::json!({ "error": {
                        "code": ErrorCode::InvalidRequest.as_str(),
                        "message": message.trim(),
                        "details": { "usage": true },
                        "request_id": null,
                    } })
                );
            } else {
                let _ = e.print();
            }
            return scaivault_core::error::USAGE_EXIT_CODE;
        }
    };
    let serving = matches!(cli.command, Command::Dev(_) | Command::Server(_));
    let json_errors = cli.global.json || cli.global.format == Some(args::Format::Json);
    let filter = std::env::var("SCAIVAULT_LOG").unwrap_or_else(|_| {
        if std::env::var("SCAIVAULT_DEBUG").as_deref() == Ok("1") {
            "debug".into()
        } else if serving {
            "info".into()
        } else {
            "warn".into()
        }
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        // Colour only for a person at a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let hardening = harden::apply();
    if serving && let Some(w) = hardening {
        tracing::warn!("{w}");
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // The store's calls are synchronous and hold the worker that makes them; on a database
    // each is a network round trip, during which a worker per core would leave the cores
    // idle (2 workers: ~1,600 audited reads/s; see docs/PERFORMANCE.md, "Several nodes").
    let on_database = cli
        .global
        .vault
        .as_deref()
        .is_some_and(|v| scaivault_store::database_url(v).is_some());
    if serving && on_database {
        runtime.worker_threads(DATABASE_WORKERS);
    }
    let rt = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => 0,
        Err(CliError { error, request_id }) if json_errors => {
            // With `--json`, the error too is JSON (the API's envelope), on stderr.
            let request_id = request_id.filter(|r| !r.starts_with("local_"));
            eprintln!(
                "{}",
                serde_json::json!({ "error": {
                    "code": error.code.as_str(), "message": error.message,
                    "details": error.details, "request_id": request_id,
                } })
            );
            error.code.exit_code()
        }
        Err(CliError { error, request_id }) => {
            // A local command's request id (`local_…`) is in its audit entry; it means
            // nothing to quote to a server's operator.
            match request_id.filter(|r| !r.starts_with("local_")) {
                Some(rid) => eprintln!("error: {}: {} (request {rid})", error.code, error.message),
                None => eprintln!("error: {}: {}", error.code, error.message),
            }
            if let Some(fields) = error.details.get("fields").and_then(|f| f.as_object()) {
                for (k, v) in fields {
                    eprintln!(
                        "  {k}: {}",
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    );
                }
            }
            error.code.exit_code()
        }
    }
}

/// The vault a command talks to: the file given with `--vault`, opened here and served by
/// the same router in this process, or a server over HTTP.
fn target(g: &Global) -> CliResult<VaultClient> {
    if let Some(path) = &g.vault {
        let engine = serve::open_local(g)?;
        return Ok(VaultClient::in_process(
            scaivault_client::in_process::Local::new(path.clone(), engine),
        ));
    }
    let mut client = VaultClient::http(server_url(g), token(g), &trust(g))?;
    // SCAIVAULT_RATE_LIMIT_WAIT: how long to wait out rate limits (`0s`: fail at once, exit 6).
    if let Ok(w) = std::env::var("SCAIVAULT_RATE_LIMIT_WAIT") {
        let patience = match w.trim() {
            "0" | "0s" => std::time::Duration::ZERO,
            w => scaivault_core::duration::parse_duration(w).map_err(|e| {
                Error::invalid_request(format!("SCAIVAULT_RATE_LIMIT_WAIT: {}", e.message))
            })?,
        };
        client = client.with_rate_limit_patience(patience);
    }
    // A rate limit is waited out (up to a minute): on a terminal, say so instead of hanging.
    Ok(if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        client.with_wait_notice(std::sync::Arc::new(|w: std::time::Duration| {
            eprintln!(
                "scaivault: the vault is rate-limiting these requests; trying again in {}s",
                w.as_secs().max(1)
            )
        }))
    } else {
        client
    })
}

/// How the server's certificate is checked: `--ca-cert` (or the config file's `ca_cert`),
/// and `--tls-skip-verify`, which is said out loud each time.
pub(crate) fn trust(g: &Global) -> scaivault_client::http::Trust {
    if g.tls_skip_verify {
        eprintln!(
            "warning: --tls-skip-verify: the server's certificate is not checked; anyone on the network path can read the token and every secret"
        );
    }
    scaivault_client::http::Trust {
        ca_cert: g
            .ca_cert
            .clone()
            .or_else(|| config::get("ca_cert").map(Into::into)),
        skip_verify: g.tls_skip_verify,
    }
}

/// The token the CLI calls a server with: `--token`, SCAIVAULT_TOKEN, or the config file.
pub(crate) fn token(g: &Global) -> Option<String> {
    g.token.clone().or_else(|| config::get("token"))
}

/// The server's address: `--url`, SCAIVAULT_URL, the config file, or the default.
pub(crate) fn server_url(g: &Global) -> String {
    g.url
        .clone()
        .or_else(|| config::get("url"))
        .unwrap_or_else(|| "http://127.0.0.1:8200".into())
}

/// Runs one command against the vault and ends the session whatever its outcome (a file
/// opened in this process persists its last-access times and closes, as a server would).
macro_rules! on_vault {
    ($g:expr, |$t:ident| $body:expr) => {{
        let $t = target(&$g)?;
        let result = $body.await;
        $t.close().await;
        result
    }};
}

async fn run(cli: Cli) -> CliResult<()> {
    let g = cli.global;
    let out = Out::new(g.json, g.format);
    let exporting = matches!(cli.command, Command::Audit(args::AuditCmd::Export { .. }));
    match out.format {
        args::Format::Env
            if !matches!(
                cli.command,
                Command::Secrets(args::SecretsCmd::Read { field: None, .. })
            ) =>
        {
            return Err(Error::invalid_request(
                "--format env is for `secrets read` (a whole prefix: `scaivault export dotenv`)",
            )
            .into());
        }
        args::Format::Jsonl | args::Format::Csv if !exporting => {
            return Err(
                Error::invalid_request("--format jsonl and csv are for `audit export`").into(),
            );
        }
        args::Format::Table | args::Format::Yaml | args::Format::Env if exporting => {
            return Err(Error::invalid_request(
                "audit export writes --format jsonl (default) or csv",
            )
            .into());
        }
        _ => {}
    }
    match cli.command {
        Command::Init(a) => serve::init(&g, a, &out).await,
        Command::Dev(a) => serve::dev(&g, a, &out).await,
        Command::Server(mut a) => {
            let mut g = g;
            if let Some(path) = a.config.clone() {
                server_config::apply(server_config::load(&path)?, &mut g, &mut a);
            }
            serve::server(&g, a).await
        }
        Command::Secrets(c) => on_vault!(g, |t| secrets::run(&t, c, &out)),
        Command::Auth(args::AuthCmd::Login) if g.vault.is_none() => {
            admin::login(server_url(&g), g.token.as_deref(), &trust(&g), &out).await
        }
        Command::Auth(args::AuthCmd::Logout) => {
            let had =
                config::unset("token").map_err(|m| Error::new(ErrorCode::InvalidRequest, m))?;
            out.emit(&serde_json::json!({ "logged_out": had }), || {
                if had {
                    println!("Removed the saved token from {}", config::path().display());
                } else {
                    println!("No token was saved");
                }
            });
            Ok(())
        }
        Command::Auth(c) => on_vault!(g, |t| admin::auth(&t, c, &out)),
        Command::Config(c) => config_cmd(c, &out),
        Command::Identity(c) => on_vault!(g, |t| admin::identity(&t, c, &out)),
        Command::Tokens(c) => on_vault!(g, |t| admin::tokens(&t, c, &out)),
        Command::Policies(c) => on_vault!(g, |t| admin::policies(&t, c, &out)),
        Command::Audit(c) => on_vault!(g, |t| audit::run(&t, c, &out)),
        Command::Webhooks(c) => on_vault!(g, |t| webhooks::run(&t, c, &out)),
        Command::Plugins(c) => on_vault!(g, |t| plugins::run(&t, c, &out)),
        Command::Rotation(c) => on_vault!(g, |t| rotation::run(&t, c, &out)),
        Command::Import(args::ImportCmd::Dotenv(a)) => {
            on_vault!(g, |t| migrate::import(&t, a, &out))
        }
        Command::Export(c) => on_vault!(g, |t| migrate::export(&t, c)),
        Command::Run(a) => run::run(&g, a, || target(&g)).await,
        Command::Inject(a) => on_vault!(g, |t| inject::inject(&t, a)),
        Command::Operator(c) => serve::operator(&g, || target(&g), c, &out).await,
        Command::Bench(c) => bench::run(c, &g, &out).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            use std::io::Write as _;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "scaivault", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            let _ = std::io::stdout().write_all(&script);
            Ok(())
        }
        Command::Man { out_dir } => man_pages(&out_dir),
    }
}

/// `scaivault man`: one page for the binary and one per subcommand (`scaivault-secrets-write.1`),
/// generated from the same clap tree as `--help`, so they cannot disagree.
fn man_pages(dir: &std::path::Path) -> CliResult<()> {
    use clap::CommandFactory as _;
    fn write_all(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> Result<usize, Error> {
        let cmd = cmd.clone().name(name.to_owned());
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut page)
            .map_err(|e| Error::internal(e.to_string()))?;
        let file = dir.join(format!("{name}.1"));
        scaivault_store::private_fs::write(&file, &page)
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", file.display())))?;
        let mut n = 1;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            n += write_all(sub, &format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(n)
    }
    scaivault_store::private_fs::create_dir_all(dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    let n = write_all(&Cli::command(), "scaivault", dir)?;
    println!("Wrote {n} man pages into {}", dir.display());
    Ok(())
}

/// `config set|get|list|unset`: the CLI's saved settings, named as their flags.
fn config_cmd(c: ConfigCmd, out: &Out) -> CliResult<()> {
    let bad = |m: String| Error::new(ErrorCode::InvalidRequest, m);
    match c {
        ConfigCmd::Set { key, value } => {
            config::set(&key, &value).map_err(bad)?;
            println!(
                "Saved {} in {}",
                config::key(&key).map_err(bad)?,
                config::path().display()
            );
        }
        ConfigCmd::Get { key } => {
            config::key(&key).map_err(bad)?;
            let v = config::get(&key).ok_or_else(|| {
                Error::new(ErrorCode::InvalidRequest, format!("{key} is not set"))
            })?;
            out.emit(&serde_json::json!({ key.as_str(): v }), || println!("{v}"));
        }
        ConfigCmd::List => {
            let mut all = serde_json::Map::new();
            for k in config::KEYS {
                if let Some(v) = config::get(k) {
                    // The token is shown by its prefix only: a listing is for looking.
                    let shown = if *k == "token" {
                        format!("{}…", v.chars().take(8).collect::<String>())
                    } else {
                        v
                    };
                    all.insert((*k).to_owned(), shown.into());
                }
            }
            out.emit(&all, || {
                for (k, v) in &all {
                    println!("{k}\t{}", v.as_str().unwrap_or(""));
                }
            });
        }
        ConfigCmd::Unset { key } => {
            let had = config::unset(&key).map_err(bad)?;
            out.emit(&serde_json::json!({ "unset": key, "was_set": had }), || {
                println!(
                    "{}",
                    if had {
                        format!("Removed {key}")
                    } else {
                        format!("{key} was not set")
                    }
                )
            });
        }
    }
    Ok(())
}

/// Runtime workers of a server whose vault is on a database (see `main`).
const DATABASE_WORKERS: usize = 32;
