//! [`Message`]: a borrowed view that joins a buffer and its index, with lazy typed accessors.

use crate::error::{HeaderError, HeaderErrorKind};
use crate::headers::{CSeq, Contact, Event, MediaType, NameAddr, SubscriptionState, Via};
use crate::parse::{HeaderEntry, ParsedMessage, StartLine, content_length_value};
use crate::scan::{self, CommaSplit};
use crate::uri::SipUri;
use crate::{HeaderName, Method};

/// A parsed message: the caller's buffer plus its index. Copyable and cheap; every accessor
/// parses on demand and borrows from the buffer.
///
/// Built either from a [`ParsedMessage`] ([`Message::new`]) or from the raw parts of an index
/// that crossed an FFI boundary ([`Message::from_parts`]). Ranges that do not fit the buffer
/// (a corrupted index) never panic: they read as empty.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    start: StartLine,
    headers: &'a [HeaderEntry],
    body: (u32, u32),
}

impl<'a> Message<'a> {
    /// Joins a buffer and the index [`parse`](crate::parse) produced for it.
    pub fn new(buf: &'a [u8], parsed: &'a ParsedMessage) -> Message<'a> {
        Message { buf, start: parsed.start, headers: &parsed.headers, body: (parsed.body_start, parsed.body_end) }
    }

    /// Rebuilds the view from the parts of an index, without re-parsing.
    pub fn from_parts(buf: &'a [u8], start: StartLine, headers: &'a [HeaderEntry], body: (u32, u32)) -> Message<'a> {
        Message { buf, start, headers, body }
    }

    /// The whole buffer.
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// The start line ranges.
    pub fn start_line(&self) -> StartLine {
        self.start
    }

    /// The header index, in message order.
    pub fn header_entries(&self) -> &'a [HeaderEntry] {
        self.headers
    }

    /// The body range `(start, end)`.
    pub fn body_range(&self) -> (u32, u32) {
        self.body
    }

    pub(crate) fn range(&self, start: u32, end: u32) -> &'a [u8] {
        self.buf.get(start as usize..end as usize).unwrap_or_default()
    }

    fn range_str(&self, start: u32, end: u32) -> Option<&'a str> {
        scan::utf8(self.range(start, end))
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        self.start.is_request()
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        !self.start.is_request()
    }

    /// The request method (`None` for a response).
    pub fn method(&self) -> Option<Method<'a>> {
        if !self.is_request() {
            return None;
        }
        self.range_str(self.start.method_start, self.start.method_end).map(Method::from_token)
    }

    /// The Request-URI text (`None` for a response).
    pub fn request_uri_str(&self) -> Option<&'a str> {
        if !self.is_request() {
            return None;
        }
        self.range_str(self.start.uri_start, self.start.uri_end)
    }

    /// The Request-URI, parsed (`None` for a response or an unparseable URI).
    pub fn request_uri(&self) -> Option<SipUri<'a>> {
        SipUri::parse(self.request_uri_str()?).ok()
    }

    /// The SIP-Version text, e.g. `SIP/2.0`.
    pub fn version(&self) -> &'a str {
        self.range_str(self.start.version_start, self.start.version_end).unwrap_or_default()
    }

    /// The status code (`None` for a request).
    pub fn status_code(&self) -> Option<u16> {
        self.is_response().then_some(self.start.status_code)
    }

    /// The reason phrase bytes (`None` for a request). May be any UTF-8 (RFC 4475 §3.1.1.12).
    pub fn reason(&self) -> Option<&'a [u8]> {
        self.is_response().then(|| self.range(self.start.reason_start, self.start.reason_end))
    }

    /// The body.
    pub fn body(&self) -> &'a [u8] {
        self.range(self.body.0, self.body.1)
    }

    /// The name of a header line as written.
    pub fn entry_name(&self, e: &HeaderEntry) -> &'a [u8] {
        self.range(e.name_start, e.name_end)
    }

    /// The (trimmed, possibly folded) value of a header line.
    pub fn entry_value(&self, e: &HeaderEntry) -> &'a [u8] {
        self.range(e.value_start, e.value_end)
    }

    /// The raw value of the first header with this code.
    pub fn header(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.headers(name).next()
    }

    /// The raw value of the first header with this code, if it is UTF-8.
    pub fn header_str(&self, name: HeaderName) -> Option<&'a str> {
        self.header(name).and_then(scan::utf8)
    }

    /// The raw values of every header line with this code, in order.
    pub fn headers(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let msg = *self;
        self.headers.iter().filter(move |e| e.name == name).map(move |e| msg.entry_value(e))
    }

    /// The raw values of every header line with this name (any case, compact forms included).
    /// Works for headers this crate does not know (`HeaderName::OTHER`).
    pub fn headers_named<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let msg = *self;
        let code = HeaderName::from_bytes(name.as_bytes());
        self.headers
            .iter()
            .filter(move |e| {
                if code != HeaderName::OTHER {
                    e.name == code
                } else {
                    e.name == HeaderName::OTHER && msg.entry_name(e).eq_ignore_ascii_case(name.as_bytes())
                }
            })
            .map(move |e| msg.entry_value(e))
    }

    /// Every comma-separated element of every header line with this code, in order (quoted
    /// strings and `<...>` are respected). Elements are trimmed; empty ones are included.
    pub fn list(&self, name: HeaderName) -> ListValues<'a> {
        ListValues { msg: *self, name, next_header: 0, current: None }
    }

    fn typed_list<T>(&self, name: HeaderName, parse: fn(&'a [u8]) -> Option<T>) -> TypedList<'a, T> {
        TypedList { values: self.list(name), parse, skip_empty: false }
    }

    /// The first header with this code and its offset.
    fn first(&self, name: HeaderName) -> Option<(u32, &'a [u8])> {
        self.headers.iter().find(|e| e.name == name).map(|e| (e.value_start, self.entry_value(e)))
    }

    fn optional<T>(&self, name: HeaderName, parse: impl Fn(&'a [u8]) -> Option<T>) -> Result<Option<T>, HeaderError> {
        match self.first(name) {
            None => Ok(None),
            Some((off, v)) => parse(v).map(Some).ok_or(HeaderError::malformed(name, off)),
        }
    }

    fn required<T>(&self, name: HeaderName, parse: impl Fn(&'a [u8]) -> Option<T>) -> Result<T, HeaderError> {
        self.optional(name, parse)?.ok_or(HeaderError::missing(name))
    }

    /// Checks that a single-valued header appears at most once.
    pub(crate) fn at_most_once(&self, name: HeaderName) -> Result<(), HeaderError> {
        let mut it = self.headers.iter().filter(|e| e.name == name);
        it.next();
        match it.next() {
            Some(e) => Err(HeaderError { name, kind: HeaderErrorKind::Repeated, offset: e.value_start }),
            None => Ok(()),
        }
    }

    /// Every Via value, top first (several per line are split).
    pub fn vias(&self) -> TypedList<'a, Via<'a>> {
        self.typed_list(HeaderName::VIA, Via::parse)
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'a>, HeaderError> {
        self.vias().next().unwrap_or(Err(HeaderError::missing(HeaderName::VIA)))
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr<'a>, HeaderError> {
        self.required(HeaderName::FROM, NameAddr::parse)
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr<'a>, HeaderError> {
        self.required(HeaderName::TO, NameAddr::parse)
    }

    /// The Call-ID: `word [ "@" word ]`, i.e. printable ASCII without whitespace.
    pub fn call_id(&self) -> Result<&'a str, HeaderError> {
        self.required(HeaderName::CALL_ID, |v| {
            let ok = !v.is_empty() && v.iter().all(|&b| (0x21..0x7f).contains(&b));
            if ok { scan::utf8(v) } else { None }
        })
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq<'a>, HeaderError> {
        self.required(HeaderName::CSEQ, CSeq::parse)
    }

    /// Every Contact value (`*` or an address), in order.
    pub fn contacts(&self) -> TypedList<'a, Contact<'a>> {
        self.typed_list(HeaderName::CONTACT, Contact::parse)
    }

    /// Every Route value, in order.
    pub fn routes(&self) -> TypedList<'a, NameAddr<'a>> {
        self.typed_list(HeaderName::ROUTE, NameAddr::parse)
    }

    /// Every Record-Route value, in order.
    pub fn record_routes(&self) -> TypedList<'a, NameAddr<'a>> {
        self.typed_list(HeaderName::RECORD_ROUTE, NameAddr::parse)
    }

    /// The Refer-To header.
    pub fn refer_to(&self) -> Result<Option<NameAddr<'a>>, HeaderError> {
        self.optional(HeaderName::REFER_TO, NameAddr::parse)
    }

    fn delta_seconds(&self, name: HeaderName) -> Result<Option<u32>, HeaderError> {
        self.optional(name, scan::parse_u32)
    }

    /// The Expires header (delta-seconds; a value over 2**32-1 is malformed).
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.delta_seconds(HeaderName::EXPIRES)
    }

    /// The Min-Expires header.
    pub fn min_expires(&self) -> Result<Option<u32>, HeaderError> {
        self.delta_seconds(HeaderName::MIN_EXPIRES)
    }

    /// The Max-Forwards header (leading zeros allowed; any 32-bit value is returned, the caller
    /// decides what to do with values over 255).
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.delta_seconds(HeaderName::MAX_FORWARDS)
    }

    /// The Content-Length header.
    pub fn content_length(&self) -> Result<Option<u32>, HeaderError> {
        self.optional(HeaderName::CONTENT_LENGTH, content_length_value)
    }

    /// The Event header (`o` in compact form).
    pub fn event(&self) -> Result<Option<Event<'a>>, HeaderError> {
        self.optional(HeaderName::EVENT, Event::parse)
    }

    /// The Subscription-State header.
    pub fn subscription_state(&self) -> Result<Option<SubscriptionState<'a>>, HeaderError> {
        self.optional(HeaderName::SUBSCRIPTION_STATE, SubscriptionState::parse)
    }

    fn token_header(&self, name: HeaderName) -> Result<Option<&'a str>, HeaderError> {
        self.optional(name, |v| if scan::is_token_str(v) { scan::utf8(v) } else { None })
    }

    /// The SIP-ETag header (RFC 3903).
    pub fn sip_etag(&self) -> Result<Option<&'a str>, HeaderError> {
        self.token_header(HeaderName::SIP_ETAG)
    }

    /// The SIP-If-Match header (RFC 3903).
    pub fn sip_if_match(&self) -> Result<Option<&'a str>, HeaderError> {
        self.token_header(HeaderName::SIP_IF_MATCH)
    }

    /// Every event type of every Allow-Events header (`u` in compact form).
    pub fn allow_events(&self) -> TypedList<'a, &'a str> {
        self.tokens(HeaderName::ALLOW_EVENTS)
    }

    /// Every token of a comma-separated token list header (Supported, Require, Allow, ...);
    /// empty elements are skipped.
    pub fn tokens(&self, name: HeaderName) -> TypedList<'a, &'a str> {
        TypedList {
            values: self.list(name),
            parse: |v| {
                if scan::is_token_str(v) { scan::utf8(v) } else { None }
            },
            skip_empty: true,
        }
    }

    /// The Content-Type header (`c` in compact form).
    pub fn content_type(&self) -> Result<Option<MediaType<'a>>, HeaderError> {
        self.optional(HeaderName::CONTENT_TYPE, MediaType::parse)
    }
}

