//! The `dialog` API (Kamailio's `load_dlg_api` / `dlg_binds`): calls tracked by the `dialog`
//! module (`dlg_manage()` on an initial INVITE), with callbacks on their life events, which
//! pua_dialoginfo and similar modules use to follow calls.
//!
//! Callbacks are registered once for every dialog (Kamailio registers DLGCB_CREATED globally
//! and the others per dialog; here a callback registered for a type gets it for every dialog).
//! They run on the thread that handled the triggering message (a UDP receiver or a worker) or
//! on a worker for the expiry timer, after the dialog's state changed and with the module's lock
//! released: a callback may call [`Dialog::get`]. A panicking callback is caught.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::StableAbi;
use abi_stable::std_types::{ROption, RStr, RString, RVec};

use crate::ffi::FfiMsg;
use crate::sip::Message;
use crate::{Error, Host};

/// Callback types, Kamailio's `DLGCB_*` bits (`dlg_cb.h`). Only those listed here are raised.
pub mod cb {
    /// A dialog the `dialog` module read back from its database at start-up (db_mode 1 to 3).
    /// Raised when the callback is registered, once for every dialog live then (Kamailio's
    /// `DLGCB_LOADED` runs on the spot the same way): modules registering from their init see
    /// every loaded dialog and can rebuild what they keep per dialog.
    pub const LOADED: i32 = 1 << 0;
    /// A dialog was created by `dlg_manage()` on an initial INVITE (direction downstream).
    pub const CREATED: i32 = 1 << 1;
    /// The INVITE failed: a final reply of 300 or more (a 487 after CANCEL included), or a
    /// local 408/503 of the relay, or the INVITE was never relayed. The dialog is deleted.
    pub const FAILED: i32 = 1 << 2;
    /// A 2xx to the INVITE: confirmed, no ACK yet.
    pub const CONFIRMED_NA: i32 = 1 << 3;
    /// The ACK for the 2xx.
    pub const CONFIRMED: i32 = 1 << 4;
    /// Another request within the dialog (re-INVITE, UPDATE, INFO, ...; not ACK or BYE).
    pub const REQ_WITHIN: i32 = 1 << 5;
    /// A BYE from either side. The dialog is deleted.
    pub const TERMINATED: i32 = 1 << 6;
    /// The dialog's lifetime (`default_timeout`) ran out. The dialog is deleted; no BYE is sent.
    pub const EXPIRED: i32 = 1 << 7;
    /// A provisional reply with a To-tag: the dialog is early.
    pub const EARLY: i32 = 1 << 8;
    /// Every type this module raises.
    pub const ALL: i32 =
        LOADED | CREATED | FAILED | CONFIRMED_NA | CONFIRMED | REQ_WITHIN | TERMINATED | EXPIRED | EARLY;
}

/// Dialog states, numbered as Kamailio's `DLG_STATE_*` (and shown so by `dlg.list`).
pub mod state {
    /// The INVITE was seen, no reply with a To-tag yet.
    pub const UNCONFIRMED: u32 = 1;
    /// A provisional reply with a To-tag.
    pub const EARLY: u32 = 2;
    /// A 2xx, no ACK yet.
    pub const CONFIRMED_NA: u32 = 3;
    /// The ACK for the 2xx.
    pub const CONFIRMED: u32 = 4;
    /// Failed, terminated or expired.
    pub const DELETED: u32 = 5;
}

/// The direction of the message that triggered a callback, Kamailio's `DLG_DIR_*`.
pub mod dir {
    /// No message (the timer), or unknown.
    pub const NONE: i32 = 0;
    /// From the caller towards the callee (requests from the caller, e.g. the INVITE and its
    /// ACK; replies to the INVITE travel upstream but are reported as downstream's, as
    /// Kamailio does for the initial transaction).
    pub const DOWNSTREAM: i32 = 1;
    /// From the callee towards the caller (a BYE from the callee).
    pub const UPSTREAM: i32 = 2;
}

