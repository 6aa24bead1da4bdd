//! Error types: one for message-level parsing, one for typed header access.

use core::fmt;

use crate::HeaderName;

/// Why [`parse`](crate::parse) refused a buffer.
///
/// Each kind names one rule of RFC 3261 §7 (or a framing rule of §18.3), so that a log line
/// such as `bad Content-Length at byte 312` is enough to tell what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The buffer holds nothing but (optional) CRLF keep-alives.
    Empty,
    /// The buffer is larger than the 4 GiB the `u32` offsets of the index can address.
    TooLarge,
    /// The start line has no line end.
    UnterminatedStartLine,
    /// The start line is neither a Request-Line nor a Status-Line (wrong number of parts or
    /// separators other than a single SP).
    BadStartLine,
    /// The request method is not a `token`.
    BadMethod,
    /// The Request-URI is empty, has no scheme, or contains whitespace, control characters,
    /// `<`, `>` or `"`.
    BadRequestUri,
    /// The SIP-Version is not of the form `SIP/digits.digits`.
    BadVersion,
    /// The Status-Code is not three digits in 100..=699.
    BadStatusCode,
    /// A header line does not start with a `token` header name.
    BadHeaderName,
    /// A header name is not followed by `:`.
    MissingColon,
    /// The first header line starts with whitespace, so it continues nothing.
    UnexpectedContinuation,
    /// The buffer ends inside a header line (no terminating LF).
    UnterminatedHeaders,
    /// A Content-Length value is not a decimal number that fits in 32 bits.
    BadContentLength,
    /// Two Content-Length headers disagree, so the body cannot be delimited.
    ConflictingContentLength,
    /// Content-Length announces more bytes than the buffer holds after the header section.
    ContentLengthTooLarge,
}

impl ParseErrorKind {
    /// A short lower-case description, used by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::Empty => "empty message",
            ParseErrorKind::TooLarge => "message larger than 4 GiB",
            ParseErrorKind::UnterminatedStartLine => "unterminated start line",
            ParseErrorKind::BadStartLine => "malformed start line",
            ParseErrorKind::BadMethod => "bad method",
            ParseErrorKind::BadRequestUri => "bad Request-URI",
            ParseErrorKind::BadVersion => "bad SIP version",
            ParseErrorKind::BadStatusCode => "bad status code",
            ParseErrorKind::BadHeaderName => "bad header name",
            ParseErrorKind::MissingColon => "missing colon after header name",
            ParseErrorKind::UnexpectedContinuation => "continuation line without a header",
            ParseErrorKind::UnterminatedHeaders => "message ends inside a header line",
            ParseErrorKind::BadContentLength => "bad Content-Length",
            ParseErrorKind::ConflictingContentLength => "conflicting Content-Length headers",
            ParseErrorKind::ContentLengthTooLarge => "Content-Length larger than the body",
        }
    }
}

/// A parse failure: what rule was broken and at which byte offset of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// Byte offset in the parsed buffer where the problem was found.
    pub offset: u32,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, offset: usize) -> Self {
        ParseError { kind, offset: u32::try_from(offset).unwrap_or(u32::MAX) }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.as_str(), self.offset)
    }
}

impl std::error::Error for ParseError {}

/// Why a typed header accessor failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderErrorKind {
    /// A header the accessor requires is absent.
    Missing,
    /// The header value does not match its grammar (or is not UTF-8 where text is returned).
    Malformed,
    /// A header that may appear only once appears several times.
    Repeated,
}

/// A typed header accessor failure: which header and what went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeaderError {
    /// The header concerned.
    pub name: HeaderName,
    /// What went wrong.
    pub kind: HeaderErrorKind,
    /// Byte offset of the offending value in the buffer (0 when the header is missing).
    pub offset: u32,
}

impl HeaderError {
    pub(crate) fn missing(name: HeaderName) -> Self {
        HeaderError { name, kind: HeaderErrorKind::Missing, offset: 0 }
    }

    pub(crate) fn malformed(name: HeaderName, offset: u32) -> Self {
        HeaderError { name, kind: HeaderErrorKind::Malformed, offset }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            HeaderErrorKind::Missing => write!(f, "missing {} header", self.name),
            HeaderErrorKind::Malformed => {
                write!(f, "malformed {} header at byte {}", self.name, self.offset)
            }
            HeaderErrorKind::Repeated => {
                write!(f, "repeated {} header at byte {}", self.name, self.offset)
            }
        }
    }
}

impl std::error::Error for HeaderError {}
