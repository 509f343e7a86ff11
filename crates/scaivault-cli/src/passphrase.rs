//! Where passphrases come from: a file, an environment variable, or the terminal.

use std::path::Path;

use scaivault_core::{Error, ErrorCode};
use zeroize::Zeroizing;

fn from_file(p: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let raw = Zeroizing::new(std::fs::read(p).map_err(|e| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!("cannot read {}: {e}", p.display()),
        )
    })?);
    let mut end = raw.len();
    while end > 0 && (raw[end - 1] == b'\n' || raw[end - 1] == b'\r') {
        end -= 1;
    }
    Ok(Zeroizing::new(raw[..end].to_vec()))
}

/// The passphrase from `--passphrase-file`, `env_var`, or a prompt; `None` if none can be had.
pub fn obtain(
    file: Option<&Path>,
    env_var: &str,
    prompt: &str,
    confirm: bool,
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    if let Some(f) = file {
        return Ok(Some(from_file(f)?));
    }
    if let Ok(v) = std::env::var(env_var) {
        return Ok(Some(Zeroizing::new(v.into_bytes())));
    }
    let p = match rpassword::prompt_password(prompt) {
        Ok(p) => Zeroizing::new(p),
        Err(_) => return Ok(None),
    };
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat the passphrase: ").unwrap_or_default(),
        );
        if *again != *p {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                "the passphrases do not match",
            ));
        }
    }
    Ok(Some(Zeroizing::new(p.as_bytes().to_vec())))
}

pub fn require(
    file: Option<&Path>,
    env_var: &str,
    prompt: &str,
    confirm: bool,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let p = obtain(file, env_var, prompt, confirm)?.ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!("no passphrase: give --passphrase-file, set {env_var}, or run in a terminal"),
        )
    })?;
    if p.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidRequest,
            "the passphrase is empty",
        ));
    }
    Ok(p)
}
