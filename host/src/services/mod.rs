//! The services the host offers modules, behind the `HostVTable` every module gets at init.
//!
//! The vtable's functions are plain `extern "C"` functions, so they reach the running host
//! through one process-wide [`HostState`]. Each of them catches panics of its own, because a
//! panic unwinding out of an `extern "C"` function aborts the process.

mod apis;
pub mod metrics;
pub mod timers;
pub mod workers;

use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RErr, ROk, RResult, RSlice, RStr, RString};
use abi_stable::std_types::{RNone, ROption, RSome, RVec};
use plugin_api::ffi::{
    FfiApi, FfiCallback, FfiDbOp, FfiDbResult, FfiHeader, FfiMetric, FfiReplyCallback, FfiRequest, FfiRpcResult,
    FfiSentRequest, HostRef, HostVTable,
};

pub use apis::ApiRegistry;
use metrics::Metrics;
use timers::Timers;
use workers::WorkerPool;

use crate::db::DbService;
use crate::logging::LogControl;
use crate::rpc::Rpc;

/// Everything a running host shares between its I/O threads, its workers and its modules.
pub struct HostState {
    pub runtime: tokio::runtime::Handle,
    /// The SIP core, once it is started.
    pub sip: OnceLock<Arc<crate::sip::core::SipCore>>,
    pub workers: Arc<WorkerPool>,
    pub timers: Timers,
    pub metrics: Metrics,
    pub apis: ApiRegistry,
    pub rpc: Rpc,
    pub db: DbService,
    pub log: LogControl,
    pub config_dir: PathBuf,
    pub counters: HostCounters,
}

/// The host's own counters.
pub struct HostCounters {
    pub rpc_requests: &'static AtomicU64,
    pub rpc_faults: &'static AtomicU64,
    pub module_errors: &'static AtomicU64,
    pub db_errors: &'static AtomicU64,
}

impl HostCounters {
    pub fn register(m: &Metrics) -> Self {
        let c = |name, help| m.counter("", name, help).expect("valid built-in metric name");
        Self {
            rpc_requests: c("rpc_requests", "RPC requests received over every transport"),
            rpc_faults: c("rpc_faults", "RPC requests answered with a fault"),
            module_errors: c("module_errors", "errors and panics returned by module entry points"),
            db_errors: c(
                "db_errors",
                "database statements, batches and transactions that failed (a database outage shows here)",
            ),
        }
    }
}

static STATE: OnceLock<Arc<HostState>> = OnceLock::new();

/// Makes `state` the running host. Called once, before any module is initialised.
pub fn install(state: Arc<HostState>) -> Arc<HostState> {
    let _ = STATE.set(state);
    STATE.get().expect("just set").clone()
}

/// The running host, when there is one (not during `puahost check` or `params`).
pub fn state() -> Option<&'static Arc<HostState>> {
    STATE.get()
}

