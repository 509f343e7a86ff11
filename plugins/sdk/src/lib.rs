//! The guest side of ScaiVault's plugin ABI v1 (see `../ABI.md`).
//!
//! A plugin author writes plain functions `fn(Value) -> Result<Value>` and names them in
//! [`plugin!`]; this crate exports the ABI marker, the allocator and the dispatcher, and wraps
//! the host imports in safe functions. It builds with Rust 1.63 (Debian's wasm toolchain), so it
//! uses `serde_json::Value` rather than serde's derive.
//!
//! An instance lives for exactly one call: the host creates a fresh one per call and throws it
//! away afterwards, so nothing here ever frees what it allocated.

pub use serde_json::{self, json, Map, Value};

/// The minor version of ABI v1 this SDK speaks. The major version is in the marker's name.
pub const ABI_MINOR: i32 = 0;

/// What a call returns to the host, besides its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    Error = 1,
    /// The failure is transient (a network error, a busy server): the host may try again.
    Retryable = 2,
}

/// A structured failure, sent to the host as `{"code", "message", "fields"}`.
#[derive(Clone, Debug)]
pub struct Error {
    pub code: String,
    pub message: String,
    pub fields: Map<String, Value>,
    pub retryable: bool,
}

pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Error {
            code: code.to_string(),
            message: message.into(),
            fields: Map::new(),
            retryable: false,
        }
    }

    /// A `validation_error` naming one field; add more with [`Error::field`].
    pub fn validation(field: &str, problem: impl Into<String>) -> Self {
        let problem = problem.into();
        Error::new("validation_error", format!("{}: {}", field, problem)).field(field, problem)
    }

    pub fn field(mut self, field: &str, problem: impl Into<String>) -> Self {
        self.fields
            .insert(field.to_string(), Value::String(problem.into()));
        self
    }

    /// A transient failure that the host may retry.
    pub fn retryable(code: &str, message: impl Into<String>) -> Self {
        let mut e = Error::new(code, message);
        e.retryable = true;
        e
    }

    fn to_value(&self) -> Value {
        json!({"code": self.code, "message": self.message, "fields": Value::Object(self.fields.clone())})
    }
}

/// Declares the plugin's operations. Each handler is `fn(Value) -> Result<Value>`.
///
/// ```ignore
/// scaivault_plugin_sdk::plugin! {
///     "describe" => describe,
///     "validate" => validate,
/// }
/// ```
#[macro_export]
macro_rules! plugin {
    ($($op:literal => $handler:path),* $(,)?) => {
        #[no_mangle]
        pub extern "C" fn scaivault_abi_v1() -> i32 {
            $crate::ABI_MINOR
        }

        #[no_mangle]
        pub extern "C" fn sv_alloc(len: i32) -> i32 {
            $crate::abi::alloc(len)
        }

        #[no_mangle]
        pub extern "C" fn sv_call(op_ptr: i32, op_len: i32, in_ptr: i32, in_len: i32) -> i32 {
            $crate::abi::dispatch(op_ptr, op_len, in_ptr, in_len, |op, input| match op {
                $($op => $handler(input),)*
                other => Err($crate::Error::new(
                    "unknown_operation",
                    format!("this plugin has no operation {:?}", other),
                )),
            })
        }
    };
}

/// The raw ABI. Plugin authors use [`plugin!`] instead.
pub mod abi {
    use super::{Error, Status, Value};

    #[link(wasm_import_module = "scaivault")]
    extern "C" {
        fn output(ptr: i32, len: i32);
        fn log(level: i32, ptr: i32, len: i32);
    }

    pub fn alloc(len: i32) -> i32 {
        if len <= 0 {
            return 0;
        }
        let mut buf = Vec::<u8>::with_capacity(len as usize);
        let ptr = buf.as_mut_ptr();
        core::mem::forget(buf);
        ptr as i32
    }

    /// # Safety-by-contract
    /// The host wrote `op_len` and `in_len` bytes at pointers it got from [`alloc`].
    pub fn dispatch(
        op_ptr: i32,
        op_len: i32,
        in_ptr: i32,
        in_len: i32,
        handler: impl FnOnce(&str, Value) -> super::Result<Value>,
    ) -> i32 {
        let op = unsafe { bytes(op_ptr, op_len) };
        let input = unsafe { bytes(in_ptr, in_len) };
        let result = match (core::str::from_utf8(op), serde_json::from_slice::<Value>(input)) {
            (Ok(op), Ok(input)) => handler(op, input),
            (Err(_), _) => Err(Error::new("invalid_request", "operation name is not UTF-8")),
            (_, Err(_)) => Err(Error::new("invalid_request", "input is not valid JSON")),
        };
        let (status, value) = match result {
            Ok(v) => (Status::Ok, v),
            Err(e) if e.retryable => (Status::Retryable, e.to_value()),
            Err(e) => (Status::Error, e.to_value()),
        };
        let text = serde_json::to_vec(&value).unwrap_or_else(|_| b"null".to_vec());
        unsafe { output(text.as_ptr() as i32, text.len() as i32) };
        status as i32
    }

