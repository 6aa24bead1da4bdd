//! The `pua` API (Kamailio's `bind_pua`): send PUBLISH and SUBSCRIBE through the presence user
//! agent, match NOTIFYs to its dialogs, get called back on replies, add event packages.
//!
//! The numbers (event flags, source flags, request types) are Kamailio's: they are stored in
//! the `pua` table, so they must never change.
//!
//! A module that uses pua binds it with [`Pua::bind`]; the `pua` module exports it with
//! [`export`], implementing [`PuaService`] in safe Rust (the `extern "C"` shims are generated
//! here and catch panics).

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::StableAbi;
use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString, RVec};

use crate::ffi::FfiReply;
use crate::sip::Reply;
use crate::{Error, Host};

/// Event flags (`pua.event` column; Kamailio's `add_events.h`).
pub mod event {
    /// `presence`
    pub const PRESENCE: i32 = 1;
    /// `presence.winfo`
    pub const PWINFO: i32 = 2;
    /// `dialog;sla`
    pub const BLA: i32 = 4;
    /// `message-summary`
    pub const MSGSUM: i32 = 8;
    /// `conference` (known by name, not registered)
    pub const CONFERENCE: i32 = 16;
    /// `dialog`
    pub const DIALOG: i32 = 32;
    /// `reg`
    pub const REGINFO: i32 = 64;
    /// `xcap-diff`
    pub const XCAPDIFF: i32 = 128;
    /// `as-feature-event`
    pub const DFKS: i32 = 256;

    /// Kamailio's `get_event_flag`: the flag of an event name, by exact match (`xcap-diff` is
    /// not mapped, as in Kamailio).
    pub fn flag_by_name(name: &str) -> Option<i32> {
        Some(match name {
            "reg" => REGINFO,
            "dialog" => DIALOG,
            "presence" => PRESENCE,
            "dialog;sla" => BLA,
            "conference" => CONFERENCE,
            "presence.winfo" => PWINFO,
            "message-summary" => MSGSUM,
            "as-feature-event" => DFKS,
            _ => return None,
        })
    }
}

/// Source flags: which module a record belongs to (`pua.flag` column).
pub mod source {
    /// pua_usrloc
    pub const UL_PUBLISH: i32 = 1;
    /// pua_bla PUBLISH
    pub const BLA_PUBLISH: i32 = 2;
    /// pua_bla SUBSCRIBE
    pub const BLA_SUBSCRIBE: i32 = 4;
    /// pua_xmpp PUBLISH
    pub const XMPP_PUBLISH: i32 = 8;
    /// pua_xmpp SUBSCRIBE
    pub const XMPP_SUBSCRIBE: i32 = 16;
    /// pua_xmpp initial SUBSCRIBE (stored as XMPP_SUBSCRIBE)
    pub const XMPP_INITIAL_SUBS: i32 = 32;
    /// pua.send_publish (was MI_PUBLISH)
    pub const RPC_PUBLISH: i32 = 64;
    /// pua.publish (was MI_ASYN_PUBLISH)
    pub const RPC_ASYN_PUBLISH: i32 = 128;
    /// pua.subscribe (was MI_SUBSCRIBE)
    pub const RPC_SUBSCRIBE: i32 = 256;
    /// rls
    pub const RLS_SUBSCRIBE: i32 = 512;
    /// pua_dialoginfo
    pub const DIALOG_PUBLISH: i32 = 1024;
    /// purple
    pub const PURPLE_PUBLISH: i32 = 2048;
    /// pua_reginfo PUBLISH
    pub const REGINFO_PUBLISH: i32 = 4096;
    /// pua_reginfo SUBSCRIBE
    pub const REGINFO_SUBSCRIBE: i32 = 8192;
    /// xcap-diff PUBLISH
    pub const XCAPDIFF_PUBLISH: i32 = 16384;
    /// xcap-diff SUBSCRIBE
    pub const XCAPDIFF_SUBSCRIBE: i32 = 32768;
    /// as-feature-event PUBLISH
    pub const DFKS_PUBLISH: i32 = 65536;
    /// as-feature-event SUBSCRIBE
    pub const DFKS_SUBSCRIBE: i32 = 131072;
}

