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
use certbound_core::flow::Body;
use certbound_core::registry::{Fetch, Registry, Request};
use certbound_core::store::SlotTable;
use certbound_core::stream::{Action, AfterCallout, Stream};
use certbound_core::vm_cache::VmCache;
use host::{ModuleHost, SharedMemory};
use std::cell::{Cell, RefCell};
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
    /// Metric ids, by the core's `Metric::index` (decisions, refusals, report-only refusals).
    counters: Vec<Option<usize>>,
    /// `certbound.faults`: panics caught in a hook (see `guard`).
    faults: Option<usize>,
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
        // The same upkeep as the .wasm's tick: a sweep step, then the count of slots in use.
        let memory = StoreConfig::SharedData { capacity: config.table.slots() };
        let upkeep = certbound_core::shared::upkeep(&mut SharedMemory, config.table, &memory, now);
        if let Some(problem) = upkeep.problem {
            log::warn!("certbound: {problem}");
        }
        if let Some(used) = upkeep.slots_used {
            set_config_gauge(envoy_config, config.slots_used, used);
        }
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

/// An Envoy-owned buffer as text, copied once (`certbound_core::header::text`).
fn text_of(buffer: envoy_dynamic_module_type_envoy_buffer) -> String {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return String::new();
    }
    // SAFETY: Envoy guarantees ptr..ptr+length is readable until the hook returns.
    certbound_core::header::text(unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) })
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

// ------------------------------------------------------------------ faults

/// Where a hook runs, for counting a fault in `certbound.faults`.
#[derive(Clone, Copy)]
enum Site {
    /// A stream's hook: counted on its Envoy filter (the configuration's counter id).
    Stream(envoy_dynamic_module_type_http_filter_envoy_ptr, Option<usize>),
    /// A configuration's hook (main thread): counted on the configuration.
    Config(envoy_dynamic_module_type_http_filter_config_envoy_ptr, Option<usize>),
    /// Nothing to count on: program init, a configuration being made or destroyed, a filter being freed.
    Process,
}

thread_local! {
    /// Hooks running behind `guard` on this thread: the panic hook leaves their panics to them.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    /// Where and why the last panic inside a guarded hook happened (recorded by the panic hook).
    static LAST_PANIC: Cell<Option<String>> = const { Cell::new(None) };
}

/// A panic's message, as `panic!` made it.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Replaces the default panic hook (a print to Envoy's stderr) with one log line through
/// Envoy's logger. Inside a guarded hook the line is left to `guard`, which names the hook.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place =
            info.location().map_or_else(String::new, |l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()));
        let what = format!("panicked{place}: {}", panic_text(info.payload()));
        if GUARDED.try_with(Cell::get).unwrap_or(0) > 0 {
            // Cell::set cannot panic (a panic in a panic hook would abort).
            if LAST_PANIC.try_with(|p| p.set(Some(what.clone()))).is_ok() {
                return;
            }
        }
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        log_line(log::Level::Error, &format!("certbound: {what} (thread {thread}, outside any hook)"));
    }));
}

