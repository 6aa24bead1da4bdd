//! The plugin's root module, the host's service table and the records they exchange.

use std::ffi::c_void;

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    sabi_types::VersionStrings,
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec},
};

use super::{
    FfiCallback, FfiDbOp, FfiDbResult, FfiHeader, FfiMsg, FfiPeer, FfiReplyCallback, FfiRequest, FfiSentRequest,
};

/// The ABI generation. abi_stable refuses a plugin whose major differs from the host's; within
/// one major, additions are appended to the prefix-type vtables and checked field by field.
///
/// Bump it when a change is not an append: a field changes type, moves, or disappears.
pub const ABI_MAJOR: u32 = 1;

/// `ABI_MAJOR` as the version string abi_stable compares (only its major matters for ≥ 1).
pub(crate) const ABI_VERSION_STRING: &str = "1.0.0";

/// The version of the plugin-api crate a binary was built with, for error messages.
pub const PLUGIN_API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why an entry point failed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    /// [`FfiError::ERROR`] or [`FfiError::PANIC`].
    pub kind: u32,
    /// Human-readable text, already naming what failed.
    pub message: RString,
}

impl FfiError {
    /// The entry point returned an error.
    pub const ERROR: u32 = 0;
    /// The entry point panicked; the panic was caught on the plugin side.
    pub const PANIC: u32 = 1;
}

/// Result of an entry point that returns nothing.
pub type FfiStatus = RResult<(), FfiError>;

/// A modparam value, after the host validated it against the declaration.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum FfiParamValue {
    /// An integer modparam.
    Int(i64),
    /// A string modparam.
    Str(RString),
    /// A repeatable integer modparam (Kamailio lets some modparams be set several times).
    IntList(RVec<i64>),
    /// A repeatable string modparam (`xcap_server`, `gwmap`, ...).
    StrList(RVec<RString>),
}

/// One modparam as handed to `init`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiParam {
    /// The modparam name.
    pub name: RString,
    /// Its value: the configured one, or the declared default.
    pub value: FfiParamValue,
}

/// Type of a declared modparam.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfiParamKind(pub u8);

impl FfiParamKind {
    /// Integer.
    pub const INT: Self = Self(0);
    /// String.
    pub const STR: Self = Self(1);
}

/// A modparam declaration.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiParamSpec {
    /// Name as written in `[modparam.<module>]`.
    pub name: RString,
    /// Integer or string.
    pub kind: FfiParamKind,
    /// May be given as an array (Kamailio allows the modparam several times).
    pub repeatable: bool,
    /// The config must set it.
    pub required: bool,
    /// The value when the config does not set it (`None`: the module sees no value).
    pub default: ROption<FfiParamValue>,
    /// Smallest allowed integer.
    pub min: ROption<i64>,
    /// Largest allowed integer.
    pub max: ROption<i64>,
    /// One line of documentation.
    pub doc: RString,
}

/// A config-callable function declaration.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiFunctionSpec {
    /// Name as written in a route's `do = [...]`.
    pub name: RString,
    /// Fewest arguments.
    pub min_args: u32,
    /// Most arguments.
    pub max_args: u32,
    /// Bit set of route kinds the function may be called from (see `RouteKinds`).
    pub route_kinds: u32,
    /// One line of documentation.
    pub doc: RString,
}

/// An RPC command declaration.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiRpcSpec {
    /// Dotted name, as Kamailio's (`pua.publish`).
    pub name: RString,
    /// One line of documentation, shown by `system.methodHelp`.
    pub doc: RString,
    /// The reply may come after the handler returns (e.g. when a SIP reply arrives).
    pub delayed: bool,
}

/// Everything a plugin declares about itself; read before `init`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiModuleInfo {
    /// Module name (`pua`, `pua_mi`, ...).
    pub name: RString,
    /// The module's own version.
    pub version: RString,
    /// One paragraph on what the module is for.
    pub doc: RString,
    /// Modules that must be loaded (and initialised) before this one.
    pub requires: RVec<RString>,
    /// Modparams.
    pub params: RVec<FfiParamSpec>,
    /// Config-callable functions.
    pub functions: RVec<FfiFunctionSpec>,
    /// RPC commands.
    pub rpcs: RVec<FfiRpcSpec>,
    /// Names of the APIs the module exports at init (`pua` for `bind_pua`).
    pub exports: RVec<RString>,
}