/// `publ_info.flag` / `subs_info.flag`: a new record, or an update of the existing one.
pub const INSERT_TYPE: i32 = 2;
/// See [`INSERT_TYPE`].
pub const UPDATE_TYPE: i32 = 4;
/// `send_publish` return: a new publication was asked for without a body.
pub const ERR_PUBLISH_NO_BODY: i32 = -10;
/// `send_publish` / `send_subscribe`: nothing was sent and no callback will come (a removal of
/// a publication or subscription that does not exist, or one still waiting for its first
/// reply). Kamailio returns 0 here, which leaves a caller waiting for a reply forever.
pub const SENT_NOTHING: i32 = 1;
/// `send_publish` return: an ETag was given and no record has it.
pub const ERR_WRONG_ETAG: i32 = 418;
/// `ua_flag` of a record: a request the caller originated (callbacks run).
pub const REQ_OTHER: i32 = 0;
/// `ua_flag`: a refresh pua sent by itself (callbacks do not run).
pub const REQ_ME: i32 = 1;

/// `publ_info_t`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FfiPublishInfo {
    /// Groups a series of PUBLISHes for one presentity (`UL_PUBLISH.<callid>`).
    pub id: RString,
    /// The presentity.
    pub pres_uri: RString,
    /// None: refresh or remove.
    pub body: ROption<RString>,
    /// < 0: default_expires; 0: remove.
    pub expires: i32,
    /// [`INSERT_TYPE`], [`UPDATE_TYPE`] or 0.
    pub flag: i32,
    /// [`source`] flag.
    pub source_flag: i32,
    /// [`event`] flag.
    pub event: i32,
    /// Empty: the event's default.
    pub content_type: RString,
    /// The record must have this ETag.
    pub etag: ROption<RString>,
    /// Next hop for this PUBLISH.
    pub outbound_proxy: ROption<RString>,
    /// Raw header lines, each ending in CRLF.
    pub extra_headers: ROption<RString>,
    /// Handed back to callbacks.
    pub cb_param: u64,
}

/// `subs_info_t`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FfiSubscribeInfo {
    /// Groups a subscription series.
    pub id: RString,
    /// The presentity.
    pub pres_uri: RString,
    /// The watcher (From).
    pub watcher_uri: RString,
    /// Contact to send.
    pub contact: RString,
    /// Request-URI of the initial SUBSCRIBE (default: pres_uri); also a match key.
    pub remote_target: ROption<RString>,
    /// Next hop.
    pub outbound_proxy: ROption<RString>,
    /// [`event`] flag.
    pub event: i32,
    /// Raw header lines.
    pub extra_headers: ROption<RString>,
    /// < 0: default; 0: unsubscribe.
    pub expires: i32,
    /// [`source`] flag.
    pub source_flag: i32,
    /// [`INSERT_TYPE`], [`UPDATE_TYPE`] or 0.
    pub flag: i32,
    /// Handed back to callbacks.
    pub cb_param: u64,
    /// 1: do not re-SUBSCRIBE (RLS).
    pub internal_update_flag: i32,
}

/// `ua_pres_t`: a stored record, as callbacks see it and as `is_dialog` looks it up.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FfiUaRecord {
    /// Series id.
    pub id: RString,
    /// Presentity.
    pub pres_uri: RString,
    /// [`event`] flag.
    pub event: i32,
    /// Absolute epoch of the server-granted expiry.
    pub expires: i64,
    /// Absolute epoch the client wants; 0: forever.
    pub desired_expires: i64,
    /// [`source`] flag.
    pub flag: i32,
    /// PUBLISH: ETag.
    pub etag: RString,
    /// PUBLISH: tuple id.
    pub tuple_id: RString,
    /// PUBLISH: content type.
    pub content_type: RString,
    /// SUBSCRIBE: watcher.
    pub watcher_uri: RString,
    /// SUBSCRIBE: Call-ID.
    pub call_id: RString,
    /// SUBSCRIBE: remote tag.
    pub to_tag: RString,
    /// SUBSCRIBE: local tag.
    pub from_tag: RString,
    /// SUBSCRIBE: CSeq.
    pub cseq: i32,
    /// Body version (dialog-info / reginfo).
    pub version: i32,
    /// SUBSCRIBE: route set.
    pub record_route: RString,
    /// SUBSCRIBE: remote target.
    pub remote_contact: RString,
    /// SUBSCRIBE: our contact.
    pub contact: RString,
    /// Extra headers.
    pub extra_headers: RString,
    /// Outbound proxy.
    pub outbound_proxy: RString,
    /// The caller's parameter.
    pub cb_param: u64,
    /// [`REQ_OTHER`] or [`REQ_ME`].
    pub ua_flag: i32,
}