/// Runs one hook's body behind `catch_unwind`, so that no panic unwinds into Envoy (the module
/// is built with panic = "unwind"). A caught panic is logged once, naming the hook and what
/// follows (`then`), counted in `certbound.faults` where the hook has a configuration, and
/// returned as `None`: the caller fails closed its own way (a 500, a reset, a refused
/// configuration, or nothing done).
fn guard<R>(hook: &'static str, site: Site, then: &str, body: impl FnOnce() -> R) -> Option<R> {
    let _ = GUARDED.try_with(|g| g.set(g.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    let _ = GUARDED.try_with(|g| g.set(g.get().saturating_sub(1)));
    let payload = match result {
        Ok(r) => return Some(r),
        Err(payload) => payload,
    };
    let what = LAST_PANIC
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| format!("panicked: {}", panic_text(&*payload)));
    // Dropping a payload may panic in turn: that must not unwind into Envoy either.
    if let Err(again) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
    log_line(log::Level::Error, &format!("certbound: internal fault in hook {hook} ({what}): {then}"));
    match site {
        // SAFETY: the live filter (or configuration) of the current hook; no labels.
        Site::Stream(envoy, Some(id)) => unsafe {
            let _ = envoy_dynamic_module_callback_http_filter_increment_counter(envoy, id, std::ptr::null_mut(), 0, 1);
        },
        Site::Config(envoy, Some(id)) => unsafe {
            let _ = envoy_dynamic_module_callback_http_filter_config_increment_counter(
                envoy,
                id,
                std::ptr::null_mut(),
                0,
                1,
            );
        },
        _ => {}
    }
    None
}

#[cfg(feature = "fault-injection")]
mod fault_injection;

// ------------------------------------------------------------------ program and config hooks

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> envoy_dynamic_module_type_abi_version_module_ptr {
    guard("program_init", Site::Process, "the module is not loaded", || {
        install_panic_hook();
        let _ = log::set_logger(&EnvoyLogger);
        log::set_max_level(host_level());
        ABI_VERSION.as_ptr().cast()
    })
    .unwrap_or(std::ptr::null())
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
    name: envoy_dynamic_module_type_envoy_buffer,
    config: envoy_dynamic_module_type_envoy_buffer,
) -> envoy_dynamic_module_type_http_filter_config_module_ptr {
    // Counters are not defined yet: a fault here is logged, and the configuration refused.
    guard("http_filter_config_new", Site::Process, "the configuration is refused", || unsafe {
        config_new(filter_config_envoy_ptr, name, config)
    })
    .unwrap_or(std::ptr::null())
}

unsafe fn config_new(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _name: envoy_dynamic_module_type_envoy_buffer,
    config: envoy_dynamic_module_type_envoy_buffer,
) -> envoy_dynamic_module_type_http_filter_config_module_ptr {
    #[cfg(feature = "fault-injection")]
    fault_injection::config_new(&copy(_name));
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
    let (table, note) = certbound_core::shared::table_for(&mut SharedMemory, &parsed.store);
    if let Some(note) = note {
        log::warn!("{note}");
    }
    // The core's one table of counters, by Metric::index.
    let counters: Vec<Option<usize>> =
        certbound_core::counter::metrics().map(|m| define_counter(filter_config_envoy_ptr, &m.name())).collect();
    let faults = define_counter(filter_config_envoy_ptr, "certbound.faults");
    let shared_memory = matches!(parsed.store, StoreConfig::SharedData { .. });
    let slots_used = define_gauge(filter_config_envoy_ptr, "certbound.store_slots_used");
    let slots_capacity = define_gauge(filter_config_envoy_ptr, "certbound.store_slots_capacity");
    log::info!(
        "certbound {VERSION} (dynamic module) configured: {} client(s), token path {}, introspection path {}",
        parsed.clients.len(),
        parsed.token_path,
        parsed.introspection_path
    );
    let vm_cache_entries = parsed.vm_cache_entries;
    let id = NEXT_CONFIG.fetch_add(1, Ordering::Relaxed);
    MAIN.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.insert(id, MainState { registry: Registry::new(Rc::new(parsed)), calls: HashMap::new() });
        }
    });
    // The scheduler and its ticker come last: nothing after them can fail, so a refused
    // configuration never leaves a ticker committing to a scheduler Envoy dropped.
    // SAFETY: the config Envoy is creating; the scheduler is deleted in config_destroy.
    let scheduler = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(filter_config_envoy_ptr) };
    let scheduler = Arc::new(Mutex::new((!scheduler.is_null()).then_some(SchedulerPtr(scheduler))));
    let filter_config = Box::new(FilterConfig {
        id,
        raw,
        table,
        counters,
        faults,
        slots_used,
        slots_capacity,
        sweeps: shared_memory,
        vm_cache_entries,
        published: Mutex::new((0, None)),
        scheduler: scheduler.clone(),
    });
    // The first tick at once (gauges, first fetches), then one a second.
    if let Ok(guard) = scheduler.lock() {
        if let Some(p) = guard.as_ref() {
            // SAFETY: the scheduler just made, alive under the lock.
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(p.0, TICK) };
        }
    }
    start_ticker(scheduler);
    Box::into_raw(filter_config) as *const c_void
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
) {
    if filter_config_ptr.is_null() {
        return;
    }
    guard("http_filter_config_destroy", Site::Process, "nothing more is done", || {
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
    });
}

