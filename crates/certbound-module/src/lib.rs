//! certbound as an Envoy dynamic module (`libcertbound_module.so`): the same
//! core and the same [`Stream`] as the `.wasm`, driven by Envoy's
//! dynamic-module hooks instead of proxy-wasm callbacks. Bindings live in
//! process memory ([`memory`]), bounded by the same slot table, or in etcd
//! through Envoy's HTTP callouts.
//!
//! Threads: a filter config is made on the main thread and shared by every
//! worker; it keeps the configuration as validated JSON, and each worker
//! compiles its own copy once (the core's types are single-threaded, like a
//! Wasm VM). A stream lives on one worker.

#![allow(clippy::missing_safety_doc)]

mod abi;
mod host;
mod memory;

use abi::*;
use certbound_core::config::{self, Client, Config, StoreConfig};
use certbound_core::counter::Counter;
use certbound_core::error::Reason;
use certbound_core::flow::Body;
use certbound_core::registry::{Fetch, Registry, Request};
use certbound_core::store::SlotTable;
use certbound_core::stream::{Action, AfterCallout, Stream};
use certbound_core::vm_cache::VmCache;
use host::{ModuleHost, SharedMemory};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One filter configuration (one `filter_config` in Envoy's YAML), shared by every worker.
pub struct FilterConfig {
    /// Distinguishes configurations in each worker's compiled copies.
    id: u64,
    /// The configuration JSON, validated when the config was made.
    raw: Vec<u8>,
    table: SlotTable,
    /// Metric ids, by `Counter` discriminant and by `Reason` position.
    counters: Vec<Option<usize>>,
    refused: Vec<Option<usize>>,
    /// `certbound.store_slots_used` (slots of the process-memory table holding a binding).
    slots_used: Option<usize>,
    /// `certbound.store_slots_capacity`.
    slots_capacity: Option<usize>,
    /// The shared-memory table is swept (expired bindings counted out) in steps, one a second.
    sweeps: bool,
    vm_cache_entries: usize,
    /// The clients from etcd and fetched JWK Sets, as the main thread last merged them
    /// (`None`: as configured), with a generation each worker compares with its copy.
    published: Mutex<Published>,
    /// The main-thread scheduler the ticker thread commits a tick to every second.
    scheduler: Arc<Mutex<Option<SchedulerPtr>>>,
}

/// A generation and the merged clients (`None`: as configured).
type Published = (u64, Option<Arc<HashMap<String, Client>>>);

/// Envoy's config scheduler: committed from the ticker thread (Envoy allows any thread).
struct SchedulerPtr(envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr);
// SAFETY: Envoy's scheduler commit may be called from any thread; deletion happens under the same lock.
unsafe impl Send for SchedulerPtr {}

/// What the main thread keeps of each configuration: its registry and pending fetches.
struct MainState {
    registry: Registry,
    calls: HashMap<u64, Fetch>,
}

static NEXT_CONFIG: AtomicU64 = AtomicU64::new(1);
static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// A worker's compiled configuration and its cache of store hits.
type Compiled = (Rc<Config>, Rc<RefCell<VmCache>>);

thread_local! {
    /// Each worker's compiled configurations, by `FilterConfig::id` (a few at most: one per
    /// reload), with the generation of the published clients they were built with.
    static COMPILED: RefCell<HashMap<u64, (u64, Compiled)>> = RefCell::new(HashMap::new());
    /// The main thread's state of each configuration.
    static MAIN: RefCell<HashMap<u64, MainState>> = RefCell::new(HashMap::new());
}

impl FilterConfig {
    /// This worker's compiled copy of the configuration (with the clients the
    /// main thread last published), and its cache of store hits.
    fn compiled(&self) -> Option<Compiled> {
        let (generation, clients) = self.published.lock().ok().map(|p| p.clone())?;
        COMPILED.with(|c| {
            let mut map = c.try_borrow_mut().ok()?;
            if let Some((built, found)) = map.get(&self.id) {
                if *built == generation {
                    return Some(found.clone());
                }
            }
            let mut parsed = config::parse(&self.raw).ok()?;
            if let Some(clients) = clients {
                parsed.clients = (*clients).clone();
            }
            // A worker keeps its cache of hits across new clients (bindings do not change).
            let cache = match map.get(&self.id) {
                Some((_, (_, cache))) => cache.clone(),
                None => Rc::new(RefCell::new(VmCache::new(self.vm_cache_entries))),
            };
            // Older configurations of this worker go (a reload replaces them).
            if map.len() >= 4 && !map.contains_key(&self.id) {
                map.clear();
            }
            let entry = (Rc::new(parsed), cache);
            map.insert(self.id, (generation, entry.clone()));
            Some(entry)
        })
    }

    /// The main thread merged new clients: workers rebuild their copy at their next stream.
    fn publish(&self, clients: HashMap<String, Client>) {
        if let Ok(mut p) = self.published.lock() {
            *p = (p.0 + 1, Some(Arc::new(clients)));
        }
    }
}

/// The ticker thread: one tick a second to the main thread while the configuration lives.
fn start_ticker(scheduler: Arc<Mutex<Option<SchedulerPtr>>>) {
    let spawned = std::thread::Builder::new().name("certbound-tick".into()).spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let Ok(guard) = scheduler.lock() else { return };
        match guard.as_ref() {
            // SAFETY: the scheduler is alive while it is in the mutex (deleted under the lock).
            Some(p) => unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(p.0, TICK) },
            None => return,
        }
    });
    if let Err(e) = spawned {
        log::warn!("certbound: cannot start its ticker thread ({e}): no sweeps or refreshes");
    }
}