    unsafe fn bytes<'a>(ptr: i32, len: i32) -> &'a [u8] {
        if len <= 0 {
            &[]
        } else {
            core::slice::from_raw_parts(ptr as *const u8, len as usize)
        }
    }

    pub(crate) fn log_line(level: i32, message: &str) {
        unsafe { log(level, message.as_ptr() as i32, message.len() as i32) }
    }
}

/// Log levels the host understands; anything else is treated as `INFO`.
pub mod level {
    pub const ERROR: i32 = 1;
    pub const WARN: i32 = 2;
    pub const INFO: i32 = 3;
    pub const DEBUG: i32 = 4;
}

/// Writes a line to the host's log, tagged with the plugin's name. Never log secret values:
/// the host cannot tell them apart from anything else.
pub fn log(level: i32, message: &str) {
    abi::log_line(level, message)
}

/// Host capabilities. Each import exists in the module only if the plugin calls it, and the
/// host links it only if the manifest declares the capability and the operator allowed it.
pub mod host {
    use super::{Error, Result, Value};

    #[link(wasm_import_module = "scaivault")]
    extern "C" {
        fn random(ptr: i32, len: i32) -> i32;
        fn clock_ms() -> i64;
        fn http(ptr: i32, len: i32) -> i32;
        fn postgres(ptr: i32, len: i32) -> i32;
        fn result(ptr: i32) -> i32;
    }

    /// Fills `buf` from the host's CSPRNG (capability `random`).
    pub fn random_bytes(buf: &mut [u8]) {
        let rc = unsafe { random(buf.as_mut_ptr() as i32, buf.len() as i32) };
        if rc != 0 {
            // The host refuses only requests larger than its cap; callers ask for small buffers.
            panic!("host refused random bytes");
        }
    }

    /// A uniformly random integer below `bound` (no modulo bias).
    pub fn random_below(bound: u32) -> u32 {
        assert!(bound > 0);
        let zone = u32::MAX - (u32::MAX % bound);
        loop {
            let mut b = [0u8; 4];
            random_bytes(&mut b);
            let v = u32::from_le_bytes(b);
            if v < zone {
                return v % bound;
            }
        }
    }

    /// Milliseconds since the Unix epoch (capability `clock`).
    pub fn now_ms() -> i64 {
        unsafe { clock_ms() }
    }

    /// Sends an HTTP request (capability `http`): `{"method", "url", "headers", "body",
    /// "sign"}` → `{"status", "headers", "body"}`. The host refuses hosts not on the operator's
    /// allow-list.
    pub fn http_request(request: &Value) -> Result<Value> {
        call(request, |p, l| unsafe { http(p, l) })
    }

    /// Runs a PostgreSQL operation (capability `postgres`); see ABI.md for the requests.
    pub fn postgres_request(request: &Value) -> Result<Value> {
        call(request, |p, l| unsafe { postgres(p, l) })
    }

    fn call(request: &Value, f: impl FnOnce(i32, i32) -> i32) -> Result<Value> {
        let text = serde_json::to_vec(request)
            .map_err(|_| Error::new("internal_error", "request does not serialize"))?;
        let n = f(text.as_ptr() as i32, text.len() as i32);
        if n < 0 {
            return Err(Error::new("internal_error", "host call failed"));
        }
        let mut buf = vec![0u8; n as usize];
        unsafe { result(buf.as_mut_ptr() as i32) };
        let reply: Value = serde_json::from_slice(&buf)
            .map_err(|_| Error::new("internal_error", "host reply is not JSON"))?;
        match reply.get("error") {
            Some(err) => {
                let code = err.get("code").and_then(Value::as_str).unwrap_or("host_error");
                let message = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("host call failed");
                let retryable = err.get("retryable").and_then(Value::as_bool).unwrap_or(false);
                let mut e = Error::new(code, message);
                e.retryable = retryable;
                Err(e)
            }
            None => Ok(reply.get("ok").cloned().unwrap_or(Value::Null)),
        }
    }
}

/// Helpers for reading inputs without serde's derive.
pub mod input {
    use super::{Error, Map, Result, Value};

    pub fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
        v.as_object()
            .ok_or_else(|| Error::validation(what, "must be a JSON object"))
    }

    pub fn str_field<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str> {
        match m.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Error::validation(key, "must be a string")),
            None => Err(Error::validation(key, "is required")),
        }
    }

    pub fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
        match m.get(key) {
            Some(Value::String(s)) => Ok(Some(s)),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(Error::validation(key, "must be a string")),
        }
    }

    pub fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<u64>> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| Error::validation(key, "must be a non-negative integer")),
        }
    }

    pub fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Error::validation(key, "must be true or false")),
        }
    }
}
