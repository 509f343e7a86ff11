//! The `scaivault` command line: argument parsing, output, and the HTTP client. Business
//! rules live in the engine; local (`--vault FILE`) mode calls it directly.

#![forbid(unsafe_code)]

mod admin;
mod args;
mod audit;
mod bench;
mod config;
pub use scaivault_core::dotenv;
mod harden;
mod migrate;
mod output;
mod passphrase;
mod plugins;
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
use crate::target::{CliError, CliResult, Remote, Target};

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => ErrorCode::InvalidRequest.exit_code(),
            };
            let _ = e.print();
            return code;
        }
    };
    let serving = matches!(cli.command, Command::Dev(_) | Command::Server(_));
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
        .with_writer(std::io::stderr)
        .try_init();
    let hardening = harden::apply();
    if serving && let Some(w) = hardening {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => 0,
        Err(CliError { error, request_id }) => {
            match request_id {
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

fn target(g: &Global) -> CliResult<Target> {
    if g.vault.is_some() {
        return Ok(Target::Local(serve::open_local(g)?));
    }
    let token = g.token.clone().or_else(|| config::get("token"));
    Ok(Target::Remote(Remote::new(server_url(g), token)))
}

/// The server's address: `--url`, SCAIVAULT_URL, the config file, or the default.
fn server_url(g: &Global) -> String {
    g.url
        .clone()
        .or_else(|| config::get("base_url"))
        .unwrap_or_else(|| "http://127.0.0.1:8200".into())
}

async fn run(cli: Cli) -> CliResult<()> {
    let g = cli.global;
    let out = Out { json: g.json };
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
        Command::Secrets(c) => {
            let (action, path) = secrets::describe(&c);
            let t = target(&g)?;
            // A local read records its entry itself, before the value is printed.
            let self_recorded = matches!(c, args::SecretsCmd::Read { .. });
            let result = secrets::run(&t, c, &out).await;
            if !(self_recorded && result.is_ok()) {
                audit_local(&t, action.into(), path, &result).await?;
            }
            result
        }
        Command::Auth(args::AuthCmd::Login) if g.vault.is_none() => {
            admin::login(server_url(&g), g.token.as_deref(), &out).await
        }
        Command::Auth(c) => admin::auth(&target(&g)?, c, &out).await,
        Command::Config(ConfigCmd::Set { key, value }) => {
            config::set(&key, &value).map_err(|m| Error::new(ErrorCode::InvalidRequest, m))?;
            println!("Saved {key} in {}", config::path().display());
            Ok(())
        }
        Command::Identity(c) => {
            let action = local_action("identity", &variant(&c));
            let self_recorded = matches!(c, args::IdentityCmd::Credentials { .. });
            let t = target(&g)?;
            let result = admin::identity(&t, c, &out).await;
            if !(self_recorded && result.is_ok()) {
                audit_local(&t, action, None, &result).await?;
            }
            result
        }
        Command::Tokens(c) => {
            let action = local_action("tokens", &variant(&c));
            let self_recorded = matches!(c, args::TokensCmd::Create { .. });
            let t = target(&g)?;
            let result = admin::tokens(&t, c, &out).await;
            if !(self_recorded && result.is_ok()) {
                audit_local(&t, action, None, &result).await?;
            }
            result
        }
        Command::Policies(c) => {
            let action = local_action("policies", &variant(&c));
            let t = target(&g)?;
            let result = admin::policies(&t, c, &out).await;
            audit_local(&t, action, None, &result).await?;
            result
        }
        Command::Audit(c) => {
            let action = local_action("audit", &variant(&c));
            let t = target(&g)?;
            let result = audit::run(&t, c, &out).await;
            audit_local(&t, action, None, &result).await?;
            result
        }
        Command::Webhooks(c) => {
            let action = local_action("webhooks", &variant(&c));
            let t = target(&g)?;
            let result = webhooks::run(&t, c, &out).await;
            audit_local(&t, action, None, &result).await?;
            result
        }
        Command::Plugins(c) => {
            let action = local_action("plugins", &variant(&c));
            let self_recorded = matches!(c, args::PluginsCmd::Generate { .. });
            let t = target(&g)?;
            let result = plugins::run(&t, c, &out).await;
            if !(self_recorded && result.is_ok()) {
                audit_local(&t, action, None, &result).await?;
            }
            result
        }
        Command::Rotation(c) => {
            let action = local_action("rotation", &variant(&c));
            let t = target(&g)?;
            let result = rotation::run(&t, c, &out).await;
            audit_local(&t, action, None, &result).await?;
            result
        }
        Command::Import(args::ImportCmd::Dotenv(a)) => {
            let t = target(&g)?;
            let result = migrate::import(&t, a, &out).await;
            audit_local(&t, "import_dotenv".into(), None, &result).await?;
            result
        }
        Command::Export(c) => migrate::export(&target(&g)?, c).await,
        Command::Run(a) => run::run(&g, a, || target(&g)).await,
        Command::Operator(c) => serve::operator(&g, || target(&g), c, &out).await,
        Command::Bench(c) => bench::run(c, &out).await,
    }
}

/// The audit action of a local-mode command: the server's name for the same act, so a query
/// by action finds both (`policies create` is `policy_create` whichever way it ran).
fn local_action(group: &str, variant: &str) -> String {
    use scaivault_engine::AuditAction as A;
    let a = match (group, variant) {
        ("identity", "create") => A::IdentityCreate,
        ("identity", "list") => A::IdentityRead,
        ("identity", "delete") => A::IdentityDelete,
        ("identity", "addmember") => A::IdentityMemberAdd,
        ("identity", "removemember") => A::IdentityMemberRemove,
        ("identity", "credentials") => A::CredentialCreate,
        ("identity", "listcredentials") => A::CredentialList,
        ("identity", "revokecredential") => A::CredentialRevoke,
        ("tokens", "create") => A::TokenCreate,
        ("tokens", "list") => A::TokenList,
        ("tokens", "revoke") => A::TokenRevoke,
        ("policies", "create") => A::PolicyCreate,
        ("policies", "list" | "get" | "test") => A::PolicyRead,
        ("policies", "delete") => A::PolicyDelete,
        ("policies", "bind") => A::PolicyBind,
        ("policies", "unbind") => A::PolicyUnbind,
        ("webhooks", "list" | "get" | "deliveries") => A::WebhookRead,
        ("webhooks", "create") => A::WebhookCreate,
        ("webhooks", "update") => A::WebhookUpdate,
        ("webhooks", "delete") => A::WebhookDelete,
        ("webhooks", "test") => A::WebhookTest,
        ("plugins", "list") => A::PluginRead,
        ("plugins", "install") => A::PluginInstall,
        ("plugins", "remove") => A::PluginRemove,
        ("plugins", "verify") => A::PluginVerify,
        ("plugins", "generate") => A::Generate,
        ("audit", "query" | "summary" | "export") => A::AuditQuery,
        ("audit", "prune") => A::AuditPrune,
        ("audit", "verify") => A::Verify,
        ("rotation", "rotate") => A::Rotate,
        ("rotation", _) => A::RotationPolicy,
        _ => return format!("{group}_{variant}"),
    };
    a.as_str().to_owned()
}

/// The lower-case name of a subcommand (`Create { .. }` → `create`), for audit actions.
fn variant(c: &impl std::fmt::Debug) -> String {
    let d = format!("{c:?}");
    d.split(|ch: char| !ch.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_lowercase()
}

/// Records the entry of a local command that shows a value it minted (a token, a client
/// secret, a generated value) before that value is shown: if the entry cannot be made durable
/// the value is never printed. The dispatcher then records no second entry.
pub(crate) async fn record_before_showing(t: &Target, group: &str, variant: &str) -> CliResult<()> {
    audit_local(t, local_action(group, variant), None, &Ok(())).await
}

/// Local mode is audited like the API: one entry per command, made durable before the
/// command reports success; a command whose entry cannot be written fails.
pub(crate) async fn audit_local(
    t: &Target,
    action: String,
    path: Option<String>,
    result: &CliResult<()>,
) -> CliResult<()> {
    let Target::Local(engine) = t else {
        return Ok(());
    };
    let caller = target::local_caller();
    let rid = format!("local_{}", std::process::id());
    let mut input = scaivault_engine::input_for(Some(&caller), &action, path.as_deref(), &rid);
    input.user_agent =
        Some(concat!("scaivault-cli/", env!("CARGO_PKG_VERSION"), " (local)").to_owned());
    input.success = result.is_ok();
    if let Err(e) = result {
        input
            .extra_data
            .insert("error_code".into(), e.error.code.as_str().into());
    }
    engine.record_audit(input).await?;
    Ok(())
}
