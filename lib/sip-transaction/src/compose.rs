//! Requests the layer derives from a client transaction's request: the ACK of a 3xx–6xx
//! (RFC 3261 §17.1.1.3) and the CANCEL (§9.1).
//!
//! Both copy Request-URI, the top Via (branch included), From, Call-ID, the CSeq number and
//! the Route headers of the original request; values are copied as written, with line folds
//! replaced by one SP.

use std::io::Write as _;

use sip_message::{HeaderName, Message};

/// Max-Forwards when the original request has none usable (RFC 3261 §8.1.1.6).
const DEFAULT_MAX_FORWARDS: &[u8] = b"70";

/// The ACK for a non-2xx final response to `invite`: same Request-URI, single Via equal to
/// the INVITE's top Via, From, Call-ID, CSeq number with method ACK, the INVITE's Route
/// headers, and the To of the response (it carries the To-tag). `None` if `invite` lacks a
/// header it needs (it was checked when the transaction started).
pub(crate) fn ack(invite: &Message<'_>, response_to: Option<&[u8]>) -> Option<Vec<u8>> {
    let to = match response_to {
        Some(to) => to,
        None => invite.header(HeaderName::TO)?,
    };
    derived(invite, "ACK", to)
}

/// The CANCEL for `request` (RFC 3261 §9.1): Request-URI, Call-ID, To, From, CSeq number and
/// the single top Via are those of the request, so the CANCEL matches its transaction at the
/// next hop; Route headers are copied too.
pub(crate) fn cancel(request: &Message<'_>) -> Option<Vec<u8>> {
    derived(request, "CANCEL", request.header(HeaderName::TO)?)
}

fn derived(req: &Message<'_>, method: &str, to: &[u8]) -> Option<Vec<u8>> {
    let uri = req.request_uri_str()?;
    let (_, via) = req.list(HeaderName::VIA).next()?;
    let from = req.header(HeaderName::FROM)?;
    let call_id = req.header(HeaderName::CALL_ID)?;
    let cseq = req.cseq().ok()?.number;
    let max_forwards = match req.max_forwards() {
        Ok(Some(n)) if n <= 255 => req.header(HeaderName::MAX_FORWARDS),
        _ => None,
    };

    let mut out = Vec::with_capacity(256 + to.len() + from.len() + uri.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.as_bytes());
    out.extend_from_slice(b" SIP/2.0\r\n");
    push_header(&mut out, b"Via", via);
    push_header(&mut out, b"Max-Forwards", max_forwards.unwrap_or(DEFAULT_MAX_FORWARDS));
    for route in req.headers(HeaderName::ROUTE) {
        push_header(&mut out, b"Route", route);
    }
    push_header(&mut out, b"From", from);
    push_header(&mut out, b"To", to);
    push_header(&mut out, b"Call-ID", call_id);
    out.extend_from_slice(b"CSeq: ");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{cseq}");
    out.push(b' ');
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    Some(out)
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    sip_message::push_unfolded(out, value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_message::parse;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport, SIP/2.0/UDP other;branch=z9hG4bKzz\r\n\
Via: SIP/2.0/TCP below;branch=z9hG4bKyy\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n\
f: \"A\" <sip:alice@example.com>;tag=a1\r\n\
t: <sip:bob@example.com>\r\n\
i: call-1@192.0.2.1\r\n\
CSeq: 0042 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn ack_copies_the_invite_and_the_response_to() {
        let p = parse(INVITE).unwrap();
        let m = Message::new(INVITE, &p);
        let ack = ack(&m, Some(b"<sip:bob@example.com>;tag=b9")).unwrap();
        assert_eq!(
            std::str::from_utf8(&ack).unwrap(),
            "ACK sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n\
From: \"A\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b9\r\n\
Call-ID: call-1@192.0.2.1\r\n\
CSeq: 42 ACK\r\n\
Content-Length: 0\r\n\r\n"
        );
        let pa = parse(&ack).unwrap();
        Message::new(&ack, &pa).validate().unwrap();
    }

    #[test]
    fn cancel_keeps_to_without_tag() {
        let p = parse(INVITE).unwrap();
        let m = Message::new(INVITE, &p);
        let c = cancel(&m).unwrap();
        let pc = parse(&c).unwrap();
        let mc = Message::new(&c, &pc);
        mc.validate().unwrap();
        assert_eq!(mc.request_uri_str(), Some("sip:bob@example.com"));
        assert_eq!(mc.vias().count(), 1);
        assert_eq!(mc.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(mc.to().unwrap().tag(), None);
        assert_eq!(mc.cseq().unwrap().number, 42);
        assert_eq!(mc.cseq().unwrap().method, sip_message::Method::Cancel);
        assert_eq!(mc.routes().count(), 3);
        assert!(mc.body().is_empty());
    }

    #[test]
    fn bad_max_forwards_falls_back() {
        let raw = b"MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: lots\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n";
        let p = parse(raw).unwrap();
        let c = cancel(&Message::new(raw, &p)).unwrap();
        assert!(c.windows(17).any(|w| w == b"Max-Forwards: 70\r"));
    }
}