/// Counts an error a module returned (the caller logs it).
pub fn plugin_error() {
    if let Some(s) = state() {
        s.counters.module_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The vtable handed to every module's `init`.
pub fn vtable() -> HostRef {
    static VT: OnceLock<HostRef> = OnceLock::new();
    *VT.get_or_init(|| {
        HostVTable {
            host_version: RStr::from_str(crate::VERSION),
            log,
            log_level,
            counter,
            gauge,
            timer_start,
            timer_cancel,
            run_on_worker,
            api_export,
            api_bind,
            rpc_reply,
            db_open,
            db_exec,
            db_begin,
            db_end,
            config_dir,
            sip_reply,
            sip_reply_header,
            sip_flag,
            sip_avp_get,
            sip_avp_set,
            sip_avp_all,
            sip_send_request,
            sip_is_myself,
            sip_local_address,
            sip_to_tag,
            sip_set_ruri,
            sip_received_socket,
            sip_set_dst_uri,
            sip_set_path,
            db_exec_batch,
            sip_on_relay_reply,
            sip_remove_header,
        }
        .leak_into_prefix()
    })
}

/// Runs `f` with the host state, turning a missing host or a panic into an error string.
fn with_state<T>(what: &str, f: impl FnOnce(&'static Arc<HostState>) -> Result<T, String>) -> RResult<T, RString> {
    let result = catch_unwind(AssertUnwindSafe(|| match state() {
        Some(s) => f(s),
        None => Err(format!("{what}: the host is not running")),
    }));
    match result {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(e.into()),
        Err(_) => RErr(format!("{what}: internal error in the host (panic); see the log").into()),
    }
}

extern "C" fn log(module: RStr<'_>, level: u8, target: RStr<'_>, message: RStr<'_>) {
    let _ = catch_unwind(|| crate::logging::module_record(module.as_str(), level, target.as_str(), message.as_str()));
}

extern "C" fn log_level() -> u8 {
    state().map_or(2, |s| s.log.module_level())
}

extern "C" fn counter(module: RStr<'_>, name: RStr<'_>, help: RStr<'_>) -> RResult<FfiMetric, RString> {
    with_state("counter", |s| {
        s.metrics
            .counter(module.as_str(), name.as_str(), help.as_str())
            .map(|c| FfiMetric { cell: c as *const _ as *const c_void })
    })
}

extern "C" fn gauge(module: RStr<'_>, name: RStr<'_>, help: RStr<'_>) -> RResult<FfiMetric, RString> {
    with_state("gauge", |s| {
        s.metrics
            .gauge(module.as_str(), name.as_str(), help.as_str())
            .map(|c| FfiMetric { cell: c as *const _ as *const c_void })
    })
}

extern "C" fn timer_start(
    module: RStr<'_>,
    name: RStr<'_>,
    first_ms: u64,
    interval_ms: u64,
    callback: FfiCallback,
) -> RResult<u64, RString> {
    with_state("timer", move |s| {
        let interval = (interval_ms > 0).then(|| Duration::from_millis(interval_ms));
        Ok(s.timers.start(module.to_string(), name.to_string(), Duration::from_millis(first_ms), interval, callback))
    })
}

extern "C" fn timer_cancel(id: u64) {
    let _ = catch_unwind(|| {
        if let Some(s) = state() {
            s.timers.cancel(id);
        }
    });
}

extern "C" fn run_on_worker(module: RStr<'_>, callback: FfiCallback) {
    let module = module.to_string();
    let _ = catch_unwind(AssertUnwindSafe(move || {
        if let Some(s) = state() {
            s.workers.submit(Box::new(move || {
                if let RErr(e) = callback.call() {
                    tracing::error!(%module, "queued callback failed: {}", e.message);
                    plugin_error();
                }
            }));
        }
    }));
}

extern "C" fn api_export(module: RStr<'_>, name: RStr<'_>, version: u32, api: FfiApi) -> RResult<(), RString> {
    // SAFETY: `api` was built by `plugin_api::Host::export` from a `'static` vtable and the
    // `'static` layout of its type.
    with_state("export", |s| unsafe { s.apis.export(module.as_str(), name.as_str(), version, api.layout, api.vtable) })
}

extern "C" fn api_bind(
    module: RStr<'_>,
    name: RStr<'_>,
    version: u32,
    expected: *const c_void,
) -> RResult<*const c_void, RString> {
    // SAFETY: `expected` is the `'static` layout `plugin_api::Host::bind` passes.
    with_state("bind", |s| unsafe { s.apis.bind(module.as_str(), name.as_str(), version, expected) })
}

extern "C" fn rpc_reply(token: u64, result: FfiRpcResult) {
    let _ = catch_unwind(AssertUnwindSafe(move || {
        if let Some(s) = state() {
            s.rpc.complete(token, result);
        }
    }));
}

extern "C" fn db_open(module: RStr<'_>, url: RStr<'_>) -> RResult<u32, RString> {
    with_state("database", |s| s.db.open(module.as_str(), url.as_str()))
}

/// Counts a failed database call on `/metrics` (`puahost_db_errors_total`).
fn count_db<T>(s: &HostState, r: Result<T, String>) -> Result<T, String> {
    if r.is_err() {
        s.counters.db_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    r
}

extern "C" fn db_exec(db: u32, tx: u64, op: &FfiDbOp) -> RResult<FfiDbResult, RString> {
    with_state("database", |s| count_db(s, s.db.exec(db, tx, op)))
}

extern "C" fn db_exec_batch(db: u32, ops: RSlice<'_, FfiDbOp>) -> RResult<RVec<FfiDbResult>, RString> {
    with_state("database", |s| count_db(s, s.db.exec_batch(db, ops.as_slice()).map(RVec::from)))
}

extern "C" fn db_begin(db: u32, lock_tables: RSlice<'_, RString>) -> RResult<u64, RString> {
    with_state("database", |s| {
        let tables: Vec<&str> = lock_tables.iter().map(|t| t.as_str()).collect();
        count_db(s, s.db.begin(db, &tables))
    })
}

extern "C" fn db_end(tx: u64, commit: bool) -> RResult<(), RString> {
    with_state("database", |s| count_db(s, s.db.end(tx, commit)))
}

extern "C" fn config_dir() -> RString {
    state().map_or_else(RString::new, |s| s.config_dir.to_string_lossy().into_owned().into())
}

/// The routing context behind a `ctx` pointer.
///
/// # Safety
/// `ctx` must be the pointer the router put in the `FfiCall` of the function being called;
/// modules only get it for the duration of that call.
unsafe fn request_ctx<'a>(ctx: *const c_void) -> Option<&'a crate::sip::context::RequestCtx> {
    // SAFETY: per the contract, a live `RequestCtx` or null.
    unsafe { (ctx as *const crate::sip::context::RequestCtx).as_ref() }
}

fn sip_core() -> Option<&'static Arc<crate::sip::core::SipCore>> {
    state().and_then(|s| s.sip.get())
}

extern "C" fn sip_reply(
    ctx: *const c_void,
    code: u16,
    reason: RStr<'_>,
    headers: RSlice<'_, FfiHeader<'_>>,
    content_type: RStr<'_>,
    body: RSlice<'_, u8>,
) -> RResult<(), RString> {
    // SAFETY: see `request_ctx`.
    let ctx = unsafe { request_ctx(ctx) };
    with_state("reply", |_| {
        let (Some(ctx), Some(core)) = (ctx, sip_core()) else { return Err("no request is being routed".into()) };
        let headers: Vec<(&str, &str)> = headers.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
        let body = (!content_type.is_empty())
            .then(|| sip_message::Body { content_type: content_type.as_str(), bytes: body.as_slice() });
        crate::sip::router::reply(core, ctx, code, reason.as_str(), &headers, body)
    })
}

extern "C" fn sip_reply_header(ctx: *const c_void, name: RStr<'_>, value: RStr<'_>) {
    // SAFETY: see `request_ctx`.
    if let Some(ctx) = unsafe { request_ctx(ctx) } {
        ctx.reply_headers.borrow_mut().push((name.to_string(), value.to_string()));
    }
}

extern "C" fn sip_flag(ctx: *const c_void, branch: bool, op: u8, flag: u32) -> bool {
    // SAFETY: see `request_ctx`.
    unsafe { request_ctx(ctx) }.is_some_and(|c| c.flag(branch, op, flag))
}

extern "C" fn sip_avp_get(ctx: *const c_void, name: RStr<'_>) -> ROption<RString> {
    // SAFETY: see `request_ctx`.
    match unsafe { request_ctx(ctx) }.and_then(|c| c.avp(name.as_str())) {
        Some(v) => RSome(v.into()),
        None => RNone,
    }
}

extern "C" fn sip_avp_set(ctx: *const c_void, name: RStr<'_>, value: RStr<'_>) {
    // SAFETY: see `request_ctx`.
    if let Some(c) = unsafe { request_ctx(ctx) } {
        c.push_avp(name.as_str(), value.as_str());
    }
}

extern "C" fn sip_avp_all(ctx: *const c_void, name: RStr<'_>) -> RVec<RString> {
    // SAFETY: see `request_ctx`.
    unsafe { request_ctx(ctx) }
        .map_or_else(RVec::new, |c| c.avps(name.as_str()).into_iter().map(RString::from).collect())
}

extern "C" fn sip_send_request(
    module: RStr<'_>,
    request: &FfiRequest,
    callback: FfiReplyCallback,
) -> RResult<FfiSentRequest, RString> {
    with_state("send_request", move |_| match sip_core() {
        Some(core) => crate::sip::uac::send_request(core, module.as_str(), request, callback),
        None => Err("the SIP core is not running (no [core] listen address?)".into()),
    })
}

extern "C" fn sip_is_myself(uri: RStr<'_>) -> bool {
    sip_core().is_some_and(|c| c.is_myself(uri.as_str()))
}

extern "C" fn sip_to_tag(ctx: *const c_void) -> RString {
    // SAFETY: see `request_ctx`.
    match unsafe { request_ctx(ctx) } {
        Some(c) if c.msg.view().to().ok().and_then(|t| t.tag()).is_none() => c.to_tag.as_str().into(),
        _ => RString::new(),
    }
}

/// Stores `uri` (when it is a SIP URI) in the URI cell `cell` picks from the request context.
fn set_uri(
    ctx: *const c_void,
    uri: RStr<'_>,
    cell: fn(&crate::sip::context::RequestCtx) -> &std::cell::RefCell<Option<String>>,
) -> bool {
    let uri = uri.as_str().trim();
    if sip_message::SipUri::parse(uri).is_err() {
        return false;
    }
    // SAFETY: see `request_ctx`.
    match unsafe { request_ctx(ctx) } {
        Some(c) => {
            *cell(c).borrow_mut() = Some(uri.to_string());
            true
        }
        None => false,
    }
}

extern "C" fn sip_set_ruri(ctx: *const c_void, uri: RStr<'_>) -> bool {
    set_uri(ctx, uri, |c| &c.new_ruri)
}

extern "C" fn sip_set_dst_uri(ctx: *const c_void, uri: RStr<'_>) -> bool {
    set_uri(ctx, uri, |c| &c.dst_uri)
}

extern "C" fn sip_set_path(ctx: *const c_void, path: RStr<'_>) -> bool {
    let path = path.as_str().trim();
    let routes = if path.is_empty() {
        None
    } else {
        match crate::sip::context::route_set(path) {
            Some(r) => Some(r),
            None => return false,
        }
    };
    // SAFETY: see `request_ctx`.
    match unsafe { request_ctx(ctx) } {
        Some(c) => {
            *c.path.borrow_mut() = routes;
            true
        }
        None => false,
    }
}

extern "C" fn sip_remove_header(ctx: *const c_void, index: u32) -> bool {
    // SAFETY: see `request_ctx`.
    match unsafe { request_ctx(ctx) } {
        Some(c) if (index as usize) < c.msg.view().header_entries().len() => {
            let mut removed = c.removed_headers.borrow_mut();
            if !removed.contains(&index) {
                removed.push(index);
            }
            true
        }
        _ => false,
    }
}

extern "C" fn sip_on_relay_reply(module: RStr<'_>, ctx: *const c_void, callback: FfiReplyCallback) -> bool {
    // SAFETY: see `request_ctx`.
    match unsafe { request_ctx(ctx) } {
        Some(c) => {
            c.relay_watchers.borrow_mut().push((module.to_string(), callback));
            true
        }
        None => false,
    }
}

extern "C" fn sip_received_socket(ctx: *const c_void) -> RString {
    // SAFETY: see `request_ctx`.
    match unsafe { request_ctx(ctx) } {
        Some(c) => format!("{}:{}", c.src.proto.param(), c.src.local).into(),
        None => RString::new(),
    }
}

extern "C" fn sip_local_address(transport: u8) -> RString {
    let proto = if transport == 2 { crate::sip::transport::Proto::Tcp } else { crate::sip::transport::Proto::Udp };
    sip_core().and_then(|c| c.local_address(proto)).unwrap_or_default().into()
}

/// API names each module declares it exports, for the registry.
pub fn declared_exports(modules: &[crate::loader::LoadedModule]) -> HashMap<String, Vec<String>> {
    modules.iter().map(|m| (m.name.clone(), m.info.exports.iter().map(|e| e.to_string()).collect())).collect()
}
