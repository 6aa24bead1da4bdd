//! The `xmpp` API (Kamailio's `bind_xmpp` / `xmpp_api_t`): send stanzas over the XMPP
//! connection the `xmpp` module keeps, get called back for the stanzas it receives, and
//! translate URIs between the SIP and the XMPP side.
//!
//! A module that uses it (pua_xmpp) binds it with [`Xmpp::bind`]; the `xmpp` module exports it
//! with [`export`], implementing [`XmppService`] in safe Rust.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::StableAbi;
use abi_stable::std_types::{RNone, ROption, RSome, RStr, RString};

use crate::{Error, Host};

/// Callback types (Kamailio's `XMPP_RCV_*`), as a bit set for [`Xmpp::register_callback`].
pub mod cb {
    /// `<message>` stanzas.
    pub const RCV_MESSAGE: i32 = 1;
    /// `<presence>` stanzas.
    pub const RCV_PRESENCE: i32 = 2;
    /// `<iq>` stanzas.
    pub const RCV_IQ: i32 = 4;
}

/// The four URI translations of Kamailio's xmpp module (`util.c`), for [`Xmpp::translate`].
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// `sip:bob*jabber.org@gateway_domain` → `bob@jabber.org`.
    DecodeSipXmpp = 1,
    /// `sip:alice@sip.org` → `alice*sip.org@xmpp_domain`.
    EncodeSipXmpp = 2,
    /// `alice*sip.org@xmpp_domain/res` → `sip:alice@sip.org`.
    DecodeXmppSip = 3,
    /// `bob@jabber.org/res` → `sip:bob*jabber.org@gateway_domain`.
    EncodeXmppSip = 4,
}

/// A received stanza, as callbacks see it: the top-level attributes already read, and the whole
/// stanza as XML text (its default namespace is the stream's, `jabber:component:accept`).
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiStanza<'a> {
    /// One of [`cb`].
    pub kind: i32,
    /// `from` attribute (empty when absent).
    pub from: RStr<'a>,
    /// `to` attribute.
    pub to: RStr<'a>,
    /// `type` attribute.
    pub ty: RStr<'a>,
    /// The stanza as received.
    pub xml: RStr<'a>,
}

/// A received stanza, in plain Rust.
#[derive(Debug, Clone, Copy)]
pub struct Stanza<'a> {
    /// One of [`cb`].
    pub kind: i32,
    /// `from` attribute (empty when absent).
    pub from: &'a str,
    /// `to` attribute.
    pub to: &'a str,
    /// `type` attribute (empty when absent).
    pub ty: &'a str,
    /// The stanza as received.
    pub xml: &'a str,
}

