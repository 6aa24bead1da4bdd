//! Checks a message must pass before it is processed (RFC 3261 §8.2, §16.3), and whether a
//! reply can be formed at all.

use core::fmt;

use crate::error::{HeaderError, HeaderErrorKind};
use crate::headers::{NameAddr, Via};
use crate::message::Message;
use crate::uri::{Scheme, SipUri};
use crate::{HeaderName, Method};

/// Why [`Message::validate`] refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationError {
    /// The SIP-Version is not `SIP/2.0` (answer 505).
    UnsupportedVersion,
    /// The Request-URI does not parse for its scheme, or carries `?headers` (RFC 3261 §19.1.1,
    /// RFC 4475 §3.1.2.11).
    BadRequestUri,
    /// A required header is missing, malformed or repeated.
    Header(HeaderError),
    /// The CSeq method differs from the request method (RFC 4475 §3.1.2.17).
    CSeqMethodMismatch,
    /// The CSeq number is 2**31 or more (RFC 3261 §8.1.1.5).
    CSeqOutOfRange,
    /// Content-Length does not match the body the index delimits.
    ContentLengthMismatch,
    /// The Date header is not an RFC 1123 date in GMT (RFC 4475 §3.1.2.12).
    BadDate,
    /// The message is a response where a request was needed.
    NotARequest,
    /// ACK requests are never answered.
    IsAck,
}

impl ValidationError {
    /// The status code to answer a request failing this check with.
    pub fn status_code(&self) -> u16 {
        match self {
            ValidationError::UnsupportedVersion => 505,
            _ => 400,
        }
    }

    /// A reason phrase to answer with (the check that failed, Kamailio style).
    pub fn reason_phrase(&self) -> &'static str {
        match self {
            ValidationError::UnsupportedVersion => "Version Not Supported",
            ValidationError::BadRequestUri => "Bad Request-URI",
            ValidationError::Header(h) => match (h.name, h.kind) {
                (HeaderName::VIA, HeaderErrorKind::Missing) => "Missing Via",
                (HeaderName::FROM, HeaderErrorKind::Missing) => "Missing From",
                (HeaderName::TO, HeaderErrorKind::Missing) => "Missing To",
                (HeaderName::CALL_ID, HeaderErrorKind::Missing) => "Missing Call-ID",
                (HeaderName::CSEQ, HeaderErrorKind::Missing) => "Missing CSeq",
                (HeaderName::VIA, _) => "Bad Via",
                (HeaderName::FROM, _) => "Bad From",
                (HeaderName::TO, _) => "Bad To",
                (HeaderName::CALL_ID, _) => "Bad Call-ID",
                (HeaderName::CSEQ, _) => "Bad CSeq",
                (HeaderName::MAX_FORWARDS, _) => "Bad Max-Forwards",
                (HeaderName::CONTACT, _) => "Bad Contact",
                (HeaderName::CONTENT_LENGTH, _) => "Bad Content-Length",
                _ => "Bad Request",
            },
            ValidationError::CSeqMethodMismatch => "CSeq Method Mismatch",
            ValidationError::CSeqOutOfRange => "Bad CSeq",
            ValidationError::ContentLengthMismatch => "Bad Content-Length",
            ValidationError::BadDate => "Bad Date",
            ValidationError::NotARequest | ValidationError::IsAck => "Bad Request",
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::UnsupportedVersion => f.write_str("unsupported SIP version"),
            ValidationError::BadRequestUri => f.write_str("bad Request-URI"),
            ValidationError::Header(h) => h.fmt(f),
            ValidationError::CSeqMethodMismatch => f.write_str("CSeq method differs from the request method"),
            ValidationError::CSeqOutOfRange => f.write_str("CSeq number not below 2**31"),
            ValidationError::ContentLengthMismatch => f.write_str("Content-Length does not match the body"),
            ValidationError::BadDate => f.write_str("malformed Date header"),
            ValidationError::NotARequest => f.write_str("not a request"),
            ValidationError::IsAck => f.write_str("ACK is never answered"),
        }
    }
}