/// A dialog as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq)]
pub struct FfiDialog {
    /// Hash entry (Kamailio's `h_entry`).
    pub h_entry: u32,
    /// Id within the entry (`h_id`); with `h_entry`, identifies the dialog.
    pub h_id: u32,
    /// Call-ID.
    pub call_id: RString,
    /// The caller's URI (From).
    pub from_uri: RString,
    /// The caller's tag (From tag).
    pub from_tag: RString,
    /// The callee's URI (To).
    pub to_uri: RString,
    /// The callee's tag (To tag of the first reply that had one); empty before.
    pub to_tag: RString,
    /// The INVITE's Request-URI as it arrived.
    pub req_uri: RString,
    /// The INVITE's Contact URI.
    pub caller_contact: RString,
    /// The Contact URI of the callee's reply; empty before one had it.
    pub callee_contact: RString,
    /// The caller's CSeq of the INVITE.
    pub caller_cseq: u32,
    /// A [`state`].
    pub state: u32,
    /// When the INVITE was seen (seconds since the epoch).
    pub init_ts: i64,
    /// When the dialog was confirmed (2xx), 0 before.
    pub start_ts: i64,
    /// Lifetime in seconds (`default_timeout`), counted from the 2xx.
    pub lifetime: u32,
    /// When it expires (seconds since the epoch), 0 while not confirmed.
    pub timeout: i64,
}

