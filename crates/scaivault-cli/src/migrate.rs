//! `.env` migration: `import dotenv`, `export dotenv`, and the variable ↔ secret mapping that
//! `run` shares.
//!
//! Without a mapping each variable becomes its own secret, `<prefix>/<variable in lower case>`
//! holding `{"value": …}`; a mapping file groups variables into one secret with named fields
//! and lists the non-sensitive ones to leave in the environment:
//!
//! ```json
//! { "secrets": { "salesforce": { "SALESFORCE_CLIENT_ID": "client_id",
//!                                "SALESFORCE_CLIENT_SECRET": "client_secret" } },
//!   "skip": ["LOG_LEVEL", "PUBLIC_URL"] }
//! ```
//!
//! Each imported secret records where its values came from in `metadata.dotenv`
//! (`{"vars": [{"var", "field", "index"}]}`), so `export` rebuilds the file — names, order and
//! values byte for byte — without needing the mapping again.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use scaivault_core::path::SecretPath;
use scaivault_core::{Error, ErrorCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::args::{ExportCmd, ImportDotenvArgs};
use crate::dotenv;
use crate::output::{Out, print_table};
use crate::target::{CliResult, Method, VaultClient, q, secret_path};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default)]
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub skip: Vec<String>,
}

fn usage(m: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidRequest, m)
}

pub fn load_mapping(p: Option<&Path>) -> Result<Mapping, Error> {
    let Some(p) = p else {
        return Ok(Mapping::default());
    };
    let text = std::fs::read_to_string(p)
        .map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
    let m: Mapping = serde_json::from_str(&text).map_err(|e| {
        usage(format!(
            "{}: invalid mapping (line {}): {e}",
            p.display(),
            e.line()
        ))
    })?;
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (secret, vars) in &m.secrets {
        for var in vars.keys() {
            if let Some(other) = owner.insert(var, secret) {
                return Err(usage(format!(
                    "mapping: {var} is in both {other} and {secret}"
                )));
            }
        }
    }
    Ok(m)
}

/// One secret to write: its path, data and the variables it came from.
#[derive(Debug, Clone)]
pub struct Planned {
    pub path: String,
    pub data: Map<String, Value>,
    pub vars: Vec<Value>,
    /// Tags the secret gets on top of its others (a fleet import's service and environment).
    pub tags: Vec<String>,
}

fn default_name(var: &str) -> String {
    var.to_ascii_lowercase()
}

/// Turns parsed variables into secrets under `prefix`.
pub fn plan_secrets(
    entries: &[dotenv::Entry],
    mapping: &Mapping,
    prefix: &str,
) -> Result<(Vec<Planned>, Vec<String>), Error> {
    let prefix = prefix.trim_end_matches('/');
    // A name bash cannot assign (`spring.datasource.url`) could be imported but never come
    // back out through `export` or `run`: refuse the file before anything is written.
    let unnamed: Vec<String> = entries
        .iter()
        .filter(|e| !mapping.skip.contains(&e.key) && !is_variable_name(&e.key))
        .map(|e| format!("{} (line {})", e.key, e.line))
        .collect();
    if !unnamed.is_empty() {
        return Err(Error::new(
            ErrorCode::ValidationError,
            format!(
                "not variable names `scaivault run`, `export` and bash can set (letters, digits and _, not starting with a digit): {}; rename them in the file (e.g. SPRING_DATASOURCE_URL, which Spring also reads) or list them under `skip` in the mapping. Nothing was written.",
                unnamed.join(", ")
            ),
        ));
    }
    let mut by_path: BTreeMap<String, Planned> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut skipped = Vec::new();
    for (index, e) in entries.iter().enumerate() {
        if mapping.skip.contains(&e.key) {
            skipped.push(e.key.clone());
            continue;
        }
        let grouped = mapping
            .secrets
            .iter()
            .find_map(|(name, vars)| vars.get(&e.key).map(|field| (name.clone(), field.clone())));
        let (name, field) = grouped.unwrap_or_else(|| (default_name(&e.key), "value".to_owned()));
        let path = format!("{prefix}/{name}");
        SecretPath::parse(&path).map_err(|err| {
            Error::new(
                ErrorCode::InvalidPath,
                format!(
                    "variable {} (line {}) maps to an invalid path {path}: {}",
                    e.key, e.line, err.message
                ),
            )
        })?;
        let p = by_path.entry(path.clone()).or_insert_with(|| {
            order.push(path.clone());
            Planned {
                path: path.clone(),
                data: Map::new(),
                vars: Vec::new(),
                tags: Vec::new(),
            }
        });
        if p.data.contains_key(&field) {
            return Err(usage(format!(
                "variables {} and another both map to {path} field {field}",
                e.key
            )));
        }
        p.data.insert(field.clone(), Value::String(e.value.clone()));
        p.vars
            .push(json!({ "var": e.key, "field": field, "index": index }));
    }
    Ok((
        order
            .into_iter()
            .filter_map(|p| by_path.remove(&p))
            .collect(),
        skipped,
    ))
}

