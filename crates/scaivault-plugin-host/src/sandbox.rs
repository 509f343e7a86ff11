//! The wasmtime side: one engine per process, modules checked and compiled once, and every call
//! in a fresh store with fuel, an epoch deadline, a memory cap and an output cap.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wasmtime::{
    Caller, Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, ValType,
};
use zeroize::Zeroizing;

use crate::abi;
use crate::error::{Failure, PluginError};
use crate::manifest::{Capability, Limits, Manifest};
use crate::redact::Redactor;
use crate::services::HostServices;

/// How often the deadline clock ticks. Deadlines are rounded up to whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Instances that may run at once; more concurrent calls wait for the pooling allocator or
/// fail with a retryable error, never grow memory without bound.
const POOL_INSTANCES: u32 = 128;

/// The process-wide wasmtime engine and the thread that drives its deadline clock. It lives
/// as long as the process.
pub struct Sandbox {
    engine: Engine,
}

impl Sandbox {
    pub fn new() -> wasmtime::Result<Self> {
        let engine = match Engine::new(&config(true)) {
            Ok(e) => e,
            // The pooling allocator reserves address space up front; a host that refuses it
            // (a tight `ulimit -v`) still gets a working, somewhat slower sandbox.
            Err(_) => Engine::new(&config(false))?,
        };
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("plugin-deadline".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start the deadline thread: {e}"))?;
        Ok(Sandbox { engine })
    }

    /// Checks a module against ABI v1 and the capabilities it may have, compiles it once and
    /// links only the imports it was granted.
    pub fn load(
        &self,
        manifest: &Manifest,
        bytes: &[u8],
        granted: &std::collections::BTreeSet<Capability>,
    ) -> Result<Loaded, PluginError> {
        let module = Module::from_binary(&self.engine, bytes).map_err(|e| {
            PluginError::Refused(format!(
                "not a valid WebAssembly module: {}",
                root_cause(&e)
            ))
        })?;
        check_exports(&module)?;
        let capabilities = check_imports(&module, manifest, granted)?;
        let mut linker = Linker::new(&self.engine);
        link(&mut linker, &capabilities).map_err(|e| PluginError::Refused(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| PluginError::Refused(format!("cannot be linked: {}", root_cause(&e))))?;
        let loaded = Loaded {
            pre,
            limits: manifest.limits,
            name: manifest.name.clone(),
        };
        loaded.check_minor()?;
        Ok(loaded)
    }
}

fn config(pooling: bool) -> Config {
    let mut c = Config::new();
    c.consume_fuel(true);
    c.epoch_interruption(true);
    c.max_wasm_stack(512 * 1024);
    c.memory_init_cow(false);
    if pooling {
        let mut p = PoolingAllocationConfig::default();
        p.total_core_instances(POOL_INSTANCES);
        p.total_memories(POOL_INSTANCES);
        p.total_tables(POOL_INSTANCES);
        p.max_memory_size(Limits::MAX_MEMORY as usize);
        p.max_memories_per_module(1);
        p.max_tables_per_module(1);
        p.table_elements(10_000);
        // Reset a slot's first 512 KiB by zeroing it rather than unmapping it, and copy the
        // small initial image in instead of mapping it copy-on-write: mapping and unmapping
        // cost a TLB shootdown on every core per call, the largest cost of a call under load.
        p.linear_memory_keep_resident(512 * 1024);
        p.table_keep_resident(64 * 1024);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

fn root_cause(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}

fn check_exports(module: &Module) -> Result<(), PluginError> {
    let refuse = |m: String| Err(PluginError::Refused(m));
    let func = |name: &str, params: usize| -> Result<(), PluginError> {
        match module.get_export(name) {
            Some(ExternType::Func(f))
                if f.params().len() == params
                    && f.params().all(|p| matches!(p, ValType::I32))
                    && f.results().len() == 1
                    && f.results().all(|r| matches!(r, ValType::I32)) =>
            {
                Ok(())
            }
            Some(_) => Err(PluginError::Refused(format!(
                "export {name} has the wrong signature for ABI v1"
            ))),
            None => Err(PluginError::Refused(format!(
                "does not export {name}, which ABI v1 requires"
            ))),
        }
    };
    if module.get_export(abi::MARKER).is_none() {
        let other = module
            .exports()
            .map(|e| e.name())
            .find(|n| n.starts_with(abi::MARKER_PREFIX));
        return match other {
            Some(marker) => refuse(format!(
                "is built for plugin ABI {}; this host speaks v{}",
                &marker[abi::MARKER_PREFIX.len() - 1..],
                abi::MAJOR
            )),
            None => refuse(format!(
                "has no {} export: not a ScaiVault plugin",
                abi::MARKER
            )),
        };
    }
    func(abi::MARKER, 0)?;
    func(abi::EXPORT_ALLOC, 1)?;
    func(abi::EXPORT_CALL, 4)?;
    match module.get_export(abi::EXPORT_MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => Ok(()),
        _ => refuse("does not export a 32-bit linear memory named \"memory\"".into()),
    }
}

/// The capability each optional import belongs to.
fn import_capability(name: &str) -> Option<Option<Capability>> {
    Some(match name {
        "output" | "log" => None,
        "random" => Some(Capability::Random),
        "clock_ms" => Some(Capability::Clock),
        "http" => Some(Capability::Http),
        "postgres" => Some(Capability::Postgres),
        // `result` reads back a capability call's reply; it is linked with either.
        "result" => None,
        _ => return None,
    })
}

fn check_imports(
    module: &Module,
    manifest: &Manifest,
    granted: &std::collections::BTreeSet<Capability>,
) -> Result<Vec<Capability>, PluginError> {
    for import in module.imports() {
        let what = format!("{}.{}", import.module(), import.name());
        if import.module() != abi::IMPORT_MODULE {
            return Err(PluginError::Refused(format!(
                "imports {what}, which ABI v1 does not provide (no WASI, no other modules)"
            )));
        }
        let Some(cap) = import_capability(import.name()) else {
            return Err(PluginError::Refused(format!(
                "imports {what}, which ABI v1 does not define"
            )));
        };
        if let Some(cap) = cap
            && !manifest.capabilities.contains(&cap)
        {
            return Err(PluginError::Refused(format!(
                "imports {what} but its manifest does not declare the {cap} capability"
            )));
        }
    }
    let mut caps = Vec::new();
    for cap in &manifest.capabilities {
        if !granted.contains(cap) {
            return Err(PluginError::Refused(format!(
                "its manifest asks for the {cap} capability, which the operator has not allowed"
            )));
        }
        caps.push(*cap);
    }
    Ok(caps)
}

/// What one call's store holds.
pub(crate) struct CallState {
    plugin: String,
    memory_cap: usize,
    memory_exceeded: bool,
    max_output: usize,
    output: Option<Vec<u8>>,
    output_too_large: bool,
    pending: Option<Vec<u8>>,
    /// Log lines, held until the call ends: they are written out with the call's values
    /// redacted, and the output is one of those values (`redact`).
    logs: Vec<(i32, Zeroizing<String>)>,
    /// What the host answered the plugin's capability calls, for the same redaction.
    replies: Vec<Zeroizing<Vec<u8>>>,
    services: Arc<dyn HostServices>,
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exceeded = true;
            wasmtime::bail!("memory limit");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }
}

fn guest_bytes(
    caller: &mut Caller<'_, CallState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    let memory = caller
        .get_export(abi::EXPORT_MEMORY)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::format_err!("no memory"))?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = memory.data(&caller);
    let end = ptr
        .checked_add(len)
        .filter(|e| *e <= data.len())
        .ok_or_else(|| wasmtime::format_err!("guest pointer out of bounds"))?;
    Ok(data[ptr..end].to_vec())
}

fn write_guest(caller: &mut Caller<'_, CallState>, ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let memory = caller
        .get_export(abi::EXPORT_MEMORY)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::format_err!("no memory"))?;
    memory
        .write(caller, ptr as u32 as usize, bytes)
        .map_err(|_| wasmtime::format_err!("guest pointer out of bounds"))
}

fn link(linker: &mut Linker<CallState>, caps: &[Capability]) -> wasmtime::Result<()> {
    let m = abi::IMPORT_MODULE;
    linker.func_wrap(
        m,
        "output",
        |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            if len < 0 || len as usize > caller.data().max_output {
                caller.data_mut().output_too_large = true;
                wasmtime::bail!("output too large");
            }
            let bytes = guest_bytes(&mut caller, ptr, len)?;
            caller.data_mut().output = Some(bytes);
            Ok(())
        },
    )?;
    linker.func_wrap(
        m,
        "log",
        |mut caller: Caller<'_, CallState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<()> {
            if caller.data().logs.len() >= abi::MAX_LOG_LINES as usize {
                return Ok(());
            }
            let len = len.clamp(0, abi::MAX_LOG_LINE as i32);
            let bytes = Zeroizing::new(guest_bytes(&mut caller, ptr, len)?);
            let line = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
            caller.data_mut().logs.push((level, line));
            Ok(())
        },
    )?;
    let capability_call = caps.contains(&Capability::Http) || caps.contains(&Capability::Postgres);
    if capability_call {
        linker.func_wrap(
            m,
            "result",
            |mut caller: Caller<'_, CallState>, ptr: i32| -> wasmtime::Result<i32> {
                let Some(bytes) = caller.data_mut().pending.take() else {
                    return Ok(-1);
                };
                write_guest(&mut caller, ptr, &bytes)?;
                Ok(bytes.len() as i32)
            },
        )?;
    }
    for cap in caps {
        match cap {
            Capability::Random => {
                linker.func_wrap(
                    m,
                    "random",
                    |mut caller: Caller<'_, CallState>,
                     ptr: i32,
                     len: i32|
                     -> wasmtime::Result<i32> {
                        if !(0..=abi::MAX_RANDOM_BYTES).contains(&len) {
                            return Ok(-1);
                        }
                        let mut buf = zeroize::Zeroizing::new(vec![0u8; len as usize]);
                        scaivault_crypto::fill_random(&mut buf);
                        write_guest(&mut caller, ptr, &buf)?;
                        Ok(0)
                    },
                )?;
            }
            Capability::Clock => {
                linker.func_wrap(m, "clock_ms", |caller: Caller<'_, CallState>| -> i64 {
                    caller.data().services.now_ms()
                })?;
            }
            Capability::Http | Capability::Postgres => {
                let cap = *cap;
                linker.func_wrap(
                    m,
                    cap.name(),
                    move |mut caller: Caller<'_, CallState>,
                          ptr: i32,
                          len: i32|
                          -> wasmtime::Result<i32> {
                        if !(0..=abi::MAX_HOST_REQUEST).contains(&len) {
                            return Ok(-1);
                        }
                        let bytes = guest_bytes(&mut caller, ptr, len)?;
                        let request: Value = match serde_json::from_slice(&bytes) {
                            Ok(v) => v,
                            Err(_) => return Ok(-1),
                        };
                        let services = caller.data().services.clone();
                        let plugin = caller.data().plugin.clone();
                        let reply = match cap {
                            Capability::Http => services.http(&plugin, request),
                            _ => services.postgres(&plugin, request),
                        };
                        let envelope = match reply {
                            Ok(v) => serde_json::json!({ "ok": v }),
                            Err(e) => serde_json::json!({ "error": {
                                "code": e.code, "message": e.message, "retryable": e.retryable
                            }}),
                        };
                        let out = serde_json::to_vec(&envelope)?;
                        let n = out.len() as i32;
                        caller.data_mut().replies.push(Zeroizing::new(out.clone()));
                        caller.data_mut().pending = Some(out);
                        Ok(n)
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// A checked, compiled, linked plugin, ready for calls.
pub struct Loaded {
    pre: InstancePre<CallState>,
    limits: Limits,
    name: String,
}

impl Loaded {
    fn store(&self, services: Arc<dyn HostServices>) -> Store<CallState> {
        let mut store = Store::new(
            self.pre.module().engine(),
            CallState {
                plugin: self.name.clone(),
                memory_cap: self.limits.memory_bytes as usize,
                memory_exceeded: false,
                max_output: self.limits.max_output_bytes as usize,
                output: None,
                output_too_large: false,
                pending: None,
                logs: Vec::new(),
                replies: Vec::new(),
                services,
            },
        );
        store.limiter(|s| s);
        // Fuel is set before instantiation so that a start function is bounded too.
        let _ = store.set_fuel(self.limits.fuel);
        let ticks = self
            .limits
            .timeout_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            .max(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }

    /// A guest built for a newer minor of v1 may call what this host lacks.
    fn check_minor(&self) -> Result<(), PluginError> {
        let mut store = self.store(Arc::new(crate::services::NoServices));
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, e))?;
        let marker = instance
            .get_typed_func::<(), i32>(&mut store, abi::MARKER)
            .map_err(|e| PluginError::Refused(root_cause(&e)))?;
        let minor = marker
            .call(&mut store, ())
            .map_err(|e| classify(&store, e))?;
        if !(0..=abi::MINOR).contains(&minor) {
            return Err(PluginError::Refused(format!(
                "is built for plugin ABI v1.{minor}; this host speaks up to v1.{}",
                abi::MINOR
            )));
        }
        Ok(())
    }

    /// Runs one operation in a fresh instance. The plugin's log lines and error words leave
    /// with every value of the call redacted.
    pub fn call(
        &self,
        op: &str,
        input: &[u8],
        services: Arc<dyn HostServices>,
    ) -> Result<Value, PluginError> {
        let mut store = self.store(services);
        let mut result = self.run(&mut store, op, input);
        let state = store.data_mut();
        let guest_words = matches!(result, Err(PluginError::Guest { .. }));
        if state.logs.is_empty() && !guest_words {
            return result;
        }
        let mut redactor = Redactor::default();
        redactor.add_input(input);
        state.replies.iter().for_each(|r| redactor.add_reply(r));
        if let Ok(output) = &result {
            redactor.add_value(output);
        }
        let mut lines: Vec<(i32, Zeroizing<String>)> = std::mem::take(&mut state.logs);
        let mut texts: Vec<&mut String> = lines.iter_mut().map(|(_, l)| &mut **l).collect();
        if let Err(PluginError::Guest {
            message, fields, ..
        }) = &mut result
        {
            texts.push(message);
            if let Some(f) = fields {
                redactor.apply_value(f);
            }
        }
        redactor.apply_all(&mut texts);
        let plugin = &state.plugin;
        for (level, line) in &lines {
            let line = line.as_str();
            match level {
                1 => tracing::error!(target: "scaivault::plugin", plugin = %plugin, "{line}"),
                2 => tracing::warn!(target: "scaivault::plugin", plugin = %plugin, "{line}"),
                4 => tracing::debug!(target: "scaivault::plugin", plugin = %plugin, "{line}"),
                _ => tracing::info!(target: "scaivault::plugin", plugin = %plugin, "{line}"),
            }
        }
        result
    }

    fn run(
        &self,
        store: &mut Store<CallState>,
        op: &str,
        input: &[u8],
    ) -> Result<Value, PluginError> {
        let instance = self
            .pre
            .instantiate(&mut *store)
            .map_err(|e| classify(store, e))?;
        let memory = instance
            .get_memory(&mut *store, abi::EXPORT_MEMORY)
            .ok_or_else(|| PluginError::Refused("no memory export".into()))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut *store, abi::EXPORT_ALLOC)
            .map_err(|e| PluginError::Refused(root_cause(&e)))?;
        let call = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut *store, abi::EXPORT_CALL)
            .map_err(|e| PluginError::Refused(root_cause(&e)))?;
        let place = |store: &mut Store<CallState>, bytes: &[u8]| -> Result<i32, PluginError> {
            let len = i32::try_from(bytes.len())
                .map_err(|_| PluginError::Failed(Failure::bad("input too large")))?;
            let ptr = alloc
                .call(&mut *store, len)
                .map_err(|e| classify(store, e))?;
            memory
                .write(&mut *store, ptr as u32 as usize, bytes)
                .map_err(|_| {
                    PluginError::Failed(Failure::bad(
                        "sv_alloc returned a pointer outside its memory",
                    ))
                })?;
            Ok(ptr)
        };
        let op_ptr = place(store, op.as_bytes())?;
        let in_ptr = place(store, input)?;
        let status = call
            .call(
                &mut *store,
                (op_ptr, op.len() as i32, in_ptr, input.len() as i32),
            )
            .map_err(|e| classify(store, e))?;
        let Some(output) = store.data_mut().output.take() else {
            return Err(PluginError::Failed(Failure::bad(
                "returned without setting an output",
            )));
        };
        let value: Value = serde_json::from_slice(&output)
            .map_err(|_| PluginError::Failed(Failure::bad("set an output that is not JSON")))?;
        match status {
            abi::STATUS_OK => Ok(value),
            abi::STATUS_ERROR | abi::STATUS_RETRYABLE => Err(PluginError::Guest {
                code: value
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("plugin_error")
                    .chars()
                    .take(64)
                    .collect(),
                message: value
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the plugin reported an error")
                    .chars()
                    .take(1024)
                    .collect(),
                fields: value.get("fields").cloned().filter(Value::is_object),
                retryable: status == abi::STATUS_RETRYABLE,
            }),
            other => Err(PluginError::Failed(Failure::bad(&format!(
                "returned status {other}, which ABI v1 does not define"
            )))),
        }
    }
}

/// Turns a wasmtime error into the reason a user can act on.
fn classify(store: &Store<CallState>, e: wasmtime::Error) -> PluginError {
    let state = store.data();
    if state.memory_exceeded {
        return PluginError::Failed(Failure::new("memory_limit", "exceeded its memory limit"));
    }
    if state.output_too_large {
        return PluginError::Failed(Failure::new(
            "output_too_large",
            "set an output larger than its limit",
        ));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return PluginError::Failed(match trap {
            Trap::OutOfFuel => Failure::new("fuel_exhausted", "ran out of fuel"),
            Trap::Interrupt => Failure::new("deadline_exceeded", "ran past its deadline"),
            Trap::StackOverflow => Failure::new("stack_overflow", "exhausted its call stack"),
            other => Failure::new("trap", &format!("trapped: {other}")),
        });
    }
    // Every pooled slot is in use (more concurrent calls than the pool holds): transient.
    if e.chain()
        .any(|c| c.is::<wasmtime::PoolConcurrencyLimitError>())
    {
        return PluginError::Busy;
    }
    PluginError::Failed(Failure::new("trap", &format!("failed: {}", root_cause(&e))))
}