const TICK: u64 = 1;

/// The main thread's tick: the slot gauges, a sweep step, and the fetches due.
fn on_tick(envoy_config: envoy_dynamic_module_type_http_filter_config_envoy_ptr, config: &FilterConfig) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if config.sweeps {
        set_config_gauge(envoy_config, config.slots_capacity, config.table.slots());
        if let Err(e) = certbound_core::shared::sweep_step(&mut SharedMemory, config.table, now) {
            log::warn!("certbound: cannot sweep the binding table: {e}");
        }
        set_config_gauge(envoy_config, config.slots_used, certbound_core::shared::slots_used(&mut SharedMemory));
    } else {
        set_config_gauge(envoy_config, config.slots_capacity, 0);
    }
    let due =
        MAIN.with(|m| m.try_borrow_mut().ok().and_then(|mut m| m.get_mut(&config.id).map(|st| st.registry.due(now))));
    send_fetches(envoy_config, config.id, due.unwrap_or_default());
}

/// Sends the registry's fetches through config-level callouts (main thread).
fn send_fetches(envoy_config: envoy_dynamic_module_type_http_filter_config_envoy_ptr, id: u64, requests: Vec<Request>) {
    for r in requests {
        let mut headers =
            host::header_array(&[(":method", r.method), (":path", &r.path), ("host", &r.authority), r.media]);
        let mut callout: u64 = 0;
        // SAFETY: the live config of this main-thread hook; every buffer lives for the call and is copied.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                envoy_config,
                &mut callout,
                module_buffer(r.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                module_buffer(&r.body),
                r.timeout_ms,
            )
        };
        if result != envoy_dynamic_module_type_http_callout_init_result_Success {
            log::warn!("certbound: cannot fetch {:?} through {}: callout result {result}", r.fetch, r.cluster);
            continue;
        }
        MAIN.with(|m| {
            if let Some(st) = m.try_borrow_mut().ok().as_mut().and_then(|m| m.get_mut(&id)) {
                st.registry.sent(r.fetch.clone());
                st.calls.insert(callout, r.fetch);
            }
        });
    }
}

fn module_buffer(bytes: &[u8]) -> envoy_dynamic_module_type_module_buffer {
    envoy_dynamic_module_type_module_buffer { ptr: bytes.as_ptr().cast(), length: bytes.len() }
}

/// Copies an Envoy-owned buffer (valid only during the current hook).
fn copy(buffer: envoy_dynamic_module_type_envoy_buffer) -> Vec<u8> {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy guarantees ptr..ptr+length is readable until the hook returns.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }.to_vec()
}

// ------------------------------------------------------------------ logging

/// `log` records to Envoy's `dynamic_modules` logger.
struct EnvoyLogger;

fn envoy_level(level: log::Level) -> envoy_dynamic_module_type_log_level {
    match level {
        log::Level::Trace => envoy_dynamic_module_type_log_level_Trace,
        log::Level::Debug => envoy_dynamic_module_type_log_level_Debug,
        log::Level::Info => envoy_dynamic_module_type_log_level_Info,
        log::Level::Warn => envoy_dynamic_module_type_log_level_Warn,
        log::Level::Error => envoy_dynamic_module_type_log_level_Error,
    }
}

