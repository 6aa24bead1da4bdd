//! The `presence` API (Kamailio's `bind_presence` / `presence_api_t`): event packages are added
//! to the presence server by other modules (presence_xml adds `presence`, `presence.winfo` and
//! `dialog;sla`), with hooks for what is specific to the package: checking a published body,
//! aggregating the publications of one presentity into a NOTIFY body, authorizing a watcher and
//! filtering the body a watcher sees.
//!
//! All hooks go through one callback ([`FfiEventHooks`]) with an operation code, so the vtable
//! stays small and an operation can be added without changing its layout. Hooks run on a worker
//! thread, never under the presence server's locks; a panicking hook is caught and reported as
//! an error reply (the request gets a 500, the server keeps running).

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::StableAbi;
use abi_stable::std_types::{RNone, ROption, RSlice, RSome, RStr, RString, RVec};

use crate::{Error, Host};

/// Subscription states, as stored in `active_watchers.status` and `watchers.status`
/// (Kamailio's `subscribe.h`).
pub mod status {
    /// Active.
    pub const ACTIVE: i32 = 1;
    /// Pending (waiting for authorization).
    pub const PENDING: i32 = 2;
    /// Terminated.
    pub const TERMINATED: i32 = 3;
    /// Waiting (a pending watcher without a dialog, shown in watcher-info).
    pub const WAITING: i32 = 4;
    /// Only as an authorization result: active, but sent a neutral document.
    pub const POLITE_BLOCK: i32 = 5;
}

/// Package kinds (Kamailio's `PUBL_TYPE` / `WINFO_TYPE`).
pub mod kind {
    /// A package whose state is published (`presence`, `dialog`, `dialog;sla`, ...).
    pub const PUBLISHED: i32 = 1;
    /// A watcher-info package (`presence.winfo`): its body is built by the server.
    pub const WINFO: i32 = 2;
}

/// Operation codes of [`FfiEventHooks`].
pub mod op {
    /// Check a PUBLISH body: reply code 0 accepts; otherwise the SIP code (400/415) and reason.
    pub const CHECK_BODY: u32 = 1;
    /// Aggregate `bodies` (oldest first; `removed` is the index of one being removed, or -1)
    /// into the NOTIFY body; no body in the reply means "no state".
    pub const AGGREGATE: u32 = 2;
    /// Authorize `watcher_uri` for `pres_uri`: reply code is a [`super::status`] value, reason
    /// the Subscription-State reason (may be empty).
    pub const AUTHORIZE: u32 = 3;
    /// Filter `body` for `watcher_uri`: the reply body is what the watcher sees.
    pub const TRANSFORM: u32 = 4;
}

/// What a hook is asked.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiHookRequest<'a> {
    /// `sip:user@domain` of the presentity.
    pub pres_uri: RStr<'a>,
    /// `sip:user@domain` of the watcher (AUTHORIZE, TRANSFORM).
    pub watcher_uri: RStr<'a>,
    /// Domain of the SUBSCRIBE's From (Kamailio compares `<many domain>` against it).
    pub from_domain: RStr<'a>,
    /// The watcher's previous status (AUTHORIZE), 0 when new.
    pub previous: i32,
    /// The body (CHECK_BODY, TRANSFORM).
    pub body: RSlice<'a, u8>,
    /// The stored bodies, oldest first (AGGREGATE).
    pub bodies: RSlice<'a, RSlice<'a, u8>>,
    /// Index in `bodies` of a publication being removed, or -1 (AGGREGATE).
    pub removed: i32,
}

/// What a hook answers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiHookReply {
    /// Meaning depends on the operation (see [`op`]).
    pub code: i32,
    /// Reason phrase or Subscription-State reason.
    pub reason: RString,
    /// A body, when the operation produces one.
    pub body: ROption<RVec<u8>>,
}

/// The hooks of one event package: `call` for every operation, then `drop` once.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiEventHooks {
    data: *mut c_void,
    call: unsafe extern "C" fn(data: *mut c_void, op: u32, request: &FfiHookRequest<'_>) -> FfiHookReply,
    drop: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: built only from `Send + Sync` hooks.
unsafe impl Send for FfiEventHooks {}
// SAFETY: as above.
unsafe impl Sync for FfiEventHooks {}

impl Drop for FfiEventHooks {
    fn drop(&mut self) {
        // SAFETY: `drop` belongs to the plugin that built `data`; runs once.
        unsafe { (self.drop)(self.data) }
    }
}

/// An event package (`pres_ev_t`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiEventSpec {
    /// Event name with parameters as in the Event header (`presence`, `dialog;sla`).
    pub name: RString,
    /// Content type of its bodies.
    pub content_type: RString,
    /// [`kind::PUBLISHED`] or [`kind::WINFO`].
    pub kind: i32,
    /// Watchers need authorization (`req_auth`).
    pub req_auth: bool,
    /// A PUBLISH update keeps its ETag (`etag_not_new`, dialog;sla).
    pub etag_not_new: bool,
    /// Expires when the request has no Expires header.
    pub default_expires: u32,
}

