//! Message-level parsing: the start line, the header index and the body range.
//!
//! [`parse`] splits a buffer into an index of byte ranges ([`ParsedMessage`]) and never copies
//! text. It checks only what is needed to delimit the message and its header fields; header
//! values are checked lazily by the typed accessors of [`Message`](crate::Message) and by
//! [`Message::validate`](crate::Message::validate), so a proxy can still forward a message whose
//! (say) Date header it could not interpret.

mod head;
mod start_line;

use smallvec::SmallVec;

use crate::HeaderName;
use crate::error::{ParseError, ParseErrorKind};

pub(crate) use head::content_length_value;

/// One header line of the index: its name code and the byte ranges of name and value.
///
/// The value range is trimmed of surrounding whitespace; it may still contain folded line
/// breaks (CRLF followed by SP or HTAB) in its middle. Plain data, `#[repr(C)]`, so that it can
/// cross the plugin ABI as is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderEntry {
    /// Classified name (`HeaderName::OTHER` for headers this crate does not know).
    pub name: HeaderName,
    /// Start of the header name as written (long or compact form).
    pub name_start: u32,
    /// End (exclusive) of the header name.
    pub name_end: u32,
    /// Start of the trimmed value.
    pub value_start: u32,
    /// End (exclusive) of the trimmed value.
    pub value_end: u32,
}

/// The start line as plain ranges, mirrorable field by field across an FFI boundary.
///
/// For a request, `method_*`, `uri_*` and `version_*` are set and `status_code` is 0; for a
/// response, `version_*`, `status_code` and `reason_*` are set and the request ranges are empty
/// (start == end == 0). Ranges are byte offsets into the parsed buffer, end exclusive.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StartLine {
    /// [`StartLine::REQUEST`] or [`StartLine::RESPONSE`].
    pub kind: u8,
    /// Always 0; keeps the layout explicit.
    pub reserved: u8,
    /// Status code of a response, 0 for a request.
    pub status_code: u16,
    /// Start of the method.
    pub method_start: u32,
    /// End of the method.
    pub method_end: u32,
    /// Start of the Request-URI.
    pub uri_start: u32,
    /// End of the Request-URI.
    pub uri_end: u32,
    /// Start of the SIP-Version.
    pub version_start: u32,
    /// End of the SIP-Version.
    pub version_end: u32,
    /// Start of the Reason-Phrase (may be empty).
    pub reason_start: u32,
    /// End of the Reason-Phrase.
    pub reason_end: u32,
}

impl StartLine {
    /// `kind` of a request.
    pub const REQUEST: u8 = 0;
    /// `kind` of a response.
    pub const RESPONSE: u8 = 1;

    /// Whether this is a Request-Line.
    pub fn is_request(&self) -> bool {
        self.kind == Self::REQUEST
    }
}

/// Inline capacity of the header index; messages with more header lines spill to the heap.
pub const INLINE_HEADERS: usize = 32;

/// The index of one parsed message. Owns no text: every range points into the buffer that was
/// given to [`parse`]; combine both with [`Message::new`](crate::Message::new).
#[derive(Clone, Debug)]
pub struct ParsedMessage {
    /// The start line.
    pub start: StartLine,
    /// One entry per header line, in message order.
    pub headers: SmallVec<[HeaderEntry; INLINE_HEADERS]>,
    /// Start of the body.
    pub body_start: u32,
    /// End (exclusive) of the body.
    pub body_end: u32,
}