pub fn log_line(level: log::Level, line: &str) {
    // SAFETY: the buffer points into `line`, alive for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(envoy_level(level), module_buffer(line.as_bytes())) }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            log_line(record.level(), &record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// The most detailed level Envoy would print (formatting nothing it would drop).
fn host_level() -> log::LevelFilter {
    for (level, filter) in [
        (log::Level::Trace, log::LevelFilter::Trace),
        (log::Level::Debug, log::LevelFilter::Debug),
        (log::Level::Info, log::LevelFilter::Info),
        (log::Level::Warn, log::LevelFilter::Warn),
        (log::Level::Error, log::LevelFilter::Error),
    ] {
        // SAFETY: no pointers.
        if unsafe { envoy_dynamic_module_callback_log_enabled(envoy_level(level)) } {
            return filter;
        }
    }
    log::LevelFilter::Off
}

// ------------------------------------------------------------------ metrics

/// Envoy's callback defining one kind of metric (counter or gauge): the same signature for both.
type Define = unsafe extern "C" fn(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    envoy_dynamic_module_type_module_buffer,
    *mut envoy_dynamic_module_type_module_buffer,
    usize,
    *mut usize,
) -> envoy_dynamic_module_type_metrics_result;

fn define(
    config_envoy: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    define: Define,
    kind: &str,
    name: &str,
) -> Option<usize> {
    let mut id: usize = 0;
    // SAFETY: `config_envoy` is the config Envoy is creating; the name is copied; `id` is a live local.
    let result = unsafe { define(config_envoy, module_buffer(name.as_bytes()), std::ptr::null_mut(), 0, &mut id) };
    if result == envoy_dynamic_module_type_metrics_result_Success {
        Some(id)
    } else {
        log::warn!("certbound: cannot define {kind} {name}: result {result}");
        None
    }
}

fn define_counter(config_envoy: envoy_dynamic_module_type_http_filter_config_envoy_ptr, name: &str) -> Option<usize> {
    define(config_envoy, envoy_dynamic_module_callback_http_filter_config_define_counter, "counter", name)
}

fn define_gauge(config_envoy: envoy_dynamic_module_type_http_filter_config_envoy_ptr, name: &str) -> Option<usize> {
    define(config_envoy, envoy_dynamic_module_callback_http_filter_config_define_gauge, "gauge", name)
}

fn set_config_gauge(
    config_envoy: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    id: Option<usize>,
    value: u64,
) {
    if let Some(id) = id {
        // SAFETY: the config Envoy is creating; no labels.
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_config_set_gauge(config_envoy, id, std::ptr::null_mut(), 0, value)
        };
    }
}

// ------------------------------------------------------------------ program and config hooks

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> envoy_dynamic_module_type_abi_version_module_ptr {
    let _ = log::set_logger(&EnvoyLogger);
    log::set_max_level(host_level());
    ABI_VERSION.as_ptr().cast()
}