/// The vtable.
#[repr(C)]
#[derive(StableAbi)]
pub struct PresenceVTable {
    /// `add_event`: 0, or < 0 (the name is taken or invalid).
    pub add_event: extern "C" fn(spec: &FfiEventSpec, hooks: ROption<FfiEventHooks>) -> i32,
    /// `pres_refresh_watchers(uri, event, type)`: type 0 re-authorizes the watchers (rules
    /// changed), 1 re-sends the current state. Returns 1 or -1.
    pub refresh_watchers: extern "C" fn(pres_uri: RStr<'_>, event: RStr<'_>, kind: i32) -> i32,
    /// `pres_has_subscribers(uri, event)`: 1 or -1.
    pub has_subscribers: extern "C" fn(pres_uri: RStr<'_>, event: RStr<'_>) -> i32,
    /// The aggregated document of `pres_uri` for `event` (what a watcher without filtering
    /// would be sent), or none when it has no state.
    pub presentity_body: extern "C" fn(pres_uri: RStr<'_>, event: RStr<'_>) -> ROption<RVec<u8>>,
}

/// The `presence` API.
pub struct PresenceApi;

impl crate::Api for PresenceApi {
    const NAME: &'static str = "presence";
    const VERSION: u32 = 1;
    type VTable = PresenceVTable;
}

/// A hook question in plain Rust.
#[derive(Debug, Clone, Copy)]
pub struct HookRequest<'a> {
    /// `sip:user@domain` of the presentity.
    pub pres_uri: &'a str,
    /// `sip:user@domain` of the watcher.
    pub watcher_uri: &'a str,
    /// Domain of the SUBSCRIBE's From.
    pub from_domain: &'a str,
    /// The watcher's previous status, 0 when new.
    pub previous: i32,
}

/// What an event package implements (all methods have the behaviour of a package without the
/// hook, so a package implements only what it needs).
pub trait EventHooks: Send + Sync + 'static {
    /// Accepts a PUBLISH body, or gives the SIP code and reason to refuse it with.
    fn check_body(&self, _body: &[u8]) -> Result<(), (u16, String)> {
        Ok(())
    }
    /// The NOTIFY body for the stored `bodies` (oldest first; `removed`: one being removed).
    /// The default is the newest body (a removed one gives no body).
    fn aggregate(&self, _pres_uri: &str, bodies: &[&[u8]], removed: Option<usize>) -> Option<Vec<u8>> {
        let last = bodies.len().checked_sub(1)?;
        (removed != Some(last)).then(|| bodies[last].to_vec())
    }
    /// The watcher's status and Subscription-State reason. The default is active.
    fn authorize(&self, _request: &HookRequest<'_>) -> (i32, String) {
        (status::ACTIVE, String::new())
    }
    /// What `request.watcher_uri` sees of `body`. The default is all of it.
    fn transform(&self, _request: &HookRequest<'_>, body: &[u8]) -> Vec<u8> {
        body.to_vec()
    }
}

type HooksBox = Box<dyn EventHooks>;

fn reply(code: i32, reason: &str, body: Option<Vec<u8>>) -> FfiHookReply {
    FfiHookReply { code, reason: reason.into(), body: body.map_or(RNone, |b| RSome(b.into())) }
}

unsafe extern "C" fn call_hooks(data: *mut c_void, op: u32, r: &FfiHookRequest<'_>) -> FfiHookReply {
    // SAFETY: `data` is the leaked `HooksBox` of `Presence::add_event`, live until drop.
    let hooks = unsafe { &*(data as *const HooksBox) };
    let q = HookRequest {
        pres_uri: r.pres_uri.as_str(),
        watcher_uri: r.watcher_uri.as_str(),
        from_domain: r.from_domain.as_str(),
        previous: r.previous,
    };
    let run = || match op {
        op::CHECK_BODY => match hooks.check_body(r.body.as_slice()) {
            Ok(()) => reply(0, "", None),
            Err((code, reason)) => reply(i32::from(code), &reason, None),
        },
        op::AGGREGATE => {
            let bodies: Vec<&[u8]> = r.bodies.iter().map(|b| b.as_slice()).collect();
            let removed = usize::try_from(r.removed).ok();
            reply(0, "", hooks.aggregate(q.pres_uri, &bodies, removed))
        }
        op::AUTHORIZE => {
            let (status, reason) = hooks.authorize(&q);
            reply(status, &reason, None)
        }
        op::TRANSFORM => reply(0, "", Some(hooks.transform(&q, r.body.as_slice()))),
        _ => reply(-1, "unknown hook operation", None),
    };
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| reply(-1, "the event hook panicked", None))
}