/// Parses one SIP message from a buffer holding exactly one datagram (or one frame cut by
/// [`frame_stream`](crate::frame_stream)).
///
/// Datagram semantics (RFC 3261 §18.3): the body is the rest of the buffer, cut to
/// Content-Length when that header is present; bytes after it are ignored. A Content-Length
/// larger than what follows the header section is an error. Leading CRLFs are skipped. A
/// header section that ends at the end of the buffer without the empty line is accepted (empty
/// body), since a datagram cannot be continued; a buffer ending in the middle of a line is not.
///
/// Never panics, whatever the input.
pub fn parse(buf: &[u8]) -> Result<ParsedMessage, ParseError> {
    if u32::try_from(buf.len()).is_err() {
        return Err(ParseError::new(ParseErrorKind::TooLarge, 0));
    }
    let mut pos = 0;
    while matches!(buf.get(pos), Some(b'\r' | b'\n')) {
        pos += 1;
    }
    if pos >= buf.len() {
        return Err(ParseError::new(ParseErrorKind::Empty, pos));
    }
    let (start, after_start) = start_line::parse_start_line(buf, pos)?;
    let mut headers = SmallVec::new();
    let body_start = head::parse_headers(buf, after_start, &mut headers)?;
    let body_end = match head::content_length(buf, &headers)? {
        Some(len) => body_start
            .checked_add(len as usize)
            .filter(|&e| e <= buf.len())
            .ok_or_else(|| ParseError::new(ParseErrorKind::ContentLengthTooLarge, body_start))?,
        None => buf.len(),
    };
    Ok(ParsedMessage { start, headers, body_start: to_u32(body_start), body_end: to_u32(body_end) })
}

