//! `scaivault run -- CMD`: start a command with secrets in its environment.
//!
//! Signals the runner receives (INT, TERM, HUP, QUIT) are passed on to the child, and the
//! child's exit status becomes the runner's (128 + signal when it was killed by one). With
//! `--mask`, every secret value of four or more characters is replaced by `******` in the
//! child's output, line by line (a multi-line value line by line too).
//!
//! The child never inherits the runner's own vault credentials (`SCAIVAULT_TOKEN`, the
//! passphrase, …): a command given secrets should not also get the key to every other one.
//! `--pass-credential VAR` passes one on explicitly.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use scaivault_core::{Error, ErrorCode};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::args::{Global, RunArgs};
use crate::dotenv;
use crate::migrate::{self, load_mapping};
use crate::references::{Reference, Resolver, looks_like_old_reference};
use crate::target::{CliError, CliResult, VaultClient};

fn usage(m: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidRequest, m)
}

/// The variables of a `.env` file: `scaivault://path#field` values resolved from the vault,
/// the others passed as they are.
async fn from_env_file(
    target: &VaultClient,
    file: &std::path::Path,
) -> CliResult<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
    let parsed = dotenv::parse(&text).map_err(|e| usage(format!("{}: {e}", file.display())))?;
    let mut resolver = Resolver::new(target);
    let mut out = Vec::new();
    for e in parsed.entries {
        let whence = format!("{} line {} ({})", file.display(), e.line, e.key);
        let value = match Reference::parse(&e.value) {
            Some(r) => {
                let r = r.map_err(|err| usage(format!("{whence}: {}", err.message)))?;
                let v = resolver.value(&r, &whence).await?;
                check_injectable([&(e.key.clone(), v.clone())], true)?;
                v
            }
            None => {
                if looks_like_old_reference(&e.value) {
                    eprintln!(
                        "scaivault run: {whence} looks like a secret reference without scaivault:// and is passed as it is; a reference is written scaivault://path#field"
                    );
                }
                e.value
            }
        };
        let var = (e.key, value);
        check_injectable([&var], false)?;
        out.push(var);
    }
    Ok(out)
}

async fn collect(
    g: &Global,
    args: &RunArgs,
    target: impl FnOnce() -> CliResult<VaultClient>,
) -> CliResult<Vec<(String, String)>> {
    let _ = g;
    if args.prefix.is_none() && args.env_file.is_none() {
        return Err(usage("give --prefix or --env-file").into());
    }
    // The client (and in local mode the vault file) is dropped when this returns, before the
    // child starts, so a long-running child does not hold the file's lock. Every value is
    // read through the API, so each read is audited before it is used.
    let target = target()?;
    let read = async {
        let mapping = load_mapping(args.mapping.as_deref())?;
        let mut vars = Vec::new();
        if let Some(prefix) = &args.prefix {
            let secrets: Vec<Value> = migrate::read_all(&target, prefix).await?;
            let from_prefix = migrate::to_vars(&secrets, &mapping)?;
            check_injectable(&from_prefix, true)?;
            vars.extend(from_prefix);
        }
        if let Some(f) = &args.env_file {
            vars.extend(from_env_file(&target, f).await?);
        }
        Ok(vars)
    }
    .await;
    target.close().await;
    read
}

/// Variables `run` never takes from the vault: they decide which program runs and what it
/// loads (the command is looked up on the child's PATH), so whoever can write one secret
/// under the prefix would run their own code as this user. Set them yourself.
const LOADER_VARS: &[&str] = &[
    "PATH",
    "IFS",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "NODE_OPTIONS",
    "JAVA_TOOL_OPTIONS",
];

