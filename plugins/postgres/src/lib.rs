//! The `postgres` rotation backend: `set` changes a role's password, `test` proves the new
//! password logs in. The database work is the host's narrow `postgres` capability: it connects
//! with an admin credential it reads from another vault path (this plugin never sees it), quotes
//! the role name and the password itself, and reaches only hosts on the operator's allow-list.
//! This plugin decides what to do; it cannot run arbitrary SQL.

use scaivault_plugin_sdk::{host, input, json, plugin, Error, Map, Result, Value};

plugin! {
    "describe" => describe,
    "set" => set,
    "test" => test,
}

fn describe(_: Value) -> Result<Value> {
    Ok(json!({"rotation_backends": [{
        "name": "postgres",
        "config": {
            "host": "server host (on the operator's allow-list)",
            "port": "default 5432",
            "dbname": "default postgres",
            "role": "the role whose password rotates",
            "admin_secret_path": "vault path of a credential (username, password) allowed to ALTER ROLE",
            "password_field": "field of the rotated secret holding the password (default password)"
        }
    }]}))
}

struct Target {
    server: Value,
    role: String,
    admin_path: String,
    password: String,
}

fn target(request: &Value) -> Result<Target> {
    let req = input::object(request, "request")?;
    let cfg = match req.get("config") {
        Some(Value::Object(m)) => m,
        _ => return Err(Error::validation("backend_config", "is required for the postgres backend")),
    };
    let need = |k: &str| -> Result<String> {
        input::str_field(cfg, k)
            .map(str::to_string)
            .map_err(|_| Error::validation(&format!("backend_config.{}", k), "is required"))
    };
    let port = match cfg.get("port") {
        None => 5432,
        Some(Value::String(s)) => s
            .parse::<u16>()
            .map_err(|_| Error::validation("backend_config.port", "must be a port number"))?,
        Some(v) => v
            .as_u64()
            .filter(|p| *p > 0 && *p < 65536)
            .ok_or_else(|| Error::validation("backend_config.port", "must be a port number"))? as u16,
    };
    let dbname = input::opt_str(cfg, "dbname")?.unwrap_or("postgres").to_string();
    let field = input::opt_str(cfg, "password_field")?.unwrap_or("password");
    let pending: &Map<String, Value> = match req.get("pending") {
        Some(Value::Object(m)) => m,
        _ => return Err(Error::new("invalid_request", "no pending value")),
    };
    let password = match pending.get(field) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(Error::validation(
                &format!("data.{}", field),
                "the rotated secret has no password in this field",
            ))
        }
    };
    Ok(Target {
        server: json!({"host": need("host")?, "port": port, "dbname": dbname}),
        role: need("role")?,
        admin_path: need("admin_secret_path")?,
        password,
    })
}

fn set(request: Value) -> Result<Value> {
    let t = target(&request)?;
    host::postgres_request(&json!({
        "op": "set_password",
        "server": t.server,
        "admin_secret_path": t.admin_path,
        "role": t.role,
        "password": t.password,
    }))?;
    Ok(json!({"role": t.role}))
}

fn test(request: Value) -> Result<Value> {
    let t = target(&request)?;
    host::postgres_request(&json!({
        "op": "login",
        "server": t.server,
        "user": t.role,
        "password": t.password,
    }))?;
    Ok(json!({"role": t.role, "login": "ok"}))
}
