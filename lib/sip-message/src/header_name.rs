//! Header names: a stable numeric code for every header the server knows by name.
//!
//! The code is what crosses the plugin ABI inside [`HeaderEntry`](crate::HeaderEntry), so the
//! numbers below are part of that contract: a value is never reused or renumbered, new headers
//! only get new numbers, and anything unknown is [`HeaderName::OTHER`] (the caller then compares
//! the name bytes itself, see [`Message::headers_named`](crate::Message::headers_named)).

use core::fmt;

/// A header name as a stable `u16` code. Compact forms (`v`, `f`, `o`, ...) map to the same
/// code as their long form; matching is ASCII case-insensitive.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HeaderName(pub u16);

impl HeaderName {
    /// Any header this crate does not know by name.
    pub const OTHER: HeaderName = HeaderName(0);
    /// `Via` (compact form `v`).
    pub const VIA: HeaderName = HeaderName(1);
    /// `From` (compact form `f`).
    pub const FROM: HeaderName = HeaderName(2);
    /// `To` (compact form `t`).
    pub const TO: HeaderName = HeaderName(3);
    /// `Call-ID` (compact form `i`).
    pub const CALL_ID: HeaderName = HeaderName(4);
    /// `CSeq`.
    pub const CSEQ: HeaderName = HeaderName(5);
    /// `Contact` (compact form `m`).
    pub const CONTACT: HeaderName = HeaderName(6);
    /// `Content-Length` (compact form `l`).
    pub const CONTENT_LENGTH: HeaderName = HeaderName(7);
    /// `Content-Type` (compact form `c`).
    pub const CONTENT_TYPE: HeaderName = HeaderName(8);
    /// `Max-Forwards`.
    pub const MAX_FORWARDS: HeaderName = HeaderName(9);
    /// `Expires`.
    pub const EXPIRES: HeaderName = HeaderName(10);
    /// `Min-Expires`.
    pub const MIN_EXPIRES: HeaderName = HeaderName(11);
    /// `Event` (compact form `o`).
    pub const EVENT: HeaderName = HeaderName(12);
    /// `Allow-Events` (compact form `u`).
    pub const ALLOW_EVENTS: HeaderName = HeaderName(13);
    /// `Subscription-State`.
    pub const SUBSCRIPTION_STATE: HeaderName = HeaderName(14);
    /// `SIP-ETag`.
    pub const SIP_ETAG: HeaderName = HeaderName(15);
    /// `SIP-If-Match`.
    pub const SIP_IF_MATCH: HeaderName = HeaderName(16);
    /// `Route`.
    pub const ROUTE: HeaderName = HeaderName(17);
    /// `Record-Route`.
    pub const RECORD_ROUTE: HeaderName = HeaderName(18);
    /// `Supported` (compact form `k`).
    pub const SUPPORTED: HeaderName = HeaderName(19);
    /// `Require`.
    pub const REQUIRE: HeaderName = HeaderName(20);
    /// `Proxy-Require`.
    pub const PROXY_REQUIRE: HeaderName = HeaderName(21);
    /// `Unsupported`.
    pub const UNSUPPORTED: HeaderName = HeaderName(22);
    /// `Allow`.
    pub const ALLOW: HeaderName = HeaderName(23);
    /// `Accept`.
    pub const ACCEPT: HeaderName = HeaderName(24);
    /// `Accept-Encoding`.
    pub const ACCEPT_ENCODING: HeaderName = HeaderName(25);
    /// `Accept-Language`.
    pub const ACCEPT_LANGUAGE: HeaderName = HeaderName(26);
    /// `Content-Encoding` (compact form `e`).
    pub const CONTENT_ENCODING: HeaderName = HeaderName(27);
    /// `Content-Disposition`.
    pub const CONTENT_DISPOSITION: HeaderName = HeaderName(28);
    /// `Subject` (compact form `s`).
    pub const SUBJECT: HeaderName = HeaderName(29);
    /// `User-Agent`.
    pub const USER_AGENT: HeaderName = HeaderName(30);
    /// `Server`.
    pub const SERVER: HeaderName = HeaderName(31);
    /// `Date`.
    pub const DATE: HeaderName = HeaderName(32);
    /// `Authorization`.
    pub const AUTHORIZATION: HeaderName = HeaderName(33);
    /// `Proxy-Authorization`.
    pub const PROXY_AUTHORIZATION: HeaderName = HeaderName(34);
    /// `WWW-Authenticate`.
    pub const WWW_AUTHENTICATE: HeaderName = HeaderName(35);
    /// `Proxy-Authenticate`.
    pub const PROXY_AUTHENTICATE: HeaderName = HeaderName(36);
    /// `Refer-To` (compact form `r`).
    pub const REFER_TO: HeaderName = HeaderName(37);
    /// `Referred-By` (compact form `b`).
    pub const REFERRED_BY: HeaderName = HeaderName(38);
    /// `Session-Expires` (compact form `x`).
    pub const SESSION_EXPIRES: HeaderName = HeaderName(39);
    /// `Warning`.
    pub const WARNING: HeaderName = HeaderName(40);
    /// `Retry-After`.
    pub const RETRY_AFTER: HeaderName = HeaderName(41);
    /// `Timestamp`.
    pub const TIMESTAMP: HeaderName = HeaderName(42);
    /// `Organization`.
    pub const ORGANIZATION: HeaderName = HeaderName(43);
    /// `Priority`.
    pub const PRIORITY: HeaderName = HeaderName(44);
    /// `In-Reply-To`.
    pub const IN_REPLY_TO: HeaderName = HeaderName(45);
    /// `Reply-To`.
    pub const REPLY_TO: HeaderName = HeaderName(46);
    /// `MIME-Version`.
    pub const MIME_VERSION: HeaderName = HeaderName(47);
    /// `Content-Language`.
    pub const CONTENT_LANGUAGE: HeaderName = HeaderName(48);
    /// `Call-Info`.
    pub const CALL_INFO: HeaderName = HeaderName(49);
    /// `Alert-Info`.
    pub const ALERT_INFO: HeaderName = HeaderName(50);
    /// `Error-Info`.
    pub const ERROR_INFO: HeaderName = HeaderName(51);
    /// `Path`.
    pub const PATH: HeaderName = HeaderName(52);
    /// `P-Asserted-Identity`.
    pub const P_ASSERTED_IDENTITY: HeaderName = HeaderName(53);
    /// `Privacy`.
    pub const PRIVACY: HeaderName = HeaderName(54);
    /// `Identity` (compact form `y`).
    pub const IDENTITY: HeaderName = HeaderName(55);
    /// `Reason`.
    pub const REASON: HeaderName = HeaderName(56);
    /// `Accept-Contact` (compact form `a`).
    pub const ACCEPT_CONTACT: HeaderName = HeaderName(57);
    /// `Reject-Contact` (compact form `j`).
    pub const REJECT_CONTACT: HeaderName = HeaderName(58);
    /// `Request-Disposition` (compact form `d`).
    pub const REQUEST_DISPOSITION: HeaderName = HeaderName(59);
    /// `Replaces`.
    pub const REPLACES: HeaderName = HeaderName(60);
    /// `Min-SE`.
    pub const MIN_SE: HeaderName = HeaderName(61);
    /// `Service-Route`.
    pub const SERVICE_ROUTE: HeaderName = HeaderName(62);
    /// `P-Preferred-Identity`.
    pub const P_PREFERRED_IDENTITY: HeaderName = HeaderName(63);