/// Refuses what no environment can carry, and, for values the vault gave (`from_vault`),
/// what would change which program runs. A literal in the user's own --env-file is theirs.
fn check_injectable<'a>(
    vars: impl IntoIterator<Item = &'a (String, String)>,
    from_vault: bool,
) -> CliResult<()> {
    for (k, v) in vars {
        if from_vault
            && (LOADER_VARS.contains(&k.as_str()) || k.starts_with("LD_") || k.starts_with("DYLD_"))
        {
            return Err(usage(format!(
                "refusing to set {k} from the vault: it decides which program runs or what it loads; set it yourself (or rename the secret)"
            ))
            .into());
        }
        if v.contains('\0') {
            return Err(usage(format!(
                "the value of {k} holds a NUL byte, which no environment variable can carry"
            ))
            .into());
        }
    }
    Ok(())
}

/// `--fallback-snapshot`: the last variables the vault gave this command, sealed to the token
/// that read them and bound to what was asked (the server, `--prefix`, `--env-file`,
/// `--mapping`), so a snapshot never stands in for another command's.
struct Snapshot {
    file: std::path::PathBuf,
    token: Zeroizing<String>,
    purpose: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotBody {
    written_at: String,
    vars: Vec<(String, String)>,
}

impl Snapshot {
    fn new(g: &Global, args: &RunArgs, file: &std::path::Path) -> CliResult<Snapshot> {
        if g.vault.is_some() {
            return Err(usage(
                "--fallback-snapshot is for a vault reached over HTTP; a vault file is always at hand",
            )
            .into());
        }
        let token = crate::token(g).ok_or_else(|| {
            usage("--fallback-snapshot needs a token (its key is derived from it)")
        })?;
        // A file is named by what it holds: an edited --env-file or --mapping asks for
        // something else, which an older snapshot does not answer.
        let shown = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| {
                    let held = std::fs::read(p).unwrap_or_default();
                    format!(
                        "{}#{}",
                        p.display(),
                        hex::encode(scaivault_crypto::sha256(&held))
                    )
                })
                .unwrap_or_default()
        };
        let purpose = format!(
            "scaivault run snapshot\0{}\0{}\0{}\0{}",
            crate::server_url(g),
            args.prefix.as_deref().unwrap_or(""),
            shown(&args.env_file),
            shown(&args.mapping)
        );
        Ok(Snapshot {
            file: file.to_owned(),
            token: Zeroizing::new(token),
            purpose,
        })
    }

    /// Replaces the snapshot with `vars`. A failure is said, never fatal: the command runs.
    fn save(&self, vars: &[(String, String)]) {
        let body = SnapshotBody {
            written_at: scaivault_core::time::Timestamp::now().to_rfc3339(),
            vars: vars.to_vec(),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());
        drop(body);
        let sealed =
            scaivault_crypto::seal_to_credential(self.token.as_bytes(), &self.purpose, &plain);
        if let Err(e) = crate::config::replace_private(&self.file, &sealed) {
            eprintln!(
                "scaivault run: cannot write the snapshot {}: {e}",
                self.file.display()
            );
        }
    }

    /// The snapshot's variables, said out loud, or `None` (and why) when there is none to use.
    fn load(&self, why: &CliError) -> Option<Vec<(String, String)>> {
        let name = self.file.display();
        let sealed = match std::fs::read(&self.file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("scaivault run: no snapshot to fall back on ({name}: {e})");
                return None;
            }
        };
        let Ok(plain) =
            scaivault_crypto::open_with_credential(self.token.as_bytes(), &self.purpose, &sealed)
        else {
            eprintln!(
                "scaivault run: the snapshot {name} does not open with this token for this command (written for another token or selection, or damaged); not used"
            );
            return None;
        };
        let body: SnapshotBody = serde_json::from_slice(plain.as_bytes()).ok()?;
        eprintln!(
            "scaivault run: the vault is unreachable ({}); running with the snapshot {name} written at {} (--fallback-snapshot)",
            why.error.message, body.written_at
        );
        Some(body.vars)
    }
}

fn is_unreachable(e: &CliError) -> bool {
    e.error.code == ErrorCode::ServiceUnavailable
        && e.error.message.starts_with("cannot reach the vault")
}