/// A call of a config function, borrowed for the duration of the call.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiCall<'a> {
    /// The arguments, pseudo-variables already expanded.
    pub args: RSlice<'a, RStr<'a>>,
    /// Host context of the request being routed; passed back to the host services that act on
    /// the current request (reply, flags, AVPs).
    pub ctx: *const c_void,
    /// The request being routed.
    pub msg: FfiMsg<'a>,
    /// Where it came from.
    pub peer: FfiPeer,
}

/// An RPC call handed to a plugin. The plugin answers through [`HostVTable::rpc_reply`] with
/// the same token, now or later.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiRpcCall<'a> {
    /// Identifies the pending call on the host side.
    pub token: u64,
    /// The positional parameters as a JSON array.
    pub params_json: RStr<'a>,
}

/// An RPC fault, as Kamailio's `rpc->fault(ctx, code, text)`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiRpcFault {
    /// Fault code (HTTP-like: 400, 404, 500, ...).
    pub code: i32,
    /// Fault text.
    pub message: RString,
}

/// The answer of an RPC call: a JSON document, or a fault.
pub type FfiRpcResult = RResult<RString, FfiRpcFault>;

/// A metric the host registered for a plugin: the plugin updates the host's atomic directly, so
/// counting costs no call across the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiMetric {
    /// Points at a `u64` counter or an `i64` gauge owned by the host for the process lifetime.
    pub cell: *const c_void,
}

/// An API exported by a module: a vtable of the type the API's definition in this crate names.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiApi {
    /// `&'static TypeLayout` of the vtable type, as compiled into the exporting plugin; the host
    /// checks it against the binder's before handing the vtable out.
    pub layout: *const c_void,
    /// `&'static` vtable.
    pub vtable: *const c_void,
}