    /// The highest code currently assigned; codes above it may appear from newer peers of the
    /// ABI and must be treated like [`HeaderName::OTHER`] by code that does not know them.
    pub const MAX_KNOWN: u16 = 63;

    /// Classifies a header name as it appears on the wire (long or compact form, any case).
    #[inline]
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        lookup(name)
    }

    /// The canonical spelling of a known header, `None` for [`HeaderName::OTHER`] and unknown
    /// codes.
    pub fn as_str(self) -> Option<&'static str> {
        CANONICAL.get(usize::from(self.0)).copied().flatten()
    }

    /// The compact form of the header, if it has one.
    pub fn compact_form(self) -> Option<char> {
        match self.0 {
            1 => Some('v'),
            2 => Some('f'),
            3 => Some('t'),
            4 => Some('i'),
            6 => Some('m'),
            7 => Some('l'),
            8 => Some('c'),
            12 => Some('o'),
            13 => Some('u'),
            19 => Some('k'),
            27 => Some('e'),
            29 => Some('s'),
            37 => Some('r'),
            38 => Some('b'),
            39 => Some('x'),
            55 => Some('y'),
            57 => Some('a'),
            58 => Some('j'),
            59 => Some('d'),
            _ => None,
        }
    }

    /// Whether this is a code this version of the crate knows by name.
    pub fn is_known(self) -> bool {
        self.0 != 0 && self.0 <= Self::MAX_KNOWN
    }
}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "HeaderName({s})"),
            None => write!(f, "HeaderName({})", self.0),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => write!(f, "header #{}", self.0),
        }
    }
}