/// The configuration of a config hook (main thread), and where a fault in it is counted.
unsafe fn config_of<'a>(
    envoy: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
) -> (Option<&'a FilterConfig>, Site) {
    // SAFETY: alive until config_destroy, which runs on this (main) thread.
    let config = unsafe { (ptr as *const FilterConfig).as_ref() };
    (config, Site::Config(envoy, config.and_then(|c| c.faults)))
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _event_id: u64,
) {
    let (config, site) = unsafe { config_of(filter_config_envoy_ptr, filter_config_ptr) };
    guard("http_filter_config_scheduled", site, "this tick is skipped", || {
        if let Some(config) = config {
            on_tick(filter_config_envoy_ptr, config);
        }
    });
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
    let (config, site) = unsafe { config_of(filter_config_envoy_ptr, filter_config_ptr) };
    guard("http_filter_config_http_callout_done", site, "this answer is dropped", || {
        let Some(config) = config else { return };
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
    });
}

// ------------------------------------------------------------------ streams

/// One stream: its config and its core state.
struct Filter {
    config: *const FilterConfig,
    /// `None`: making it faulted (filter_new); the request is refused.
    stream: Option<Stream>,
    /// A fault was answered on this stream (500 or reset): nothing of certbound runs on it again.
    faulted: bool,
    /// The response hooks have started: a fault now resets the stream rather than answer 500.
    response_phase: bool,
}

impl Filter {
    fn faults(&self) -> Option<usize> {
        // SAFETY: the config outlives its filters (Envoy keeps it while streams use it).
        unsafe { self.config.as_ref() }.and_then(|c| c.faults)
    }
}

/// The stream state behind the pointer Envoy hands back to every hook.
unsafe fn filter<'a>(ptr: envoy_dynamic_module_type_http_filter_module_ptr) -> Option<&'a mut Filter> {
    // SAFETY: made by Box::into_raw in filter_new and freed only in filter_destroy (or after
    // the hook it was destroyed in); Envoy calls a stream's hooks one at a time on its worker.
    unsafe { (ptr as *mut Filter).as_mut() }
}

thread_local! {
    /// The filter whose hook is running on this worker (null: none).
    static RUNNING: Cell<envoy_dynamic_module_type_http_filter_module_ptr> = const { Cell::new(std::ptr::null()) };
    /// Envoy destroyed the running filter from inside its own hook.
    static DESTROYED_WHILE_RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// Marks a filter as running for the length of one hook. A local reply (or a reset) sent
/// inside the hook can make Envoy destroy the filter before the hook returns: the destroy
/// hook then leaves the freeing to this guard's Drop, which runs when the hook returns, after
/// a fault too, and restores RUNNING in every case.
struct Running {
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    outer: envoy_dynamic_module_type_http_filter_module_ptr,
}

impl Running {
    fn enter(module: envoy_dynamic_module_type_http_filter_module_ptr) -> Running {
        let outer = RUNNING.try_with(|r| r.replace(module)).unwrap_or(std::ptr::null());
        Running { module, outer }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = RUNNING.try_with(|r| r.set(self.outer));
        if DESTROYED_WHILE_RUNNING.try_with(|d| d.replace(false)).unwrap_or(false) {
            let module = self.module;
            guard("http_filter_destroy", Site::Process, "its memory is not freed", || {
                // SAFETY: made by Box::into_raw in filter_new; Envoy destroyed it during the hook, nothing refers to it now.
                drop(unsafe { Box::from_raw(module as *mut Filter) });
            });
        }
    }
}

/// How a stream hook fails closed after a fault.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Request hooks: a 500 local reply (`server_error`).
    Request,
    /// Response hooks: a reset (the response may have started downstream).
    Response,
    /// Hooks of either phase (callouts, timers, watermarks): 500 until the response hooks
    /// started, a reset after.
    Either,
    /// The stream is over (stream_complete): nothing to answer.
    Ended,
}

