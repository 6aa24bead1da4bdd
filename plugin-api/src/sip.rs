//! SIP for modules: the request a config function runs for, replies, flags and AVPs, and
//! requests a module sends (with a callback for the final reply).
//!
//! Messages are read through [`Message`], a view over the host's buffer and parse index: no
//! module re-parses or copies the message.

use std::ffi::c_void;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use abi_stable::std_types::{RErr, ROk, RSlice, RStr, RString};
pub use sip_message::{self, HeaderEntry, HeaderName, Message, Method, SipUri, StartLine};

use crate::export::panic_message;
use crate::ffi::{FfiError, FfiHeader, FfiMsg, FfiPeer, FfiReply, FfiReplyCallback, FfiRequest, FfiStatus};
use crate::{Error, Host};

/// Rebuilds the view of a message the host lent across the boundary.
pub(crate) fn message<'a>(m: &FfiMsg<'a>) -> Option<Message<'a>> {
    if m.buf.is_empty() {
        return None;
    }
    let headers = crate::ffi::sip_headers(m.headers.as_slice());
    Some(Message::from_parts(m.buf.as_slice(), m.start.into(), headers, (m.body_start, m.body_end)))
}

/// The ABI form of a message view (borrowed, no copy).
pub(crate) fn ffi_msg<'a>(m: &Message<'a>) -> FfiMsg<'a> {
    let (body_start, body_end) = m.body_range();
    FfiMsg {
        buf: RSlice::from_slice(m.buf()),
        start: m.start_line().into(),
        headers: RSlice::from_slice(crate::ffi::ffi_headers(m.header_entries())),
        body_start,
        body_end,
    }
}

/// The ABI form of a reply (borrowed, no copy).
pub(crate) fn ffi_reply<'a>(r: &Reply<'a>) -> FfiReply<'a> {
    FfiReply {
        status: r.code,
        reason: RStr::from_str(r.reason),
        local: r.local,
        msg: r.message.as_ref().map_or(FfiMsg::EMPTY, ffi_msg),
    }
}

/// Transport of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
}

impl Transport {
    /// Lower-case name, as in a `;transport=` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Where a request came from (`$si`, `$sp`, `$proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Source IP.
    pub ip: IpAddr,
    /// Source port.
    pub port: u16,
    /// Transport it arrived on.
    pub transport: Transport,
}

impl Peer {
    pub(crate) fn from_ffi(p: &FfiPeer) -> Self {
        let ip = if p.family == 6 {
            IpAddr::V6(Ipv6Addr::from(p.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(p.ip[0], p.ip[1], p.ip[2], p.ip[3]))
        };
        let transport = match p.transport {
            2 => Transport::Tcp,
            3 => Transport::Tls,
            _ => Transport::Udp,
        };
        Self { ip, port: p.port, transport }
    }
}

/// Operations on the request a config function runs for. Reached through
/// [`FunctionCall`](crate::FunctionCall).
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    pub(crate) ctx: *const c_void,
    pub(crate) msg: Option<Message<'a>>,
    pub(crate) peer: Peer,
}

impl<'a> RequestContext<'a> {
    fn host(&self) -> Result<Host, Error> {
        Host::current()
    }