/// Canonical spellings indexed by code.
static CANONICAL: [Option<&str>; 64] = [
    None,
    Some("Via"),
    Some("From"),
    Some("To"),
    Some("Call-ID"),
    Some("CSeq"),
    Some("Contact"),
    Some("Content-Length"),
    Some("Content-Type"),
    Some("Max-Forwards"),
    Some("Expires"),
    Some("Min-Expires"),
    Some("Event"),
    Some("Allow-Events"),
    Some("Subscription-State"),
    Some("SIP-ETag"),
    Some("SIP-If-Match"),
    Some("Route"),
    Some("Record-Route"),
    Some("Supported"),
    Some("Require"),
    Some("Proxy-Require"),
    Some("Unsupported"),
    Some("Allow"),
    Some("Accept"),
    Some("Accept-Encoding"),
    Some("Accept-Language"),
    Some("Content-Encoding"),
    Some("Content-Disposition"),
    Some("Subject"),
    Some("User-Agent"),
    Some("Server"),
    Some("Date"),
    Some("Authorization"),
    Some("Proxy-Authorization"),
    Some("WWW-Authenticate"),
    Some("Proxy-Authenticate"),
    Some("Refer-To"),
    Some("Referred-By"),
    Some("Session-Expires"),
    Some("Warning"),
    Some("Retry-After"),
    Some("Timestamp"),
    Some("Organization"),
    Some("Priority"),
    Some("In-Reply-To"),
    Some("Reply-To"),
    Some("MIME-Version"),
    Some("Content-Language"),
    Some("Call-Info"),
    Some("Alert-Info"),
    Some("Error-Info"),
    Some("Path"),
    Some("P-Asserted-Identity"),
    Some("Privacy"),
    Some("Identity"),
    Some("Reason"),
    Some("Accept-Contact"),
    Some("Reject-Contact"),
    Some("Request-Disposition"),
    Some("Replaces"),
    Some("Min-SE"),
    Some("Service-Route"),
    Some("P-Preferred-Identity"),
];