/// Iterator over the comma-separated elements of all header lines with one name; yields the
/// element's byte offset in the buffer and the trimmed element.
#[derive(Clone, Debug)]
pub struct ListValues<'a> {
    msg: Message<'a>,
    name: HeaderName,
    next_header: usize,
    current: Option<(u32, CommaSplit<'a>)>,
}

impl<'a> Iterator for ListValues<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((base, split)) = &mut self.current {
                if let Some((off, v)) = split.next() {
                    let off = u32::try_from(off).unwrap_or(u32::MAX);
                    return Some((base.saturating_add(off), v));
                }
                self.current = None;
            }
            let headers = self.msg.headers;
            let idx = headers.get(self.next_header..)?.iter().position(|e| e.name == self.name)?;
            let e = headers.get(self.next_header + idx)?;
            self.next_header += idx + 1;
            self.current = Some((e.value_start, CommaSplit::new(self.msg.entry_value(e))));
        }
    }
}

/// Iterator over typed elements of a list header; a malformed element yields an error (and the
/// iteration continues with the next one).
#[derive(Clone, Debug)]
pub struct TypedList<'a, T> {
    values: ListValues<'a>,
    parse: fn(&'a [u8]) -> Option<T>,
    skip_empty: bool,
}

impl<'a, T> Iterator for TypedList<'a, T> {
    type Item = Result<T, HeaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (off, v) = self.values.next()?;
            if v.is_empty() && self.skip_empty {
                continue;
            }
            return Some((self.parse)(v).ok_or(HeaderError::malformed(self.values.name, off)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::SubState;
    use crate::parse;

    const NOTIFY: &[u8] = b"NOTIFY sip:alice@192.0.2.1:5060;transport=tcp SIP/2.0\r\n\
v: SIP/2.0/TCP 192.0.2.9:5060;branch=z9hG4bK776a;rport, SIP/2.0/UDP p.example.com\r\n\
Via: SIP/2.0/UDP q.example.com;branch=z9hG4bKq\r\n\
Max-Forwards: 0070\r\n\
f: <sip:bob@example.com>;tag=ffff\r\n\
t: \"Alice\" <sip:alice@example.com>;tag=aaaa\r\n\
i: 77@192.0.2.9\r\n\
CSeq: 3 NOTIFY\r\n\
m: <sip:pa@192.0.2.9:5060;transport=tcp>;expires=600, *\r\n\
Event : presence\r\n ;id=7\r\n\
Subscription-State: active;expires=599\r\n\
u: presence, dialog,, message-summary\r\n\
Allow-Events: presence.winfo\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:rr.example.com;lr>\r\n\
SIP-ETag: dx200xyz\r\n\
SIP-If-Match: abc.123\r\n\
Expires: 600\r\n\
Min-Expires: 60\r\n\
X-Custom: one\r\n\
x-custom: two\r\n\
c: application/pidf+xml\r\n\
l: 5\r\n\r\n<x/>\ntrailing";

    #[test]
    fn typed_accessors() {
        let p = parse(NOTIFY).unwrap();
        let m = Message::new(NOTIFY, &p);
        assert_eq!(m.method(), Some(Method::Notify));
        assert_eq!(m.request_uri().unwrap().transport(), Some("tcp"));
        assert_eq!(m.version(), "SIP/2.0");
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].rport(), Some(None));
        assert_eq!(vias[1].host().as_str(), "p.example.com");
        assert_eq!(vias[2].branch(), Some("z9hG4bKq"));
        assert_eq!(m.top_via().unwrap().port(), Some(5060));
        assert_eq!(m.max_forwards(), Ok(Some(70)));
        assert_eq!(m.from().unwrap().tag(), Some("ffff"));
        assert_eq!(m.to().unwrap().display_name(), Some("Alice"));
        assert_eq!(m.call_id(), Ok("77@192.0.2.9"));
        assert_eq!(m.cseq().unwrap(), CSeq { number: 3, method: Method::Notify });
        let contacts: Vec<_> = m.contacts().map(Result::unwrap).collect();
        assert_eq!(contacts[0].address().unwrap().expires(), Some(600));
        assert_eq!(contacts[1], Contact::Star);
        let ev = m.event().unwrap().unwrap();
        assert_eq!((ev.package(), ev.id()), ("presence", Some("7")));
        let ss = m.subscription_state().unwrap().unwrap();
        assert_eq!((ss.state(), ss.expires()), (SubState::Active, Some(599)));
        let ae: Vec<_> = m.allow_events().map(Result::unwrap).collect();
        assert_eq!(ae, ["presence", "dialog", "message-summary", "presence.winfo"]);
        let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri_str()).collect();
        assert_eq!(routes, ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
        assert!(m.record_routes().next().unwrap().unwrap().uri().unwrap().lr());
        assert_eq!(m.sip_etag(), Ok(Some("dx200xyz")));
        assert_eq!(m.sip_if_match(), Ok(Some("abc.123")));
        assert_eq!(m.expires(), Ok(Some(600)));
        assert_eq!(m.min_expires(), Ok(Some(60)));
        assert_eq!(m.content_length(), Ok(Some(5)));
        assert!(m.content_type().unwrap().unwrap().is("application", "pidf+xml"));
        assert_eq!(m.body(), b"<x/>\n");
        let custom: Vec<_> = m.headers_named("X-CUSTOM").collect();
        assert_eq!(custom, [&b"one"[..], b"two"]);
        assert_eq!(m.headers_named("Event").count(), 1);
        assert_eq!(m.header_str(HeaderName::SIP_ETAG), Some("dx200xyz"));
    }

