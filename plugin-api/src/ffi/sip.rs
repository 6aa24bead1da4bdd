//! SIP messages as they cross the boundary: the host's parse index, borrowed, so a module reads
//! a request or reply without re-parsing or copying it.

use std::ffi::c_void;
use std::mem::{align_of, offset_of, size_of};

use abi_stable::StableAbi;
use abi_stable::std_types::{RSlice, RStr, RString, RVec};

use super::FfiStatus;

/// Mirror of `sip_message::StartLine` (same fields, same order, same types).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default)]
pub struct FfiStartLine {
    /// 0 request, 1 response.
    pub kind: u8,
    /// Always 0.
    pub reserved: u8,
    /// Status code of a response.
    pub status_code: u16,
    /// Method range.
    pub method_start: u32,
    /// Method range end.
    pub method_end: u32,
    /// Request-URI range.
    pub uri_start: u32,
    /// Request-URI range end.
    pub uri_end: u32,
    /// Version range.
    pub version_start: u32,
    /// Version range end.
    pub version_end: u32,
    /// Reason range.
    pub reason_start: u32,
    /// Reason range end.
    pub reason_end: u32,
}

/// Mirror of `sip_message::HeaderEntry`; a slice of these is handed across by pointer, so the
/// layout must stay identical (checked at compile time below).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiHeaderEntry {
    /// `HeaderName` number.
    pub name: u16,
    /// Name range start.
    pub name_start: u32,
    /// Name range end.
    pub name_end: u32,
    /// Value range start.
    pub value_start: u32,
    /// Value range end.
    pub value_end: u32,
}

const _: () = {
    use sip_message::{HeaderEntry, StartLine};
    assert!(size_of::<FfiHeaderEntry>() == size_of::<HeaderEntry>());
    assert!(align_of::<FfiHeaderEntry>() == align_of::<HeaderEntry>());
    assert!(offset_of!(FfiHeaderEntry, name) == offset_of!(HeaderEntry, name));
    assert!(offset_of!(FfiHeaderEntry, name_start) == offset_of!(HeaderEntry, name_start));
    assert!(offset_of!(FfiHeaderEntry, name_end) == offset_of!(HeaderEntry, name_end));
    assert!(offset_of!(FfiHeaderEntry, value_start) == offset_of!(HeaderEntry, value_start));
    assert!(offset_of!(FfiHeaderEntry, value_end) == offset_of!(HeaderEntry, value_end));
    assert!(size_of::<FfiStartLine>() == size_of::<StartLine>());
    assert!(size_of::<sip_message::HeaderName>() == size_of::<u16>());
};

impl From<sip_message::StartLine> for FfiStartLine {
    fn from(s: sip_message::StartLine) -> Self {
        Self {
            kind: s.kind,
            reserved: s.reserved,
            status_code: s.status_code,
            method_start: s.method_start,
            method_end: s.method_end,
            uri_start: s.uri_start,
            uri_end: s.uri_end,
            version_start: s.version_start,
            version_end: s.version_end,
            reason_start: s.reason_start,
            reason_end: s.reason_end,
        }
    }
}

impl From<FfiStartLine> for sip_message::StartLine {
    fn from(s: FfiStartLine) -> Self {
        Self {
            kind: s.kind,
            reserved: s.reserved,
            status_code: s.status_code,
            method_start: s.method_start,
            method_end: s.method_end,
            uri_start: s.uri_start,
            uri_end: s.uri_end,
            version_start: s.version_start,
            version_end: s.version_end,
            reason_start: s.reason_start,
            reason_end: s.reason_end,
        }
    }
}

/// The header index of a message as lent across the boundary, without a copy.
pub fn ffi_headers(headers: &[sip_message::HeaderEntry]) -> &[FfiHeaderEntry] {
    // SAFETY: `FfiHeaderEntry` mirrors `HeaderEntry` field for field (asserted above) and both
    // are plain integers.
    unsafe { std::slice::from_raw_parts(headers.as_ptr().cast(), headers.len()) }
}

/// The header index as the parser's type again, without a copy.
pub fn sip_headers(headers: &[FfiHeaderEntry]) -> &[sip_message::HeaderEntry] {
    // SAFETY: as in `ffi_headers`, the other way round.
    unsafe { std::slice::from_raw_parts(headers.as_ptr().cast(), headers.len()) }
}

