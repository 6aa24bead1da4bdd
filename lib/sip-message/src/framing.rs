//! Message framing on stream transports (RFC 3261 §18.3, RFC 5626 §3.5.1 keep-alives).

use core::fmt;

use crate::scan::{is_token, parse_u32};

/// What [`frame_stream`] found at the start of a connection's receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The buffer starts with this many CR/LF bytes: keep-alives (or noise) before a message.
    /// Consume them; when they were a `CRLFCRLF` ping (RFC 5626), answer with `CRLF`.
    KeepAlive(usize),
    /// A whole message occupies the first `len` bytes; hand `&buf[..len]` to
    /// [`parse`](crate::parse) and consume it.
    Complete(usize),
    /// More bytes are needed.
    Incomplete,
    /// The stream cannot be framed; close the connection.
    Error(FrameError),
}

/// Why a stream could not be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameError {
    /// The header section alone, or header section plus announced body, exceeds the limit.
    TooLarge,
    /// No Content-Length: mandatory on streams (RFC 3261 §18.3), the body cannot be delimited.
    MissingContentLength,
    /// A Content-Length value is not a 32-bit decimal number.
    BadContentLength,
    /// Two Content-Length values disagree.
    ConflictingContentLength,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::TooLarge => "message exceeds the size limit",
            FrameError::MissingContentLength => "no Content-Length on a stream transport",
            FrameError::BadContentLength => "bad Content-Length",
            FrameError::ConflictingContentLength => "conflicting Content-Length headers",
        })
    }
}

impl std::error::Error for FrameError {}

/// Frames the next message of a stream connection from the bytes received so far.
///
/// `max_size` bounds a whole message: a header section that has not ended within `max_size`
/// bytes, or a Content-Length that would take the message past it, is refused as soon as that
/// is known, before the body arrives. The scan restarts from the beginning on every call (cost
/// linear in the buffered bytes, which `max_size` bounds).
///
/// Only Content-Length is looked at; the message itself is checked by `parse`.
pub fn frame_stream(buf: &[u8], max_size: usize) -> Frame {
    let crlf = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    if crlf > 0 {
        return Frame::KeepAlive(crlf);
    }
    let Some(head_len) = find_head_end(buf, max_size) else {
        return if buf.len() > max_size { Frame::Error(FrameError::TooLarge) } else { Frame::Incomplete };
    };
    let head = buf.get(..head_len).unwrap_or_default();
    let body_len = match content_length(head) {
        Ok(Some(n)) => n as usize,
        Ok(None) => return Frame::Error(FrameError::MissingContentLength),
        Err(e) => return Frame::Error(e),
    };
    let total = head_len.saturating_add(body_len);
    if total > max_size {
        Frame::Error(FrameError::TooLarge)
    } else if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Incomplete
    }
}

/// Length of the header section including the empty line, if it ends within `limit` bytes.
fn find_head_end(buf: &[u8], limit: usize) -> Option<usize> {
    let window = buf.get(..buf.len().min(limit))?;
    let mut from = 0;
    while let Some(i) = window.get(from..).and_then(|w| memchr::memchr(b'\n', w)) {
        let lf = from + i;
        match window.get(lf + 1) {
            Some(b'\n') => return Some(lf + 2),
            Some(b'\r') if window.get(lf + 2) == Some(&b'\n') => return Some(lf + 3),
            _ => from = lf + 1,
        }
    }
    None
}

/// Finds Content-Length (`Content-Length` or `l`, any case, LWS before the colon, folded
/// value) in a complete header section.
fn content_length(head: &[u8]) -> Result<Option<u32>, FrameError> {
    let mut found = None;
    // Skip the start line; then each line start not preceded by a fold is a header name.
    let mut pos = match memchr::memchr(b'\n', head) {
        Some(i) => i + 1,
        None => return Ok(None),
    };
    while pos < head.len() {
        let mut end = pos;
        while head.get(end).copied().is_some_and(is_token) {
            end += 1;
        }
        let name = head.get(pos..end).unwrap_or_default();
        let is_cl = name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l");
        // The value runs to the first LF not followed by SP/HTAB.
        let mut line_end = end;
        loop {
            match head.get(line_end..).and_then(|r| memchr::memchr(b'\n', r)) {
                Some(i) => line_end += i,
                None => {
                    line_end = head.len();
                    break;
                }
            }
            if matches!(head.get(line_end + 1), Some(b' ' | b'\t')) {
                line_end += 1;
            } else {
                break;
            }
        }
        if is_cl {
            let rest = head.get(end..line_end).unwrap_or_default();
            let rest = strip_leading_ws(rest);
            if let Some(value) = rest.strip_prefix(b":") {
                let digits: &[u8] = crate::scan::trim_lws(value);
                let n = parse_u32(digits).ok_or(FrameError::BadContentLength)?;
                if found.is_some_and(|f| f != n) {
                    return Err(FrameError::ConflictingContentLength);
                }
                found = Some(n);
            }
        }
        pos = line_end + 1;
    }
    Ok(found)
}

/// Drops leading SP/HTAB (the whitespace RFC 3261 allows before the colon).
fn strip_leading_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    s.get(n..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"SUBSCRIBE sip:a SIP/2.0\r\nEvent: presence\r\nl : 4\r\n\r\nbody";

    #[test]
    fn complete_and_incomplete() {
        assert_eq!(frame_stream(MSG, 1000), Frame::Complete(MSG.len()));
        for cut in 0..MSG.len() {
            assert_eq!(frame_stream(&MSG[..cut], 1000), Frame::Incomplete, "cut {cut}");
        }
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame_stream(&two, 1000), Frame::Complete(MSG.len()));
    }

    #[test]
    fn keep_alives() {
        assert_eq!(frame_stream(b"\r\n\r\n", 100), Frame::KeepAlive(4));
        let mut b = b"\r\n".to_vec();
        b.extend_from_slice(MSG);
        assert_eq!(frame_stream(&b, 1000), Frame::KeepAlive(2));
        assert_eq!(frame_stream(b"", 100), Frame::Incomplete);
    }

    #[test]
    fn errors_and_limits() {
        assert_eq!(
            frame_stream(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n", 1000),
            Frame::Error(FrameError::MissingContentLength)
        );
        assert_eq!(
            frame_stream(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n", 1000),
            Frame::Error(FrameError::BadContentLength)
        );
        assert_eq!(
            frame_stream(b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\nContent-length: 2\r\n\r\n", 1000),
            Frame::Error(FrameError::ConflictingContentLength)
        );
        // A 2 MB body is refused as soon as the header section is in.
        assert_eq!(
            frame_stream(b"MESSAGE sip:a SIP/2.0\r\nContent-Length: 2000000\r\n\r\n", 65536),
            Frame::Error(FrameError::TooLarge)
        );
        // A header section that never ends is refused past the limit.
        let endless = vec![b'a'; 70000];
        assert_eq!(frame_stream(&endless, 65536), Frame::Error(FrameError::TooLarge));
        assert_eq!(frame_stream(&endless[..100], 65536), Frame::Incomplete);
        // Folded value and bare LF.
        assert_eq!(frame_stream(b"OPTIONS sip:a SIP/2.0\nContent-Length:\n 2\n\nok", 100), Frame::Complete(44));
    }
}
