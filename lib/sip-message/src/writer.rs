//! Writing replies and requests into a caller-provided `Vec<u8>` (reused across messages).
//!
//! Caller-provided text must not contain CR or LF (that would let a value inject header
//! lines); such input is refused with [`WriteError::InvalidText`] and nothing is written.
//! Copied header values are unfolded (each fold becomes one SP) so that the output never
//! carries line folding.

use core::fmt;

use crate::headers::NameAddr;
use crate::message::Message;
use crate::scan::{self, is_token_str};
use crate::{HeaderName, Method};

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// A reply was requested for a response.
    NotARequest,
    /// The request lacks a header the reply copies (see [`Message::check_replyable`]).
    MissingHeader(HeaderName),
    /// Status code outside 100..=699.
    BadStatusCode,
    /// Caller text contains CR/LF (or, for methods and header names, is not a token).
    InvalidText,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::NotARequest => f.write_str("cannot reply to a response"),
            WriteError::MissingHeader(h) => write!(f, "request has no {h} header to copy"),
            WriteError::BadStatusCode => f.write_str("status code outside 100..=699"),
            WriteError::InvalidText => f.write_str("text with CR/LF or an invalid token"),
        }
    }
}

impl std::error::Error for WriteError {}

/// A body and its Content-Type.
#[derive(Clone, Copy, Debug)]
pub struct Body<'r> {
    /// Content-Type value, e.g. `application/pidf+xml`.
    pub content_type: &'r str,
    /// The body bytes.
    pub bytes: &'r [u8],
}

/// Options of [`write_reply`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplyOptions<'r> {
    /// To-tag to add when the request's To has none (required for any reply but 100).
    pub to_tag: Option<&'r str>,
    /// Source address to add as `received` to the top Via (RFC 3261 §18.2.1), if it differs
    /// from the sent-by host.
    pub received: Option<&'r str>,
    /// Source port to fill into a valueless `rport` of the top Via (RFC 3581).
    pub rport: Option<u16>,
    /// Extra header lines, `(name, value)`, written after the copied ones.
    pub headers: &'r [(&'r str, &'r str)],
    /// Optional body.
    pub body: Option<Body<'r>>,
}

fn clean(s: &str) -> Result<&str, WriteError> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n') { Err(WriteError::InvalidText) } else { Ok(s) }
}

/// Appends header value `value` with each line fold (CRLF followed by whitespace) replaced by
/// one SP, as a header written on one line must be.
pub fn push_unfolded(out: &mut Vec<u8>, value: &[u8]) {
    let mut in_fold = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => in_fold = true,
            b' ' | b'\t' if in_fold => {}
            _ => {
                if in_fold {
                    out.push(b' ');
                    in_fold = false;
                }
                out.push(b);
            }
        }
    }
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    push_unfolded(out, value);
    out.extend_from_slice(b"\r\n");
}

fn push_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

fn check_extra(headers: &[(&str, &str)]) -> Result<(), WriteError> {
    for (n, v) in headers {
        if !is_token_str(n.as_bytes()) {
            return Err(WriteError::InvalidText);
        }
        clean(v)?;
    }
    Ok(())
}

