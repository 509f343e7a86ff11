//! The command line, as clap definitions. Every command works against a server
//! (`SCAIVAULT_URL` + `SCAIVAULT_TOKEN`, or `~/.scaivault/config.json`) or, with
//! `--vault FILE`, directly on a vault file (laptop mode).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "scaivault",
    version,
    about = "One binary, one encrypted file: a secrets vault.",
    after_help = "Exit codes: 0 success; 1 other failure (conflict, internal, storage full); \
2 not authenticated; 3 denied; 4 not found; 5 invalid request; 6 rate limited (retry later); \
7 unavailable (down, sealed, unreachable, untrusted certificate); 64 usage error (the command \
line does not parse). `run` passes its command's exit code through (127: not found, 126: \
cannot run)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    /// `secrets read` only.
    Env,
    /// `audit export` only: one JSON entry per line.
    Jsonl,
    /// `audit export` only.
    Csv,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Work directly on this vault instead of talking to a server: a file, or a PostgreSQL
    /// database (`--storage postgresql://USER@HOST:PORT/DB`; SCAIVAULT_STORAGE). Put a
    /// database password in SCAIVAULT_STORAGE or the server's config file, not here.
    #[arg(
        long,
        global = true,
        env = "SCAIVAULT_VAULT",
        visible_alias = "storage"
    )]
    pub vault: Option<PathBuf>,
    /// Read the passphrase from this file (else SCAIVAULT_PASSPHRASE, else a prompt).
    #[arg(long, global = true)]
    pub passphrase_file: Option<PathBuf>,
    /// Server URL (overrides the config file).
    #[arg(long, global = true, env = "SCAIVAULT_URL")]
    pub url: Option<String>,
    /// API token (overrides the config file).
    #[arg(long, global = true, env = "SCAIVAULT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Machine-readable JSON output (the same as --format json).
    #[arg(long, global = true)]
    pub json: bool,
    /// Output format: table (for people; tab-separated lines in a pipe), json, yaml; env for
    /// `secrets read` (KEY=value lines, quoted as `export dotenv` quotes them); jsonl or csv
    /// for `audit export`.
    #[arg(long, global = true, value_enum, conflicts_with = "json")]
    pub format: Option<Format>,
    /// Where installed plugin files live (default: `<vault file>.plugins/`).
    #[arg(long, global = true, env = "SCAIVAULT_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Grant external plugins this capability (random and clock are granted by default;
    /// http and postgres only when listed). Repeat or separate with commas.
    #[arg(
        long = "allow-plugin-capability",
        global = true,
        env = "SCAIVAULT_PLUGIN_CAPABILITIES",
        value_delimiter = ','
    )]
    pub plugin_capabilities: Vec<String>,
    /// A host (`host` or `host:port`) the vault may contact: rotation backends (a webhook
    /// receiver, a database) and webhook subscribers. Nothing outside is reachable unless
    /// listed. Repeat or separate with commas.
    #[arg(
        long = "allow-host",
        global = true,
        env = "SCAIVAULT_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,
    /// Trust this CA certificate (PEM) for the server's TLS, besides the system's trust
    /// store: a server with a self-signed or private-CA certificate. Also `ca_cert` in the
    /// config file.
    #[arg(long, global = true, env = "SCAIVAULT_CACERT")]
    pub ca_cert: Option<PathBuf>,
    /// Do not check the server's TLS certificate at all. Anyone on the path can then read
    /// the token and every secret; for a throwaway test only (a warning says so each time).
    #[arg(
        long,
        global = true,
        env = "SCAIVAULT_TLS_SKIP_VERIFY",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub tls_skip_verify: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new vault file and print its root token (once).
    Init(InitArgs),
    /// Start a development server: loopback, unsealed, prints the URL and a root token.
    Dev(DevArgs),
    /// Serve an existing vault file over HTTP(S).
    Server(ServerArgs),
    /// Read, write, list and delete secrets.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Log in and see who you are.
    #[command(subcommand)]
    Auth(AuthCmd),
    /// Persist CLI settings in ~/.scaivault/config.json.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Users, service accounts and groups.
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// API tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Access policies and their bindings.
    #[command(subcommand)]
    Policies(PoliciesCmd),
    /// Import variables from .env files.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Export secrets as a .env file.
    #[command(subcommand)]
    Export(ExportCmd),
    /// Run a command with secrets injected as environment variables.
    Run(RunArgs),
    /// Render a template's secret references ({{ scaivault://path#field }}) into a file
    /// created owner-only, as `op inject` does.
    Inject(InjectArgs),
    /// Rotation policies: schedules, grace periods, auto-generated values.
    #[command(subcommand)]
    Rotation(RotationCmd),
    /// Query, summarise, export and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// WebAssembly plugins: secret types, generators, rotation backends.
    #[command(subcommand)]
    Plugins(PluginsCmd),
    /// Webhooks: signed event deliveries and their log.
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Seal state, keys and passphrase.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Benchmarks whose figures are reported in docs/PERFORMANCE.md.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Print a shell completion script: `source <(scaivault completions bash)`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (scaivault.1 and one per subcommand) into a directory.
    Man {
        /// Where to write them (created if missing).
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Argon2id memory in MiB (floor 19).
    #[arg(long, default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id passes (floor 2).
    #[arg(long, default_value_t = 3)]
    pub kdf_passes: u32,
    /// Write the offline recovery key to this file (created, owner-only) instead of printing it.
    #[arg(long)]
    pub recovery_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to listen on (loopback only without TLS).
    #[arg(long, default_value = "127.0.0.1:8200")]
    pub listen: SocketAddr,
    /// Keep the vault in this file (created if missing) instead of a temporary one.
    #[arg(long = "dev-vault")]
    pub dev_vault: Option<PathBuf>,
    /// Tests only: the clock moves only when told (`POST /v1/sys/test/clock`), so rotation
    /// schedules and grace periods can be exercised in seconds.
    #[arg(long, hide = true)]
    pub test_clock: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args, Clone)]