/// A reply callback: `call` runs for every final reply of a matching record, then `drop` once.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiPuaCallback {
    data: *mut c_void,
    call: unsafe extern "C" fn(data: *mut c_void, record: &FfiUaRecord, reply: &FfiReply<'_>) -> i32,
    drop: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: built only from `Send + Sync` closures.
unsafe impl Send for FfiPuaCallback {}
// SAFETY: as above.
unsafe impl Sync for FfiPuaCallback {}

impl Drop for FfiPuaCallback {
    fn drop(&mut self) {
        // SAFETY: `drop` belongs to the plugin that built `data`; runs once.
        unsafe { (self.drop)(self.data) }
    }
}

/// A body processor of an event: `(body, version, tuple id) → (new body, tuple id)`.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiBodyProcessor {
    data: *mut c_void,
    call: unsafe extern "C" fn(
        data: *mut c_void,
        body: RStr<'_>,
        version: i32,
        tuple_id: RStr<'_>,
    ) -> RResult<FfiProcessedBody, RString>,
    drop: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: built only from `Send + Sync` closures.
unsafe impl Send for FfiBodyProcessor {}
// SAFETY: as above.
unsafe impl Sync for FfiBodyProcessor {}

impl Drop for FfiBodyProcessor {
    fn drop(&mut self) {
        // SAFETY: as for `FfiPuaCallback`.
        unsafe { (self.drop)(self.data) }
    }
}

/// What a body processor returns.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiProcessedBody {
    /// The body to send.
    pub body: RString,
    /// The tuple id to keep.
    pub tuple_id: RString,
}

/// The vtable, in the order of Kamailio's `pua_api_t`.
#[repr(C)]
#[derive(StableAbi)]
pub struct PuaVTable {
    /// `send_subscribe`: 0 or -1.
    pub send_subscribe: extern "C" fn(info: &FfiSubscribeInfo) -> i32,
    /// `send_publish`: 0, < 0 on error, [`ERR_WRONG_ETAG`], [`ERR_PUBLISH_NO_BODY`].
    pub send_publish: extern "C" fn(info: &FfiPublishInfo) -> i32,
    /// `register_puacb`: 0 or < 0.
    pub register_puacb: extern "C" fn(types: i32, callback: FfiPuaCallback) -> i32,
    /// `is_dialog`: 0 established, 1 temporary (not answered yet), -1 none.
    pub is_dialog: extern "C" fn(dialog: &FfiUaRecord) -> i32,
    /// `get_record_id`: the stored id of the matching dialog.
    pub get_record_id: extern "C" fn(dialog: &FfiUaRecord) -> ROption<RString>,
    /// `add_event`: 0 (an existing name is ignored) or < 0.
    pub add_event: extern "C" fn(
        ev_flag: i32,
        name: RStr<'_>,
        content_type: RStr<'_>,
        processor: ROption<FfiBodyProcessor>,
    ) -> i32,
    /// `get_subs_list`: pres_uri of every record whose id starts with `did`.
    pub get_subs_list: extern "C" fn(did: RStr<'_>) -> RVec<RString>,
}

/// The `pua` API.
pub struct PuaApi;

impl crate::Api for PuaApi {
    const NAME: &'static str = "pua";
    const VERSION: u32 = 1;
    type VTable = PuaVTable;
}

fn opt(s: &Option<String>) -> ROption<RString> {
    match s {
        Some(v) => RSome(v.as_str().into()),
        None => RNone,
    }
}

fn from_opt(s: &ROption<RString>) -> Option<String> {
    s.as_ref().into_option().map(|v| v.to_string())
}

/// `publ_info_t`, in plain Rust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishInfo {
    /// Series id.
    pub id: String,
    /// Presentity.
    pub pres_uri: String,
    /// None: refresh or remove.
    pub body: Option<String>,
    /// < 0: default; 0: remove.
    pub expires: i32,
    /// INSERT_TYPE / UPDATE_TYPE / 0.
    pub flag: i32,
    /// Source flag.
    pub source_flag: i32,
    /// Event flag.
    pub event: i32,
    /// Empty: the event's default.
    pub content_type: String,
    /// Required ETag.
    pub etag: Option<String>,
    /// Next hop.
    pub outbound_proxy: Option<String>,
    /// Raw header lines ending in CRLF.
    pub extra_headers: Option<String>,
    /// For callbacks.
    pub cb_param: u64,
}