impl std::error::Error for ValidationError {}

impl From<HeaderError> for ValidationError {
    fn from(e: HeaderError) -> Self {
        ValidationError::Header(e)
    }
}

impl<'a> Message<'a> {
    /// Checks what RFC 3261 requires before a message is processed; the first failed check is
    /// returned.
    ///
    /// For every message: `SIP/2.0`; at least one Via and every Via value parseable; From, To,
    /// Call-ID and CSeq present exactly once and parseable; CSeq number below 2**31;
    /// Max-Forwards at most once and numeric; Content-Length consistent with the body; every
    /// Contact value parseable; Date, when present, in RFC 1123 GMT form.
    /// For requests also: a Request-URI that parses for its scheme (sip, sips, tel; other
    /// schemes only need `scheme:opaque`, the application answers 416) without `?headers`, and
    /// a CSeq method equal to the request method.
    ///
    /// Semantics left to the caller: Max-Forwards of 0 (483), unknown methods (405/501), unknown
    /// URI schemes (416), Require (420), the branch cookie.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !self.version().eq_ignore_ascii_case("SIP/2.0") {
            return Err(ValidationError::UnsupportedVersion);
        }
        if self.is_request() {
            let uri = self.request_uri_str().ok_or(ValidationError::BadRequestUri)?;
            let parsed = SipUri::parse(uri).map_err(|_| ValidationError::BadRequestUri)?;
            if matches!(parsed.scheme(), Scheme::Sip | Scheme::Sips) && !parsed.headers_str().is_empty() {
                return Err(ValidationError::BadRequestUri);
            }
        }
        let mut vias = self.vias().peekable();
        if vias.peek().is_none() {
            return Err(HeaderError::missing(HeaderName::VIA).into());
        }
        for v in vias {
            v?;
        }
        for name in [HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID, HeaderName::CSEQ] {
            self.at_most_once(name)?;
        }
        self.from()?;
        self.to()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if cseq.number >= 1 << 31 {
            return Err(ValidationError::CSeqOutOfRange);
        }
        if let Some(method) = self.method()
            && method != cseq.method
        {
            return Err(ValidationError::CSeqMethodMismatch);
        }
        self.at_most_once(HeaderName::MAX_FORWARDS)?;
        self.max_forwards()?;
        if let Some(cl) = self.content_length()? {
            let (start, end) = self.body_range();
            if u64::from(cl) != u64::from(end.saturating_sub(start)) {
                return Err(ValidationError::ContentLengthMismatch);
            }
        }
        for c in self.contacts() {
            c?;
        }
        if let Some(date) = self.header(HeaderName::DATE)
            && !is_rfc1123_gmt(date)
        {
            return Err(ValidationError::BadDate);
        }
        Ok(())
    }

    /// Whether a reply (typically a 400 for a message failing [`Message::validate`]) can be
    /// formed: the message is a request other than ACK, the sent-by of its top Via parses (the
    /// reply is routed back along it) and From, To, Call-ID and CSeq are each present, so that they can
    /// be copied. Their values need not parse: RFC 4475 §3.1.2.4 expects a 400 for a CSeq with
    /// an overlarge number. When this fails, the message must be dropped silently.
    pub fn check_replyable(&self) -> Result<(), ValidationError> {
        match self.method() {
            None => return Err(ValidationError::NotARequest),
            Some(Method::Ack) => return Err(ValidationError::IsAck),
            Some(_) => {}
        }
        // Only the sent-by of the top Via is needed to route the reply; broken parameters
        // (RFC 4475 §3.1.2.1) still deserve a 400.
        let (off, top) = self.list(HeaderName::VIA).next().ok_or(HeaderError::missing(HeaderName::VIA))?;
        let sent_by = top.split(|&b| b == b';').next().unwrap_or_default();
        if Via::parse(sent_by).is_none() {
            return Err(HeaderError::malformed(HeaderName::VIA, off).into());
        }
        for name in [HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID, HeaderName::CSEQ] {
            if self.header(name).is_none_or(<[u8]>::is_empty) {
                return Err(HeaderError::missing(name).into());
            }
        }
        Ok(())
    }

    /// `check_replyable().is_ok()`.
    pub fn can_reply(&self) -> bool {
        self.check_replyable().is_ok()
    }

    /// Whether the To header carries a tag (an in-dialog request).
    pub fn has_to_tag(&self) -> bool {
        self.to().ok().as_ref().and_then(NameAddr::tag).is_some()
    }
}