/// Case-insensitive lookup, dispatched on length first so that a name is compared with at most
/// a handful of candidates (this runs once per header line on the hot path).
fn lookup(name: &[u8]) -> HeaderName {
    let eq = |s: &[u8]| name.eq_ignore_ascii_case(s);
    match name.len() {
        1 => match name.first().map(u8::to_ascii_lowercase) {
            Some(b'a') => HeaderName::ACCEPT_CONTACT,
            Some(b'b') => HeaderName::REFERRED_BY,
            Some(b'c') => HeaderName::CONTENT_TYPE,
            Some(b'd') => HeaderName::REQUEST_DISPOSITION,
            Some(b'e') => HeaderName::CONTENT_ENCODING,
            Some(b'f') => HeaderName::FROM,
            Some(b'i') => HeaderName::CALL_ID,
            Some(b'j') => HeaderName::REJECT_CONTACT,
            Some(b'k') => HeaderName::SUPPORTED,
            Some(b'l') => HeaderName::CONTENT_LENGTH,
            Some(b'm') => HeaderName::CONTACT,
            Some(b'o') => HeaderName::EVENT,
            Some(b'r') => HeaderName::REFER_TO,
            Some(b's') => HeaderName::SUBJECT,
            Some(b't') => HeaderName::TO,
            Some(b'u') => HeaderName::ALLOW_EVENTS,
            Some(b'v') => HeaderName::VIA,
            Some(b'x') => HeaderName::SESSION_EXPIRES,
            Some(b'y') => HeaderName::IDENTITY,
            _ => HeaderName::OTHER,
        },
        2 => {
            if eq(b"To") {
                return HeaderName::TO;
            }
            HeaderName::OTHER
        }
        3 => {
            if eq(b"Via") {
                return HeaderName::VIA;
            }
            HeaderName::OTHER
        }
        4 => {
            if eq(b"From") {
                return HeaderName::FROM;
            }
            if eq(b"CSeq") {
                return HeaderName::CSEQ;
            }
            if eq(b"Date") {
                return HeaderName::DATE;
            }
            if eq(b"Path") {
                return HeaderName::PATH;
            }
            HeaderName::OTHER
        }
        5 => {
            if eq(b"Event") {
                return HeaderName::EVENT;
            }
            if eq(b"Route") {
                return HeaderName::ROUTE;
            }
            if eq(b"Allow") {
                return HeaderName::ALLOW;
            }
            HeaderName::OTHER
        }
        6 => {
            if eq(b"Accept") {
                return HeaderName::ACCEPT;
            }
            if eq(b"Server") {
                return HeaderName::SERVER;
            }
            if eq(b"Reason") {
                return HeaderName::REASON;
            }
            if eq(b"Min-SE") {
                return HeaderName::MIN_SE;
            }
            HeaderName::OTHER
        }
        7 => {
            if eq(b"Call-ID") {
                return HeaderName::CALL_ID;
            }
            if eq(b"Contact") {
                return HeaderName::CONTACT;
            }
            if eq(b"Expires") {
                return HeaderName::EXPIRES;
            }
            if eq(b"Require") {
                return HeaderName::REQUIRE;
            }
            if eq(b"Subject") {
                return HeaderName::SUBJECT;
            }
            if eq(b"Warning") {
                return HeaderName::WARNING;
            }
            if eq(b"Privacy") {
                return HeaderName::PRIVACY;
            }
            HeaderName::OTHER
        }
        8 => {
            if eq(b"SIP-ETag") {
                return HeaderName::SIP_ETAG;
            }
            if eq(b"Refer-To") {
                return HeaderName::REFER_TO;
            }
            if eq(b"Priority") {
                return HeaderName::PRIORITY;
            }
            if eq(b"Reply-To") {
                return HeaderName::REPLY_TO;
            }
            if eq(b"Identity") {
                return HeaderName::IDENTITY;
            }
            if eq(b"Replaces") {
                return HeaderName::REPLACES;
            }
            HeaderName::OTHER
        }
        9 => {
            if eq(b"Supported") {
                return HeaderName::SUPPORTED;
            }
            if eq(b"Timestamp") {
                return HeaderName::TIMESTAMP;
            }
            if eq(b"Call-Info") {
                return HeaderName::CALL_INFO;
            }
            HeaderName::OTHER
        }
        10 => {
            if eq(b"User-Agent") {
                return HeaderName::USER_AGENT;
            }
            if eq(b"Alert-Info") {
                return HeaderName::ALERT_INFO;
            }
            if eq(b"Error-Info") {
                return HeaderName::ERROR_INFO;
            }
            HeaderName::OTHER
        }
        11 => {
            if eq(b"Min-Expires") {
                return HeaderName::MIN_EXPIRES;
            }
            if eq(b"Unsupported") {
                return HeaderName::UNSUPPORTED;
            }
            if eq(b"Referred-By") {
                return HeaderName::REFERRED_BY;
            }
            if eq(b"Retry-After") {
                return HeaderName::RETRY_AFTER;
            }
            if eq(b"In-Reply-To") {
                return HeaderName::IN_REPLY_TO;
            }
            HeaderName::OTHER
        }
        12 => {
            if eq(b"Content-Type") {
                return HeaderName::CONTENT_TYPE;
            }
            if eq(b"Max-Forwards") {
                return HeaderName::MAX_FORWARDS;
            }
            if eq(b"Allow-Events") {
                return HeaderName::ALLOW_EVENTS;
            }
            if eq(b"SIP-If-Match") {
                return HeaderName::SIP_IF_MATCH;
            }
            if eq(b"Record-Route") {
                return HeaderName::RECORD_ROUTE;
            }
            if eq(b"Organization") {
                return HeaderName::ORGANIZATION;
            }
            if eq(b"MIME-Version") {
                return HeaderName::MIME_VERSION;
            }
            HeaderName::OTHER
        }
        13 => {
            if eq(b"Proxy-Require") {
                return HeaderName::PROXY_REQUIRE;
            }
            if eq(b"Authorization") {
                return HeaderName::AUTHORIZATION;
            }
            if eq(b"Service-Route") {
                return HeaderName::SERVICE_ROUTE;
            }
            HeaderName::OTHER
        }
        14 => {
            if eq(b"Content-Length") {
                return HeaderName::CONTENT_LENGTH;
            }
            if eq(b"Accept-Contact") {
                return HeaderName::ACCEPT_CONTACT;
            }
            if eq(b"Reject-Contact") {
                return HeaderName::REJECT_CONTACT;
            }
            HeaderName::OTHER
        }
        15 => {
            if eq(b"Accept-Encoding") {
                return HeaderName::ACCEPT_ENCODING;
            }
            if eq(b"Accept-Language") {
                return HeaderName::ACCEPT_LANGUAGE;
            }
            if eq(b"Session-Expires") {
                return HeaderName::SESSION_EXPIRES;
            }
            HeaderName::OTHER
        }
        16 => {
            if eq(b"Content-Encoding") {
                return HeaderName::CONTENT_ENCODING;
            }
            if eq(b"WWW-Authenticate") {
                return HeaderName::WWW_AUTHENTICATE;
            }
            if eq(b"Content-Language") {
                return HeaderName::CONTENT_LANGUAGE;
            }
            HeaderName::OTHER
        }
        18 => {
            if eq(b"Subscription-State") {
                return HeaderName::SUBSCRIPTION_STATE;
            }
            if eq(b"Proxy-Authenticate") {
                return HeaderName::PROXY_AUTHENTICATE;
            }
            HeaderName::OTHER
        }
        19 => {
            if eq(b"Content-Disposition") {
                return HeaderName::CONTENT_DISPOSITION;
            }
            if eq(b"Proxy-Authorization") {
                return HeaderName::PROXY_AUTHORIZATION;
            }
            if eq(b"P-Asserted-Identity") {
                return HeaderName::P_ASSERTED_IDENTITY;
            }
            if eq(b"Request-Disposition") {
                return HeaderName::REQUEST_DISPOSITION;
            }
            HeaderName::OTHER
        }
        20 => {
            if eq(b"P-Preferred-Identity") {
                return HeaderName::P_PREFERRED_IDENTITY;
            }
            HeaderName::OTHER
        }
        _ => HeaderName::OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_canonical_name_round_trips() {
        for code in 1..=HeaderName::MAX_KNOWN {
            let name = HeaderName(code);
            let text = name.as_str().unwrap_or_default();
            assert_eq!(HeaderName::from_bytes(text.as_bytes()), name, "{text}");
            assert_eq!(HeaderName::from_bytes(text.to_ascii_lowercase().as_bytes()), name);
            assert_eq!(HeaderName::from_bytes(text.to_ascii_uppercase().as_bytes()), name);
            if let Some(c) = name.compact_form() {
                let mut b = [0u8; 4];
                let short = c.encode_utf8(&mut b).as_bytes();
                assert_eq!(HeaderName::from_bytes(short), name);
                assert_eq!(HeaderName::from_bytes(&short.to_ascii_uppercase()), name);
            }
        }
    }

    #[test]
    fn unknown_names_are_other() {
        for n in ["", "X-Foo", "Vía", "Viaa", "z", "C%6Fntact"] {
            assert_eq!(HeaderName::from_bytes(n.as_bytes()), HeaderName::OTHER, "{n}");
        }
        assert_eq!(HeaderName(9999).as_str(), None);
        assert!(!HeaderName(9999).is_known());
    }
}