impl PublishInfo {
    /// To the ABI form.
    pub fn to_ffi(&self) -> FfiPublishInfo {
        FfiPublishInfo {
            id: self.id.as_str().into(),
            pres_uri: self.pres_uri.as_str().into(),
            body: opt(&self.body),
            expires: self.expires,
            flag: self.flag,
            source_flag: self.source_flag,
            event: self.event,
            content_type: self.content_type.as_str().into(),
            etag: opt(&self.etag),
            outbound_proxy: opt(&self.outbound_proxy),
            extra_headers: opt(&self.extra_headers),
            cb_param: self.cb_param,
        }
    }

    /// From the ABI form.
    pub fn from_ffi(p: &FfiPublishInfo) -> Self {
        Self {
            id: p.id.to_string(),
            pres_uri: p.pres_uri.to_string(),
            body: from_opt(&p.body),
            expires: p.expires,
            flag: p.flag,
            source_flag: p.source_flag,
            event: p.event,
            content_type: p.content_type.to_string(),
            etag: from_opt(&p.etag),
            outbound_proxy: from_opt(&p.outbound_proxy),
            extra_headers: from_opt(&p.extra_headers),
            cb_param: p.cb_param,
        }
    }
}

/// `subs_info_t`, in plain Rust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeInfo {
    /// Series id.
    pub id: String,
    /// Presentity.
    pub pres_uri: String,
    /// Watcher.
    pub watcher_uri: String,
    /// Contact.
    pub contact: String,
    /// Initial Request-URI (default pres_uri).
    pub remote_target: Option<String>,
    /// Next hop.
    pub outbound_proxy: Option<String>,
    /// Event flag.
    pub event: i32,
    /// Raw header lines.
    pub extra_headers: Option<String>,
    /// < 0: default; 0: unsubscribe.
    pub expires: i32,
    /// Source flag.
    pub source_flag: i32,
    /// INSERT_TYPE / UPDATE_TYPE / 0.
    pub flag: i32,
    /// For callbacks.
    pub cb_param: u64,
    /// 1: no re-SUBSCRIBE.
    pub internal_update_flag: i32,
}

impl SubscribeInfo {
    /// To the ABI form.
    pub fn to_ffi(&self) -> FfiSubscribeInfo {
        FfiSubscribeInfo {
            id: self.id.as_str().into(),
            pres_uri: self.pres_uri.as_str().into(),
            watcher_uri: self.watcher_uri.as_str().into(),
            contact: self.contact.as_str().into(),
            remote_target: opt(&self.remote_target),
            outbound_proxy: opt(&self.outbound_proxy),
            event: self.event,
            extra_headers: opt(&self.extra_headers),
            expires: self.expires,
            source_flag: self.source_flag,
            flag: self.flag,
            cb_param: self.cb_param,
            internal_update_flag: self.internal_update_flag,
        }
    }

    /// From the ABI form.
    pub fn from_ffi(s: &FfiSubscribeInfo) -> Self {
        Self {
            id: s.id.to_string(),
            pres_uri: s.pres_uri.to_string(),
            watcher_uri: s.watcher_uri.to_string(),
            contact: s.contact.to_string(),
            remote_target: from_opt(&s.remote_target),
            outbound_proxy: from_opt(&s.outbound_proxy),
            event: s.event,
            extra_headers: from_opt(&s.extra_headers),
            expires: s.expires,
            source_flag: s.source_flag,
            flag: s.flag,
            cb_param: s.cb_param,
            internal_update_flag: s.internal_update_flag,
        }
    }
}