/// `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`.
fn is_rfc1123_gmt(v: &[u8]) -> bool {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    if v.len() != 29 {
        return false;
    }
    let part = |a: usize, b: usize| v.get(a..b).unwrap_or_default();
    let digits = |a: usize, b: usize| part(a, b).iter().all(u8::is_ascii_digit);
    DAYS.contains(&part(0, 3))
        && part(3, 5) == b", "
        && digits(5, 7)
        && part(7, 8) == b" "
        && MONTHS.contains(&part(8, 11))
        && part(11, 12) == b" "
        && digits(12, 16)
        && part(16, 17) == b" "
        && digits(17, 19)
        && part(19, 20) == b":"
        && digits(20, 22)
        && part(22, 23) == b":"
        && digits(23, 25)
        && part(25, 29) == b" GMT"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn check(buf: &[u8]) -> Result<(), ValidationError> {
        let p = parse(buf).unwrap();
        Message::new(buf, &p).validate()
    }

    const BASE: &str = "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n";

    #[test]
    fn good_and_bad() {
        assert_eq!(check(format!("{BASE}\r\n").as_bytes()), Ok(()));
        assert_eq!(
            check(format!("{BASE}Date: Sat, 13 Nov 2010 23:29:00 GMT\r\nMax-Forwards: 70\r\n\r\n").as_bytes()),
            Ok(())
        );
        assert_eq!(
            check(format!("{BASE}Date: Fri, 01 Jan 2010 16:00:00 EST\r\n\r\n").as_bytes()),
            Err(ValidationError::BadDate)
        );
        assert_eq!(check(format!("{BASE}Max-Forwards: ten\r\n\r\n").as_bytes()).unwrap_err().status_code(), 400);
        assert!(matches!(
            check(format!("{BASE}CSeq: 2 OPTIONS\r\n\r\n").as_bytes()),
            Err(ValidationError::Header(HeaderError { kind: HeaderErrorKind::Repeated, .. }))
        ));
        assert_eq!(check(format!("{BASE}Content-Length: 2\r\n\r\nab").as_bytes()), Ok(()));
        let v = BASE.replace("CSeq: 1 OPTIONS", "CSeq: 2147483648 OPTIONS");
        assert_eq!(check(format!("{v}\r\n").as_bytes()), Err(ValidationError::CSeqOutOfRange));
        let v = BASE.replace("SIP/2.0\r\n", "SIP/3.0\r\n");
        let e = check(format!("{v}\r\n").as_bytes()).unwrap_err();
        assert_eq!((e, e.status_code()), (ValidationError::UnsupportedVersion, 505));
    }

    #[test]
    fn replyable() {
        let buf = b"INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 99999999999 INVITE\r\n\
From: x\r\nTo: \"unterminated\r\nCall-ID: c\r\n\r\n";
        let p = parse(buf).unwrap();
        let m = Message::new(buf, &p);
        assert!(m.validate().is_err());
        assert!(m.can_reply());
        let buf = b"ACK sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 ACK\r\nFrom: x\r\nTo: y\r\nCall-ID: c\r\n\r\n";
        let p = parse(buf).unwrap();
        assert_eq!(Message::new(buf, &p).check_replyable(), Err(ValidationError::IsAck));
        let buf = b"INVITE sip:a SIP/2.0\r\nVia: junk\r\nCSeq: 1 INVITE\r\nFrom: x\r\nTo: y\r\nCall-ID: c\r\n\r\n";
        let p = parse(buf).unwrap();
        assert!(!Message::new(buf, &p).can_reply());
    }
}