pub async fn run(
    g: &Global,
    args: RunArgs,
    target: impl FnOnce() -> CliResult<VaultClient>,
) -> CliResult<()> {
    // Every answer the command needs, within --timeout: a vault that accepts the connection
    // and then says nothing is as unreachable as one that is down.
    let collected = tokio::time::timeout(args.timeout, collect(g, &args, target))
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorCode::ServiceUnavailable,
                format!(
                    "cannot reach the vault (no answer within {}s, --timeout)",
                    args.timeout.as_secs_f64()
                ),
            )
            .into())
        });
    let snapshot = match &args.fallback_snapshot {
        Some(file) => Some(Snapshot::new(g, &args, file)?),
        None => None,
    };
    let vars = match collected {
        Ok(v) => {
            if let Some(s) = &snapshot {
                s.save(&v);
            }
            v
        }
        Err(e)
            if is_unreachable(&e)
                && let Some(v) = snapshot.as_ref().and_then(|s| s.load(&e)) =>
        {
            v
        }
        Err(e) if args.fallback_env && is_unreachable(&e) => {
            eprintln!(
                "scaivault run: the vault is unreachable ({}); running with the environment as it is (--fallback-env)",
                e.error.message
            );
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| usage("give the command after --"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    for var in CREDENTIAL_VARS {
        if !args.pass_credentials.iter().any(|p| p == var) {
            cmd.env_remove(var);
        }
    }
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    let masks: Vec<Zeroizing<String>> = if args.mask {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        masks_for(vars.iter().map(|(_, v)| v.as_str()))
    } else {
        Vec::new()
    };
    drop(vars);
    // Listen for the signals before the child exists: one that arrives between the spawn and
    // the listener would otherwise kill this runner and orphan the child.
    let signals = signal_streams();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        // As a shell answers: 127 for a command not found, 126 for one that cannot run.
        Err(e) => {
            eprintln!("scaivault run: {program}: {e}");
            std::process::exit(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut pumps = Vec::new();
    if args.mask {
        let masks = std::sync::Arc::new(masks);
        if let Some(out) = child.stdout.take() {
            let m = masks.clone();
            pumps.push(std::thread::spawn(move || pump(out, std::io::stdout(), &m)));
        }
        if let Some(err) = child.stderr.take() {
            let m = masks.clone();
            pumps.push(std::thread::spawn(move || pump(err, std::io::stderr(), &m)));
        }
    }
    let forward = tokio::spawn(forward_signals(signals, pid));
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|_| Error::internal("waiting for the child failed"))?
        .map_err(|e| Error::internal(format!("waiting for {program}: {e}")))?;
    forward.abort();
    for p in pumps {
        let _ = p.join();
    }
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The environment variables through which the CLI itself receives vault credentials; none
/// reaches a child of `run` unless named with `--pass-credential`.
pub const CREDENTIAL_VARS: &[&str] = &[
    "SCAIVAULT_TOKEN",
    "SCAIVAULT_PASSPHRASE",
    "SCAIVAULT_NEW_PASSPHRASE",
    "SCAIVAULT_WEBHOOK_SECRET",
];

/// What `--mask` replaces: every value of four or more characters, and every line of four or
/// more characters of a multi-line value (output is masked line by line, so a value spanning
/// lines never appears whole in one). Longest first, so a value containing another is masked
/// whole.
fn masks_for<'a>(values: impl Iterator<Item = &'a str>) -> Vec<Zeroizing<String>> {
    let mut m: Vec<Zeroizing<String>> = Vec::new();
    for v in values {
        let mut add = |s: &str| {
            if s.len() >= 4 && !m.iter().any(|x| x.as_str() == s) {
                m.push(Zeroizing::new(s.to_owned()));
            }
        };
        add(v);
        if v.contains('\n') {
            for line in v.lines() {
                add(line.trim_end_matches('\r'));
            }
        }
    }
    m.sort_by_key(|v| std::cmp::Reverse(v.len()));
    m
}

fn pump(from: impl std::io::Read, mut to: impl Write, masks: &[Zeroizing<String>]) {
    let mut r = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let mut text = String::from_utf8_lossy(&line).into_owned();
                for m in masks {
                    if text.contains(m.as_str()) {
                        text = text.replace(m.as_str(), "******");
                    }
                }
                let _ = to.write_all(text.as_bytes());
                let _ = to.flush();
            }
        }
    }
}