/// `ua_pres_t`, in plain Rust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UaRecord {
    /// Series id.
    pub id: String,
    /// Presentity.
    pub pres_uri: String,
    /// Event flag.
    pub event: i32,
    /// Server-granted expiry (epoch).
    pub expires: i64,
    /// Wanted expiry (epoch; 0 forever).
    pub desired_expires: i64,
    /// Source flag.
    pub flag: i32,
    /// ETag.
    pub etag: String,
    /// Tuple id.
    pub tuple_id: String,
    /// Content type.
    pub content_type: String,
    /// Watcher.
    pub watcher_uri: String,
    /// Call-ID.
    pub call_id: String,
    /// Remote tag.
    pub to_tag: String,
    /// Local tag.
    pub from_tag: String,
    /// CSeq.
    pub cseq: i32,
    /// Body version.
    pub version: i32,
    /// Route set.
    pub record_route: String,
    /// Remote target.
    pub remote_contact: String,
    /// Our contact.
    pub contact: String,
    /// Extra headers.
    pub extra_headers: String,
    /// Outbound proxy.
    pub outbound_proxy: String,
    /// The caller's parameter.
    pub cb_param: u64,
    /// REQ_OTHER / REQ_ME.
    pub ua_flag: i32,
}

impl UaRecord {
    /// To the ABI form.
    pub fn to_ffi(&self) -> FfiUaRecord {
        FfiUaRecord {
            id: self.id.as_str().into(),
            pres_uri: self.pres_uri.as_str().into(),
            event: self.event,
            expires: self.expires,
            desired_expires: self.desired_expires,
            flag: self.flag,
            etag: self.etag.as_str().into(),
            tuple_id: self.tuple_id.as_str().into(),
            content_type: self.content_type.as_str().into(),
            watcher_uri: self.watcher_uri.as_str().into(),
            call_id: self.call_id.as_str().into(),
            to_tag: self.to_tag.as_str().into(),
            from_tag: self.from_tag.as_str().into(),
            cseq: self.cseq,
            version: self.version,
            record_route: self.record_route.as_str().into(),
            remote_contact: self.remote_contact.as_str().into(),
            contact: self.contact.as_str().into(),
            extra_headers: self.extra_headers.as_str().into(),
            outbound_proxy: self.outbound_proxy.as_str().into(),
            cb_param: self.cb_param,
            ua_flag: self.ua_flag,
        }
    }

    /// From the ABI form.
    pub fn from_ffi(r: &FfiUaRecord) -> Self {
        Self {
            id: r.id.to_string(),
            pres_uri: r.pres_uri.to_string(),
            event: r.event,
            expires: r.expires,
            desired_expires: r.desired_expires,
            flag: r.flag,
            etag: r.etag.to_string(),
            tuple_id: r.tuple_id.to_string(),
            content_type: r.content_type.to_string(),
            watcher_uri: r.watcher_uri.to_string(),
            call_id: r.call_id.to_string(),
            to_tag: r.to_tag.to_string(),
            from_tag: r.from_tag.to_string(),
            cseq: r.cseq,
            version: r.version,
            record_route: r.record_route.to_string(),
            remote_contact: r.remote_contact.to_string(),
            contact: r.contact.to_string(),
            extra_headers: r.extra_headers.to_string(),
            outbound_proxy: r.outbound_proxy.to_string(),
            cb_param: r.cb_param,
            ua_flag: r.ua_flag,
        }
    }
}

