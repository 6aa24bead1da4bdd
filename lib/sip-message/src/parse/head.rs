//! Header section (RFC 3261 §7.3): header lines, folding and Content-Length.

use smallvec::SmallVec;

use super::{HeaderEntry, INLINE_HEADERS, to_u32};
use crate::HeaderName;
use crate::error::{ParseError, ParseErrorKind};
use crate::scan::{is_token, parse_u32, skip_lws, trim_lws};

/// Parses header lines from `pos` up to and including the empty line; returns the body start.
///
/// Only LF terminates a line (a CR before it is dropped), which is how bare-LF messages are
/// tolerated. A line starting with SP or HTAB continues the previous header's value.
pub(super) fn parse_headers(
    buf: &[u8],
    mut pos: usize,
    out: &mut SmallVec<[HeaderEntry; INLINE_HEADERS]>,
) -> Result<usize, ParseError> {
    loop {
        match buf.get(pos) {
            // The datagram ends after a complete line: accept it as the end of the headers.
            None => return Ok(pos),
            Some(b'\n') => return Ok(pos + 1),
            Some(b'\r') if buf.get(pos + 1) == Some(&b'\n') => return Ok(pos + 2),
            Some(b' ' | b'\t') => {
                return Err(ParseError::new(ParseErrorKind::UnexpectedContinuation, pos));
            }
            Some(_) => {}
        }
        let name_start = pos;
        let mut i = pos;
        while buf.get(i).copied().is_some_and(is_token) {
            i += 1;
        }
        let name_end = i;
        if name_end == name_start {
            return Err(ParseError::new(ParseErrorKind::BadHeaderName, pos));
        }
        // RFC 3261 HCOLON = *( SP / HTAB ) ":" SWS: whitespace before the colon is legal.
        while matches!(buf.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        match buf.get(i) {
            Some(b':') => {}
            Some(b) if is_token(*b) || matches!(b, b' ' | b'\t' | b'\r' | b'\n') => {
                return Err(ParseError::new(ParseErrorKind::MissingColon, i));
            }
            Some(_) => return Err(ParseError::new(ParseErrorKind::BadHeaderName, i)),
            None => return Err(ParseError::new(ParseErrorKind::UnterminatedHeaders, i)),
        }
        let raw_start = i + 1;
        // Find the end of the (possibly folded) value: the first LF not followed by SP/HTAB.
        let mut line_end;
        let mut search = raw_start;
        loop {
            let rest = buf.get(search..).unwrap_or_default();
            let lf = memchr::memchr(b'\n', rest)
                .ok_or_else(|| ParseError::new(ParseErrorKind::UnterminatedHeaders, name_start))?;
            line_end = search + lf;
            if matches!(buf.get(line_end + 1), Some(b' ' | b'\t')) {
                search = line_end + 1;
            } else {
                break;
            }
        }
        let raw = buf.get(raw_start..line_end).unwrap_or_default();
        let lead = skip_lws(raw, 0);
        let value_len = trim_lws(raw).len();
        let value_start = raw_start + lead;
        out.push(HeaderEntry {
            name: HeaderName::from_bytes(buf.get(name_start..name_end).unwrap_or_default()),
            name_start: to_u32(name_start),
            name_end: to_u32(name_end),
            value_start: to_u32(value_start),
            value_end: to_u32(value_start + value_len),
        });
        pos = line_end + 1;
    }
}

/// Parses a Content-Length value (already trimmed).
pub(crate) fn content_length_value(v: &[u8]) -> Option<u32> {
    parse_u32(v)
}

/// The Content-Length of the message, if any header says; all occurrences must agree.
pub(super) fn content_length(buf: &[u8], headers: &[HeaderEntry]) -> Result<Option<u32>, ParseError> {
    let mut found: Option<u32> = None;
    for h in headers.iter().filter(|h| h.name == HeaderName::CONTENT_LENGTH) {
        let v = buf.get(h.value_start as usize..h.value_end as usize).unwrap_or_default();
        let n = content_length_value(v)
            .ok_or_else(|| ParseError::new(ParseErrorKind::BadContentLength, h.value_start as usize))?;
        match found {
            Some(prev) if prev != n => {
                return Err(ParseError::new(ParseErrorKind::ConflictingContentLength, h.name_start as usize));
            }
            _ => found = Some(n),
        }
    }
    Ok(found)
}