    #[test]
    fn missing_and_malformed() {
        let buf = b"SIP/2.0 200 OK\r\nCSeq: x\r\nExpires: soon\r\nVia: ;;\r\n\r\n";
        let p = parse(buf).unwrap();
        let m = Message::new(buf, &p);
        assert_eq!(m.status_code(), Some(200));
        assert_eq!(m.reason(), Some(&b"OK"[..]));
        assert_eq!(m.method(), None);
        assert_eq!(m.from().unwrap_err().kind, HeaderErrorKind::Missing);
        assert_eq!(m.cseq().unwrap_err().kind, HeaderErrorKind::Malformed);
        assert_eq!(m.expires().unwrap_err().name, HeaderName::EXPIRES);
        assert!(m.top_via().is_err());
        assert_eq!(m.event(), Ok(None));
    }

    #[test]
    fn corrupted_parts_do_not_panic() {
        let buf = b"OPTIONS sip:a SIP/2.0\r\n\r\n";
        let bogus =
            [HeaderEntry { name: HeaderName::VIA, name_start: 9000, name_end: 1, value_start: u32::MAX, value_end: 3 }];
        let start = StartLine { kind: 7, method_start: 100, method_end: 50, ..StartLine::default() };
        let m = Message::from_parts(buf, start, &bogus, (40, 2));
        assert!(m.top_via().is_err());
        assert_eq!(m.body(), b"");
        let _ = m.validate();
        let _ = m.request_uri();
    }
}