/// A stanza callback: `call` for every received stanza of the registered types, `drop` once.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiXmppCallback {
    data: *mut c_void,
    call: unsafe extern "C" fn(data: *mut c_void, stanza: &FfiStanza<'_>),
    drop: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: built only from `Send + Sync` closures.
unsafe impl Send for FfiXmppCallback {}
// SAFETY: as above.
unsafe impl Sync for FfiXmppCallback {}

impl Drop for FfiXmppCallback {
    fn drop(&mut self) {
        // SAFETY: `drop` belongs to the plugin that built `data`; runs once.
        unsafe { (self.drop)(self.data) }
    }
}

/// The vtable.
#[repr(C)]
#[derive(StableAbi)]
pub struct XmppVTable {
    /// Writes one stanza (raw XML) to the stream: 0 written, -1 not connected or failed.
    pub send_packet: extern "C" fn(xml: RStr<'_>) -> i32,
    /// Registers a callback for the stanza types in `types`: 0 or -1.
    pub register_callback: extern "C" fn(types: i32, callback: FfiXmppCallback) -> i32,
    /// A [`Translation`] of `uri`; None when it cannot be translated.
    pub translate: extern "C" fn(kind: i32, uri: RStr<'_>) -> ROption<RString>,
}

/// The `xmpp` API.
pub struct XmppApi;

impl crate::Api for XmppApi {
    const NAME: &'static str = "xmpp";
    const VERSION: u32 = 1;
    type VTable = XmppVTable;
}

type CallbackFn = Box<dyn Fn(&Stanza<'_>) + Send + Sync>;

unsafe extern "C" fn call_callback(data: *mut c_void, s: &FfiStanza<'_>) {
    // SAFETY: `data` is the leaked `CallbackFn` of `Xmpp::register_callback`.
    let f = unsafe { &*(data as *const CallbackFn) };
    let stanza =
        Stanza { kind: s.kind, from: s.from.as_str(), to: s.to.as_str(), ty: s.ty.as_str(), xml: s.xml.as_str() };
    if catch_unwind(AssertUnwindSafe(|| f(&stanza))).is_err() {
        tracing::error!("an XMPP stanza callback panicked (stanza dropped)");
    }
}

unsafe extern "C" fn drop_callback(data: *mut c_void) {
    // SAFETY: runs once, on the pointer leaked by `register_callback`.
    let b = unsafe { Box::from_raw(data as *mut CallbackFn) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

/// The bound `xmpp` API.
#[derive(Clone, Copy)]
pub struct Xmpp {
    vt: &'static XmppVTable,
}

impl std::fmt::Debug for Xmpp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Xmpp")
    }
}

impl Xmpp {
    /// Binds the API exported by the `xmpp` module.
    pub fn bind(host: &Host) -> Result<Xmpp, Error> {
        Ok(Xmpp { vt: host.bind::<XmppApi>()? })
    }

    /// Writes one stanza to the XMPP stream.
    pub fn send_packet(&self, xml: &str) -> Result<(), Error> {
        match (self.vt.send_packet)(xml.into()) {
            0 => Ok(()),
            _ => Err(Error::new("the XMPP connection is down; stanza not sent")),
        }
    }

    /// Calls `f` for every received stanza whose type is in `types` ([`cb`]), on the thread
    /// that reads the XMPP stream: `f` must not block for long.
    pub fn register_callback(&self, types: i32, f: impl Fn(&Stanza<'_>) + Send + Sync + 'static) -> Result<(), Error> {
        match (self.vt.register_callback)(types, XmppCallback::new(f).0) {
            0 => Ok(()),
            _ => Err(Error::new("the xmpp module refused the callback")),
        }
    }

    /// Translates `uri` (see [`Translation`]).
    pub fn translate(&self, kind: Translation, uri: &str) -> Option<String> {
        (self.vt.translate)(kind as i32, uri.into()).into_option().map(RString::into_string)
    }
}

/// A callback another module registered; the `xmpp` module calls it.
pub struct XmppCallback(FfiXmppCallback);

impl std::fmt::Debug for XmppCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XmppCallback")
    }
}

impl XmppCallback {
    /// A callback running `f` (a panic in `f` is caught and logged).
    pub fn new(f: impl Fn(&Stanza<'_>) + Send + Sync + 'static) -> Self {
        let b: Box<CallbackFn> = Box::new(Box::new(f));
        XmppCallback(FfiXmppCallback {
            data: Box::into_raw(b) as *mut c_void,
            call: call_callback,
            drop: drop_callback,
        })
    }

    /// Runs it with `stanza`.
    pub fn call(&self, stanza: &Stanza<'_>) {
        let s = FfiStanza {
            kind: stanza.kind,
            from: stanza.from.into(),
            to: stanza.to.into(),
            ty: stanza.ty.into(),
            xml: stanza.xml.into(),
        };
        // SAFETY: `data` belongs to `call`, both from the registering plugin, live until drop.
        unsafe { (self.0.call)(self.0.data, &s) }
    }
}

/// What the `xmpp` module implements to export the API.
pub trait XmppService: Send + Sync + 'static {
    /// `send_packet`: Ok when written.
    fn send_packet(&self, xml: &str) -> Result<(), Error>;
    /// `register_callback`.
    fn register_callback(&self, types: i32, callback: XmppCallback) -> Result<(), Error>;
    /// `translate`.
    fn translate(&self, kind: Translation, uri: &str) -> Option<String>;
}

static SERVICE: super::ServiceSlot = super::ServiceSlot::new();

extern "C" fn send_packet_shim<T: XmppService>(xml: RStr<'_>) -> i32 {
    SERVICE.guarded::<T, _>(-1, |s| if s.send_packet(xml.as_str()).is_ok() { 0 } else { -1 })
}
extern "C" fn register_callback_shim<T: XmppService>(types: i32, cb: FfiXmppCallback) -> i32 {
    SERVICE.guarded::<T, _>(-1, move |s| if s.register_callback(types, XmppCallback(cb)).is_ok() { 0 } else { -1 })
}
extern "C" fn translate_shim<T: XmppService>(kind: i32, uri: RStr<'_>) -> ROption<RString> {
    let kind = match kind {
        1 => Translation::DecodeSipXmpp,
        2 => Translation::EncodeSipXmpp,
        3 => Translation::DecodeXmppSip,
        4 => Translation::EncodeXmppSip,
        _ => return RNone,
    };
    SERVICE.guarded::<T, _>(RNone, |s| match s.translate(kind, uri.as_str()) {
        Some(v) => RSome(v.into()),
        None => RNone,
    })
}

/// Exports `service` as the `xmpp` API (from the `xmpp` module's init; the module must declare
/// `.exports("xmpp")`).
pub fn export<T: XmppService>(host: &Host, service: &'static T) -> Result<(), Error> {
    SERVICE.set(service, "xmpp")?;
    let vt: &'static XmppVTable = Box::leak(Box::new(XmppVTable {
        send_packet: send_packet_shim::<T>,
        register_callback: register_callback_shim::<T>,
        translate: translate_shim::<T>,
    }));
    host.export::<XmppApi>(vt)
}