pub struct LimitArgs {
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Scale every rate limit (dev mode defaults to 100).
    #[arg(long)]
    pub rate_limit_multiplier: Option<f64>,
    /// Turn rate limiting off (benchmarks), the per-address budget of failed
    /// authentications included.
    #[arg(long)]
    pub no_rate_limit: bool,
    /// Connections served at once; more wait in the kernel's queue [default: 4096].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Connections one client address (an IPv6 client's /64) may hold [default: 512].
    #[arg(long)]
    pub max_connections_per_address: Option<usize>,
    /// How long a client may take to send a request's headers or a TLS handshake [default: 10s].
    #[arg(long)]
    pub header_timeout: Option<String>,
    /// How long a connection may stay open with no request in progress [default: 120s].
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// Failed authentications (bad tokens, client secrets, unseal keys) an address may make
    /// per minute before its requests are refused unchecked [default: 30].
    #[arg(long)]
    pub auth_failures_per_minute: Option<u32>,
    /// The vault file's page cache in MiB, 1–4096: the largest configurable part of the
    /// server's memory [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub cache_mib: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// A TOML file with any of these settings (keys as the flags, with `_` for `-`, plus
    /// `vault` and `passphrase_file`); a flag given on the command line wins.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on; a non-loopback address needs --tls-cert/--tls-key (or --insecure-listen).
    #[arg(long, default_value = "127.0.0.1:8200")]
    pub listen: SocketAddr,
    /// Unseal with a key file set up by `operator key-file`.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Unseal with the offline recovery key (when the passphrase is lost).
    #[arg(long)]
    pub recovery_key_file: Option<PathBuf>,
    /// Start sealed; unseal later with `scaivault operator unseal`.
    #[arg(long)]
    pub sealed: bool,
    /// PEM certificate chain to serve HTTPS with (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    pub insecure_listen: bool,
    /// Prune audit entries older than this (e.g. 365d), hourly. Default: keep everything.
    #[arg(long)]
    pub audit_retention: Option<String>,
    /// Write a backup into this directory every --backup-interval.
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// How often a scheduled backup is written (e.g. 24h, 6h).
    #[arg(long, default_value = "24h", requires = "backup_dir")]
    pub backup_interval: String,
    /// How many scheduled backups to keep (the oldest are removed).
    #[arg(long, default_value_t = 7, requires = "backup_dir")]
    pub backup_keep: usize,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Write a new version: `k=v` pairs (`k=@file`, `k=-` for stdin) or --json-file.
    Write(WriteArgs),
    /// Read the current (or a given) version.
    Read {
        /// The secret's path, e.g. environments/production/billing/stripe.
        path: String,
        /// Read this version instead of the current one.
        #[arg(long)]
        version: Option<u64>,
        /// Print one data field, raw.
        #[arg(long)]
        field: Option<String>,
    },
    /// List secrets under a prefix (every page).
    List {
        /// Only secrets under this path prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// List at most this many (default: all of them).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Soft-delete (restorable for 30 days), or destroy with --hard.
    Delete {
        /// The secret's path, e.g. environments/production/billing/stripe.
        path: String,
        /// Destroy every version now instead of a 30-day soft delete.
        #[arg(long)]
        hard: bool,
    },
    /// Undo a soft delete.
    Restore {
        /// The secret's path, e.g. environments/production/billing/stripe.
        path: String,
    },
    /// Version history.
    Versions {
        /// The secret's path, e.g. environments/production/billing/stripe.
        path: String,
    },
    /// Rotate a secret now, as its rotation policy says (needs secrets:rotate, not admin).
    Rotate {
        /// The secret's path, e.g. environments/production/billing/database.
        path: String,
    },
    /// Secrets expiring within --days (expired ones included), soonest first.
    Expiring {
        /// The window, in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Only secrets under this folder.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many (the soonest).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show metadata, or change it with --set k=v (k= removes k). No new version.
    Metadata {
        /// The secret's path, e.g. environments/production/billing/stripe.
        path: String,
        /// Set metadata keys as key=value (repeatable); key= removes a key.
        #[arg(long = "set")]
        set: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The secret's path, e.g. environments/production/billing/stripe.
    pub path: String,
    /// key=value pairs; key=@file reads the value from a file, key=- from stdin, and a bare
    /// key asks for it at a hidden prompt. Values typed as key=value are visible to every
    /// local user in the process list: use the other forms for real credentials.
    pub pairs: Vec<String>,
    /// The secret type (kv, api_key, json, … or a plugin's); a hint that selects its validator.
    #[arg(long = "type")]
    pub secret_type: Option<String>,
    /// Tags, comma-separated; repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// A description kept in the metadata.
    #[arg(long)]
    pub description: Option<String>,
    /// Who owns the secret (kept in the metadata).
    #[arg(long)]
    pub owner: Option<String>,
    /// Expire the secret after this long (e.g. 90d); reads then answer secret_expired.
    #[arg(long)]
    pub expires_in: Option<String>,
    /// How many versions to keep (older ones are pruned).
    #[arg(long)]
    pub max_versions: Option<u32>,
    /// Expected current version (0: must not exist).
    #[arg(long)]
    pub cas: Option<u64>,
    /// Read the data object from a JSON file, or `-` for stdin.
    #[arg(long)]
    pub json_file: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Check a token against the server and save it in ~/.scaivault/config.json (owner-only).
    /// The token is the global --token (or SCAIVAULT_TOKEN); `--token -` reads it from stdin;
    /// without one it is asked for at a hidden prompt (or read from stdin when not a terminal).
    Login,
    /// Who the current token belongs to, and its scopes.
    Whoami,
    /// Forget the token saved by `auth login`.
    Logout,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Save a setting: url (as --url), token (as --token; `auth login` checks it first),
    /// ca_cert (as --ca-cert).
    Set {
        /// url, token or ca_cert (base_url is the old name of url).
        key: String,
        /// Its new value.
        value: String,
    },
    /// Print one setting's value.
    Get {
        /// url, token or ca_cert.
        key: String,
    },
    /// Print every setting (the token shortened to its prefix).
    List,
    /// Remove a setting.
    Unset {
        /// url, token or ca_cert.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentityCmd {
    /// Create `user:…`, `sa:…` or `group:…`.
    Create {
        /// The identity: user:<name>, sa:<name> or group:<name>.
        #[arg(value_name = "IDENTITY")]
        id: String,
        /// A human-readable name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List identities.
    List,
    /// Delete an identity and revoke its tokens.
    Delete {
        /// The identity to delete (its tokens are revoked).
        #[arg(value_name = "IDENTITY")]
        id: String,
    },
    /// Add an identity to a group.
    AddMember {
        /// The group (group:<name>).
        #[arg(value_name = "GROUP")]
        group: String,
        /// The identity to add to it.
        #[arg(value_name = "IDENTITY")]
        id: String,
    },
    /// Remove an identity from a group.
    RemoveMember {
        /// The group (group:<name>).
        #[arg(value_name = "GROUP")]
        group: String,
        /// The member to remove.
        #[arg(value_name = "IDENTITY")]
        id: String,
    },
    /// Issue a client credential (client_id + client_secret) for a service account.
    Credentials {
        /// The service account (sa:<name>).
        #[arg(value_name = "SERVICE_ACCOUNT")]
        id: String,
        /// A scope the credential's tokens get (repeatable or comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
    },
    /// List a service account's client credentials (ids and scopes, never the secrets).
    ListCredentials {
        /// The service account (sa:<name>).
        #[arg(value_name = "SERVICE_ACCOUNT")]
        id: String,
    },
    /// Revoke one client credential; the tokens it minted are revoked with it.
    RevokeCredential {
        /// The service account (sa:<name>).
        #[arg(value_name = "SERVICE_ACCOUNT")]
        id: String,
        /// The credential's id (cred_…, from list-credentials).
        credential_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// Create a token (printed once).
    Create {
        /// The identity the token acts as.
        #[arg(long)]
        identity: String,
        /// A scope the token holds (repeatable or comma-separated), e.g. secrets:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Lifetime, e.g. 90d (default), or `never`.
        #[arg(long)]
        ttl: Option<String>,
        /// A name to recognise the token by in listings.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never their values).
    List {
        /// Only this identity's tokens.
        #[arg(long)]
        identity: Option<String>,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        /// The token's id (tok_…, from tokens list), not its value.
        token_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoliciesCmd {
    /// Create from --rule 'PATTERN:perm,perm' (repeatable) or --file policy.json.
    Create {
        /// The policy's name.
        name: Option<String>,
        /// A rule as PATTERN:PERM[,PERM…], e.g. 'environments/production/billing/**:read' (repeatable).
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// What the policy is for.
        #[arg(long)]
        description: Option<String>,
        /// Read the policy (name, rules, …) from this JSON file instead.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List policies.
    List,
    /// Show a policy, its rules and bindings.
    Get {
        /// Its id (or name).
        id: String,
    },
    /// Delete a policy.
    Delete {
        /// Its id (or name).
        id: String,
        /// Delete it even while identities are bound to it.
        #[arg(long)]
        force: bool,
    },
    /// Bind a policy to an identity.
    Bind {
        /// Its id (or name).
        id: String,
        /// The identity to bind (user:…, sa:… or group:…).
        #[arg(long = "identity", alias = "identity-id", value_name = "IDENTITY")]
        identity_id: String,
        /// Its type, when the id does not say (user, service_account, group).
        #[arg(long)]
        identity_type: Option<String>,
        /// RFC 3339 time after which the binding stops applying.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Remove a binding.
    Unbind {
        /// Its id (or name).
        id: String,
        /// The binding's id (from policies get).
        binding: String,
    },
    /// Would IDENTITY get PERMISSION on PATH? Explains which rule decided.
    Test {
        /// The secret path to check.
        path: String,
        /// read, write, delete, list, rotate or admin.
        permission: String,
        /// The identity to check for (default: the caller).
        #[arg(long)]
        identity: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCmd {
    /// List webhooks.
    List,
    /// Create a webhook; the signing secret comes from SCAIVAULT_WEBHOOK_SECRET or
    /// --secret-file (never a flag, which other users could see in the process list).
    Create {
        /// The webhook's name.
        #[arg(long)]
        name: String,
        /// The HTTPS address deliveries are POSTed to (`--url` is the vault server's own
        /// address, a global flag).
        #[arg(long, value_name = "URL")]
        endpoint: String,
        /// Event types (comma-separated): secret.created, secret.*, rotation.failed, * …
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Read the signing secret from this file (else SCAIVAULT_WEBHOOK_SECRET).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Only events about secrets under this prefix.
        #[arg(long = "prefix", alias = "path-prefix")]
        path_prefix: Option<String>,
        /// Only events about secrets of this type.
        #[arg(long = "type", alias = "secret-type")]
        secret_type: Option<String>,
        /// Only events about secrets with this tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Show a webhook and its delivery statistics.
    Get {
        /// Its id (or name).
        id: String,
    },
    /// Change a webhook; with --new-secret-file (or SCAIVAULT_WEBHOOK_SECRET and
    /// --rotate-secret) the old secret keeps signing too for --previous-secret-ttl.
    Update {
        /// Its id (or name).
        id: String,
        /// A new delivery address.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Event types, comma-separated: secret.created, secret.*, rotation.failed, * …
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// Enable it.
        #[arg(long)]
        enable: bool,
        /// Disable it (nothing is delivered).
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Start signing with a new secret (from SCAIVAULT_WEBHOOK_SECRET or --new-secret-file).
        #[arg(long)]
        rotate_secret: bool,
        /// Read the new signing secret from this file.
        #[arg(long)]
        new_secret_file: Option<PathBuf>,
        /// How long the old secret keeps signing too (e.g. 24h).
        #[arg(long)]
        previous_secret_ttl: Option<String>,
    },
    /// Delete a webhook.
    Delete {
        /// Its id (or name).
        id: String,
    },
    /// Send a webhook.test event now.
    Test {
        /// Its id (or name).
        id: String,
    },
    /// The delivery log, newest first.
    Deliveries {
        /// Its id (or name).
        id: String,
        /// pending | success | failed
        #[arg(long)]
        status: Option<String>,
        /// At most this many results.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCmd {
    /// List built-in and installed plugins with their pinned hashes.
    List,
    /// Install an external plugin; its SHA-256 (checked against the manifest) is pinned.
    Install {
        /// The plugin's `.wasm` file.
        file: PathBuf,
        /// Its manifest (JSON).
        #[arg(long)]
        manifest: PathBuf,
    },
    /// Remove an installed plugin.
    Remove {
        /// The plugin's name.
        name: String,
    },
    /// Check every plugin's bytes against its pinned hash; exits non-zero on a mismatch.
    Verify,
    /// Run a generator and print what it made (nothing is stored).
    Generate {
        /// random, hex, uuid, template, static, rsa_keypair, ec_keypair, ssh_keypair, bcrypt_hash
        generator: String,
        /// Generator settings as key=value (numbers and true/false are typed).
        config: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RotationCmd {
    /// Create a policy; prints its id (`rot_<name>`).
    Create {
        /// The policy's name (its id becomes rot_<name>).
        #[arg(required_unless_present = "name_flag")]
        name: Option<String>,
        /// The name given as a flag, as earlier versions took it.
        #[arg(long = "name", hide = true, conflicts_with = "name")]
        name_flag: Option<String>,
        /// How often to rotate, e.g. 30d.
        #[arg(long)]
        interval: String,
        /// How long the replaced version stays readable, e.g. 24h.
        #[arg(long)]
        grace_period: Option<String>,
        /// Let the vault generate the new value when a secret is due.
        #[arg(long)]
        auto_generate: bool,
        /// Thresholds such as 7d,1d (recorded; warnings are not sent yet).
        #[arg(long)]
        warn_before: Option<String>,
        /// Data fields to regenerate (repeatable; default: fields named like password, secret,
        /// token, key, value).
        #[arg(long = "field")]
        fields: Vec<String>,
        /// What the policy is for.
        #[arg(long)]
        description: Option<String>,
        /// Secret (generation) policy whose recipe makes the new values (sp_…).
        #[arg(long)]
        secret_policy: Option<String>,
        /// Rotation backend plugin that applies each new value (webhook, postgres).
        #[arg(long)]
        backend: Option<String>,
        /// Backend settings as key=value (repeatable), e.g. url=…, signing_secret=@FILE for
        /// webhook; host=…, port=…, role=…, admin_secret_path=… for postgres. `key=@FILE`
        /// reads the value from a file and `key=-` from stdin, keeping secrets out of argv.
        #[arg(long = "backend-config")]
        backend_config: Vec<String>,
    },
    /// List rotation policies.
    List,
    /// Show a rotation policy and its secrets.
    Get {
        /// Its id (or name).
        id: String,
    },
    /// Delete a rotation policy (its secrets are detached).
    Delete {
        /// Its id (or name).
        id: String,
    },
    /// Resume a paused policy.
    Enable {
        /// Its id (or name).
        id: String,
    },
    /// Pause a policy.
    Disable {
        /// Its id (or name).
        id: String,
    },
    /// Attach a secret to a policy.
    Assign {
        /// Its id (or name).
        id: String,
        /// The secret's path, e.g. environments/production/billing/stripe.
        path: String,
    },
    /// Detach a secret from a policy.
    Unassign {
        /// Its id (or name).
        id: String,
        /// The secret's path, e.g. environments/production/billing/stripe.
        path: String,
    },
    /// Rotate now (every attached secret, or --path).
    Rotate {
        /// Its id (or name).
        id: String,
        /// Rotate only this secret (default: every attached secret).
        #[arg(long)]
        path: Option<String>,
    },
    /// Schedules and grace periods of attached secrets.
    Status {
        /// Only this secret.
        path: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Import a .env file (or, with --fleet, every DIR/<service>/.env.<env>).
    Dotenv(ImportDotenvArgs),
}

#[derive(Debug, Args)]
pub struct ImportDotenvArgs {
    /// The .env file (not with --fleet).
    pub file: Option<PathBuf>,
    /// Where the secrets go, e.g. environments/production/billing. With --fleet: the base
    /// (default `environments`), under which <env>/<service> is added.
    #[arg(long)]
    pub prefix: Option<String>,
    /// JSON file grouping variables into secrets and naming the ones to skip.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// secret_type of the imported secrets (default kv).
    #[arg(long = "type")]
    pub secret_type: Option<String>,
    /// Tags for every imported secret (comma-separated or repeated); they replace the tags
    /// an existing secret has.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Import DIR/<service>/.env.<env> for every service and environment; each secret is
    /// tagged with its service and environment as well.
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// Accepted for old scripts and ignored: an import is now one request and one
    /// transaction, all or none.
    #[arg(long, hide = true)]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// Write the secrets under a prefix as a .env file (stdout unless --out).
    Dotenv {
        /// Every secret under this path prefix.
        #[arg(long)]
        prefix: String,
        /// A JSON file mapping variable names to secret paths and fields.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Write to this file (created owner-only) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Inject every secret under this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// A .env file whose values are passed on: `scaivault://path#field` references are
    /// resolved from the vault, any other value is passed as it is.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// A JSON file mapping variable names to secret paths and fields.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Replace secret values in the child's output with ******.
    #[arg(long)]
    pub mask: bool,
    /// If the vault cannot be reached, run with the environment as it is (and say so).
    #[arg(long)]
    pub fallback_env: bool,
    /// Keep an encrypted copy of the variables in FILE after each successful read (owner-only,
    /// sealed with a key derived from the token), and run with it when the vault cannot be
    /// reached, as `doppler run --fallback` does. Tried before --fallback-env.
    #[arg(long, value_name = "FILE")]
    pub fallback_snapshot: Option<PathBuf>,
    /// How long to wait for the vault's answers in all before giving up (or, with
    /// --fallback-env, running without them), e.g. 5s. A hung server no longer holds the
    /// command for half a minute.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub timeout: std::time::Duration,
    /// Pass this vault credential variable (SCAIVAULT_TOKEN, SCAIVAULT_PASSPHRASE, …) on to
    /// the command; by default every one is removed from its environment. Repeatable.
    #[arg(long = "pass-credential", value_name = "VAR")]
    pub pass_credentials: Vec<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The template (default, or `-`: standard input).
    #[arg(short = 'i', long = "in", alias = "in-file", value_name = "TEMPLATE")]
    pub in_file: Option<PathBuf>,
    /// The file to write, created owner-only (default, or `-`: standard output).
    #[arg(short = 'o', long = "out", alias = "out-file", value_name = "FILE")]
    pub out_file: Option<PathBuf>,
    /// Replace --out when it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct AuditFilter {
    /// Only entries of this identity.
    #[arg(long = "identity", alias = "identity-id", value_name = "IDENTITY")]
    pub identity_id: Option<String>,
    /// Only entries with this action, or any of several: `read,write`.
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries whose secret path starts with this.
    #[arg(long = "prefix", alias = "path-prefix")]
    pub path_prefix: Option<String>,
    /// From this time: RFC 3339, a date (2026-12-02), "1 hour ago", "2 days ago", yesterday,
    /// today. Also `--from`, as the API calls it.
    #[arg(long, visible_alias = "from")]
    pub start: Option<String>,
    /// Until this time (as `--start`). Also `--to`.
    #[arg(long, visible_alias = "to")]
    pub end: Option<String>,
    /// Only successes (true) or failures (false).
    #[arg(long)]
    pub success: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Entries, newest first (`--json` prints {"logs": [...]}).
    Query {
        #[command(flatten)]
        filter: AuditFilter,
        /// At most this many results.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Counts by action, identity, path and hour (of one identity or secret if given).
    Summary {
        /// From this time (as `audit query --start`). Also `--from`.
        #[arg(long, visible_alias = "from")]
        start: Option<String>,
        /// Until this time (as `audit query --end`). Also `--to`.
        #[arg(long, visible_alias = "to")]
        end: Option<String>,
        /// Only this identity's requests, e.g. sa:billing-prod.
        #[arg(long = "identity", alias = "identity-id", value_name = "IDENTITY")]
        identity_id: Option<String>,
        /// Only the requests naming this secret.
        #[arg(long)]
        path: Option<String>,
    },
    /// Walk the hash chain; names the first broken entry.
    Verify {
        /// Start from the last checkpoint instead of the first entry.
        #[arg(long)]
        fast: bool,
    },
    /// Remove entries older than a duration (whole checkpoint spans; the rest still verifies).
    Prune {
        /// Prune entries older than this, e.g. 365d.
        #[arg(long)]
        older_than: String,
    },
    /// Write matching entries to a JSON-lines (default) or CSV file (`--format csv`).
    Export {
        #[command(flatten)]
        filter: AuditFilter,
        /// The file to write (created owner-only).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Unseal a running server (passphrase from --passphrase-file, env or prompt).
    Unseal,
    /// Seal a running server.
    Seal,
    /// Seal state and file facts.
    Status,
    /// Change the passphrase; the root key is replaced, no record rewritten. Local mode.
    Passphrase {
        /// File holding the new passphrase (else SCAIVAULT_NEW_PASSPHRASE, else a prompt).
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
    },
    /// Add a data key and replace the root key; new writes use the new key, old records stay readable.
    RotateKey,
    /// Let a key file (32 random bytes are written to PATH) unseal the vault. Local mode.
    KeyFile {
        /// Where to write the new key file (created owner-only).
        out: PathBuf,
    },
    /// Replace the offline recovery key (the old one stops working). Local mode.
    Rekey {
        /// Write the new key to this file instead of printing it (replacing the key a previous
        /// `init --recovery-key-file` or `rekey --out` wrote there, once the vault uses it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a consistent, still-encrypted backup of the vault (while it serves).
    Backup {
        /// The backup file to write (created owner-only; must not exist).
        out: PathBuf,
    },
    /// Restore a whole backup into a new vault file (--into), or one secret from it as a new
    /// version (--path [--version]); a damaged secret gets its records back from the backup.
    Restore {
        /// The backup file to restore from (`--from` still works; it means a time elsewhere).
        #[arg(long = "backup", alias = "from", value_name = "BACKUP_FILE")]
        from: PathBuf,
        /// Restore the whole vault into this new file (`--to` still works).
        #[arg(
            long = "into",
            alias = "to",
            value_name = "NEW_VAULT_FILE",
            conflicts_with = "path"
        )]
        to: Option<PathBuf>,
        /// Restore only this secret, as a new version, into the vault (a damaged secret gets
        /// its whole history back from the backup).
        #[arg(long)]
        path: Option<String>,
        /// The version of --path to restore (default: the backup's current one).
        #[arg(long, requires = "path")]
        version: Option<u64>,
    },
    /// Check every record, the indexes and the audit chain; names each problem.
    Verify,
    /// Copy the vault as it is (sealed records, audit chain) into a new file or an empty
    /// PostgreSQL database, either way round, then open the copy with the vault's passphrase
    /// and verify it. Stop the server on the source first. A database password goes in
    /// PGPASSWORD, not in the connection string here.
    Migrate {
        /// The vault to copy: a file, or postgresql://USER@HOST:PORT/DB.
        #[arg(long)]
        from: PathBuf,
        /// The new vault: a file that does not exist, or an empty database.
        #[arg(long)]
        to: PathBuf,
    },
    /// Destroy what is left of a damaged secret (one that answers integrity_error), so its
    /// path can be written again. To get it back instead: `operator restore --backup B --path P`.
    DestroyDamaged {
        /// The damaged secret's path.
        path: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Store benchmarks: durable writes (1 and N writers), reads, unseal and RSS.
    Store {
        /// Where to put the benchmark vault (a temp dir if not given).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Secrets for the unseal/RSS measurement.
        #[arg(long, default_value_t = 100_000)]
        secrets: usize,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64)]
        writers: usize,
        /// Seconds per write measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Reopens a vault and reports unseal time (KDF excluded) and RSS; run by `bench store`.
    #[command(hide = true)]
    Unseal {
        /// The vault file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Plugin sandbox: time to compile the built-ins, and the cost of one `validate` call
    /// (fresh instance included) on a small secret.
    Plugins {
        /// How many calls to time.
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
    },
    /// HTTP load: N keep-alive connections against a running server (the global --url,
    /// SCAIVAULT_URL or the config file; --token likewise), reads or writes.
    Http {
        /// Old spelling of the global --url.
        #[arg(long, hide = true)]
        target: Option<String>,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// health | read | write
        #[arg(long, default_value = "read")]
        mode: String,
        /// The secret to read or write.
        #[arg(long, default_value = "bench/secret-0")]
        path: String,
    },
}

/// A duration flag (`5s`, `2m`), as the API writes them.
fn parse_duration_arg(v: &str) -> Result<std::time::Duration, String> {
    scaivault_core::duration::parse_duration(v).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::Cli;

    /// One name per concept across command groups; the older spellings still parse, but no
    /// help shows them.
    #[test]
    fn one_name_per_concept_and_old_spellings_are_hidden_aliases() {
        for (name, cmd) in all_commands() {
            for a in cmd.get_arguments() {
                let long = a.get_long().unwrap_or("");
                assert!(
                    !["identity-id", "path-prefix", "secret-type"].contains(&long),
                    "{name} shows --{long}"
                );
                // One placeholder per concept in the help, too.
                if long == "identity" {
                    let shown: Vec<_> = a.get_value_names().unwrap_or_default().to_vec();
                    assert_eq!(shown, ["IDENTITY"], "{name} --identity");
                }
            }
        }
        use clap::Parser;
        for (old, new) in [
            (
                vec![
                    "scaivault",
                    "policies",
                    "bind",
                    "p",
                    "--identity-id",
                    "sa:a",
                ],
                vec!["scaivault", "policies", "bind", "p", "--identity", "sa:a"],
            ),
            (
                vec![
                    "scaivault",
                    "audit",
                    "query",
                    "--path-prefix",
                    "a/",
                    "--identity-id",
                    "sa:a",
                ],
                vec![
                    "scaivault",
                    "audit",
                    "query",
                    "--prefix",
                    "a/",
                    "--identity",
                    "sa:a",
                ],
            ),
        ] {
            let (a, b) = (
                Cli::try_parse_from(&old).unwrap(),
                Cli::try_parse_from(&new).unwrap(),
            );
            assert_eq!(
                format!("{:?}", a.command),
                format!("{:?}", b.command),
                "{old:?}"
            );
        }
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("Global options:"), "{help}");
    }

    /// Every command of the tree with its full name (`scaivault webhooks create`).
    fn walk(cmd: &clap::Command, name: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            walk(sub, format!("{name} {}", sub.get_name()), out);
        }
        out.push((name, cmd.clone()));
    }

    fn all_commands() -> Vec<(String, clap::Command)> {
        let mut out = Vec::new();
        walk(&Cli::command(), "scaivault".into(), &mut out);
        out
    }

    /// A subcommand flag named like a global one silently wins over it (clap does not
    /// propagate a global to a command that has an argument of the same id): `webhooks create
    /// --url` once sent the admin token to the webhook's host. No flag, id, alias or short
    /// name of any command may repeat a global one.
    #[test]
    fn no_subcommand_flag_shadows_a_global_one() {
        let root = Cli::command();
        let globals: Vec<&clap::Arg> = root.get_arguments().filter(|a| a.is_global_set()).collect();
        assert!(globals.len() >= 5, "the global flags were not found");
        let mut longs = BTreeSet::new();
        let mut shorts = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for g in &globals {
            ids.insert(g.get_id().as_str().to_owned());
            longs.extend(g.get_long_and_visible_aliases().into_iter().flatten());
            longs.extend(g.get_all_aliases().into_iter().flatten());
            shorts.extend(g.get_short_and_visible_aliases().into_iter().flatten());
        }
        let mut clashes = Vec::new();
        for (name, cmd) in all_commands() {
            if name == "scaivault" {
                continue;
            }
            for a in cmd.get_arguments() {
                let mut names: Vec<String> = a
                    .get_long_and_visible_aliases()
                    .into_iter()
                    .flatten()
                    .chain(a.get_all_aliases().into_iter().flatten())
                    .map(|l| format!("--{l}"))
                    .filter(|l| longs.contains(&l[2..]))
                    .collect();
                names.extend(
                    a.get_short_and_visible_aliases()
                        .into_iter()
                        .flatten()
                        .filter(|s| shorts.contains(s))
                        .map(|s| format!("-{s}")),
                );
                if ids.contains(a.get_id().as_str()) {
                    names.push(format!("id {}", a.get_id()));
                }
                if !names.is_empty() {
                    clashes.push(format!("{name}: {}", names.join(", ")));
                }
            }
        }
        assert!(
            clashes.is_empty(),
            "flags shadowing global ones: {clashes:#?}"
        );
        // clap's own consistency checks, over every command of the tree (they run only for
        // the commands a debug build actually parses otherwise).
        Cli::command().debug_assert();
    }

    /// `scaivault … --help` explains every argument of every command.
    #[test]
    fn every_argument_has_help() {
        let mut missing = Vec::new();
        for (name, cmd) in all_commands() {
            if cmd.get_about().is_none() && name != "scaivault" {
                missing.push(format!("{name} (the command itself)"));
            }
            for a in cmd.get_arguments() {
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{name}: {}", a.get_id()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{} without help: {missing:#?}",
            missing.len()
        );
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every subcommand says what it does and every argument has help: `--help`, the man
    /// pages and the completions are all generated from this tree.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) -> usize {
            let mut seen = 0;
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                seen += 1;
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{p} (no about)"));
                }
                seen += walk(sub, &p, missing);
            }
            seen
        }
        let mut missing = Vec::new();
        let seen = walk(&Cli::command(), "scaivault", &mut missing);
        assert!(seen > 200, "only {seen} arguments walked");
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }
}
