//! Edits of a message for forwarding: copy the unchanged byte ranges, splice the changes.
//!
//! A proxy changes little (a Via on top, a Route popped, Max-Forwards, maybe a Record-Route and
//! the Request-URI), so rewriting by ranges keeps every other byte as the peer sent it and
//! costs one copy of the message.

use sip_message::{HeaderName, Message};

/// One change, at a byte range of the original message.
#[derive(Debug, Clone)]
struct Splice {
    start: usize,
    end: usize,
    text: Vec<u8>,
}

/// A set of changes to one message.
#[derive(Debug, Default)]
pub struct Edits {
    splices: Vec<Splice>,
}

impl Edits {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces bytes `start..end` with `text`.
    pub fn replace(&mut self, start: usize, end: usize, text: impl Into<Vec<u8>>) {
        self.splices.push(Splice { start, end, text: text.into() });
    }

    /// Inserts `text` at `at`.
    pub fn insert(&mut self, at: usize, text: impl Into<Vec<u8>>) {
        self.replace(at, at, text);
    }

    /// Applies the edits to `buf` (overlapping edits are a bug of the caller; later ones that
    /// overlap an earlier one are skipped).
    pub fn apply(mut self, buf: &[u8]) -> Vec<u8> {
        self.splices.sort_by_key(|s| (s.start, s.end));
        let extra: usize = self.splices.iter().map(|s| s.text.len()).sum();
        let mut out = Vec::with_capacity(buf.len() + extra);
        let mut pos = 0;
        for s in &self.splices {
            if s.start < pos || s.end > buf.len() || s.start > s.end {
                continue;
            }
            out.extend_from_slice(&buf[pos..s.start]);
            out.extend_from_slice(&s.text);
            pos = s.end;
        }
        out.extend_from_slice(&buf[pos..]);
        out
    }
}

/// Byte range of the whole header line of entry `i` (name to the CRLF included).
pub fn line_range(msg: &Message<'_>, i: usize) -> Option<(usize, usize)> {
    let e = msg.header_entries().get(i)?;
    let buf = msg.buf();
    let start = e.name_start as usize;
    let mut end = e.value_end as usize;
    while end < buf.len() && buf[end] != b'\n' {
        end += 1;
    }
    Some((start, (end + 1).min(buf.len())))
}

/// Where the first header line starts (to insert headers on top).
pub fn first_header_start(msg: &Message<'_>) -> usize {
    msg.header_entries().first().map_or_else(|| msg.body_range().0 as usize, |e| e.name_start as usize)
}

/// Removes the first value of the first header `name`: the whole line when it holds one value,
/// else that value and its comma.
pub fn remove_first_value(edits: &mut Edits, msg: &Message<'_>, name: HeaderName) -> bool {
    let Some(i) = msg.header_entries().iter().position(|e| e.name == name) else { return false };
    let line_end = msg.header_entries()[i].value_end;
    let mut values = msg.list(name);
    match (values.next(), values.next()) {
        // A second value on the same line: cut from the first value to the second.
        (Some((first, _)), Some((second, _))) if second < line_end => {
            edits.replace(first as usize, second as usize, Vec::new());
            true
        }
        _ => match line_range(msg, i) {
            Some((start, end)) => {
                edits.replace(start, end, Vec::new());
                true
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> sip_message::ParsedMessage {
        sip_message::parse(buf).unwrap()
    }

    #[test]
    fn splices_in_order() {
        let buf = b"0123456789";
        let mut e = Edits::new();
        e.replace(5, 7, "ab");
        e.insert(0, "X");
        e.insert(10, "Z");
        assert_eq!(e.apply(buf), b"X01234ab789Z");
    }

    #[test]
    fn removes_first_via_value() {
        let buf = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP c\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n";
        let p = parse(buf);
        let m = Message::new(buf, &p);
        let mut e = Edits::new();
        assert!(remove_first_value(&mut e, &m, HeaderName::VIA));
        let out = e.apply(buf);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP c\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
        );
        let buf2 =
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP c\r\nContent-Length: 0\r\n\r\n";
        let p = parse(buf2);
        let m = Message::new(buf2, &p);
        let mut e = Edits::new();
        remove_first_value(&mut e, &m, HeaderName::VIA);
        assert_eq!(
            String::from_utf8(e.apply(buf2)).unwrap(),
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP c\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