/// Configuration options the module does not carry out yet: refused at load
/// (naming the field) rather than silently ignored.
fn unsupported(c: &Config) -> Option<&'static str> {
    // Envoy 1.40's dynamic-module ABI reads metadata strings one level deep;
    // jwt_authn's verified payload is a nested struct.
    c.jwt_claims.as_ref().map(|_| "jwt_claims")
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _name: envoy_dynamic_module_type_envoy_buffer,
    config: envoy_dynamic_module_type_envoy_buffer,
) -> envoy_dynamic_module_type_http_filter_config_module_ptr {
    log::set_max_level(host_level());
    let raw = copy(config);
    let parsed = match config::parse(&raw) {
        Ok(c) => c,
        Err(e) => {
            log::error!("certbound refuses its configuration: {e}");
            return std::ptr::null();
        }
    };
    if let Some(field) = unsupported(&parsed) {
        log::error!(
            "certbound refuses its configuration: {field}: not supported by the dynamic module yet (use the .wasm)"
        );
        return std::ptr::null();
    }
    let table = match &parsed.store {
        StoreConfig::Etcd(e) => SlotTable::new(e.cache_capacity),
        StoreConfig::SharedData { capacity } => {
            let (table, kept) = certbound_core::shared::slot_table(&mut SharedMemory, *capacity);
            if let Some(slots) = kept {
                log::warn!(
                    "certbound keeps the binding table at {slots} slots (store.capacity asks for {}); restart Envoy to resize it",
                    SlotTable::new(*capacity).slots()
                );
            }
            table
        }
    };
    let mut counters = vec![None; Counter::ALL.len()];
    for c in Counter::ALL {
        if let Some(slot) = counters.get_mut(c as usize) {
            *slot = define_counter(filter_config_envoy_ptr, &format!("certbound.{}", c.name()));
        }
    }
    let refused = Reason::ALL
        .iter()
        .map(|r| define_counter(filter_config_envoy_ptr, &format!("certbound.refused.{}", r.as_str())));
    let refused: Vec<Option<usize>> = refused.collect();
    let shared_memory = matches!(parsed.store, StoreConfig::SharedData { .. });
    let slots_used = define_gauge(filter_config_envoy_ptr, "certbound.store_slots_used");
    let slots_capacity = define_gauge(filter_config_envoy_ptr, "certbound.store_slots_capacity");
    log::info!(
        "certbound {VERSION} (dynamic module) configured: {} client(s), token path {}, introspection path {}",
        parsed.clients.len(),
        parsed.token_path,
        parsed.introspection_path
    );
    let id = NEXT_CONFIG.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the config Envoy is creating; the scheduler is deleted in config_destroy.
    let scheduler = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(filter_config_envoy_ptr) };
    let scheduler = Arc::new(Mutex::new((!scheduler.is_null()).then_some(SchedulerPtr(scheduler))));
    let filter_config = FilterConfig {
        id,
        raw,
        table,
        counters,
        refused,
        slots_used,
        slots_capacity,
        sweeps: shared_memory,
        vm_cache_entries: parsed.vm_cache_entries,
        published: Mutex::new((0, None)),
        scheduler: scheduler.clone(),
    };
    MAIN.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.insert(id, MainState { registry: Registry::new(Rc::new(parsed)), calls: HashMap::new() });
        }
    });
    // The first tick at once (gauges, first fetches), then one a second.
    if let Ok(guard) = scheduler.lock() {
        if let Some(p) = guard.as_ref() {
            // SAFETY: the scheduler just made, alive under the lock.
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(p.0, TICK) };
        }
    }
    start_ticker(scheduler);
    Box::into_raw(Box::new(filter_config)) as *const c_void
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
) {
    if filter_config_ptr.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in config_new; Envoy destroys it once, after its filters.
    let config = unsafe { Box::from_raw(filter_config_ptr as *mut FilterConfig) };
    if let Ok(mut guard) = config.scheduler.lock() {
        if let Some(p) = guard.take() {
            // SAFETY: made in config_new; taken out under the lock, so the ticker never commits to it again.
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(p.0) };
        }
    }
    MAIN.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.remove(&config.id);
        }
    });
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _event_id: u64,
) {
    // SAFETY: alive until config_destroy, which runs on this (main) thread.
    if let Some(config) = unsafe { (filter_config_ptr as *const FilterConfig).as_ref() } {
        on_tick(filter_config_envoy_ptr, config);
    }
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    callout_id: u64,
    result: envoy_dynamic_module_type_http_callout_result,
    headers: *mut envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    body_chunks_size: usize,
) {
    // SAFETY: alive until config_destroy, which runs on this (main) thread.
    let Some(config) = (unsafe { (filter_config_ptr as *const FilterConfig).as_ref() }) else { return };
    let answer = unsafe { host::callout_answer(result, headers, headers_size, body_chunks, body_chunks_size) };
    let outcome = MAIN.with(|m| {
        let mut m = m.try_borrow_mut().ok()?;
        let st = m.get_mut(&config.id)?;
        let fetch = st.calls.remove(&callout_id)?;
        let answered = st.registry.answered(&fetch, answer);
        let clients = answered.changed.then(|| st.registry.current().clients.clone());
        Some((answered, clients))
    });
    let Some((answered, clients)) = outcome else { return };
    for (level, line) in &answered.log {
        log::log!(*level, "{line}");
    }
    if let Some(clients) = clients {
        config.publish(clients);
    }
    send_fetches(filter_config_envoy_ptr, config.id, answered.send);
}

// ------------------------------------------------------------------ streams