/// A parsed message, borrowed for the duration of a call.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiMsg<'a> {
    /// The message bytes (empty when there is no message).
    pub buf: RSlice<'a, u8>,
    /// The start line.
    pub start: FfiStartLine,
    /// One entry per header line.
    pub headers: RSlice<'a, FfiHeaderEntry>,
    /// Body range start.
    pub body_start: u32,
    /// Body range end.
    pub body_end: u32,
}

impl FfiMsg<'_> {
    /// No message.
    pub const EMPTY: FfiMsg<'static> =
        FfiMsg { buf: RSlice::EMPTY, start: FfiStartLine::ZERO, headers: RSlice::EMPTY, body_start: 0, body_end: 0 };
}

impl FfiStartLine {
    const ZERO: Self = Self {
        kind: 0,
        reserved: 0,
        status_code: 0,
        method_start: 0,
        method_end: 0,
        uri_start: 0,
        uri_end: 0,
        version_start: 0,
        version_end: 0,
        reason_start: 0,
        reason_end: 0,
    };
}

/// Where a message came from.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default)]
pub struct FfiPeer {
    /// IPv4 (first 4 bytes) or IPv6 address.
    pub ip: [u8; 16],
    /// 6 for IPv6, 4 for IPv4.
    pub family: u8,
    /// Port.
    pub port: u16,
    /// 1 UDP, 2 TCP, 3 TLS.
    pub transport: u8,
}

/// A request a module asks the host to send.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FfiRequest {
    /// Method (`PUBLISH`, `SUBSCRIBE`, `NOTIFY`, ...).
    pub method: RString,
    /// Request-URI.
    pub ruri: RString,
    /// From header value without tag (`<sip:alice@example.com>` or a bare URI).
    pub from: RString,
    /// From tag; empty: the host generates one.
    pub from_tag: RString,
    /// To header value without tag.
    pub to: RString,
    /// To tag (in-dialog requests); empty: none.
    pub to_tag: RString,
    /// Call-ID; empty: the host generates one.
    pub call_id: RString,
    /// CSeq number; 0: the host uses 1.
    pub cseq: u32,
    /// Route set, in order (one `Route:` value each).
    pub route_set: RVec<RString>,
    /// Contact value; empty: none.
    pub contact: RString,
    /// Raw extra header lines, each ending in CRLF (Kamailio's `extra_headers`).
    pub extra_headers: RString,
    /// Content-Type of the body; empty: no body.
    pub content_type: RString,
    /// Body.
    pub body: RVec<u8>,
    /// Next hop instead of the first Route or the Request-URI (`sip:host:port;transport=tcp`).
    pub outbound_proxy: RString,
}

/// What the host filled in when it sent a request.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FfiSentRequest {
    /// The Call-ID used.
    pub call_id: RString,
    /// The From tag used.
    pub from_tag: RString,
    /// The CSeq number used.
    pub cseq: u32,
}

/// The final answer to a request a module sent.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiReply<'a> {
    /// Status code (408 for a local timeout, 503 when the request could not be sent).
    pub status: u16,
    /// The reply's reason phrase, or the host's for a local reply.
    pub reason: RStr<'a>,
    /// True when no reply arrived and the host made this one up (Kamailio's FAKED_REPLY).
    pub local: bool,
    /// The reply message (empty for a local reply).
    pub msg: FfiMsg<'a>,
}

/// A callback for replies, dropped after its last call: the final reply of a module's request
/// (`sip_send_request`, at most once, on a worker), or every reply of a relayed request
/// (`sip_on_relay_reply`).
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiReplyCallback {
    /// Closure data, owned by the plugin.
    pub data: *mut c_void,
    /// Runs the closure.
    pub call: unsafe extern "C" fn(data: *mut c_void, reply: &FfiReply<'_>) -> FfiStatus,
    /// Frees the closure.
    pub drop: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: built only from `Send` closures (plugin_api::sip).
unsafe impl Send for FfiReplyCallback {}

impl Drop for FfiReplyCallback {
    fn drop(&mut self) {
        // SAFETY: `drop` belongs to the plugin that allocated `data`; it runs once.
        unsafe { (self.drop)(self.data) }
    }
}

impl FfiReplyCallback {
    /// Runs the closure with `reply`.
    pub fn call(&self, reply: &FfiReply<'_>) -> FfiStatus {
        // SAFETY: `data` is live until `Drop`.
        unsafe { (self.call)(self.data, reply) }
    }
}

/// One extra header for a reply.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiHeader<'a> {
    /// Header name.
    pub name: RStr<'a>,
    /// Header value.
    pub value: RStr<'a>,
}
