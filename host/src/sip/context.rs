//! An owned SIP message, and the per-request routing context (Kamailio's `sip_msg` plus what
//! the script attaches to it: flags, AVPs, reply headers, a rewritten Request-URI).

use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use plugin_api::ffi::{FfiMsg, FfiPeer, RSlice, ffi_headers};
use sip_message::{Message, ParsedMessage};
use sip_transaction::TxId;

use super::transport::Source;

/// A message and its parse index.
#[derive(Debug)]
pub struct SipMsg {
    pub buf: Bytes,
    pub parsed: ParsedMessage,
}

impl SipMsg {
    /// A view for typed access.
    pub fn view(&self) -> Message<'_> {
        Message::new(&self.buf, &self.parsed)
    }

    /// The message as lent to a module: the buffer and the index, no copy.
    pub fn ffi(&self) -> FfiMsg<'_> {
        FfiMsg {
            buf: RSlice::from_slice(&self.buf),
            start: self.parsed.start.into(),
            headers: RSlice::from_slice(ffi_headers(&self.parsed.headers)),
            body_start: self.parsed.body_start,
            body_end: self.parsed.body_end,
        }
    }
}

/// The peer as lent to a module.
pub fn ffi_peer(src: &Source) -> FfiPeer {
    let (ip, family) = match src.addr.ip() {
        std::net::IpAddr::V4(v4) => {
            let mut ip = [0u8; 16];
            ip[..4].copy_from_slice(&v4.octets());
            (ip, 4)
        }
        std::net::IpAddr::V6(v6) => (v6.octets(), 6),
    };
    FfiPeer { ip, family, port: src.addr.port(), transport: if src.proto.reliable() { 2 } else { 1 } }
}

/// A request being routed. Lives on one worker for the duration of its route; module
/// functions reach it through the `ctx` pointer of their call, so its state is in cells.
pub struct RequestCtx {
    pub msg: SipMsg,
    pub src: Source,
    /// Its server transaction (none for ACK and requests that could not be matched).
    pub tx: Option<TxId>,
    pub flags: Cell<u32>,
    pub bflags: Cell<u32>,
    avps: RefCell<Vec<(String, String)>>,
    pub reply_headers: RefCell<Vec<(String, String)>>,
    /// A final reply was sent.
    pub replied: Cell<bool>,
    /// The request was handed to the stateful relay.
    pub relayed: Cell<bool>,
    /// `rewriteuri()`.
    pub new_ruri: RefCell<Option<String>>,
    /// Destination URI (`$du`): where the relay sends the request, whatever R-URI and Route say.
    pub dst_uri: RefCell<Option<String>>,
    /// Path vector (Kamailio's `path_vec`, set by registrar's `lookup`): name-addrs the relay
    /// adds as Route headers above the request's own, in order ([`route_set`]).
    pub path: RefCell<Option<Vec<String>>>,
    /// `record_route()`.
    pub record_route: Cell<bool>,
    /// Header lines (entries of the header index) the relay leaves out (`sip_remove_header`).
    pub removed_headers: RefCell<Vec<u32>>,
    /// Modules' callbacks for the replies of the relay's client transaction
    /// (`sip_on_relay_reply`), with the module names; moved into the relay state by `t_relay`.
    pub relay_watchers: RefCell<Vec<(String, plugin_api::ffi::FfiReplyCallback)>>,
    /// The To-tag for replies to an out-of-dialog request: a hash of the dialog-identifying
    /// fields, so every reply to the same request (and its retransmissions) carries the same tag.
    pub to_tag: String,
}

/// A path vector (`<sip:a;lr>,<sip:b;lr>`) as the name-addrs of its Route headers, in order;
/// `None` when a value is not a `<...>` SIP URI (or the vector is empty). Commas inside
/// `<...>` or quotes do not split.
pub fn route_set(path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let (mut angle, mut quoted, mut start) = (false, false, 0);
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' if !angle => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                out.push(path[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(path[start..].trim());
    let mut routes = Vec::with_capacity(out.len());
    for value in out {
        let uri = value.strip_prefix('<').and_then(|v| v.split_once('>')).map(|(u, _)| u)?;
        let parsed = sip_message::SipUri::parse(uri).ok()?;
        if !matches!(parsed.scheme(), sip_message::uri::Scheme::Sip | sip_message::uri::Scheme::Sips) {
            return None;
        }
        if value.contains(['\r', '\n']) {
            return None;
        }
        routes.push(value.to_string());
    }
    (!routes.is_empty()).then_some(routes)
}

impl RequestCtx {
    pub fn new(msg: SipMsg, src: Source, tx: Option<TxId>) -> Self {
        let to_tag = {
            let m = msg.view();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            m.call_id().unwrap_or("").hash(&mut h);
            m.from().ok().and_then(|f| f.tag()).unwrap_or("").hash(&mut h);
            m.top_via().ok().and_then(|v| v.branch()).unwrap_or("").hash(&mut h);
            m.cseq().map(|c| c.number).unwrap_or(0).hash(&mut h);
            format!("{:016x}", h.finish())
        };
        Self {
            msg,
            src,
            tx,
            flags: Cell::new(0),
            bflags: Cell::new(0),
            avps: RefCell::new(Vec::new()),
            reply_headers: RefCell::new(Vec::new()),
            replied: Cell::new(false),
            relayed: Cell::new(false),
            new_ruri: RefCell::new(None),
            dst_uri: RefCell::new(None),
            path: RefCell::new(None),
            record_route: Cell::new(false),
            removed_headers: RefCell::new(Vec::new()),
            relay_watchers: RefCell::new(Vec::new()),
            to_tag,
        }
    }

    /// The Request-URI, after `rewriteuri()`.
    pub fn ruri(&self) -> String {
        match &*self.new_ruri.borrow() {
            Some(u) => u.clone(),
            None => self.msg.view().request_uri_str().unwrap_or("").to_string(),
        }
    }

    /// Last value of AVP `name`.
    pub fn avp(&self, name: &str) -> Option<String> {
        self.avps.borrow().iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    /// Every value of AVP `name`, newest first.
    pub fn avps(&self, name: &str) -> Vec<String> {
        self.avps.borrow().iter().rev().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    /// Adds a value to AVP `name`.
    pub fn push_avp(&self, name: &str, value: &str) {
        self.avps.borrow_mut().push((name.to_string(), value.to_string()));
    }

    /// Flag operation: 0 test, 1 set, 2 reset; returns the value after it.
    pub fn flag(&self, branch: bool, op: u8, flag: u32) -> bool {
        if flag > 31 {
            return false;
        }
        let cell = if branch { &self.bflags } else { &self.flags };
        let bit = 1u32 << flag;
        match op {
            1 => cell.set(cell.get() | bit),
            2 => cell.set(cell.get() & !bit),
            _ => {}
        }
        cell.get() & bit != 0
    }
}