/// Offsets are checked against `u32::MAX` once, at the top of [`parse`].
#[inline]
pub(crate) fn to_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(buf: &[u8]) -> ParseErrorKind {
        match parse(buf) {
            Ok(p) => panic!("expected an error, parsed {p:?}"),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn request_ranges() {
        let buf = b"\r\nOPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nl: 3\r\n\r\nabcdef";
        let p = parse(buf).unwrap();
        let s = p.start;
        assert!(s.is_request());
        assert_eq!(&buf[s.method_start as usize..s.method_end as usize], b"OPTIONS");
        assert_eq!(&buf[s.uri_start as usize..s.uri_end as usize], b"sip:a@b");
        assert_eq!(&buf[s.version_start as usize..s.version_end as usize], b"SIP/2.0");
        assert_eq!(p.headers.len(), 2);
        assert_eq!(p.headers[1].name, HeaderName::CONTENT_LENGTH);
        assert_eq!(&buf[p.body_start as usize..p.body_end as usize], b"abc");
    }

    #[test]
    fn response_ranges() {
        let buf = b"SIP/2.0 100 \r\n\r\n";
        let p = parse(buf).unwrap();
        assert_eq!(p.start.kind, StartLine::RESPONSE);
        assert_eq!(p.start.status_code, 100);
        assert_eq!(p.start.reason_start, p.start.reason_end);
        let p = parse(b"SIP/2.0 404 Not  Found\n\n").unwrap();
        assert_eq!(p.start.status_code, 404);
        assert_eq!(p.start.reason_end - p.start.reason_start, 10);
    }

    #[test]
    fn folding_and_space_before_colon() {
        let buf = b"NOTIFY sip:x SIP/2.0\r\nEvent  : presence\r\n ;id=1\r\nTO :\r\n sip:a@b\r\n\r\n";
        let p = parse(buf).unwrap();
        let e = p.headers[0];
        assert_eq!(e.name, HeaderName::EVENT);
        assert_eq!(&buf[e.value_start as usize..e.value_end as usize], b"presence\r\n ;id=1");
        let t = p.headers[1];
        assert_eq!(t.name, HeaderName::TO);
        assert_eq!(&buf[t.value_start as usize..t.value_end as usize], b"sip:a@b");
    }

    #[test]
    fn empty_value_and_bare_lf() {
        let buf = b"INFO sip:x SIP/2.0\ns :\nSubject:   \nl:0\n\nbody";
        let p = parse(buf).unwrap();
        assert_eq!(p.headers.len(), 3);
        assert_eq!(p.headers[0].value_start, p.headers[0].value_end);
        assert_eq!(p.headers[1].value_start, p.headers[1].value_end);
        assert_eq!(p.body_start, p.body_end);
    }

    #[test]
    fn errors() {
        assert_eq!(err(b""), ParseErrorKind::Empty);
        assert_eq!(err(b"\r\n\r\n"), ParseErrorKind::Empty);
        assert_eq!(err(b"INVITE sip:a SIP/2.0"), ParseErrorKind::UnterminatedStartLine);
        assert_eq!(err(b"INVITE  sip:a SIP/2.0\r\n\r\n"), ParseErrorKind::BadStartLine);
        assert_eq!(err(b"INVITE sip:a SIP/2.0 \r\n\r\n"), ParseErrorKind::BadStartLine);
        assert_eq!(err(b"INVITE sip:a; lr SIP/2.0\r\n\r\n"), ParseErrorKind::BadRequestUri);
        assert_eq!(err(b"INVITE <sip:a> SIP/2.0\r\n\r\n"), ParseErrorKind::BadRequestUri);
        assert_eq!(err(b"INVITE sip:a\r\n\r\n"), ParseErrorKind::BadStartLine);
        assert_eq!(err(b"IN(VITE sip:a SIP/2.0\r\n\r\n"), ParseErrorKind::BadMethod);
        assert_eq!(err(b"SIP/2.0 4294967301 x\r\n\r\n"), ParseErrorKind::BadStatusCode);
        assert_eq!(err(b"SIP/2.0 099 x\r\n\r\n"), ParseErrorKind::BadStatusCode);
        assert_eq!(err(b"SIP/2.0 20 x\r\n\r\n"), ParseErrorKind::BadStatusCode);
        assert_eq!(err(b"SIP/2.x 200 OK\r\n\r\n"), ParseErrorKind::BadVersion);
        assert_eq!(err(b"OPTIONS sip:a SIP/2.0\r\n x: y\r\n\r\n"), ParseErrorKind::UnexpectedContinuation);
        assert_eq!(err(b"OPTIONS sip:a SIP/2.0\r\nFoo bar\r\n\r\n"), ParseErrorKind::MissingColon);
        assert_eq!(err(b"OPTIONS sip:a SIP/2.0\r\n: bar\r\n\r\n"), ParseErrorKind::BadHeaderName);
        assert_eq!(err(b"OPTIONS sip:a SIP/2.0\r\nA: b"), ParseErrorKind::UnterminatedHeaders);
        assert_eq!(err(b"OPTIONS sip:a SIP/2.0\r\nl: -1\r\n\r\n"), ParseErrorKind::BadContentLength);
        assert_eq!(err(b"OPTIONS sip:a SIP/2.0\r\nl: 99999999999\r\n\r\n"), ParseErrorKind::BadContentLength);
        assert_eq!(
            err(b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab"),
            ParseErrorKind::ConflictingContentLength
        );
        assert_eq!(err(b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nab"), ParseErrorKind::ContentLengthTooLarge);
    }

    #[test]
    fn headers_ending_at_end_of_datagram() {
        let p = parse(b"OPTIONS sip:a SIP/2.0\r\nA: b\r\n").unwrap();
        assert_eq!(p.headers.len(), 1);
        assert_eq!(p.body_start, p.body_end);
        assert_eq!(err(b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\n"), ParseErrorKind::ContentLengthTooLarge);
    }

    /// The index crosses the plugin ABI: its layout is part of the contract.
    #[test]
    fn abi_layout_is_stable() {
        use core::mem::{align_of, offset_of, size_of};
        assert_eq!(size_of::<HeaderName>(), 2);
        assert_eq!(size_of::<HeaderEntry>(), 20);
        assert_eq!(align_of::<HeaderEntry>(), 4);
        assert_eq!(offset_of!(HeaderEntry, name_start), 4);
        assert_eq!(offset_of!(HeaderEntry, value_end), 16);
        assert_eq!(size_of::<StartLine>(), 36);
        assert_eq!(offset_of!(StartLine, status_code), 2);
        assert_eq!(offset_of!(StartLine, method_start), 4);
        assert_eq!(offset_of!(StartLine, reason_end), 32);
    }

    #[test]
    fn many_headers_spill_to_heap() {
        let mut m = b"OPTIONS sip:a SIP/2.0\r\n".to_vec();
        for i in 0..100 {
            m.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
        }
        m.extend_from_slice(b"\r\n");
        assert_eq!(parse(&m).unwrap().headers.len(), 100);
    }
}
