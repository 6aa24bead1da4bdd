//! Splits a byte stream (the RPC FIFO) into complete JSON documents.
//!
//! A FIFO has no message boundaries: one `read` may hold half a request or three, so framing
//! by `read` would break requests apart. This scanner tracks strings, escapes and nesting and
//! yields a document when its outermost `{...}` or `[...]` closes. Bytes outside a document
//! that are not whitespace are garbage: they are skipped up to the next line, and reported.

/// What the framer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete document (not necessarily valid JSON inside).
    Document(Vec<u8>),
    /// Bytes that were skipped, with the reason.
    Garbage(String),
}

/// Incremental JSON document framer.
#[derive(Debug)]
pub struct JsonFramer {
    buf: Vec<u8>,
    max: usize,
}

impl JsonFramer {
    /// A framer that refuses documents larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { buf: Vec::new(), max }
    }

    /// Adds bytes and returns every frame they complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<Frame> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            // Skip whitespace between documents.
            let start = self.buf.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(self.buf.len());
            self.buf.drain(..start);
            let Some(&first) = self.buf.first() else { break };
            if first != b'{' && first != b'[' {
                let end = self.buf.iter().position(|&b| b == b'\n').map_or(self.buf.len(), |i| i + 1);
                let skipped: Vec<u8> = self.buf.drain(..end).collect();
                out.push(Frame::Garbage(format!("skipped {} bytes that do not start a JSON document", skipped.len())));
                continue;
            }
            match scan(&self.buf) {
                Some(len) => {
                    let doc: Vec<u8> = self.buf.drain(..len).collect();
                    out.push(Frame::Document(doc));
                }
                None if self.buf.len() > self.max => {
                    let n = self.buf.len();
                    self.buf.clear();
                    out.push(Frame::Garbage(format!(
                        "dropped a request larger than {} bytes ({n} bytes so far)",
                        self.max
                    )));
                }
                None => break,
            }
        }
        out
    }
}

/// Length of the complete document at the start of `buf`, if it is complete.
fn scan(buf: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in buf.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(frames: Vec<Frame>) -> Vec<String> {
        frames
            .into_iter()
            .filter_map(|f| match f {
                Frame::Document(d) => Some(String::from_utf8(d).unwrap()),
                Frame::Garbage(_) => None,
            })
            .collect()
    }

    #[test]
    fn split_and_joined_documents() {
        let mut f = JsonFramer::new(1 << 20);
        assert!(f.push(b"{\"a\": \"x}").is_empty());
        assert_eq!(docs(f.push(b"y\\\"}\"}\n{\"b\":[1,{}]}{\"c\":1")), vec!["{\"a\": \"x}y\\\"}\"}", "{\"b\":[1,{}]}"]);
        assert_eq!(docs(f.push(b"}")), vec!["{\"c\":1}"]);
    }

    #[test]
    fn garbage_is_skipped_to_the_next_line() {
        let mut f = JsonFramer::new(1 << 20);
        let frames = f.push(b"hello there\n{\"ok\":1}");
        assert!(matches!(frames[0], Frame::Garbage(_)));
        assert_eq!(docs(frames), vec!["{\"ok\":1}"]);
    }

    #[test]
    fn oversized_documents_are_dropped() {
        let mut f = JsonFramer::new(16);
        let frames = f.push(b"{\"a\":\"0123456789012345678901234567890\"");
        assert!(matches!(frames[0], Frame::Garbage(_)));
        assert_eq!(
            docs(f.push(b"\n{\"b\":2}")),
            Vec::<String>::new().into_iter().chain(["{\"b\":2}".to_string()]).collect::<Vec<_>>()
        );
    }
}