/// The current version of a secret, or `None` if there is none.
pub async fn fetch(target: &VaultClient, path: &str) -> CliResult<Option<Value>> {
    match target
        .get(&format!("/v1/secrets/{}", secret_path(path)?))
        .await
    {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if e.error.code == ErrorCode::SecretNotFound
                && e.error.details.get("deleted").is_none() =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The current versions of the planned secrets that exist (absent ones are new). Which exist
/// is learnt by listing their directories, so planning records a `list` entry per page and a
/// `read` per existing secret in the audit log, never a failed read per new one; the existing
/// ones are read a batch per 100 paths.
pub async fn fetch_many(
    target: &VaultClient,
    paths: Vec<String>,
) -> CliResult<HashMap<String, Value>> {
    let dirs: std::collections::BTreeSet<&str> = paths
        .iter()
        .map(|p| p.rfind('/').map_or("", |i| &p[..=i]))
        .collect();
    let mut existing = std::collections::HashSet::new();
    for dir in dirs {
        let listed = target
            .all_pages(&format!("/v1/secrets?prefix={}", q(dir)), "secrets")
            .await?;
        for s in listed["secrets"].as_array().into_iter().flatten() {
            if let Some(p) = s["path"].as_str() {
                existing.insert(p.to_owned());
            }
        }
    }
    let wanted: Vec<String> = paths.into_iter().filter(|p| existing.contains(p)).collect();
    let mut out = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(100) {
        let res = target
            .call(
                Method::POST,
                "/v1/secrets/batch",
                Some(&json!({"paths": chunk, "options": {"include_metadata": true}})),
            )
            .await?;
        for p in chunk {
            if let Some(s) = res["secrets"].get(p) {
                out.insert(p.clone(), s.clone());
            } else if let Some(e) = res["errors"].get(p) {
                // A soft-deleted secret, a denial or an expiry stops the import.
                let code = e["code"]
                    .as_str()
                    .and_then(ErrorCode::parse)
                    .unwrap_or(ErrorCode::InternalError);
                return Err(Error::new(
                    code,
                    format!("{p}: {}", e["message"].as_str().unwrap_or("")),
                )
                .into());
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Update,
    Unchanged,
}

struct Step {
    action: Action,
    planned: Planned,
    body: Value,
}

async fn build_steps(
    target: &VaultClient,
    planned: Vec<Planned>,
    args: &ImportDotenvArgs,
) -> CliResult<Vec<Step>> {
    let secret_type = args.secret_type.clone().unwrap_or_else(|| "kv".into());
    let tags = crate::output::split_tags(&args.tags);
    let mut currents = fetch_many(target, planned.iter().map(|p| p.path.clone()).collect()).await?;
    let mut steps = Vec::with_capacity(planned.len());
    for p in planned {
        let current = currents.remove(&p.path);
        let mut metadata = current
            .as_ref()
            .and_then(|c| c["metadata"].as_object().cloned())
            .unwrap_or_default();
        metadata.insert("dotenv".into(), json!({ "vars": p.vars }));
        let merged = merge_tags(metadata.get("tags"), &tags, &p.tags);
        if !merged.is_empty() {
            metadata.insert("tags".into(), json!(merged));
        }
        let action = match &current {
            None => Action::Create,
            Some(c)
                if c["data"] == Value::Object(p.data.clone())
                    && c["secret_type"] == json!(secret_type)
                    && c["metadata"] == Value::Object(metadata.clone()) =>
            {
                Action::Unchanged
            }
            Some(_) => Action::Update,
        };
        let body = json!({ "data": p.data, "secret_type": secret_type, "metadata": metadata });
        steps.push(Step {
            action,
            planned: p,
            body,
        });
    }
    Ok(steps)
}

/// The tags an imported secret ends with: `--tag` replaces the ones it has (as a plain write
/// would), a fleet's service and environment are added to them. The same set in another
/// order keeps the order stored, so that a re-import finds the secret unchanged.
fn merge_tags(current: Option<&Value>, given: &[String], added: &[String]) -> Vec<String> {
    let current: Vec<String> = current
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut merged = if given.is_empty() {
        current.clone()
    } else {
        given.to_vec()
    };
    for t in added {
        if !merged.contains(t) {
            merged.push(t.clone());
        }
    }
    fn as_set(v: &[String]) -> std::collections::BTreeSet<&String> {
        v.iter().collect()
    }
    if as_set(&merged) == as_set(&current) {
        return current;
    }
    merged
}

/// Secrets per batch write, and the bytes of JSON a batch may hold: under the engine's
/// limit of 1,000 and well under a server's default 1 MiB body limit.
const BATCH_SECRETS: usize = 1000;
const BATCH_BYTES: usize = 768 * 1024;

/// `writes` cut into batches of at most [`BATCH_SECRETS`] secrets and about [`BATCH_BYTES`]
/// bytes (a secret larger than that goes alone).
fn batches(writes: &[Value]) -> Vec<&[Value]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, w) in writes.iter().enumerate() {
        let size = w.to_string().len() + 1;
        if i > start && (i - start == BATCH_SECRETS || bytes + size > BATCH_BYTES) {
            out.push(&writes[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < writes.len() {
        out.push(&writes[start..]);
    }
    out
}

async fn apply(target: &VaultClient, steps: &[Step], progress: bool) -> CliResult<usize> {
    let changes: Vec<&Step> = steps
        .iter()
        .filter(|s| s.action != Action::Unchanged)
        .collect();
    if changes.is_empty() {
        return Ok(0);
    }
    // A batch per request, each one transaction: a batch lands whole or not at all, and every
    // secret written has its audit entry committed with it. An import that fits in one batch
    // (most do) is atomic; a larger one that fails part-way says how far it got, and running
    // it again writes the rest (what landed is then unchanged).
    let writes: Vec<Value> = changes
        .iter()
        .map(|s| {
            let mut w = s.body.clone();
            w["path"] = json!(s.planned.path);
            w
        })
        .collect();
    let batches = batches(&writes);
    let bar = if progress && batches.len() > 1 {
        let b = indicatif::ProgressBar::new(writes.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} secrets written")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut written = 0;
    for batch in batches {
        let res = target
            .call(
                Method::POST,
                "/v1/secrets/batch/write",
                Some(&json!({ "writes": batch })),
            )
            .await;
        if let Err(mut e) = res {
            bar.finish_and_clear();
            if let Some(p) = e.error.details.get("path").and_then(Value::as_str) {
                e.error.message = format!("{p}: {}", e.error.message);
            }
            if written > 0 {
                e.error.message = format!(
                    "{} ({written} of {} secrets were written before; running the import again writes the rest)",
                    e.error.message,
                    writes.len()
                );
            }
            return Err(e);
        }
        written += batch.len();
        bar.set_position(written as u64);
    }
    bar.finish_and_clear();
    Ok(changes.len())
}

fn read_env_file(p: &Path) -> Result<dotenv::Parsed, Error> {
    let bytes = std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
    let text =
        String::from_utf8(bytes).map_err(|_| usage(format!("{} is not UTF-8", p.display())))?;
    dotenv::parse(&text).map_err(|e| usage(format!("{}: {e}", p.display())))
}

/// A `.env` file to import: where its secrets go and the tags they get.
#[derive(Debug)]
struct Source {
    file: std::path::PathBuf,
    prefix: String,
    tags: Vec<String>,
}

/// A fleet's files: DIR/<service>/.env.<env> → <base>/<env>/<service>, tagged with the
/// service and the environment, so that a fleet's secrets can be found by either.
fn fleet_files(dir: &Path, base: &str) -> Result<Vec<Source>, Error> {
    let mut out = Vec::new();
    let mut services: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| usage(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    services.sort_by_key(|e| e.file_name());
    for svc in services {
        let service = svc.file_name().to_string_lossy().to_ascii_lowercase();
        let mut files: Vec<_> = std::fs::read_dir(svc.path())
            .map_err(|e| usage(format!("cannot read {}: {e}", svc.path().display())))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".env."))
            .collect();
        files.sort_by_key(|e| e.file_name());
        for f in files {
            let env = f.file_name().to_string_lossy()[5..].to_ascii_lowercase();
            out.push(Source {
                file: f.path(),
                prefix: format!("{}/{env}/{service}", base.trim_end_matches('/')),
                tags: vec![service.clone(), env],
            });
        }
    }
    if out.is_empty() {
        return Err(usage(format!(
            "no <service>/.env.<env> files under {}",
            dir.display()
        )));
    }
    Ok(out)
}

pub async fn import(target: &VaultClient, args: ImportDotenvArgs, out: &Out) -> CliResult<()> {
    let mapping = load_mapping(args.mapping.as_deref())?;
    let sources = match (&args.fleet, &args.file) {
        (Some(dir), None) => fleet_files(dir, args.prefix.as_deref().unwrap_or("environments"))?,
        (None, Some(f)) => {
            let prefix = args
                .prefix
                .clone()
                .ok_or_else(|| usage("give --prefix, e.g. environments/production/billing"))?;
            vec![Source {
                file: f.clone(),
                prefix,
                tags: Vec::new(),
            }]
        }
        _ => return Err(usage("give a .env file or --fleet DIR (not both)").into()),
    };
    // Parse everything before writing anything: one bad file stops the whole import.
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    for Source { file, prefix, tags } in &sources {
        let parsed = read_env_file(file)?;
        for (k, first, again) in &parsed.duplicates {
            warnings.push(format!(
                "{}: {k} is set on line {first} and again on line {again}; the last value is used",
                file.display()
            ));
        }
        let (p, s) = plan_secrets(&parsed.entries, &mapping, prefix)?;
        planned.extend(p.into_iter().map(|p| Planned {
            tags: tags.clone(),
            ..p
        }));
        skipped.extend(s.into_iter().map(|v| format!("{}:{v}", file.display())));
    }
    let steps = build_steps(target, planned, &args).await?;
    let count = |a| steps.iter().filter(|s| s.action == a).count();
    let (create, update, same) = (
        count(Action::Create),
        count(Action::Update),
        count(Action::Unchanged),
    );
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let written = if args.dry_run {
        0
    } else {
        apply(target, &steps, !out.json && args.fleet.is_some()).await?
    };
    let plan: Vec<Value> = steps
        .iter()
        .map(|s| {
            let vars: Vec<&str> = s.planned.vars.iter().filter_map(|v| v["var"].as_str()).collect();
            json!({ "action": match s.action { Action::Create => "create", Action::Update => "new_version", Action::Unchanged => "unchanged" },
                    "path": s.planned.path, "variables": vars })
        })
        .collect();
    let res = json!({
        "plan": plan, "create": create, "new_version": update, "unchanged": same,
        "skipped": skipped, "warnings": warnings, "written": written, "dry_run": args.dry_run,
    });
    out.emit(&res, || {
        let rows = plan
            .iter()
            .map(|p| vec![p["action"].as_str().unwrap_or("").to_owned(), p["path"].as_str().unwrap_or("").to_owned(), p["variables"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(",")).unwrap_or_default()])
            .collect();
        print_table(&["PLAN", "PATH", "VARIABLES"], rows);
        println!("{create} to create, {update} new versions, {same} unchanged, {} skipped as non-sensitive", skipped.len());
        if args.dry_run {
            println!("Dry run: nothing was written.");
        } else {
            println!("Wrote {written} secret{}.", if written == 1 { "" } else { "s" });
        }
    });
    Ok(())
}

/// Every secret under `prefix`, read (values included): one batch read per 100 paths, each
/// path audited as a read.
/// Every secret under the folder `prefix` names, values included. `app` means `app/`: a
/// prefix is a folder here, so `run --prefix app` never picks up `apple/…`, whose writers
/// may not be `app/`'s.
pub async fn read_all(target: &VaultClient, prefix: &str) -> CliResult<Vec<Value>> {
    let folder = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    };
    let listed = target
        .all_pages(&format!("/v1/secrets?prefix={}", q(&folder)), "secrets")
        .await?;
    let paths: Vec<String> = listed["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["path"].as_str().map(str::to_owned))
        .collect();
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(100) {
        let res = target
            .call(
                Method::POST,
                "/v1/secrets/batch",
                Some(&json!({"paths": chunk, "options": {"include_metadata": true, "fail_fast": true}})),
            )
            .await?;
        for p in chunk {
            let mut s = res["secrets"][p].clone();
            s["path"] = json!(p);
            out.push(s);
        }
    }
    Ok(out)
}

/// A shell variable name: what bash assigns with `NAME=value` (and every dotenv loader reads).
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn to_vars(secrets: &[Value], mapping: &Mapping) -> Result<Vec<(String, String)>, Error> {
    let mut vars: Vec<(u64, String, String, String)> = Vec::new(); // (order, path, var, value)
    let reverse: HashMap<(&str, &str), &str> = mapping
        .secrets
        .iter()
        .flat_map(|(name, m)| {
            m.iter()
                .map(move |(var, field)| ((name.as_str(), field.as_str()), var.as_str()))
        })
        .collect();
    for s in secrets {
        let path = s["path"].as_str().unwrap_or("");
        let name = path.rsplit('/').next().unwrap_or(path);
        let data = s["data"].as_object().cloned().unwrap_or_default();
        let text = |v: &Value| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        };
        if let Some(recorded) = s["metadata"]["dotenv"]["vars"].as_array() {
            for r in recorded {
                let (Some(var), Some(field)) = (r["var"].as_str(), r["field"].as_str()) else {
                    continue;
                };
                if let Some(v) = data.get(field) {
                    vars.push((
                        r["index"].as_u64().unwrap_or(u64::MAX),
                        path.to_owned(),
                        var.to_owned(),
                        text(v),
                    ));
                }
            }
            continue;
        }
        for (field, v) in &data {
            let var = match reverse.get(&(name, field.as_str())) {
                Some(var) => (*var).to_owned(),
                None if field == "value" => name.to_ascii_uppercase().replace('-', "_"),
                None => format!("{name}_{field}")
                    .to_ascii_uppercase()
                    .replace('-', "_"),
            };
            vars.push((u64::MAX, path.to_owned(), var, text(v)));
        }
    }
    vars.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut seen = std::collections::HashSet::new();
    for (_, path, var, _) in &vars {
        // A name is data someone wrote (a field name, a recorded variable): it becomes a line
        // of a file a shell sources, so only a plain identifier is one.
        if !is_variable_name(var) {
            return Err(usage(format!(
                "{path} gives the variable name {:?}, which is not one (letters, digits and _, not starting with a digit); rename the field, or name it in a mapping",
                var.chars().take(64).collect::<String>()
            )));
        }
        if !seen.insert(var.clone()) {
            return Err(usage(format!(
                "two secrets give the variable {var} (one is {path}); use a mapping"
            )));
        }
    }
    Ok(vars.into_iter().map(|(_, _, k, v)| (k, v)).collect())
}

pub async fn export(target: &VaultClient, cmd: ExportCmd) -> CliResult<()> {
    let ExportCmd::Dotenv {
        prefix,
        mapping,
        out,
    } = cmd;
    let mapping = load_mapping(mapping.as_deref())?;
    // Every value was read through the API, so each read's audit entry is durable already.
    let secrets = read_all(target, &prefix).await?;
    let vars = to_vars(&secrets, &mapping)?;
    let text = dotenv::render(&vars);
    let inexact: Vec<String> = vars
        .iter()
        .filter_map(|(k, v)| dotenv::inexact_in(v).map(|r| format!("{k} (differs in {r})")))
        .collect();
    if !inexact.is_empty() {
        eprintln!(
            "warning: no .env quoting reads these values back exactly in every reader: {}. `scaivault run` passes every value exactly.",
            inexact.join(", ")
        );
    }
    let refused: Vec<&str> = vars
        .iter()
        .filter(|(_, v)| dotenv::compose_may_refuse(v))
        .map(|(k, _)| k.as_str())
        .collect();
    if !refused.is_empty() {
        eprintln!(
            "warning: docker compose may refuse this whole file because of {}: `${{` in double quotes is a variable to compose.",
            refused.join(", ")
        );
    }
    let references: Vec<&str> = vars
        .iter()
        .filter(|(_, v)| v.starts_with(crate::references::SCHEME))
        .map(|(k, _)| k.as_str())
        .collect();
    if !references.is_empty() {
        eprintln!(
            "warning: these values start with scaivault:// and `run --env-file` would take them for references, not values: {}",
            references.join(", ")
        );
    }
    match out {
        // Replaced in one rename: a symlink at --out is replaced, never followed.
        Some(p) => crate::config::replace_private(&p, text.as_bytes())
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", p.display())))?,
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixture files
mod tests {
    use super::*;

    #[test]
    fn imports_are_cut_into_batches_by_count_and_size() {
        let small: Vec<Value> = (0..2500)
            .map(|i| json!({"path": format!("a/{i}")}))
            .collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let big = json!({"data": {"v": "x".repeat(300 * 1024)}});
        let large = vec![big.clone(), big.clone(), big.clone(), json!({})];
        let sizes: Vec<usize> = batches(&large).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2]);
        let huge = vec![json!({"data": {"v": "x".repeat(900 * 1024)}}), json!({})];
        let sizes: Vec<usize> = batches(&huge).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 1], "a secret larger than a batch goes alone");
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn default_and_grouped_plans() {
        let parsed = dotenv::parse("STRIPE_KEY=sk\nSALESFORCE_CLIENT_ID=id\nSALESFORCE_CLIENT_SECRET=sec\nLOG_LEVEL=info\n").unwrap();
        let mapping: Mapping = serde_json::from_str(
            r#"{"secrets":{"salesforce":{"SALESFORCE_CLIENT_ID":"client_id","SALESFORCE_CLIENT_SECRET":"client_secret"}},"skip":["LOG_LEVEL"]}"#,
        )
        .unwrap();
        let (plan, skipped) = plan_secrets(
            &parsed.entries,
            &mapping,
            "environments/production/billing/",
        )
        .unwrap();
        assert_eq!(skipped, vec!["LOG_LEVEL"]);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].path, "environments/production/billing/stripe_key");
        assert_eq!(plan[0].data["value"], "sk");
        assert_eq!(plan[1].path, "environments/production/billing/salesforce");
        assert_eq!(plan[1].data["client_secret"], "sec");
    }

    #[test]
    fn names_no_shell_can_set_are_refused_unless_skipped() {
        let parsed = dotenv::parse("spring.datasource.url=jdbc:x\nOK=1\nmy-flag=on\n").unwrap();
        let err = plan_secrets(&parsed.entries, &Mapping::default(), "app").unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationError);
        assert!(
            err.message
                .contains("spring.datasource.url (line 1), my-flag (line 3)"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("jdbc"), "no value in the error");
        let skip: Mapping =
            serde_json::from_str(r#"{"skip":["spring.datasource.url","my-flag"]}"#).unwrap();
        let (plan, skipped) = plan_secrets(&parsed.entries, &skip, "app").unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn fleet_tags_are_added_and_given_tags_replace() {
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let stored = json!(["stripe", "billing"]);
        // A fleet import adds its service and environment to what the secret has.
        assert_eq!(
            merge_tags(Some(&stored), &[], &s(&["billing", "production"])),
            s(&["stripe", "billing", "production"])
        );
        // --tag replaces, as a write's metadata does; the fleet's tags still join.
        assert_eq!(
            merge_tags(Some(&stored), &s(&["team-a"]), &s(&["billing"])),
            s(&["team-a", "billing"])
        );
        // The same set in another order is the stored one: nothing to write.
        let both = json!(["production", "billing"]);
        assert_eq!(
            merge_tags(Some(&both), &s(&["billing", "production"]), &[]),
            s(&["production", "billing"])
        );
        assert!(merge_tags(None, &[], &[]).is_empty());
    }

    #[test]
    fn fleet_files_map_service_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        for (svc, env) in [
            ("billing", "production"),
            ("billing", "staging"),
            ("Reporting", "production"),
        ] {
            std::fs::create_dir_all(dir.path().join(svc)).unwrap();
            std::fs::write(dir.path().join(svc).join(format!(".env.{env}")), "A=1\n").unwrap();
        }
        std::fs::write(
            dir.path().join("billing").join("notes.txt"),
            "not an env file",
        )
        .unwrap();
        let got: Vec<(String, Vec<String>)> = fleet_files(dir.path(), "environments/")
            .unwrap()
            .into_iter()
            .map(|s| (s.prefix, s.tags))
            .collect();
        // In the order of the directory names ("Reporting" sorts before "billing").
        let want = [
            (
                "environments/production/reporting",
                ["reporting", "production"],
            ),
            ("environments/production/billing", ["billing", "production"]),
            ("environments/staging/billing", ["billing", "staging"]),
        ];
        assert_eq!(got.len(), want.len());
        for ((p, t), (wp, wt)) in got.iter().zip(want) {
            assert_eq!(
                (p.as_str(), t.iter().map(String::as_str).collect::<Vec<_>>()),
                (wp, wt.to_vec())
            );
        }
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            fleet_files(empty.path(), "e").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn invalid_names_are_reported_with_their_line() {
        let parsed = dotenv::parse("A=1\nb_c_D=2\n").unwrap();
        assert!(plan_secrets(&parsed.entries, &Mapping::default(), "x").is_ok());
        let err = plan_secrets(&parsed.entries, &Mapping::default(), "Bad Prefix").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidPath);
        assert!(err.message.contains("line 1"));
    }
}
