//! The domain rules of ScaiVault: paths, globs, durations, identities, scopes, policies and the
//! error-code catalogue. Nothing here does I/O, async or crypto, so every rule can be tested in
//! isolation and is written exactly once for both the HTTP API and the CLI's local mode.

#![forbid(unsafe_code)]

pub mod dotenv;
pub mod duration;
pub mod error;
pub mod glob;
pub mod identity;
pub mod path;
pub mod policy;
pub mod scope;
pub mod time;

pub use error::{Error, ErrorCode, Result};