fn push_tail(out: &mut Vec<u8>, headers: &[(&str, &str)], body: Option<Body<'_>>) {
    for (n, v) in headers {
        push_header(out, n, v.as_bytes());
    }
    match body {
        Some(b) => {
            push_header(out, "Content-Type", b.content_type.as_bytes());
            out.extend_from_slice(b"Content-Length: ");
            push_u32(out, u32::try_from(b.bytes.len()).unwrap_or(u32::MAX));
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(b.bytes);
        }
        None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// Appends a reply to `request` to `out`: status line, every Via value in order (the top one
/// with `received`/`rport` filled in when asked), From, To (with `to_tag` added if it has no
/// tag), Call-ID, CSeq, the extra headers, Content-Type and body if given, and Content-Length.
///
/// On error nothing is appended.
pub fn write_reply(
    out: &mut Vec<u8>,
    request: &Message<'_>,
    code: u16,
    reason: &str,
    opts: &ReplyOptions<'_>,
) -> Result<(), WriteError> {
    if !request.is_request() {
        return Err(WriteError::NotARequest);
    }
    if !(100..=699).contains(&code) {
        return Err(WriteError::BadStatusCode);
    }
    clean(reason)?;
    check_extra(opts.headers)?;
    for t in [opts.to_tag, opts.received].into_iter().flatten() {
        if !is_token_str(t.as_bytes()) && !t.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(WriteError::InvalidText);
        }
    }
    if let Some(b) = &opts.body {
        clean(b.content_type)?;
    }
    let mut copied = [&[][..]; 4];
    for (slot, name) in copied.iter_mut().zip([HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID, HeaderName::CSEQ])
    {
        *slot = request.header(name).ok_or(WriteError::MissingHeader(name))?;
    }
    let [from, to, call_id, cseq] = copied;
    if request.header(HeaderName::VIA).is_none() {
        return Err(WriteError::MissingHeader(HeaderName::VIA));
    }

    out.extend_from_slice(b"SIP/2.0 ");
    push_u32(out, u32::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");

    let mut first = true;
    for (_, via) in request.list(HeaderName::VIA) {
        out.extend_from_slice(b"Via: ");
        if first {
            push_top_via(out, via, opts);
            first = false;
        } else {
            push_unfolded(out, via);
        }
        out.extend_from_slice(b"\r\n");
    }
    push_header(out, "From", from);
    out.extend_from_slice(b"To: ");
    push_unfolded(out, to);
    if let Some(tag) = opts.to_tag
        && NameAddr::parse(to).is_some_and(|t| t.tag().is_none())
    {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(tag.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    push_header(out, "Call-ID", call_id);
    push_header(out, "CSeq", cseq);
    push_tail(out, opts.headers, opts.body);
    Ok(())
}

/// Copies the top Via value, filling a valueless `rport` and appending `received`.
fn push_top_via(out: &mut Vec<u8>, via: &[u8], opts: &ReplyOptions<'_>) {
    let rport_at = opts.rport.and_then(|_| valueless_rport_end(via));
    match (rport_at, opts.rport) {
        (Some(end), Some(port)) => {
            push_unfolded(out, via.get(..end).unwrap_or_default());
            out.push(b'=');
            push_u32(out, u32::from(port));
            push_unfolded(out, via.get(end..).unwrap_or_default());
        }
        _ => push_unfolded(out, via),
    }
    if let Some(r) = opts.received {
        out.extend_from_slice(b";received=");
        out.extend_from_slice(r.as_bytes());
    }
}

/// End offset of the name of a valueless `rport` parameter in a Via value.
fn valueless_rport_end(via: &[u8]) -> Option<usize> {
    let mut pos = via.iter().position(|&b| b == b';')?;
    while let Ok(Some((p, next))) = scan::next_param(via, pos) {
        if p.name.eq_ignore_ascii_case(b"rport") && p.value.is_none() {
            return Some(next);
        }
        pos = next;
    }
    None
}

/// What [`write_request`] writes. Values are inserted as given (name-addr text for From/To/
/// Contact/Route, e.g. `"Alice" <sip:alice@example.com>`).
#[derive(Clone, Copy, Debug)]
pub struct RequestSpec<'r> {
    /// Method (also written into CSeq).
    pub method: Method<'r>,
    /// Request-URI.
    pub uri: &'r str,
    /// Via transport, e.g. `UDP`.
    pub via_transport: &'r str,
    /// Via sent-by, `host[:port]` (IPv6 in brackets).
    pub via_sent_by: &'r str,
    /// Via branch; should start with `z9hG4bK`.
    pub branch: &'r str,
    /// Whether to ask for `rport` (RFC 3581).
    pub rport: bool,
    /// Max-Forwards.
    pub max_forwards: u8,
    /// From value without tag.
    pub from: &'r str,
    /// From tag.
    pub from_tag: &'r str,
    /// To value without tag.
    pub to: &'r str,
    /// To tag (in-dialog requests).
    pub to_tag: Option<&'r str>,
    /// Call-ID.
    pub call_id: &'r str,
    /// CSeq number.
    pub cseq: u32,
    /// Contact value.
    pub contact: Option<&'r str>,
    /// Route values, in order (one Route line each).
    pub routes: &'r [&'r str],
    /// Extra header lines `(name, value)`.
    pub headers: &'r [(&'r str, &'r str)],
    /// Optional body.
    pub body: Option<Body<'r>>,
}

/// Appends a request to `out`. On error nothing is appended.
pub fn write_request(out: &mut Vec<u8>, spec: &RequestSpec<'_>) -> Result<(), WriteError> {
    let method = spec.method.as_str();
    let tokens = [method, spec.via_transport, spec.branch, spec.from_tag];
    if tokens.iter().any(|t| !is_token_str(t.as_bytes()))
        || spec.to_tag.is_some_and(|t| !is_token_str(t.as_bytes()))
        || spec.uri.is_empty()
        || spec.uri.bytes().any(|b| b <= b' ')
    {
        return Err(WriteError::InvalidText);
    }
    for t in [spec.via_sent_by, spec.from, spec.to, spec.call_id] {
        clean(t)?;
    }
    for t in spec.contact.iter().chain(spec.routes.iter()) {
        clean(t)?;
    }
    check_extra(spec.headers)?;
    if let Some(b) = &spec.body {
        clean(b.content_type)?;
    }

    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.uri.as_bytes());
    out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
    out.extend_from_slice(spec.via_transport.as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.via_sent_by.as_bytes());
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(spec.branch.as_bytes());
    if spec.rport {
        out.extend_from_slice(b";rport");
    }
    out.extend_from_slice(b"\r\nMax-Forwards: ");
    push_u32(out, u32::from(spec.max_forwards));
    out.extend_from_slice(b"\r\n");
    for r in spec.routes {
        push_header(out, "Route", r.as_bytes());
    }
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(spec.from.as_bytes());
    out.extend_from_slice(b";tag=");
    out.extend_from_slice(spec.from_tag.as_bytes());
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(spec.to.as_bytes());
    if let Some(t) = spec.to_tag {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    push_header(out, "Call-ID", spec.call_id.as_bytes());
    out.extend_from_slice(b"CSeq: ");
    push_u32(out, spec.cseq);
    out.push(b' ');
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(c) = spec.contact {
        push_header(out, "Contact", c.as_bytes());
    }
    push_tail(out, spec.headers, spec.body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const REQ: &[u8] = b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport, SIP/2.0/TCP p.example.com;branch=z9hG4bK0\r\n\
Via: SIP/2.0/UDP q.example.com\r\n  ;branch=z9hG4bKq\r\n\
f: <sip:alice@example.com>;tag=a1\r\nt: <sip:bob@example.com>\r\ni: cid-1\r\nCSeq: 5 SUBSCRIBE\r\n\
Event: presence\r\nl: 0\r\n\r\n";

    #[test]
    fn reply_copies_and_tags() {
        let p = parse(REQ).unwrap();
        let m = Message::new(REQ, &p);
        let mut out = b"junk-kept".to_vec();
        let opts = ReplyOptions {
            to_tag: Some("srv9"),
            received: Some("198.51.100.7"),
            rport: Some(40000),
            headers: &[("Expires", "600")],
            body: None,
        };
        write_reply(&mut out, &m, 200, "OK", &opts).unwrap();
        let text = std::str::from_utf8(&out[9..]).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.7\r\n\
Via: SIP/2.0/TCP p.example.com;branch=z9hG4bK0\r\n\
Via: SIP/2.0/UDP q.example.com ;branch=z9hG4bKq\r\n\
From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=srv9\r\n\
Call-ID: cid-1\r\nCSeq: 5 SUBSCRIBE\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
        );
        let p2 = parse(&out[9..]).unwrap();
        let r = Message::new(&out[9..], &p2);
        assert_eq!(r.status_code(), Some(200));
        assert_eq!(r.to().unwrap().tag(), Some("srv9"));
        assert_eq!(r.vias().count(), 3);
    }

    #[test]
    fn reply_errors_write_nothing() {
        let p = parse(REQ).unwrap();
        let m = Message::new(REQ, &p);
        let mut out = Vec::new();
        let bad = ReplyOptions { headers: &[("X", "a\r\nInjected: 1")], ..ReplyOptions::default() };
        assert_eq!(write_reply(&mut out, &m, 200, "OK", &bad), Err(WriteError::InvalidText));
        assert_eq!(write_reply(&mut out, &m, 99, "x", &ReplyOptions::default()), Err(WriteError::BadStatusCode));
        assert!(out.is_empty());
    }

    #[test]
    fn request_round_trip() {
        let body = Body { content_type: "application/pidf+xml", bytes: b"<presence/>" };
        let spec = RequestSpec {
            method: Method::Publish,
            uri: "sip:alice@example.com",
            via_transport: "UDP",
            via_sent_by: "192.0.2.5:5060",
            branch: "z9hG4bKabc",
            rport: true,
            max_forwards: 70,
            from: "<sip:alice@example.com>",
            from_tag: "f1",
            to: "<sip:alice@example.com>",
            to_tag: None,
            call_id: "pub-1@192.0.2.5",
            cseq: 7,
            contact: Some("<sip:pua@192.0.2.5>"),
            routes: &["<sip:proxy.example.com;lr>"],
            headers: &[("Event", "presence"), ("Expires", "3600"), ("SIP-If-Match", "e1")],
            body: Some(body),
        };
        let mut out = Vec::new();
        write_request(&mut out, &spec).unwrap();
        let p = parse(&out).unwrap();
        let m = Message::new(&out, &p);
        m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Publish));
        assert_eq!(m.top_via().unwrap().rport(), Some(None));
        assert_eq!(m.from().unwrap().tag(), Some("f1"));
        assert_eq!(m.cseq().unwrap().number, 7);
        assert_eq!(m.sip_if_match(), Ok(Some("e1")));
        assert_eq!(m.body(), b"<presence/>");
        assert_eq!(m.routes().count(), 1);
        let bad = RequestSpec { call_id: "x\r\ny", ..spec };
        assert_eq!(write_request(&mut Vec::new(), &bad), Err(WriteError::InvalidText));
    }

    #[test]
    fn numbers() {
        let mut v = Vec::new();
        for n in [0u32, 7, 10, 4294967295] {
            v.clear();
            push_u32(&mut v, n);
            assert_eq!(v, n.to_string().as_bytes());
        }
    }
}