type CallbackFn = Box<dyn Fn(&UaRecord, &Reply<'_>) -> i32 + Send + Sync>;
type ProcessorFn = Box<dyn Fn(&str, i32, &str) -> Result<(String, String), String> + Send + Sync>;

unsafe extern "C" fn call_callback(data: *mut c_void, record: &FfiUaRecord, reply: &FfiReply<'_>) -> i32 {
    // SAFETY: `data` is the leaked `CallbackFn` of `Pua::register_callback`.
    let f = unsafe { &*(data as *const CallbackFn) };
    let record = UaRecord::from_ffi(record);
    let reply = Reply {
        code: reply.status,
        reason: reply.reason.as_str(),
        local: reply.local,
        message: crate::sip::message(&reply.msg),
    };
    catch_unwind(AssertUnwindSafe(|| f(&record, &reply))).unwrap_or(-1)
}

unsafe extern "C" fn drop_callback(data: *mut c_void) {
    // SAFETY: runs once, on the pointer leaked by `register_callback`.
    let b = unsafe { Box::from_raw(data as *mut CallbackFn) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

unsafe extern "C" fn call_processor(
    data: *mut c_void,
    body: RStr<'_>,
    version: i32,
    tuple_id: RStr<'_>,
) -> RResult<FfiProcessedBody, RString> {
    // SAFETY: `data` is the leaked `ProcessorFn` of `Pua::add_event`.
    let f = unsafe { &*(data as *const ProcessorFn) };
    match catch_unwind(AssertUnwindSafe(|| f(body.as_str(), version, tuple_id.as_str()))) {
        Ok(Ok((body, tuple_id))) => ROk(FfiProcessedBody { body: body.into(), tuple_id: tuple_id.into() }),
        Ok(Err(e)) => RErr(e.into()),
        Err(_) => RErr("the body processor panicked".into()),
    }
}

unsafe extern "C" fn drop_processor(data: *mut c_void) {
    // SAFETY: runs once, on the pointer leaked by `add_event`.
    let b = unsafe { Box::from_raw(data as *mut ProcessorFn) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

/// The bound `pua` API, for modules that use it (pua_mi, pua_usrloc, pua_dialoginfo, ...).
#[derive(Clone, Copy)]
pub struct Pua {
    vt: &'static PuaVTable,
}

impl std::fmt::Debug for Pua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pua")
    }
}

impl Pua {
    /// Binds the API exported by the `pua` module (Kamailio's `bind_pua`).
    pub fn bind(host: &Host) -> Result<Pua, Error> {
        Ok(Pua { vt: host.bind::<PuaApi>()? })
    }

    /// Sends (or queues) a PUBLISH; see [`PuaVTable::send_publish`] for the return values.
    pub fn send_publish(&self, info: &PublishInfo) -> i32 {
        (self.vt.send_publish)(&info.to_ffi())
    }

    /// Sends a SUBSCRIBE; 0 or -1.
    pub fn send_subscribe(&self, info: &SubscribeInfo) -> i32 {
        (self.vt.send_subscribe)(&info.to_ffi())
    }

    /// 0 when an established dialog matches, 1 when only a temporary one does, -1 otherwise.
    pub fn is_dialog(&self, dialog: &UaRecord) -> i32 {
        (self.vt.is_dialog)(&dialog.to_ffi())
    }

    /// The stored id of the matching dialog.
    pub fn get_record_id(&self, dialog: &UaRecord) -> Option<String> {
        (self.vt.get_record_id)(&dialog.to_ffi()).into_option().map(RString::into_string)
    }

    /// Calls `f` for every final reply to a request of a record whose source flag is in
    /// `types` (requests the caller originated; not pua's own refreshes).
    pub fn register_callback(
        &self,
        types: i32,
        f: impl Fn(&UaRecord, &Reply<'_>) -> i32 + Send + Sync + 'static,
    ) -> i32 {
        let b: Box<CallbackFn> = Box::new(Box::new(f));
        let cb = FfiPuaCallback { data: Box::into_raw(b) as *mut c_void, call: call_callback, drop: drop_callback };
        (self.vt.register_puacb)(types, cb)
    }

    /// Registers an event package with an optional body processor.
    pub fn add_event(
        &self,
        flag: i32,
        name: &str,
        content_type: &str,
        processor: Option<impl Fn(&str, i32, &str) -> Result<(String, String), String> + Send + Sync + 'static>,
    ) -> i32 {
        let processor = processor.map(|p| {
            let b: Box<ProcessorFn> = Box::new(Box::new(p));
            FfiBodyProcessor { data: Box::into_raw(b) as *mut c_void, call: call_processor, drop: drop_processor }
        });
        (self.vt.add_event)(flag, name.into(), content_type.into(), processor.map_or(RNone, RSome))
    }

    /// `pres_uri` of every record whose id starts with `did`.
    pub fn get_subs_list(&self, did: &str) -> Vec<String> {
        (self.vt.get_subs_list)(did.into()).into_iter().map(RString::into_string).collect()
    }
}

/// A callback another module registered; the `pua` module calls it.
pub struct PuaCallback(FfiPuaCallback);

impl std::fmt::Debug for PuaCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PuaCallback")
    }
}

impl PuaCallback {
    /// Runs it with `record` and the final `reply`.
    pub fn call(&self, record: &UaRecord, reply: &Reply<'_>) -> i32 {
        let ffi_reply = crate::sip::ffi_reply(reply);
        // SAFETY: `data` belongs to `call`, both from the registering plugin, live until drop.
        unsafe { (self.0.call)(self.0.data, &record.to_ffi(), &ffi_reply) }
    }
}

/// An event's body processor another module registered; the `pua` module calls it.
pub struct BodyProcessor(FfiBodyProcessor);

impl std::fmt::Debug for BodyProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyProcessor")
    }
}