/// One stream: its config, its core state, and what the body hooks count.
struct Filter {
    config: *const FilterConfig,
    stream: Stream,
}

/// The stream state behind the pointer Envoy hands back to every hook.
unsafe fn filter<'a>(ptr: envoy_dynamic_module_type_http_filter_module_ptr) -> Option<&'a mut Filter> {
    // SAFETY: made by Box::into_raw in filter_new and freed only in filter_destroy;
    // Envoy calls a stream's hooks one at a time on its worker.
    unsafe { (ptr as *mut Filter).as_mut() }
}

/// Runs `f` with the stream and a host over its Envoy filter.
unsafe fn with<R>(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    otherwise: R,
    f: impl FnOnce(&mut Stream, &mut ModuleHost<'_>) -> R,
) -> R {
    // SAFETY: see `filter`.
    let Some(filter) = (unsafe { filter(module) }) else { return otherwise };
    // SAFETY: the config outlives its filters (Envoy keeps it while streams use it).
    let Some(config) = (unsafe { filter.config.as_ref() }) else { return otherwise };
    let mut host = ModuleHost::new(envoy, config);
    // A local reply sent inside `f` can make Envoy destroy the filter before
    // `f` returns: the destroy hook then leaves the freeing to us, after `f`.
    let outer = RUNNING.with(|r| r.replace(module));
    let result = f(&mut filter.stream, &mut host);
    RUNNING.with(|r| r.set(outer));
    if DESTROYED_WHILE_RUNNING.with(|d| d.replace(false)) {
        // SAFETY: made by Box::into_raw in filter_new; Envoy destroyed it during `f`, nothing refers to it now.
        drop(unsafe { Box::from_raw(module as *mut Filter) });
    }
    result
}

thread_local! {
    /// The filter whose hook is running on this worker (null: none).
    static RUNNING: std::cell::Cell<envoy_dynamic_module_type_http_filter_module_ptr> =
        const { std::cell::Cell::new(std::ptr::null()) };
    /// Envoy destroyed the running filter from inside its own hook.
    static DESTROYED_WHILE_RUNNING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
) -> envoy_dynamic_module_type_http_filter_module_ptr {
    let config = filter_config_ptr as *const FilterConfig;
    // SAFETY: made in config_new, alive while Envoy makes filters from it.
    let (compiled, table) = match unsafe { config.as_ref() } {
        Some(c) => (c.compiled(), c.table),
        None => (None, SlotTable::new(1)),
    };
    let (compiled, cache) = match compiled {
        Some((c, cache)) => (Some(c), cache),
        None => (None, Rc::new(RefCell::new(VmCache::new(0)))),
    };
    let id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
    let stream = Stream::new(id as u32, compiled, table, cache);
    Box::into_raw(Box::new(Filter { config, stream })) as *const c_void
}

fn headers_status(action: Action) -> u32 {
    match action {
        Action::Continue => envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue,
        // Held headers; the body hooks still run (the flows read the form body).
        Action::Pause => envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration,
    }
}

fn body_status(action: Action) -> u32 {
    match action {
        Action::Continue => envoy_dynamic_module_type_on_http_filter_request_body_status_Continue,
        Action::Pause => envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndBuffer,
    }
}

fn trailers_status(action: Action) -> u32 {
    match action {
        Action::Continue => envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue,
        Action::Pause => envoy_dynamic_module_type_on_http_filter_request_trailers_status_StopIteration,
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_headers_status {
    // A stream without its state is refused (fail closed), never passed unchecked.
    let action = unsafe { with(envoy, module, None, |s, h| Some(s.request_headers(h, end_of_stream))) };
    match action {
        Some(a) => headers_status(a),
        None => {
            host::refuse_unconfigured(envoy);
            envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_body_status {
    body_status(unsafe {
        with(envoy, module, Action::Pause, |s, h| {
            let size = h.body_size(Body::Request);
            s.request_body(h, size, end_of_stream)
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) -> envoy_dynamic_module_type_on_http_filter_request_trailers_status {
    trailers_status(unsafe { with(envoy, module, Action::Pause, |s, h| s.request_trailers(h)) })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_headers_status {
    headers_status(unsafe { with(envoy, module, Action::Continue, |s, h| s.response_headers(h, end_of_stream)) })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_body_status {
    body_status(unsafe {
        with(envoy, module, Action::Continue, |s, h| {
            let size = h.body_size(Body::Response);
            s.response_body(h, size, end_of_stream)
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) -> envoy_dynamic_module_type_on_http_filter_response_trailers_status {
    trailers_status(unsafe { with(envoy, module, Action::Continue, |s, h| s.response_trailers(h)) })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) {
    if module.is_null() {
        return;
    }
    if RUNNING.with(|r| r.get() == module) {
        // Inside this filter's own hook (a local reply ended the stream): freed when the hook returns.
        DESTROYED_WHILE_RUNNING.with(|d| d.set(true));
        return;
    }
    // SAFETY: made by Box::into_raw in filter_new; destroyed once.
    drop(unsafe { Box::from_raw(module as *mut Filter) });
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    callout_id: u64,
    result: envoy_dynamic_module_type_http_callout_result,
    headers: *mut envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    body_chunks_size: usize,
) {
    let answer = unsafe { host::callout_answer(result, headers, headers_size, body_chunks, body_chunks_size) };
    let after = unsafe { with(envoy, module, AfterCallout::Nothing, |s, h| s.callout_done(h, callout_id, answer)) };
    if let AfterCallout::Resume { response_phase } = after {
        // SAFETY: the live filter of this hook.
        unsafe {
            if response_phase {
                envoy_dynamic_module_callback_http_filter_continue_encoding(envoy)
            } else {
                envoy_dynamic_module_callback_http_filter_continue_decoding(envoy)
            }
        }
    }
}

// Hooks Envoy 1.40 requires though certbound uses none of them.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _data: *const envoy_dynamic_module_type_envoy_buffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _trailers: *mut envoy_dynamic_module_type_envoy_http_header,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _reason: envoy_dynamic_module_type_http_stream_reset_reason,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _module: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

// Each export has the signature Envoy 1.40 calls it with.
const _: OnProgramInit = envoy_dynamic_module_on_program_init;
const _: OnHttpFilterConfigNew = envoy_dynamic_module_on_http_filter_config_new;
const _: OnHttpFilterConfigDestroy = envoy_dynamic_module_on_http_filter_config_destroy;
const _: OnHttpFilterNew = envoy_dynamic_module_on_http_filter_new;
const _: OnHttpFilterRequestHeaders = envoy_dynamic_module_on_http_filter_request_headers;
const _: OnHttpFilterRequestBody = envoy_dynamic_module_on_http_filter_request_body;
const _: OnHttpFilterRequestTrailers = envoy_dynamic_module_on_http_filter_request_trailers;
const _: OnHttpFilterResponseHeaders = envoy_dynamic_module_on_http_filter_response_headers;
const _: OnHttpFilterResponseBody = envoy_dynamic_module_on_http_filter_response_body;
const _: OnHttpFilterResponseTrailers = envoy_dynamic_module_on_http_filter_response_trailers;
const _: OnHttpFilterStreamComplete = envoy_dynamic_module_on_http_filter_stream_complete;
const _: OnHttpFilterDestroy = envoy_dynamic_module_on_http_filter_destroy;
const _: OnHttpFilterHttpCalloutDone = envoy_dynamic_module_on_http_filter_http_callout_done;
const _: OnHttpFilterHttpStreamHeaders = envoy_dynamic_module_on_http_filter_http_stream_headers;
const _: OnHttpFilterHttpStreamData = envoy_dynamic_module_on_http_filter_http_stream_data;
const _: OnHttpFilterHttpStreamTrailers = envoy_dynamic_module_on_http_filter_http_stream_trailers;
const _: OnHttpFilterHttpStreamComplete = envoy_dynamic_module_on_http_filter_http_stream_complete;
const _: OnHttpFilterHttpStreamReset = envoy_dynamic_module_on_http_filter_http_stream_reset;
const _: OnHttpFilterScheduled = envoy_dynamic_module_on_http_filter_scheduled;
const _: OnHttpFilterDownstreamAboveWriteBufferHighWatermark =
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark;
const _: OnHttpFilterConfigScheduled = envoy_dynamic_module_on_http_filter_config_scheduled;
const _: OnHttpFilterConfigHttpCalloutDone = envoy_dynamic_module_on_http_filter_config_http_callout_done;
const _: OnHttpFilterDownstreamBelowWriteBufferLowWatermark =
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark;
