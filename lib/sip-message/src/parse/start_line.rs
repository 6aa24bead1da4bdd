//! Request-Line and Status-Line (RFC 3261 §7.1, §7.2).
//!
//! Strict about separators: elements are separated by exactly one SP and the line has no
//! trailing whitespace. RFC 4475 §3.1.2.9/§3.1.2.10 allow rejecting those forms, and a proxy
//! must not forward them anyway.

use super::{StartLine, to_u32};
use crate::error::{ParseError, ParseErrorKind};
use crate::scan::is_token_str;

/// Parses the start line beginning at `pos`; returns it and the offset of the next line.
pub(super) fn parse_start_line(buf: &[u8], pos: usize) -> Result<(StartLine, usize), ParseError> {
    let rest = buf.get(pos..).unwrap_or_default();
    let lf = memchr::memchr(b'\n', rest).ok_or_else(|| ParseError::new(ParseErrorKind::UnterminatedStartLine, pos))?;
    let mut line_end = pos + lf;
    if line_end > pos && buf.get(line_end - 1) == Some(&b'\r') {
        line_end -= 1;
    }
    let line = buf.get(pos..line_end).unwrap_or_default();
    let next = pos + lf + 1;
    let start = if line.len() >= 4 && line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/")) {
        status_line(line, pos)?
    } else {
        request_line(line, pos)?
    };
    Ok((start, next))
}

fn err(kind: ParseErrorKind, at: usize) -> ParseError {
    ParseError::new(kind, at)
}

/// `SIP/1*DIGIT.1*DIGIT`, case-insensitive on the letters.
fn is_version(v: &[u8]) -> bool {
    let Some(rest) = v.get(..4).filter(|p| p.eq_ignore_ascii_case(b"SIP/")).and_then(|_| v.get(4..)) else {
        return false;
    };
    let Some(dot) = rest.iter().position(|&b| b == b'.') else {
        return false;
    };
    let (major, minor) = (rest.get(..dot).unwrap_or_default(), rest.get(dot + 1..).unwrap_or_default());
    !major.is_empty()
        && !minor.is_empty()
        && major.iter().all(u8::is_ascii_digit)
        && minor.iter().all(u8::is_ascii_digit)
}

fn request_line(line: &[u8], base: usize) -> Result<StartLine, ParseError> {
    // Extra SP between elements or at the end (RFC 4475 §3.1.2.9, §3.1.2.10).
    if line.ends_with(b" ") || line.ends_with(b"\t") || line.windows(2).any(|w| w == b"  ") {
        return Err(err(ParseErrorKind::BadStartLine, base));
    }
    let first_sp = line.iter().position(|&b| b == b' ').ok_or_else(|| err(ParseErrorKind::BadStartLine, base))?;
    let last_sp = line.iter().rposition(|&b| b == b' ').ok_or_else(|| err(ParseErrorKind::BadStartLine, base))?;
    if last_sp == first_sp {
        return Err(err(ParseErrorKind::BadStartLine, base + first_sp));
    }
    let method = line.get(..first_sp).unwrap_or_default();
    if !is_token_str(method) {
        return Err(err(ParseErrorKind::BadMethod, base));
    }
    let uri_start = first_sp + 1;
    let uri = line.get(uri_start..last_sp).unwrap_or_default();
    if !is_request_uri(uri) {
        return Err(err(ParseErrorKind::BadRequestUri, base + uri_start));
    }
    let version_start = last_sp + 1;
    if !is_version(line.get(version_start..).unwrap_or_default()) {
        return Err(err(ParseErrorKind::BadVersion, base + version_start));
    }
    Ok(StartLine {
        kind: StartLine::REQUEST,
        method_start: to_u32(base),
        method_end: to_u32(base + first_sp),
        uri_start: to_u32(base + uri_start),
        uri_end: to_u32(base + last_sp),
        version_start: to_u32(base + version_start),
        version_end: to_u32(base + line.len()),
        ..StartLine::default()
    })
}

/// The shape every Request-URI has whatever its scheme: `scheme ":" 1*char` with no
/// whitespace, control characters or the `<>"` delimiters (RFC 4475 §3.1.2.7: `<sip:...>` is
/// not a Request-URI). Scheme-specific syntax is checked by `Message::validate`.
fn is_request_uri(uri: &[u8]) -> bool {
    let Some(colon) = uri.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = uri.get(..colon).unwrap_or_default();
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    scheme_ok && colon + 1 < uri.len() && uri.iter().all(|&b| b > b' ' && b != 0x7f && !matches!(b, b'<' | b'>' | b'"'))
}

fn status_line(line: &[u8], base: usize) -> Result<StartLine, ParseError> {
    let sp = line.iter().position(|&b| b == b' ').ok_or_else(|| err(ParseErrorKind::BadStartLine, base))?;
    if !is_version(line.get(..sp).unwrap_or_default()) {
        return Err(err(ParseErrorKind::BadVersion, base));
    }
    let code_start = sp + 1;
    let digits = line.get(code_start..code_start + 3).unwrap_or_default();
    let after = line.get(code_start + 3).copied();
    if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) || after.is_some_and(|b| b != b' ') {
        return Err(err(ParseErrorKind::BadStatusCode, base + code_start));
    }
    let code = digits.iter().fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    if !(100..=699).contains(&code) {
        return Err(err(ParseErrorKind::BadStatusCode, base + code_start));
    }
    // RFC 4475 §3.1.1.13: the SP before an empty reason is required, but a liberal receiver
    // accepts its absence; so does this one.
    let reason_start = (code_start + 4).min(line.len());
    Ok(StartLine {
        kind: StartLine::RESPONSE,
        status_code: code,
        version_start: to_u32(base),
        version_end: to_u32(base + sp),
        reason_start: to_u32(base + reason_start),
        reason_end: to_u32(base + line.len()),
        ..StartLine::default()
    })
}