/// A callback registered with [`DialogVTable::register_callback`].
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiDlgCallback {
    data: *mut c_void,
    call: unsafe extern "C" fn(data: *mut c_void, kind: i32, direction: i32, dialog: &FfiDialog, msg: &FfiMsg<'_>),
    drop: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: built only from `Send + Sync` closures.
unsafe impl Send for FfiDlgCallback {}
// SAFETY: as above.
unsafe impl Sync for FfiDlgCallback {}

impl Drop for FfiDlgCallback {
    fn drop(&mut self) {
        // SAFETY: `drop` belongs to the plugin that built `data`; runs once.
        unsafe { (self.drop)(self.data) }
    }
}

impl FfiDlgCallback {
    /// Runs the callback for an event of `kind` ([`cb`]) in `direction` ([`dir`]); `msg` is the
    /// triggering message (empty for a timer or a local reply).
    pub fn call(&self, kind: i32, direction: i32, dialog: &FfiDialog, msg: &FfiMsg<'_>) {
        // SAFETY: `data` belongs to `call`, both from the registering plugin, live until drop.
        unsafe { (self.call)(self.data, kind, direction, dialog, msg) }
    }

    /// [`FfiDlgCallback::call`] with a message view (or none).
    pub fn call_with(&self, kind: i32, direction: i32, dialog: &FfiDialog, msg: Option<&Message<'_>>) {
        let m = msg.map_or(FfiMsg::EMPTY, crate::sip::ffi_msg);
        self.call(kind, direction, dialog, &m)
    }
}

/// The vtable. Not a prefix type: a field added at the end changes the layout, and a module
/// built against the older one is refused at bind time with the layout report.
#[repr(C)]
#[derive(StableAbi)]
pub struct DialogVTable {
    /// Registers a callback for the [`cb`] bits in `types` for every dialog: 1, or -1 for an
    /// empty or unknown set of types.
    pub register_callback: extern "C" fn(types: i32, callback: FfiDlgCallback) -> i32,
    /// The live dialog with this Call-ID and caller tag (From tag).
    pub get_dialog: extern "C" fn(call_id: RStr<'_>, from_tag: RStr<'_>) -> ROption<FfiDialog>,
    /// Every live dialog.
    pub list: extern "C" fn() -> RVec<FfiDialog>,
    /// The request context of the config function the dialog module is running on the calling
    /// thread (`dlg_manage()`), null outside one: a callback raised from inside it (CREATED,
    /// and the events of in-dialog requests) reads the request's flags and AVPs through it.
    /// Added last (pua_dialoginfo's send_publish_flag, disable_*_publish_flag, pubruri AVPs).
    pub current_request: extern "C" fn() -> usize,
}

/// The `dialog` API.
pub struct DialogApi;

impl crate::Api for DialogApi {
    const NAME: &'static str = "dialog";
    const VERSION: u32 = 1;
    type VTable = DialogVTable;
}

/// One callback event, as a module sees it.
#[derive(Debug, Clone, Copy)]
pub struct DialogEvent<'a> {
    /// A [`cb`] bit.
    pub kind: i32,
    /// A [`dir`] value.
    pub direction: i32,
    /// The dialog, after the change.
    pub dialog: &'a FfiDialog,
    /// The triggering message (the INVITE, a reply, an in-dialog request), when there is one.
    pub message: Option<Message<'a>>,
}

type CallbackFn = Box<dyn Fn(DialogEvent<'_>) + Send + Sync>;

unsafe extern "C" fn call_callback(data: *mut c_void, kind: i32, direction: i32, dialog: &FfiDialog, msg: &FfiMsg<'_>) {
    // SAFETY: `data` is the leaked `CallbackFn` of `callback`, live until drop.
    let f = unsafe { &*(data as *const CallbackFn) };
    let event = DialogEvent { kind, direction, dialog, message: crate::sip::message(msg) };
    let _ = catch_unwind(AssertUnwindSafe(|| f(event)));
}

unsafe extern "C" fn drop_callback(data: *mut c_void) {
    // SAFETY: runs once, on the pointer leaked by `callback`.
    let b = unsafe { Box::from_raw(data as *mut CallbackFn) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

/// Wraps a closure as an [`FfiDlgCallback`] (built on the registering side, so the allocator
/// that frees it is the one that allocated it).
pub fn callback(f: impl Fn(DialogEvent<'_>) + Send + Sync + 'static) -> FfiDlgCallback {
    let b: Box<CallbackFn> = Box::new(Box::new(f));
    FfiDlgCallback { data: Box::into_raw(b) as *mut c_void, call: call_callback, drop: drop_callback }
}

/// The bound `dialog` API.
#[derive(Clone, Copy)]
pub struct Dialog {
    vt: &'static DialogVTable,
}

impl std::fmt::Debug for Dialog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dialog")
    }
}

impl Dialog {
    /// Binds the API exported by the `dialog` module (Kamailio's `load_dlg_api`).
    pub fn bind(host: &Host) -> Result<Dialog, Error> {
        Ok(Dialog { vt: host.bind::<DialogApi>()? })
    }

    /// Registers `f` for the event types in `types` ([`cb`] bits), for every dialog.
    pub fn register_callback(
        &self,
        types: i32,
        f: impl Fn(DialogEvent<'_>) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        if (self.vt.register_callback)(types, callback(f)) < 0 {
            return Err(Error::new(format!("dialog: no callback type in {types:#x}")));
        }
        Ok(())
    }

    /// The live dialog of `call_id` and the caller's tag.
    pub fn get(&self, call_id: &str, from_tag: &str) -> Option<FfiDialog> {
        (self.vt.get_dialog)(call_id.into(), from_tag.into()).into_option()
    }

    /// Every live dialog.
    pub fn list(&self) -> Vec<FfiDialog> {
        (self.vt.list)().into_vec()
    }

    /// The request whose config function raised `event`, when the callback runs inside one
    /// (`dlg_manage()` on the INVITE for CREATED, on an in-dialog request for its events);
    /// `None` for replies, the timer and everything outside a route. Kamailio's callbacks get
    /// the request (`params->req`) with its flags.
    pub fn request<'e>(&self, event: &DialogEvent<'e>) -> Option<DialogRequest<'e>> {
        let ctx = (self.vt.current_request)();
        let _ = event;
        (ctx != 0).then_some(DialogRequest { ctx: ctx as *const c_void, _event: std::marker::PhantomData })
    }
}

/// The request a dialog callback runs inside (see [`Dialog::request`]): its message flags
/// and AVPs, valid for the callback only.
#[derive(Debug, Clone, Copy)]
pub struct DialogRequest<'e> {
    ctx: *const c_void,
    _event: std::marker::PhantomData<&'e ()>,
}