    /// The request.
    pub fn message(&self) -> Option<Message<'a>> {
        self.msg
    }

    /// Where it came from.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Replies `code reason` (Kamailio's `sl_send_reply`, through the server transaction so a
    /// retransmitted request gets the same reply).
    pub fn reply(&self, code: u16, reason: &str) -> Result<(), Error> {
        self.reply_with(code, reason, &[], None)
    }

    /// Replies with extra headers and an optional `(content type, body)`.
    pub fn reply_with(
        &self,
        code: u16,
        reason: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<(), Error> {
        let host = self.host()?;
        let headers: Vec<FfiHeader<'_>> =
            headers.iter().map(|(n, v)| FfiHeader { name: RStr::from_str(n), value: RStr::from_str(v) }).collect();
        let (ctype, body) = body.unwrap_or(("", &[]));
        match (host.vtable().sip_reply())(
            self.ctx,
            code,
            reason.into(),
            headers.as_slice().into(),
            ctype.into(),
            RSlice::from_slice(body),
        ) {
            ROk(()) => Ok(()),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// The To-tag replies to this request carry (the host's, stable for the request and its
    /// retransmissions); `None` for a request that already has a To-tag (in-dialog).
    pub fn to_tag(&self) -> Option<String> {
        let host = self.host().ok()?;
        let f = host.vtable().sip_to_tag()?;
        let tag = f(self.ctx).into_string();
        (!tag.is_empty()).then_some(tag)
    }

    /// Replaces the Request-URI the relay forwards to (Kamailio's `rewriteuri`). Fails when
    /// `uri` is not a SIP URI, or when the host is too old to offer it.
    pub fn set_ruri(&self, uri: &str) -> Result<(), Error> {
        let host = self.host()?;
        let f = host.vtable().sip_set_ruri().ok_or_else(|| Error::new("this host cannot rewrite the Request-URI"))?;
        if f(self.ctx, uri.into()) { Ok(()) } else { Err(Error::new(format!("`{uri}` is not a SIP URI"))) }
    }

    /// Sets the destination URI (Kamailio's `$du`): the relay sends the request to it instead
    /// of the Request-URI or Route (a phone behind NAT, reached at its received address).
    pub fn set_dst_uri(&self, uri: &str) -> Result<(), Error> {
        let host = self.host()?;
        let f = host.vtable().sip_set_dst_uri().ok_or_else(|| Error::new("this host cannot set a destination URI"))?;
        if f(self.ctx, uri.into()) { Ok(()) } else { Err(Error::new(format!("`{uri}` is not a SIP URI"))) }
    }

    /// Sets the path vector (Kamailio's `set_path_vector`): `path` is comma-separated
    /// name-addrs (`<sip:edge;lr>,<sip:core;lr>`, a stored Path); the relay adds them as Route
    /// headers, in order, on top of the request's own. The destination URI is not changed: set
    /// it to the first hop too (as registrar's `lookup` does). An empty `path` clears it. Fails
    /// when a value is not a `<sip:...>` URI, or when the host is too old to offer it.
    pub fn set_path(&self, path: &str) -> Result<(), Error> {
        let host = self.host()?;
        let f = host.vtable().sip_set_path().ok_or_else(|| Error::new("this host cannot add a Path route set"))?;
        if f(self.ctx, path.into()) { Ok(()) } else { Err(Error::new(format!("`{path}` is not a Path vector"))) }
    }

    /// Asks to be told about the replies of the transaction the relay will create for this
    /// request (Kamailio's TMCB_RESPONSE_IN on the transaction of `t_relay`): `on_reply` runs for
    /// every reply received from downstream, provisional (100 included) and final, and for the
    /// relay's local finals (408 timeout, 503 could not send, 478 unresolvable, 500; `local` set),
    /// then it is dropped. It runs on the thread that read the reply (a UDP receiver, before the
    /// reply goes upstream) or on a worker, never inside this call, and never twice at once.
    /// When the request is not relayed statefully (the route answers it, drops it, or it is an
    /// ACK) the closure is dropped without a call: put what must happen then in its `Drop`.
    /// Fails when the host is too old to offer it.
    pub fn on_relay_reply(&self, on_reply: impl FnMut(Reply<'_>) + Send + 'static) -> Result<(), Error> {
        let host = self.host()?;
        let f =
            host.vtable().sip_on_relay_reply().ok_or_else(|| Error::new("this host cannot report relayed replies"))?;
        if f(host.module_name().into(), self.ctx, relay_reply_callback(on_reply)) {
            Ok(())
        } else {
            Err(Error::new("no request is being routed"))
        }
    }

    /// Drops header line `index` (of [`Message::header_entries`]) from the request when the
    /// relay forwards it (what auth's `consume_credentials` does with the credentials it
    /// checked). Replies are not affected. Fails when the index is out of range or the host is
    /// too old to offer it.
    pub fn remove_header(&self, index: usize) -> Result<(), Error> {
        let host = self.host()?;
        let f = host.vtable().sip_remove_header().ok_or_else(|| Error::new("this host cannot remove headers"))?;
        let i = u32::try_from(index).map_err(|_| Error::new("header index out of range"))?;
        if f(self.ctx, i) { Ok(()) } else { Err(Error::new(format!("no header line {index} in the request"))) }
    }

    /// The local socket the request arrived on, as Kamailio writes it (`udp:127.0.0.1:5060`);
    /// `None` when the host does not offer it.
    pub fn received_socket(&self) -> Option<String> {
        let host = self.host().ok()?;
        let f = host.vtable().sip_received_socket()?;
        let s = f(self.ctx).into_string();
        (!s.is_empty()).then_some(s)
    }

    /// Adds a header to the replies sent for this request from now on.
    pub fn add_reply_header(&self, name: &str, value: &str) -> Result<(), Error> {
        let host = self.host()?;
        (host.vtable().sip_reply_header())(self.ctx, name.into(), value.into());
        Ok(())
    }

    fn flag_op(&self, branch: bool, op: u8, flag: u32) -> bool {
        match self.host() {
            Ok(h) => (h.vtable().sip_flag())(self.ctx, branch, op, flag),
            Err(_) => false,
        }
    }

    /// Whether message flag `flag` (0..=31) is set (Kamailio's `isflagset`).
    pub fn is_flag_set(&self, flag: u32) -> bool {
        self.flag_op(false, 0, flag)
    }

    /// Sets message flag `flag`.
    pub fn set_flag(&self, flag: u32) {
        self.flag_op(false, 1, flag);
    }

    /// Resets message flag `flag`.
    pub fn reset_flag(&self, flag: u32) {
        self.flag_op(false, 2, flag);
    }

    /// Whether branch flag `flag` of branch 0 is set (Kamailio's `isbflagset`).
    pub fn is_branch_flag_set(&self, flag: u32) -> bool {
        self.flag_op(true, 0, flag)
    }

    /// Sets branch flag `flag` of branch 0.
    pub fn set_branch_flag(&self, flag: u32) {
        self.flag_op(true, 1, flag);
    }

    /// The last value given to AVP `name` (`$avp(name)`).
    pub fn avp(&self, name: &str) -> Option<String> {
        let host = self.host().ok()?;
        (host.vtable().sip_avp_get())(self.ctx, name.into()).into_option().map(RString::into_string)
    }

    /// Every value of AVP `name`, newest first.
    pub fn avps(&self, name: &str) -> Vec<String> {
        match self.host() {
            Ok(h) => (h.vtable().sip_avp_all())(self.ctx, name.into()).into_iter().map(RString::into_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Adds a value to AVP `name`.
    pub fn set_avp(&self, name: &str, value: &str) {
        if let Ok(h) = self.host() {
            (h.vtable().sip_avp_set())(self.ctx, name.into(), value.into());
        }
    }
}

/// A request for [`Host::send_request`]. Fields left empty are filled by the host (From tag,
/// Call-ID, CSeq 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Request-URI.
    pub ruri: String,
    /// From value without tag.
    pub from: String,
    /// From tag (empty: generated).
    pub from_tag: String,
    /// To value without tag.
    pub to: String,
    /// To tag (in-dialog requests).
    pub to_tag: String,
    /// Call-ID (empty: generated).
    pub call_id: String,
    /// CSeq number (0: 1).
    pub cseq: u32,
    /// Route set, one `Route` value each, in order.
    pub route_set: Vec<String>,
    /// Contact value.
    pub contact: String,
    /// Raw header lines, each ending in CRLF.
    pub extra_headers: String,
    /// Content type; empty: no body.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
    /// Next hop instead of the first Route or the Request-URI.
    pub outbound_proxy: String,
}

impl Request {
    /// An out-of-dialog request `method ruri` with From and To set to `from` and `to`.
    pub fn new(method: &str, ruri: &str, from: &str, to: &str) -> Self {
        Self { method: method.into(), ruri: ruri.into(), from: from.into(), to: to.into(), ..Default::default() }
    }

    pub(crate) fn to_ffi(&self) -> FfiRequest {
        FfiRequest {
            method: self.method.as_str().into(),
            ruri: self.ruri.as_str().into(),
            from: self.from.as_str().into(),
            from_tag: self.from_tag.as_str().into(),
            to: self.to.as_str().into(),
            to_tag: self.to_tag.as_str().into(),
            call_id: self.call_id.as_str().into(),
            cseq: self.cseq,
            route_set: self.route_set.iter().map(|r| RString::from(r.as_str())).collect(),
            contact: self.contact.as_str().into(),
            extra_headers: self.extra_headers.as_str().into(),
            content_type: self.content_type.as_str().into(),
            body: self.body.as_slice().into(),
            outbound_proxy: self.outbound_proxy.as_str().into(),
        }
    }
}

/// What the host used for a request it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// Call-ID.
    pub call_id: String,
    /// From tag.
    pub from_tag: String,
    /// CSeq number.
    pub cseq: u32,
}

/// The final reply to a request a module sent.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'a str,
    /// No reply arrived: the host made this one up (408 on timeout, 503 when it could not
    /// send). Kamailio calls it FAKED_REPLY.
    pub local: bool,
    /// The reply, when one arrived.
    pub message: Option<Message<'a>>,
}

type BoxedReplyFn = Mutex<Option<Box<dyn FnOnce(Reply<'_>) + Send>>>;

unsafe extern "C" fn call_reply(data: *mut c_void, reply: &FfiReply<'_>) -> FfiStatus {
    // SAFETY: `data` is the `Box<BoxedReplyFn>` leaked in `reply_callback`, live until drop.
    let cell = unsafe { &*(data as *const BoxedReplyFn) };
    let f = cell.lock().ok().and_then(|mut f| f.take());
    let Some(f) = f else { return ROk(()) };
    let reply =
        Reply { code: reply.status, reason: reply.reason.as_str(), local: reply.local, message: message(&reply.msg) };
    match catch_unwind(AssertUnwindSafe(move || f(reply))) {
        Ok(()) => ROk(()),
        Err(panic) => RErr(FfiError { kind: FfiError::PANIC, message: panic_message(&panic).into() }),
    }
}

unsafe extern "C" fn drop_reply(data: *mut c_void) {
    // SAFETY: called once, on the pointer leaked in `reply_callback`.
    let boxed = unsafe { Box::from_raw(data as *mut BoxedReplyFn) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
}

pub(crate) fn reply_callback(f: impl FnOnce(Reply<'_>) + Send + 'static) -> FfiReplyCallback {
    let boxed: Box<BoxedReplyFn> = Box::new(Mutex::new(Some(Box::new(f))));
    FfiReplyCallback { data: Box::into_raw(boxed) as *mut c_void, call: call_reply, drop: drop_reply }
}

type BoxedRelayReplyFn = Mutex<Box<dyn FnMut(Reply<'_>) + Send>>;

unsafe extern "C" fn call_relay_reply(data: *mut c_void, reply: &FfiReply<'_>) -> FfiStatus {
    // SAFETY: `data` is the `Box<BoxedRelayReplyFn>` leaked in `relay_reply_callback`.
    let cell = unsafe { &*(data as *const BoxedRelayReplyFn) };
    let reply =
        Reply { code: reply.status, reason: reply.reason.as_str(), local: reply.local, message: message(&reply.msg) };
    match catch_unwind(AssertUnwindSafe(|| {
        let mut f = cell.lock().unwrap_or_else(|e| e.into_inner());
        f(reply)
    })) {
        Ok(()) => ROk(()),
        Err(panic) => RErr(FfiError { kind: FfiError::PANIC, message: panic_message(&panic).into() }),
    }
}

unsafe extern "C" fn drop_relay_reply(data: *mut c_void) {
    // SAFETY: called once, on the pointer leaked in `relay_reply_callback`.
    let boxed = unsafe { Box::from_raw(data as *mut BoxedRelayReplyFn) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
}

/// A callback for every reply of a relayed request (called any number of times, then dropped).
pub(crate) fn relay_reply_callback(f: impl FnMut(Reply<'_>) + Send + 'static) -> FfiReplyCallback {
    let boxed: Box<BoxedRelayReplyFn> = Box::new(Mutex::new(Box::new(f)));
    FfiReplyCallback { data: Box::into_raw(boxed) as *mut c_void, call: call_relay_reply, drop: drop_relay_reply }
}