impl BodyProcessor {
    /// Runs it: `(body, version, tuple id)` → `(body, tuple id)`.
    pub fn process(&self, body: &str, version: i32, tuple_id: &str) -> Result<(String, String), String> {
        // SAFETY: as for `PuaCallback::call`.
        match unsafe { (self.0.call)(self.0.data, body.into(), version, tuple_id.into()) } {
            ROk(p) => Ok((p.body.into_string(), p.tuple_id.into_string())),
            RErr(e) => Err(e.into_string()),
        }
    }
}

/// What the `pua` module implements to export the API.
pub trait PuaService: Send + Sync + 'static {
    /// `send_publish`.
    fn send_publish(&self, info: PublishInfo) -> i32;
    /// `send_subscribe`.
    fn send_subscribe(&self, info: SubscribeInfo) -> i32;
    /// `register_puacb`.
    fn register_callback(&self, types: i32, callback: PuaCallback) -> i32;
    /// `is_dialog`.
    fn is_dialog(&self, dialog: UaRecord) -> i32;
    /// `get_record_id`.
    fn get_record_id(&self, dialog: UaRecord) -> Option<String>;
    /// `add_event`.
    fn add_event(&self, flag: i32, name: &str, content_type: &str, processor: Option<BodyProcessor>) -> i32;
    /// `get_subs_list`.
    fn get_subs_list(&self, did: &str) -> Vec<String>;
}

static SERVICE: super::ServiceSlot = super::ServiceSlot::new();

fn guarded<T: PuaService, R>(fail: R, f: impl FnOnce(&'static T) -> R) -> R {
    SERVICE.guarded(fail, f)
}

extern "C" fn send_subscribe_shim<T: PuaService>(info: &FfiSubscribeInfo) -> i32 {
    guarded::<T, _>(-1, |s| s.send_subscribe(SubscribeInfo::from_ffi(info)))
}
extern "C" fn send_publish_shim<T: PuaService>(info: &FfiPublishInfo) -> i32 {
    guarded::<T, _>(-1, |s| s.send_publish(PublishInfo::from_ffi(info)))
}
extern "C" fn register_puacb_shim<T: PuaService>(types: i32, cb: FfiPuaCallback) -> i32 {
    guarded::<T, _>(-1, move |s| s.register_callback(types, PuaCallback(cb)))
}
extern "C" fn is_dialog_shim<T: PuaService>(d: &FfiUaRecord) -> i32 {
    guarded::<T, _>(-1, |s| s.is_dialog(UaRecord::from_ffi(d)))
}
extern "C" fn get_record_id_shim<T: PuaService>(d: &FfiUaRecord) -> ROption<RString> {
    guarded::<T, _>(RNone, |s| match s.get_record_id(UaRecord::from_ffi(d)) {
        Some(id) => RSome(id.into()),
        None => RNone,
    })
}
extern "C" fn add_event_shim<T: PuaService>(
    flag: i32,
    name: RStr<'_>,
    ctype: RStr<'_>,
    p: ROption<FfiBodyProcessor>,
) -> i32 {
    guarded::<T, _>(-1, move |s| s.add_event(flag, name.as_str(), ctype.as_str(), p.into_option().map(BodyProcessor)))
}
extern "C" fn get_subs_list_shim<T: PuaService>(did: RStr<'_>) -> RVec<RString> {
    guarded::<T, _>(RVec::new(), |s| s.get_subs_list(did.as_str()).into_iter().map(RString::from).collect())
}

/// Exports `service` as the `pua` API (from the `pua` module's init; the module must declare
/// `.exports("pua")`).
pub fn export<T: PuaService>(host: &Host, service: &'static T) -> Result<(), Error> {
    SERVICE.set(service, "pua")?;
    let vt: &'static PuaVTable = Box::leak(Box::new(PuaVTable {
        send_subscribe: send_subscribe_shim::<T>,
        send_publish: send_publish_shim::<T>,
        register_puacb: register_puacb_shim::<T>,
        is_dialog: is_dialog_shim::<T>,
        get_record_id: get_record_id_shim::<T>,
        add_event: add_event_shim::<T>,
        get_subs_list: get_subs_list_shim::<T>,
    }));
    host.export::<PuaApi>(vt)
}