unsafe extern "C" fn drop_hooks(data: *mut c_void) {
    // SAFETY: runs once, on the pointer leaked by `add_event`.
    let b = unsafe { Box::from_raw(data as *mut HooksBox) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

fn ffi_hooks(h: impl EventHooks) -> FfiEventHooks {
    let b: Box<HooksBox> = Box::new(Box::new(h));
    FfiEventHooks { data: Box::into_raw(b) as *mut c_void, call: call_hooks, drop: drop_hooks }
}

/// The bound `presence` API, for modules that add event packages (presence_xml, ...).
#[derive(Clone, Copy)]
pub struct Presence {
    vt: &'static PresenceVTable,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presence")
    }
}

impl Presence {
    /// Binds the API exported by the `presence` module (Kamailio's `bind_presence`).
    pub fn bind(host: &Host) -> Result<Presence, Error> {
        Ok(Presence { vt: host.bind::<PresenceApi>()? })
    }

    /// Adds an event package, with its hooks.
    pub fn add_event(&self, spec: &FfiEventSpec, hooks: Option<impl EventHooks>) -> i32 {
        (self.vt.add_event)(spec, hooks.map(ffi_hooks).map_or(RNone, RSome))
    }

    /// Re-authorizes (`kind` 0) or re-notifies (`kind` 1) the watchers of `pres_uri`/`event`.
    pub fn refresh_watchers(&self, pres_uri: &str, event: &str, kind: i32) -> i32 {
        (self.vt.refresh_watchers)(pres_uri.into(), event.into(), kind)
    }

    /// 1 when `pres_uri` has watchers of `event`, else -1.
    pub fn has_subscribers(&self, pres_uri: &str, event: &str) -> i32 {
        (self.vt.has_subscribers)(pres_uri.into(), event.into())
    }

    /// The aggregated document of `pres_uri` for `event`, if it has state.
    pub fn presentity_body(&self, pres_uri: &str, event: &str) -> Option<Vec<u8>> {
        (self.vt.presentity_body)(pres_uri.into(), event.into()).into_option().map(RVec::into_vec)
    }
}

/// Hooks another module registered; the `presence` module calls them.
pub struct Hooks(FfiEventHooks);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

impl Hooks {
    fn call(&self, op: u32, request: &FfiHookRequest<'_>) -> FfiHookReply {
        // SAFETY: `data` belongs to `call`, both from the registering plugin, live until drop.
        unsafe { (self.0.call)(self.0.data, op, request) }
    }

    fn request<'a>(q: &HookRequest<'a>, body: &'a [u8], bodies: &'a [RSlice<'a, u8>]) -> FfiHookRequest<'a> {
        FfiHookRequest {
            pres_uri: q.pres_uri.into(),
            watcher_uri: q.watcher_uri.into(),
            from_domain: q.from_domain.into(),
            previous: q.previous,
            body: body.into(),
            bodies: bodies.into(),
            removed: -1,
        }
    }

    /// [`EventHooks::check_body`] of the registering module.
    pub fn check_body(&self, body: &[u8]) -> Result<(), (u16, String)> {
        let q = HookRequest { pres_uri: "", watcher_uri: "", from_domain: "", previous: 0 };
        let r = self.call(op::CHECK_BODY, &Self::request(&q, body, &[]));
        match r.code {
            0 => Ok(()),
            c => Err((u16::try_from(c).unwrap_or(500), r.reason.into_string())),
        }
    }

    /// [`EventHooks::aggregate`]; `Err` when the hook failed (panicked).
    pub fn aggregate(
        &self,
        pres_uri: &str,
        bodies: &[&[u8]],
        removed: Option<usize>,
    ) -> Result<Option<Vec<u8>>, String> {
        let q = HookRequest { pres_uri, watcher_uri: "", from_domain: "", previous: 0 };
        let slices: Vec<RSlice<'_, u8>> = bodies.iter().map(|b| RSlice::from_slice(b)).collect();
        let mut req = Self::request(&q, &[], &slices);
        req.removed = removed.and_then(|i| i32::try_from(i).ok()).unwrap_or(-1);
        let r = self.call(op::AGGREGATE, &req);
        match r.code {
            0 => Ok(r.body.into_option().map(RVec::into_vec)),
            _ => Err(r.reason.into_string()),
        }
    }

    /// [`EventHooks::authorize`]; `Err` when the hook failed.
    pub fn authorize(&self, q: &HookRequest<'_>) -> Result<(i32, String), String> {
        let r = self.call(op::AUTHORIZE, &Self::request(q, &[], &[]));
        match r.code {
            c if c > 0 => Ok((c, r.reason.into_string())),
            _ => Err(r.reason.into_string()),
        }
    }

    /// [`EventHooks::transform`]; `Err` when the hook failed.
    pub fn transform(&self, q: &HookRequest<'_>, body: &[u8]) -> Result<Vec<u8>, String> {
        let r = self.call(op::TRANSFORM, &Self::request(q, body, &[]));
        match (r.code, r.body.into_option()) {
            (0, Some(b)) => Ok(b.into_vec()),
            _ => Err(r.reason.into_string()),
        }
    }
}

/// What the `presence` module implements to export the API.
pub trait PresenceService: Send + Sync + 'static {
    /// `add_event`.
    fn add_event(&self, spec: FfiEventSpec, hooks: Option<Hooks>) -> i32;
    /// `pres_refresh_watchers`.
    fn refresh_watchers(&self, pres_uri: &str, event: &str, kind: i32) -> i32;
    /// `pres_has_subscribers`.
    fn has_subscribers(&self, pres_uri: &str, event: &str) -> i32;
    /// The aggregated document of a presentity.
    fn presentity_body(&self, pres_uri: &str, event: &str) -> Option<Vec<u8>>;
}

static SERVICE: super::ServiceSlot = super::ServiceSlot::new();

fn guarded<T: PresenceService, R>(fail: R, f: impl FnOnce(&'static T) -> R) -> R {
    SERVICE.guarded(fail, f)
}

extern "C" fn add_event_shim<T: PresenceService>(spec: &FfiEventSpec, hooks: ROption<FfiEventHooks>) -> i32 {
    guarded::<T, _>(-1, move |s| s.add_event(spec.clone(), hooks.into_option().map(Hooks)))
}
extern "C" fn refresh_watchers_shim<T: PresenceService>(uri: RStr<'_>, event: RStr<'_>, kind: i32) -> i32 {
    guarded::<T, _>(-1, |s| s.refresh_watchers(uri.as_str(), event.as_str(), kind))
}
extern "C" fn has_subscribers_shim<T: PresenceService>(uri: RStr<'_>, event: RStr<'_>) -> i32 {
    guarded::<T, _>(-1, |s| s.has_subscribers(uri.as_str(), event.as_str()))
}

extern "C" fn presentity_body_shim<T: PresenceService>(uri: RStr<'_>, event: RStr<'_>) -> ROption<RVec<u8>> {
    guarded::<T, _>(RNone, |s| s.presentity_body(uri.as_str(), event.as_str()).map_or(RNone, |b| RSome(b.into())))
}

/// Exports `service` as the `presence` API (from the `presence` module's init; the module
/// must declare `.exports("presence")`).
pub fn export<T: PresenceService>(host: &Host, service: &'static T) -> Result<(), Error> {
    SERVICE.set(service, "presence")?;
    let vt: &'static PresenceVTable = Box::leak(Box::new(PresenceVTable {
        add_event: add_event_shim::<T>,
        refresh_watchers: refresh_watchers_shim::<T>,
        has_subscribers: has_subscribers_shim::<T>,
        presentity_body: presentity_body_shim::<T>,
    }));
    host.export::<PresenceApi>(vt)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Panics;

    impl EventHooks for Panics {
        fn check_body(&self, _body: &[u8]) -> Result<(), (u16, String)> {
            panic!("boom")
        }
        fn authorize(&self, _q: &HookRequest<'_>) -> (i32, String) {
            panic!("boom")
        }
    }

    struct Refuses;

    impl EventHooks for Refuses {
        fn check_body(&self, body: &[u8]) -> Result<(), (u16, String)> {
            if body.is_empty() { Ok(()) } else { Err((415, "not XML".into())) }
        }
    }

    #[test]
    fn hooks_cross_the_boundary_and_panics_become_errors() {
        let q = HookRequest { pres_uri: "sip:a@x", watcher_uri: "sip:w@y", from_domain: "y", previous: 0 };
        let h = Hooks(ffi_hooks(Refuses));
        assert_eq!(h.check_body(b""), Ok(()));
        assert_eq!(h.check_body(b"x"), Err((415, "not XML".into())));
        assert_eq!(h.authorize(&q), Ok((status::ACTIVE, String::new())), "the default authorizes");
        assert_eq!(h.aggregate("sip:a@x", &[b"one", b"two"], None), Ok(Some(b"two".to_vec())));
        assert_eq!(h.aggregate("sip:a@x", &[b"one", b"two"], Some(1)), Ok(None), "the newest is being removed");
        assert_eq!(h.transform(&q, b"doc"), Ok(b"doc".to_vec()));

        let h = Hooks(ffi_hooks(Panics));
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let checked = h.check_body(b"x");
        let authorized = h.authorize(&q);
        std::panic::set_hook(prev);
        assert_eq!(checked, Err((500, "the event hook panicked".into())));
        assert_eq!(authorized, Err("the event hook panicked".into()));
    }
}