/// Runs a stream hook's body behind `guard`, with its filter marked as running. After a
/// fault the stream is failed closed, once: a local reply 500 on the request path, a reset
/// on the response path; nothing of certbound runs on it again.
unsafe fn stream_hook<R>(
    hook: &'static str,
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    path: Path,
    fallback: R,
    body: impl FnOnce() -> R,
) -> R {
    // SAFETY: see `filter`.
    let (faults, response_phase) = match unsafe { filter(module) } {
        Some(f) => {
            f.response_phase |= path == Path::Response;
            (f.faults(), f.response_phase)
        }
        None => (None, false),
    };
    let refuse = path == Path::Request || (path == Path::Either && !response_phase);
    let then = match path {
        Path::Ended => "nothing more to do",
        _ if refuse => "the request is refused with 500",
        _ => "the stream is reset",
    };
    let _running = Running::enter(module);
    if let Some(r) = guard(hook, Site::Stream(envoy, faults), then, body) {
        return r;
    }
    // Answered at most once, and only while Envoy still has the stream.
    let destroyed = DESTROYED_WHILE_RUNNING.try_with(Cell::get).unwrap_or(true);
    // SAFETY: see `filter`; a filter destroyed during this hook is still allocated (freed by `_running`).
    let answered = unsafe { filter(module) }.is_some_and(|f| std::mem::replace(&mut f.faulted, true));
    if path != Path::Ended && !destroyed && !answered {
        if refuse {
            host::refuse_fault(envoy);
        } else {
            host::reset_stream(envoy);
        }
    }
    fallback
}

