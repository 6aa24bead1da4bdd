//! Transaction keys: the byte strings under which transactions are found.
//!
//! A key is written into a reused buffer (no allocation per message), hashed, and looked up;
//! only a new transaction copies it into a `Box<[u8]>` of its own. Fields are length-prefixed,
//! so no two different field tuples give the same bytes; the first byte tells the kind.

use sip_message::headers::{CSeq, Via};
use sip_message::{HeaderName, Message, Method};

/// The RFC 3261 magic cookie (§8.1.1.7): a branch starting with it is globally unique.
pub(crate) const COOKIE: &str = "z9hG4bK";

const SERVER_3261: u8 = b'3';
const SERVER_2543: u8 = b'2';
const CLIENT: u8 = b'c';

/// The fields of a received request that matching needs, parsed once.
pub(crate) struct RequestHead<'a> {
    pub(crate) method: Method<'a>,
    pub(crate) via: Via<'a>,
    pub(crate) cseq: CSeq<'a>,
}

impl<'a> RequestHead<'a> {
    /// Parses the matching fields of a request, or says why it cannot be matched.
    pub(crate) fn parse(msg: &Message<'a>) -> Result<Self, &'static str> {
        let method = msg.method().ok_or("not a request")?;
        let via = msg.top_via().map_err(|_| "no usable top Via")?;
        let cseq = msg.cseq().map_err(|_| "no usable CSeq")?;
        // RFC 3261 §8.1.1.5: the CSeq method matches the request's (ACK and CANCEL included).
        if cseq.method != method {
            return Err("CSeq method differs from the request method");
        }
        Ok(RequestHead { method, via, cseq })
    }

    /// Whether RFC 3261 matching applies (the branch carries the magic cookie).
    pub(crate) fn rfc3261_branch(&self) -> Option<&'a str> {
        self.via.branch().filter(|b| b.starts_with(COOKIE))
    }
}

/// Which To-tag an RFC 2543 key uses.
#[derive(Clone, Copy)]
pub(crate) enum ToTag {
    /// The request's own.
    Own,
    /// None (an ACK looked up against an initial INVITE, whose To had no tag).
    Empty,
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn field_lower(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend(bytes.iter().map(u8::to_ascii_lowercase));
}

/// Writes the server transaction key of `msg` as if its method were `method` (INVITE for an
/// ACK or for the INVITE a CANCEL targets).
///
/// RFC 3261 §17.2.3: branch + sent-by + method. Branch and host compare case-insensitively
/// (§7.3.1: parameter values and host names are case-insensitive unless stated otherwise);
/// the port is taken as written (a retransmission repeats the Via).
///
/// RFC 2543 fallback (no magic cookie): Request-URI, To-tag, From-tag, Call-ID, CSeq number,
/// method and the top Via value, as written.
pub(crate) fn server(
    buf: &mut Vec<u8>,
    msg: &Message<'_>,
    head: &RequestHead<'_>,
    method: &str,
    to_tag: ToTag,
) -> Result<(), &'static str> {
    buf.clear();
    if let Some(branch) = head.rfc3261_branch() {
        buf.push(SERVER_3261);
        field_lower(buf, branch.as_bytes());
        field_lower(buf, head.via.host().as_str().as_bytes());
        buf.extend_from_slice(&head.via.port().unwrap_or(0).to_le_bytes());
        field(buf, method.as_bytes());
        return Ok(());
    }
    let call_id = msg.call_id().map_err(|_| "no usable Call-ID")?;
    let from_tag = msg.from().map_err(|_| "no usable From")?.tag().unwrap_or_default();
    let to = msg.to().map_err(|_| "no usable To")?;
    let to_tag = match to_tag {
        ToTag::Own => to.tag().unwrap_or_default(),
        ToTag::Empty => "",
    };
    let uri = msg.request_uri_str().ok_or("not a request")?;
    let via = msg.list(HeaderName::VIA).next().map(|(_, v)| v).unwrap_or_default();
    buf.push(SERVER_2543);
    field(buf, method.as_bytes());
    buf.extend_from_slice(&head.cseq.number.to_le_bytes());
    field(buf, call_id.as_bytes());
    field(buf, from_tag.as_bytes());
    field(buf, to_tag.as_bytes());
    field(buf, uri.as_bytes());
    field(buf, via);
    Ok(())
}

/// Writes the client transaction key (RFC 3261 §17.1.3): top Via branch + CSeq method.
pub(crate) fn client(buf: &mut Vec<u8>, branch: &str, method: &str) {
    buf.clear();
    buf.push(CLIENT);
    field_lower(buf, branch.as_bytes());
    field(buf, method.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_message::parse;

    fn key(raw: &[u8], method: &str, to_tag: ToTag) -> Vec<u8> {
        let p = parse(raw).unwrap();
        let m = Message::new(raw, &p);
        let head = RequestHead::parse(&m).unwrap();
        let mut buf = vec![1, 2, 3];
        server(&mut buf, &m, &head, method, to_tag).unwrap();
        buf
    }

    #[test]
    fn rfc3261_key_is_case_insensitive_in_branch_and_host() {
        let a = key(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP Host.Example;branch=z9hG4bKAbC\r\nCSeq: 1 OPTIONS\r\n\r\n",
            "OPTIONS",
            ToTag::Own,
        );
        let b = key(
            b"OPTIONS sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP host.example;branch=z9hG4bKabc\r\nCSeq: 2 OPTIONS\r\n\r\n",
            "OPTIONS",
            ToTag::Own,
        );
        assert_eq!(a, b);
        assert_eq!(a[0], SERVER_3261);
        let c = key(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP host.example:5061;branch=z9hG4bKabc\r\nCSeq: 1 OPTIONS\r\n\r\n", "OPTIONS", ToTag::Own);
        assert_ne!(a, c, "sent-by port differs");
    }

    #[test]
    fn rfc2543_key_uses_dialog_fields() {
        let req = |uri: &str, to: &str| {
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\nFrom: <sip:a@b>;tag=f\r\nTo: {to}\r\n\
Call-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
            )
        };
        let a = key(req("sip:x@y", "<sip:x@y>").as_bytes(), "INVITE", ToTag::Own);
        assert_eq!(a[0], SERVER_2543);
        assert_ne!(a, key(req("sip:z@y", "<sip:x@y>").as_bytes(), "INVITE", ToTag::Own));
        let tagged = req("sip:x@y", "<sip:x@y>;tag=t");
        assert_ne!(a, key(tagged.as_bytes(), "INVITE", ToTag::Own));
        assert_eq!(a, key(tagged.as_bytes(), "INVITE", ToTag::Empty));
    }

    #[test]
    fn unmatchable_requests() {
        for (raw, why) in [
            (&b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n"[..], "no usable top Via"),
            (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", "no usable CSeq"),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INFO\r\n\r\n",
                "CSeq method differs from the request method",
            ),
        ] {
            let p = parse(raw).unwrap();
            assert_eq!(RequestHead::parse(&Message::new(raw, &p)).err(), Some(why));
        }
    }
}
