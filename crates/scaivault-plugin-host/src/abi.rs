//! The names and numbers of ABI v1, shared by the loader and the sandbox. `plugins/ABI.md` is
//! the contract; this file must agree with it.

/// The major version is part of the marker's name, so a host can tell "built for another
/// major" (a different marker) from "not a ScaiVault plugin" (no marker at all).
pub const MAJOR: u32 = 1;
/// The highest minor version of v1 this host speaks. A guest reporting a higher minor may rely
/// on imports or operations this host lacks, so it is refused.
pub const MINOR: i32 = 0;

pub const MARKER_PREFIX: &str = "scaivault_abi_v";
pub const MARKER: &str = "scaivault_abi_v1";
pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_ALLOC: &str = "sv_alloc";
pub const EXPORT_CALL: &str = "sv_call";

pub const IMPORT_MODULE: &str = "scaivault";

pub const STATUS_OK: i32 = 0;
pub const STATUS_ERROR: i32 = 1;
pub const STATUS_RETRYABLE: i32 = 2;

/// Largest single `random` request, so a guest cannot make the host allocate without bound.
pub const MAX_RANDOM_BYTES: i32 = 64 * 1024;
/// Log lines a call may write, and the longest line kept.
pub const MAX_LOG_LINES: u32 = 64;
pub const MAX_LOG_LINE: usize = 1024;
/// Largest request a guest may pass to a capability import.
pub const MAX_HOST_REQUEST: i32 = 1024 * 1024;