/// Runs `f` with the stream and a host over its Envoy filter (`otherwise` for a stream that
/// has no state, or whose fault was already answered).
unsafe fn with<R>(
    hook: &'static str,
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    otherwise: R,
    f: impl FnOnce(&mut Stream, &mut ModuleHost<'_>) -> R,
) -> R {
    // SAFETY: see `filter`.
    let Some(filter) = (unsafe { filter(module) }) else { return otherwise };
    if filter.faulted {
        return otherwise;
    }
    // SAFETY: the config outlives its filters (Envoy keeps it while streams use it).
    let Some(config) = (unsafe { filter.config.as_ref() }) else { return otherwise };
    let Some(stream) = filter.stream.as_mut() else { return otherwise };
    let mut host = ModuleHost::new(envoy, config);
    #[cfg(feature = "fault-injection")]
    fault_injection::stream(hook, &mut host);
    let _ = hook;
    f(stream, &mut host)
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
) -> envoy_dynamic_module_type_http_filter_module_ptr {
    let config = filter_config_ptr as *const FilterConfig;
    // SAFETY: made in config_new, alive while Envoy makes filters from it.
    let faults = unsafe { config.as_ref() }.and_then(|c| c.faults);
    let stream =
        guard("http_filter_new", Site::Stream(filter_envoy_ptr, faults), "its request is refused with 500", || {
            // SAFETY: as above.
            let (compiled, table) = match unsafe { config.as_ref() } {
                Some(c) => (c.compiled(), c.table),
                None => (None, SlotTable::new(1)),
            };
            let (compiled, cache) = match compiled {
                Some((c, cache)) => (Some(c), cache),
                None => (None, Rc::new(RefCell::new(VmCache::new(0)))),
            };
            let id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
            Stream::new(id as u32, compiled, table, cache)
        });
    // A filter is made whatever happened: without a stream state its request is refused.
    Box::into_raw(Box::new(Filter { config, stream, faulted: false, response_phase: false })) as *const c_void
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

const HEADERS_STOP: u32 = envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration;
const BODY_STOP: u32 = envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationNoBuffer;
const TRAILERS_STOP: u32 = envoy_dynamic_module_type_on_http_filter_request_trailers_status_StopIteration;

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_headers_status {
    let hook = "request_headers";
    unsafe {
        stream_hook(hook, envoy, module, Path::Request, HEADERS_STOP, || {
            let action = with(hook, envoy, module, None, |s, h| Some(s.request_headers(h, end_of_stream)));
            match action {
                Some(a) => headers_status(a),
                // A stream without its state is refused (fail closed), never passed unchecked.
                None => {
                    match filter(module) {
                        // Its state could not be made (a fault in filter_new).
                        Some(f) if f.stream.is_none() && !f.config.is_null() => host::refuse_fault(envoy),
                        _ => host::refuse_unconfigured(envoy),
                    }
                    HEADERS_STOP
                }
            }
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_body_status {
    let hook = "request_body";
    unsafe {
        stream_hook(hook, envoy, module, Path::Request, BODY_STOP, || {
            body_status(with(hook, envoy, module, Action::Pause, |s, h| {
                let size = h.body_size(Body::Request);
                s.request_body(h, size, end_of_stream)
            }))
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) -> envoy_dynamic_module_type_on_http_filter_request_trailers_status {
    let hook = "request_trailers";
    unsafe {
        stream_hook(hook, envoy, module, Path::Request, TRAILERS_STOP, || {
            trailers_status(with(hook, envoy, module, Action::Pause, |s, h| s.request_trailers(h)))
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_headers_status {
    let hook = "response_headers";
    unsafe {
        stream_hook(hook, envoy, module, Path::Response, HEADERS_STOP, || {
            headers_status(with(hook, envoy, module, Action::Continue, |s, h| s.response_headers(h, end_of_stream)))
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_body_status {
    let hook = "response_body";
    unsafe {
        stream_hook(hook, envoy, module, Path::Response, BODY_STOP, || {
            body_status(with(hook, envoy, module, Action::Continue, |s, h| {
                let size = h.body_size(Body::Response);
                s.response_body(h, size, end_of_stream)
            }))
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) -> envoy_dynamic_module_type_on_http_filter_response_trailers_status {
    let hook = "response_trailers";
    unsafe {
        stream_hook(hook, envoy, module, Path::Response, TRAILERS_STOP, || {
            trailers_status(with(hook, envoy, module, Action::Continue, |s, h| s.response_trailers(h)))
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) {
    unsafe { stream_hook("stream_complete", envoy, module, Path::Ended, (), || ()) }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) {
    if module.is_null() {
        return;
    }
    guard("http_filter_destroy", Site::Process, "its memory is not freed", || {
        if RUNNING.with(|r| r.get() == module) {
            // Inside this filter's own hook (a local reply ended the stream): freed when the hook returns.
            DESTROYED_WHILE_RUNNING.with(|d| d.set(true));
            return;
        }
        // SAFETY: made by Box::into_raw in filter_new; destroyed once.
        drop(unsafe { Box::from_raw(module as *mut Filter) });
    });
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
    let hook = "http_callout_done";
    unsafe {
        stream_hook(hook, envoy, module, Path::Either, (), || {
            let answer = host::callout_answer(result, headers, headers_size, body_chunks, body_chunks_size);
            let after = with(hook, envoy, module, AfterCallout::Nothing, |s, h| s.callout_done(h, callout_id, answer));
            if let AfterCallout::Resume { response_phase } = after {
                // SAFETY: the live filter of this hook.
                if response_phase {
                    envoy_dynamic_module_callback_http_filter_continue_encoding(envoy)
                } else {
                    envoy_dynamic_module_callback_http_filter_continue_decoding(envoy)
                }
            }
        })
    }
}

// Hooks Envoy 1.40 requires though certbound uses none of them: guarded all the same.

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _end_stream: bool,
) {
    unsafe { stream_hook("http_stream_headers", envoy, module, Path::Either, (), || ()) }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _data: *const envoy_dynamic_module_type_envoy_buffer,
    _data_count: usize,
    _end_stream: bool,
) {
    unsafe { stream_hook("http_stream_data", envoy, module, Path::Either, (), || ()) }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _trailers: *mut envoy_dynamic_module_type_envoy_http_header,
    _trailers_size: usize,
) {
    unsafe { stream_hook("http_stream_trailers", envoy, module, Path::Either, (), || ()) }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
) {
    unsafe { stream_hook("http_stream_complete", envoy, module, Path::Either, (), || ()) }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _reason: envoy_dynamic_module_type_http_stream_reset_reason,
) {
    unsafe { stream_hook("http_stream_reset", envoy, module, Path::Either, (), || ()) }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
    _event_id: u64,
) {
    unsafe { stream_hook("scheduled", envoy, module, Path::Either, (), || ()) }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) {
    unsafe { stream_hook("downstream_above_write_buffer_high_watermark", envoy, module, Path::Either, (), || ()) }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    module: envoy_dynamic_module_type_http_filter_module_ptr,
) {
    unsafe { stream_hook("downstream_below_write_buffer_low_watermark", envoy, module, Path::Either, (), || ()) }
}

// Each export has the signature Envoy 1.40 calls it with.
crate::hook_signatures!();

#[cfg(test)]
mod tests {
    //! The fault boundary, without Envoy: the Envoy callbacks it uses are stubbed here and
    //! record what they were asked (per test thread).
    use super::*;

    thread_local! {
        static LOGGED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        static COUNTED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
        static REPLIES: RefCell<Vec<(u32, String)>> = const { RefCell::new(Vec::new()) };
        static RESETS: Cell<u32> = const { Cell::new(0) };
        /// A filter Envoy destroys from inside the local reply (as sendLocalReply may).
        static DESTROY_ON_REPLY: Cell<envoy_dynamic_module_type_http_filter_module_ptr> =
            const { Cell::new(std::ptr::null()) };
    }

    fn text(b: envoy_dynamic_module_type_module_buffer) -> String {
        // SAFETY: the module's own buffer, alive for the call.
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(b.ptr.cast::<u8>(), b.length) }).into_owned()
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_log(
        _level: envoy_dynamic_module_type_log_level,
        message: envoy_dynamic_module_type_module_buffer,
    ) {
        LOGGED.with(|l| l.borrow_mut().push(text(message)));
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_increment_counter(
        _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
        id: usize,
        _labels: *mut envoy_dynamic_module_type_module_buffer,
        _labels_length: usize,
        _value: u64,
    ) -> envoy_dynamic_module_type_metrics_result {
        COUNTED.with(|c| c.borrow_mut().push(id));
        envoy_dynamic_module_type_metrics_result_Success
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        _envoy: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        id: usize,
        _labels: *mut envoy_dynamic_module_type_module_buffer,
        _labels_length: usize,
        _value: u64,
    ) -> envoy_dynamic_module_type_metrics_result {
        COUNTED.with(|c| c.borrow_mut().push(id));
        envoy_dynamic_module_type_metrics_result_Success
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_send_response(
        _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
        status: u32,
        _headers: *mut envoy_dynamic_module_type_module_http_header,
        _headers_size: usize,
        body: envoy_dynamic_module_type_module_buffer,
        _details: envoy_dynamic_module_type_module_buffer,
    ) {
        REPLIES.with(|r| r.borrow_mut().push((status, text(body))));
        let module = DESTROY_ON_REPLY.with(|d| d.replace(std::ptr::null()));
        if !module.is_null() {
            // SAFETY: a filter made by the test, destroyed once.
            unsafe { envoy_dynamic_module_on_http_filter_destroy(module) };
        }
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_reset_stream(
        _envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
        _reason: envoy_dynamic_module_type_http_filter_stream_reset_reason,
        _details: envoy_dynamic_module_type_module_buffer,
    ) {
        RESETS.with(|r| r.set(r.get() + 1));
    }

    const ENVOY: envoy_dynamic_module_type_http_filter_envoy_ptr = 0x1000 as *mut c_void;

    /// This thread's records, empty (libtest may run several tests on one thread).
    fn fresh() {
        LOGGED.with(|l| l.borrow_mut().clear());
        COUNTED.with(|c| c.borrow_mut().clear());
        REPLIES.with(|r| r.borrow_mut().clear());
        RESETS.with(|r| r.set(0));
    }

    fn new_filter() -> envoy_dynamic_module_type_http_filter_module_ptr {
        Box::into_raw(Box::new(Filter {
            config: std::ptr::null(),
            stream: None,
            faulted: false,
            response_phase: false,
        })) as *const c_void
    }

    fn state(module: envoy_dynamic_module_type_http_filter_module_ptr) -> (bool, bool) {
        // SAFETY: a live filter made by the test.
        let f = unsafe { filter(module) }.unwrap();
        (f.faulted, f.response_phase)
    }

    fn replies() -> Vec<(u32, String)> {
        REPLIES.with(|r| r.borrow().clone())
    }

    fn resets() -> u32 {
        RESETS.with(Cell::get)
    }

    fn running_is_clear() -> bool {
        RUNNING.with(|r| r.get().is_null()) && !DESTROYED_WHILE_RUNNING.with(Cell::get)
    }

    #[test]
    fn a_panic_is_caught_at_the_hook_logged_once_with_its_name_and_counted() {
        fresh();
        install_panic_hook();
        let out: Option<u32> =
            guard("request_body", Site::Stream(ENVOY, Some(7)), "the request is refused with 500", || {
                panic!("boom {}", 42)
            });
        assert_eq!(out, None);
        let logged = LOGGED.with(|l| l.borrow().clone());
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].contains("internal fault in hook request_body"), "{}", logged[0]);
        assert!(logged[0].contains("panicked at") && logged[0].contains("boom 42"), "{}", logged[0]);
        assert!(logged[0].contains("lib.rs"), "the place of the panic: {}", logged[0]);
        assert_eq!(COUNTED.with(|c| c.borrow().clone()), vec![7]);
        assert_eq!(GUARDED.with(Cell::get), 0);
        assert_eq!(LAST_PANIC.with(Cell::take), None);
        // A body that returns is passed through, silently.
        assert_eq!(guard("request_body", Site::Stream(ENVOY, Some(7)), "", || 5), Some(5));
        assert_eq!(LOGGED.with(|l| l.borrow().len()), 1);
        assert_eq!(COUNTED.with(|c| c.borrow().len()), 1);
    }

    #[test]
    fn a_fault_on_the_request_path_is_answered_500_once_and_nothing_runs_on_the_stream_again() {
        fresh();
        let module = new_filter();
        let status = unsafe { stream_hook("request_headers", ENVOY, module, Path::Request, 99, || panic!("boom")) };
        assert_eq!(status, 99);
        let r = replies();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, 500);
        assert!(r[0].1.starts_with(r#"{"error":"server_error","error_description":"#), "{}", r[0].1);
        assert!(r[0].1.contains("internal fault"), "{}", r[0].1);
        assert_eq!(resets(), 0);
        assert_eq!(state(module), (true, false));
        assert!(running_is_clear());
        // The stream's later hooks run none of certbound and answer nothing more, even if they fault.
        let ran = unsafe { with("request_body", ENVOY, module, false, |_, _| true) };
        assert!(!ran);
        let again = unsafe { stream_hook("request_body", ENVOY, module, Path::Request, 1, || panic!("again")) };
        assert_eq!(again, 1);
        assert_eq!(replies().len(), 1);
        assert_eq!(resets(), 0);
        unsafe { envoy_dynamic_module_on_http_filter_destroy(module) };
        assert!(running_is_clear());
    }

    #[test]
    fn a_fault_on_the_response_path_resets_the_stream() {
        fresh();
        let module = new_filter();
        unsafe { stream_hook("response_body", ENVOY, module, Path::Response, 3, || panic!("boom")) };
        assert_eq!(resets(), 1);
        assert!(replies().is_empty());
        assert_eq!(state(module), (true, true));
        unsafe { envoy_dynamic_module_on_http_filter_destroy(module) };
    }

    #[test]
    fn hooks_of_either_phase_answer_500_before_the_response_and_reset_after() {
        fresh();
        let before = new_filter();
        unsafe { stream_hook("http_callout_done", ENVOY, before, Path::Either, (), || panic!("boom")) };
        assert_eq!(replies().len(), 1);
        assert_eq!(resets(), 0);
        let after = new_filter();
        unsafe { stream_hook("response_headers", ENVOY, after, Path::Response, 0, || 0) };
        assert_eq!(state(after), (false, true));
        unsafe { stream_hook("http_callout_done", ENVOY, after, Path::Either, (), || panic!("boom")) };
        assert_eq!(replies().len(), 1);
        assert_eq!(resets(), 1);
        // stream_complete: the stream is over, nothing is answered.
        let ended = new_filter();
        unsafe { stream_hook("stream_complete", ENVOY, ended, Path::Ended, (), || panic!("boom")) };
        assert_eq!((replies().len(), resets()), (1, 1));
        for m in [before, after, ended] {
            unsafe { envoy_dynamic_module_on_http_filter_destroy(m) };
        }
    }

    #[test]
    fn a_filter_envoy_destroys_inside_a_faulting_hook_is_freed_after_it_and_never_answered_twice() {
        fresh();
        // The hook sends a local reply, Envoy destroys the filter inside it, then the hook panics.
        let module = new_filter();
        DESTROY_ON_REPLY.with(|d| d.set(module));
        unsafe {
            stream_hook("request_headers", ENVOY, module, Path::Request, 0, || {
                host::refuse_unconfigured(ENVOY);
                panic!("after the reply")
            })
        };
        // One reply (the hook's own), no fault answer on a destroyed stream, the filter freed
        // by the hook's guard, and RUNNING restored.
        assert_eq!(replies().len(), 1);
        assert_eq!(resets(), 0);
        assert!(running_is_clear());
        // And the fault answer itself may make Envoy destroy the filter: freed after the hook.
        let module = new_filter();
        DESTROY_ON_REPLY.with(|d| d.set(module));
        unsafe { stream_hook("request_body", ENVOY, module, Path::Request, 0, || panic!("boom")) };
        assert_eq!(replies().len(), 2);
        assert!(running_is_clear());
    }
}