type SignalStreams = Vec<(tokio::signal::unix::Signal, nix::sys::signal::Signal)>;

/// Installs the handlers for the signals the runner forwards (at creation, not first poll):
/// every one a process may catch and that means something to the child (SIGUSR1 used to kill
/// the runner and orphan the child). Job control (SIGTSTP, SIGCONT) is left to the terminal.
///
/// Ctrl-C and Ctrl-\ reach the whole foreground process group, the child included; when this
/// runner is in the terminal's foreground group, forwarding SIGINT and SIGQUIT as well would
/// deliver them twice, so they are not forwarded then (a `kill -INT` from elsewhere still is
/// when the runner is in the background or has no terminal).
fn signal_streams() -> SignalStreams {
    use nix::sys::signal::Signal;
    use tokio::signal::unix::{SignalKind, signal};
    let terminal_delivers = in_terminal_foreground();
    let kinds = [
        (SignalKind::interrupt(), Signal::SIGINT),
        (SignalKind::terminate(), Signal::SIGTERM),
        (SignalKind::hangup(), Signal::SIGHUP),
        (SignalKind::quit(), Signal::SIGQUIT),
        (SignalKind::user_defined1(), Signal::SIGUSR1),
        (SignalKind::user_defined2(), Signal::SIGUSR2),
        (SignalKind::window_change(), Signal::SIGWINCH),
        (SignalKind::alarm(), Signal::SIGALRM),
    ];
    kinds
        .into_iter()
        .filter_map(|(kind, sig)| {
            // The handler is installed either way, and tokio keeps it for the life of the
            // process: the runner never dies of one of these.
            let stream = signal(kind).ok()?;
            let from_terminal = matches!(sig, Signal::SIGINT | Signal::SIGQUIT | Signal::SIGWINCH);
            (!(terminal_delivers && from_terminal)).then_some((stream, sig))
        })
        .collect()
}

/// Whether this process is in the foreground process group of its controlling terminal: then
/// the terminal's own signals reach the child without the runner's help.
fn in_terminal_foreground() -> bool {
    let Ok(tty) = std::fs::File::open("/dev/tty") else {
        return false;
    };
    nix::unistd::tcgetpgrp(&tty).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}

async fn forward_signals(streams: SignalStreams, pid: nix::unistd::Pid) {
    use nix::sys::signal::kill;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (mut s, sig) in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    }
    while let Some(sig) = rx.recv().await {
        let _ = kill(pid, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(values: &[&str], line: &str) -> String {
        let m = masks_for(values.iter().copied());
        let mut text = line.to_owned();
        for v in &m {
            text = text.replace(v.as_str(), "******");
        }
        text
    }

    #[test]
    fn every_line_of_a_multi_line_value_is_masked() {
        let key = "-----BEGIN KEY-----\nMIIEvAIBADANBgkqhkiG9w0B\n-----END KEY-----";
        assert_eq!(masked(&[key], "MIIEvAIBADANBgkqhkiG9w0B\n"), "******\n");
        assert_eq!(masked(&[key], "x -----END KEY----- y"), "x ****** y");
        // Short lines (under four characters) are left alone, like short values.
        assert_eq!(masked(&["ab\nsecretline"], "ab secretline"), "ab ******");
    }

    #[test]
    fn a_value_containing_another_is_masked_whole() {
        assert_eq!(masked(&["pass", "password1"], "password1"), "******");
    }
}