impl DialogRequest<'_> {
    /// Whether message flag `flag` (0..=31) is set (Kamailio's `isflagset`).
    pub fn is_flag_set(&self, flag: u32) -> bool {
        Host::current().is_ok_and(|h| (h.vtable().sip_flag())(self.ctx, false, 0, flag))
    }

    /// Every value of AVP `name`, newest first.
    pub fn avps(&self, name: &str) -> Vec<String> {
        match Host::current() {
            Ok(h) => (h.vtable().sip_avp_all())(self.ctx, name.into()).into_iter().map(RString::into_string).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// What the `dialog` module implements to export the API.
pub trait DialogService: Send + Sync + 'static {
    /// Register a callback; 1 or -1.
    fn register_callback(&self, types: i32, callback: FfiDlgCallback) -> i32;
    /// A live dialog by Call-ID and caller tag.
    fn get(&self, call_id: &str, from_tag: &str) -> Option<FfiDialog>;
    /// Every live dialog.
    fn list(&self) -> Vec<FfiDialog>;
}

static SERVICE: super::ServiceSlot = super::ServiceSlot::new();

fn guarded<T: DialogService, R>(fail: R, f: impl FnOnce(&'static T) -> R) -> R {
    SERVICE.guarded(fail, f)
}

extern "C" fn register_callback_shim<T: DialogService>(types: i32, callback: FfiDlgCallback) -> i32 {
    guarded::<T, _>(-1, move |s| s.register_callback(types, callback))
}

extern "C" fn get_dialog_shim<T: DialogService>(call_id: RStr<'_>, from_tag: RStr<'_>) -> ROption<FfiDialog> {
    guarded::<T, _>(ROption::RNone, |s| s.get(call_id.as_str(), from_tag.as_str()).into())
}

extern "C" fn list_shim<T: DialogService>() -> RVec<FfiDialog> {
    guarded::<T, _>(RVec::new(), |s| s.list().into())
}

extern "C" fn current_request_shim() -> usize {
    crate::export::current_request() as usize
}

/// Exports `service` as the `dialog` API (from the `dialog` module's init; the module must
/// declare `.exports("dialog")`).
pub fn export<T: DialogService>(host: &Host, service: &'static T) -> Result<(), Error> {
    SERVICE.set(service, "dialog")?;
    let vt: &'static DialogVTable = Box::leak(Box::new(DialogVTable {
        register_callback: register_callback_shim::<T>,
        get_dialog: get_dialog_shim::<T>,
        list: list_shim::<T>,
        current_request: current_request_shim,
    }));
    host.export::<DialogApi>(vt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI32, Ordering};

    #[test]
    fn callbacks_cross_the_boundary_and_panics_stay_inside() {
        let seen = Arc::new(AtomicI32::new(0));
        let s = seen.clone();
        let c = callback(move |e| {
            assert_eq!(e.dialog.call_id.as_str(), "c1");
            assert!(e.message.is_none());
            s.fetch_or(e.kind | (e.direction << 20), Ordering::SeqCst);
        });
        let d = FfiDialog { call_id: "c1".into(), ..Default::default() };
        c.call(cb::CREATED, dir::DOWNSTREAM, &d, &FfiMsg::EMPTY);
        c.call(cb::TERMINATED, dir::UPSTREAM, &d, &FfiMsg::EMPTY);
        assert_eq!(seen.load(Ordering::SeqCst), cb::CREATED | cb::TERMINATED | (3 << 20));

        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        callback(|_| panic!("boom")).call(cb::EXPIRED, dir::NONE, &d, &FfiMsg::EMPTY);
        std::panic::set_hook(prev);
    }
}