/// The plugin's root module: the entry points the host calls.
///
/// Fields after `set_log_level` are added by later versions and are `None` when an older
/// plugin is loaded.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRootRef)))]
#[sabi(missing_field(option))]
pub struct PluginRoot {
    /// The plugin-api crate version the plugin was built against.
    pub plugin_api_version: RStr<'static>,
    /// Declarations: name, modparams, functions, RPCs, exported APIs.
    pub info: extern "C" fn() -> RResult<FfiModuleInfo, FfiError>,
    /// Called once, after every modparam was validated, in load order.
    pub init: extern "C" fn(host: HostRef, params: RVec<FfiParam>) -> FfiStatus,
    /// Called on each worker thread before it takes work, with the worker's rank (1-based).
    pub child_init: extern "C" fn(rank: u32) -> FfiStatus,
    /// Called once at shutdown, in reverse load order (flush state to the database here).
    pub destroy: extern "C" fn() -> FfiStatus,
    /// Runs config function number `index` of the declaration.
    pub call_function: extern "C" fn(index: u32, call: &FfiCall<'_>) -> RResult<i32, FfiError>,
    /// Runs RPC command number `index` of the declaration.
    pub call_rpc: extern "C" fn(index: u32, call: FfiRpcCall<'_>) -> FfiStatus,
    /// The host's log level changed (0 = error .. 4 = trace).
    #[sabi(last_prefix_field)]
    pub set_log_level: extern "C" fn(level: u8),
}

impl RootModule for PluginRootRef {
    declare_root_module_statics! {PluginRootRef}
    const BASE_NAME: &'static str = "puahost_module";
    const NAME: &'static str = "puahost module";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION_STRING);
}

/// Services the host offers every plugin, handed to `init`.
///
/// Every function takes the calling module's name first, so the host can attribute logs,
/// metrics, timers and errors to it.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostRef)))]
#[sabi(missing_field(option))]
pub struct HostVTable {
    /// The host's version string.
    pub host_version: RStr<'static>,
    /// Writes one log record (level 0 = error .. 4 = trace).
    pub log: extern "C" fn(module: RStr<'_>, level: u8, target: RStr<'_>, message: RStr<'_>),
    /// The current log level (0 = error .. 4 = trace).
    pub log_level: extern "C" fn() -> u8,
    /// Registers a counter `puahost_<module>_<name>_total`.
    pub counter: extern "C" fn(module: RStr<'_>, name: RStr<'_>, help: RStr<'_>) -> RResult<FfiMetric, RString>,
    /// Registers a gauge `puahost_<module>_<name>`.
    pub gauge: extern "C" fn(module: RStr<'_>, name: RStr<'_>, help: RStr<'_>) -> RResult<FfiMetric, RString>,
    /// Starts a timer whose callback runs on a worker: first after `first_ms`, then every
    /// `interval_ms` (0 = once). Returns an id for `timer_cancel`.
    pub timer_start: extern "C" fn(
        module: RStr<'_>,
        name: RStr<'_>,
        first_ms: u64,
        interval_ms: u64,
        callback: FfiCallback,
    ) -> RResult<u64, RString>,
    /// Stops a timer; a run already under way finishes.
    pub timer_cancel: extern "C" fn(id: u64),
    /// Queues a callback to run once on a worker thread.
    pub run_on_worker: extern "C" fn(module: RStr<'_>, callback: FfiCallback),
    /// Registers an API the module exports under `name`, version `version`.
    pub api_export: extern "C" fn(module: RStr<'_>, name: RStr<'_>, version: u32, api: FfiApi) -> RResult<(), RString>,
    /// Looks up an exported API by name and version, checking its layout against
    /// `expected_layout` (a `&'static TypeLayout`); returns the vtable pointer.
    pub api_bind: extern "C" fn(
        module: RStr<'_>,
        name: RStr<'_>,
        version: u32,
        expected_layout: *const c_void,
    ) -> RResult<*const c_void, RString>,
    /// Answers the RPC call `token` (each token is answered once; later answers are ignored).
    pub rpc_reply: extern "C" fn(token: u64, result: FfiRpcResult),
    /// Opens (or shares) a database connection pool for `url`; returns its handle.
    pub db_open: extern "C" fn(module: RStr<'_>, url: RStr<'_>) -> RResult<u32, RString>,
    /// Runs one statement on pool `db`, inside transaction `tx` when it is not 0.
    pub db_exec: extern "C" fn(db: u32, tx: u64, op: &FfiDbOp) -> RResult<FfiDbResult, RString>,
    /// Starts a transaction on pool `db`, write-locking `lock_tables` where the database can.
    pub db_begin: extern "C" fn(db: u32, lock_tables: RSlice<'_, RString>) -> RResult<u64, RString>,
    /// Commits (`commit` = true) or rolls back a transaction.
    pub db_end: extern "C" fn(tx: u64, commit: bool) -> RResult<(), RString>,
    /// The directory of the config file, against which relative paths are resolved.
    pub config_dir: extern "C" fn() -> RString,
    /// Replies to the request of routing context `ctx` (through its server transaction).
    pub sip_reply: extern "C" fn(
        ctx: *const c_void,
        code: u16,
        reason: RStr<'_>,
        headers: RSlice<'_, FfiHeader<'_>>,
        content_type: RStr<'_>,
        body: RSlice<'_, u8>,
    ) -> RResult<(), RString>,
    /// Adds a header to every reply sent for `ctx` from now on (Kamailio's `append_to_reply`).
    pub sip_reply_header: extern "C" fn(ctx: *const c_void, name: RStr<'_>, value: RStr<'_>),
    /// Message flags (`branch` = false) or branch flags: op 0 test, 1 set, 2 reset; returns the
    /// flag's value after the operation.
    pub sip_flag: extern "C" fn(ctx: *const c_void, branch: bool, op: u8, flag: u32) -> bool,
    /// Reads the last value of AVP `name` of `ctx`.
    pub sip_avp_get: extern "C" fn(ctx: *const c_void, name: RStr<'_>) -> ROption<RString>,
    /// Adds a value to AVP `name` of `ctx` (AVPs stack, the last added is read first).
    pub sip_avp_set: extern "C" fn(ctx: *const c_void, name: RStr<'_>, value: RStr<'_>),
    /// Every value of AVP `name`, newest first.
    pub sip_avp_all: extern "C" fn(ctx: *const c_void, name: RStr<'_>) -> RVec<RString>,
    /// Sends a request in a new client transaction. The callback gets the final reply (or a
    /// local 408/503) exactly once, on a worker, never inside this call.
    pub sip_send_request: extern "C" fn(
        module: RStr<'_>,
        request: &FfiRequest,
        callback: FfiReplyCallback,
    ) -> RResult<FfiSentRequest, RString>,
    /// Whether `uri`'s host (and port) is this host: a listen address, an advertised one, or a
    /// `[core] alias` (Kamailio's `myself`).
    pub sip_is_myself: extern "C" fn(uri: RStr<'_>) -> bool,
    /// This host's SIP address for `transport` (1 UDP, 2 TCP) as `host:port` (advertised when
    /// set); empty when there is no such listener.
    #[sabi(last_prefix_field)]
    pub sip_local_address: extern "C" fn(transport: u8) -> RString,
    /// The To-tag the host puts in replies to the request of `ctx` (empty when the request
    /// already has one). Added after the prefix: a module reads it as an `Option`.
    pub sip_to_tag: extern "C" fn(ctx: *const c_void) -> RString,
    /// Replaces the Request-URI of the request of `ctx` (what `rewriteuri` and registrar's
    /// `lookup` do; the relay forwards to it); false when `uri` is not a SIP URI. Added after
    /// the prefix: a module reads it as an `Option`.
    pub sip_set_ruri: extern "C" fn(ctx: *const c_void, uri: RStr<'_>) -> bool,
    /// The local socket the request of `ctx` arrived on, as Kamailio writes a socket
    /// (`udp:127.0.0.1:5060`); empty without a request. Added after the prefix.
    pub sip_received_socket: extern "C" fn(ctx: *const c_void) -> RString,
    /// Sets the destination URI of the request being routed (Kamailio's `$du`): the relay sends
    /// it there while the Request-URI stays as it is. False when `uri` is not a SIP URI.
    pub sip_set_dst_uri: extern "C" fn(ctx: *const c_void, uri: RStr<'_>) -> bool,
    /// Sets the path vector of the request being routed (Kamailio's `set_path_vector`, what
    /// registrar's `lookup` does for a contact saved with Path): comma-separated name-addrs
    /// (`<sip:edge;lr>,<sip:core;lr>`), which the relay adds as Route headers, in order, above
    /// the request's own Route headers (after the last Via when it has none). An empty `path`
    /// clears it. False when a value is not a `<sip:...>` URI. Added after the prefix: a module
    /// reads it as an `Option`.
    pub sip_set_path: extern "C" fn(ctx: *const c_void, path: RStr<'_>) -> bool,
    /// Runs `ops` (writes) on database `db` so that all or none take effect, outside any
    /// transaction; the result of each. SQLite runs them as one unit of its group commit.
    /// Added after the prefix: a module reads it as an `Option` (and uses a transaction
    /// without it).
    pub db_exec_batch: extern "C" fn(db: u32, ops: RSlice<'_, FfiDbOp>) -> RResult<RVec<FfiDbResult>, RString>,
    /// Asks for the replies of the client transaction the relay will create for the request of
    /// `ctx` (Kamailio's TMCB_RESPONSE_IN on the transaction `t_relay` makes): `callback` is
    /// called for every reply received from downstream, provisional and final (100 included,
    /// retransmissions and 2xx after the first final not), and for the relay's local finals
    /// (408 timeout, 503 transport error, 478 unresolvable, 500), then dropped. When the
    /// request is not relayed statefully (answered by the route, dropped, an ACK) it is dropped
    /// without a call. Calls for one transaction never overlap. False when `ctx` names no
    /// request. Added after the prefix: a module reads it as an `Option`.
    pub sip_on_relay_reply: extern "C" fn(module: RStr<'_>, ctx: *const c_void, callback: FfiReplyCallback) -> bool,
    /// Drops header line `index` (an entry of the request's header index) from the request of
    /// `ctx` when it is relayed (auth's `consume_credentials`). False when `ctx` names no
    /// request or the index is out of range. Added after the prefix: a module reads it as an
    /// `Option`.
    pub sip_remove_header: extern "C" fn(ctx: *const c_void, index: u32) -> bool,
}
