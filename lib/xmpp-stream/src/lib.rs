//! XMPP stream framing without I/O.
//!
//! An XMPP stream is one XML document that never ends while the connection lives: a
//! `<stream:stream>` root opened once, then top-level elements (stanzas) one after the other.
//! A TCP read may carry several stanzas (Prosody sends a subscription answer, a delayed
//! presence and a probe in one segment) or a part of one, so [`StanzaReader`] keeps the bytes
//! and hands out each stanza once its end tag has arrived. It only finds element boundaries
//! (tags, quoted attribute values, comments, CDATA); each stanza is then parsed whole with
//! roxmltree ([`parse_stanza`]).
//!
//! The reader refuses what RFC 6120 §11.1 forbids on a stream (DTDs) and stanzas above a size
//! limit, so a peer cannot make it buffer without bound.

use std::fmt::Write as _;

use sha1::{Digest, Sha1};

/// What the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's `<stream:stream ...>` start tag, as received.
    StreamStart(String),
    /// One complete top-level element, as received.
    Stanza(String),
    /// `</stream:stream>`: the peer closed the stream.
    StreamEnd,
}

/// Why the stream cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A stanza (or a tag) grew beyond the limit.
    #[error("stanza larger than {0} bytes")]
    TooLarge(usize),
    /// A DTD or another construct XMPP forbids.
    #[error("forbidden XML on the stream: {0}")]
    Forbidden(&'static str),
    /// Text outside any stanza, an end tag without a start, or a first element that is not the
    /// stream header.
    #[error("not an XMPP stream: {0}")]
    NotXmpp(String),
    /// A stanza that is not UTF-8.
    #[error("stanza is not UTF-8")]
    NotUtf8,
}

/// The incremental reader: [`feed`](StanzaReader::feed) what was read, then take events with
/// [`next_event`](StanzaReader::next_event) until it returns `Ok(None)`.
#[derive(Debug)]
pub struct StanzaReader {
    buf: Vec<u8>,
    /// Where scanning goes on.
    pos: usize,
    /// Start of the stanza being read (meaningful while `depth > 0`).
    start: usize,
    /// Element depth below the stream root.
    depth: usize,
    header_seen: bool,
    max: usize,
}

impl StanzaReader {
    /// A reader that refuses stanzas larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { buf: Vec::with_capacity(4096), pos: 0, start: 0, depth: 0, header_seen: false, max }
    }

    /// Appends bytes read from the connection.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not make an event yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next event, `Ok(None)` when more bytes are needed. After an error the reader must be
    /// dropped (the connection is closed).
    pub fn next_event(&mut self) -> Result<Option<Event>, StreamError> {
        loop {
            if self.depth == 0 && self.pos > 0 {
                // Nothing before `pos` is needed any more.
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let rest = &self.buf[self.pos..];
            let Some(&first) = rest.first() else { return Ok(None) };
            if first != b'<' {
                let end = rest.iter().position(|&b| b == b'<').unwrap_or(rest.len());
                if self.depth == 0 && !rest[..end].iter().all(u8::is_ascii_whitespace) {
                    return Err(StreamError::NotXmpp("text outside a stanza".into()));
                }
                self.pos += end;
                if end == rest.len() {
                    return self.check_size();
                }
                continue;
            }
            let Some((kind, len)) = token(rest)? else { return self.check_size() };
            let tag_start = self.pos;
            self.pos += len;
            match kind {
                Token::Skip => {}
                Token::End => {
                    if self.depth == 0 {
                        let name = tag_name(&self.buf[tag_start + 2..self.pos - 1]);
                        return if name == b"stream:stream" || name == b"stream" {
                            Ok(Some(Event::StreamEnd))
                        } else {
                            Err(StreamError::NotXmpp("end tag without a start tag".into()))
                        };
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        return self.take(self.start, self.pos).map(|s| Some(Event::Stanza(s)));
                    }
                }
                Token::Start { empty } => {
                    if !self.header_seen {
                        let name = tag_name(&self.buf[tag_start + 1..self.pos - 1]);
                        if name != b"stream:stream" && name != b"stream" {
                            return Err(StreamError::NotXmpp("the first element is not <stream:stream>".into()));
                        }
                        self.header_seen = true;
                        return self.take(tag_start, self.pos).map(|s| Some(Event::StreamStart(s)));
                    }
                    if self.depth == 0 {
                        self.start = tag_start;
                        if empty {
                            return self.take(tag_start, self.pos).map(|s| Some(Event::Stanza(s)));
                        }
                    }
                    if !empty {
                        self.depth += 1;
                    }
                }
            }
        }
    }

    fn take(&self, from: usize, to: usize) -> Result<String, StreamError> {
        if to - from > self.max {
            return Err(StreamError::TooLarge(self.max));
        }
        std::str::from_utf8(&self.buf[from..to]).map(str::to_string).map_err(|_| StreamError::NotUtf8)
    }

    fn check_size(&self) -> Result<Option<Event>, StreamError> {
        let held = if self.depth > 0 { self.buf.len() - self.start } else { self.buf.len() - self.pos };
        if held > self.max { Err(StreamError::TooLarge(self.max)) } else { Ok(None) }
    }
}

enum Token {
    /// A start tag; `empty` for `<x/>`.
    Start { empty: bool },
    /// An end tag.
    End,
    /// A comment, processing instruction or CDATA section.
    Skip,
}

/// The token at the start of `s` (which starts with `<`) and its length; None when incomplete.
fn token(s: &[u8]) -> Result<Option<(Token, usize)>, StreamError> {
    let find = |pat: &[u8], from: usize| {
        s.get(from..).and_then(|t| t.windows(pat.len()).position(|w| w == pat)).map(|i| from + i + pat.len())
    };
    if s.len() < 2 {
        return Ok(None);
    }
    match s[1] {
        b'?' => Ok(find(b"?>", 2).map(|n| (Token::Skip, n))),
        b'!' => {
            if s.len() < 9 && (b"<!--".starts_with(&s[..s.len().min(4)]) || b"<![CDATA[".starts_with(s)) {
                return Ok(None);
            }
            if s.starts_with(b"<!--") {
                Ok(find(b"-->", 4).map(|n| (Token::Skip, n)))
            } else if s.starts_with(b"<![CDATA[") {
                Ok(find(b"]]>", 9).map(|n| (Token::Skip, n)))
            } else {
                Err(StreamError::Forbidden("DTD"))
            }
        }
        b'/' => Ok(s.iter().position(|&b| b == b'>').map(|i| (Token::End, i + 1))),
        _ => {
            // A start tag: `>` inside a quoted attribute value does not end it.
            let mut quote = None;
            for (i, &b) in s.iter().enumerate().skip(1) {
                match (quote, b) {
                    (Some(q), _) if b == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(b),
                    (None, b'>') => return Ok(Some((Token::Start { empty: s[i - 1] == b'/' }, i + 1))),
                    (None, b'<') => return Err(StreamError::NotXmpp("'<' inside a tag".into())),
                    _ => {}
                }
            }
            Ok(None)
        }
    }
}

/// The element name at the start of a tag's inside (`stream:stream id='..'` → `stream:stream`).
fn tag_name(inside: &[u8]) -> &[u8] {
    let end = inside.iter().position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>').unwrap_or(inside.len());
    &inside[..end]
}

/// `hex(SHA-1(stream id + secret))`, the XEP-0114 `<handshake>` content.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    let mut out = String::with_capacity(40);
    for b in h.finalize() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An attribute of a stream header start tag (`id`, `from`); None when absent or unreadable.
pub fn header_attr(header: &str, name: &str) -> Option<String> {
    let doc = format!("{header}</stream:stream>");
    let parsed = roxmltree::Document::parse(&doc).ok()?;
    parsed.root_element().attribute(name).map(str::to_string)
}

/// Parses one stanza and runs `f` on its element. The stanza is wrapped in an element that
/// declares the stream's namespaces, since a stanza alone may use the `stream:` prefix.
pub fn parse_stanza<R>(
    stanza: &str,
    default_ns: &str,
    f: impl FnOnce(roxmltree::Node<'_, '_>) -> R,
) -> Result<R, roxmltree::Error> {
    let doc = format!("<w xmlns='{default_ns}' xmlns:stream='http://etherx.jabber.org/streams'>{stanza}</w>");
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 10_000, ..Default::default() };
    let parsed = roxmltree::Document::parse_with_options(&doc, opts)?;
    let el = parsed.root_element().first_element_child().ok_or(roxmltree::Error::NoRootNode)?;
    Ok(f(el))
}

/// The text of the first child element named `name` (any namespace) of `node`.
pub fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children().find(|c| c.is_element() && c.tag_name().name() == name).map(|c| c.text().unwrap_or(""))
}

/// `s` escaped for XML text and attribute values.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream from='gw.test' id='abc' xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept'>";

    fn events(r: &mut StanzaReader) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = r.next_event().expect("valid stream") {
            v.push(e);
        }
        v
    }

    #[test]
    fn several_stanzas_in_one_read() {
        let mut r = StanzaReader::new(65536);
        let data = format!(
            "{HEADER}<handshake/><presence from='a@x' type='subscribed'/><presence to='s@gw' from='a@x/probe'><status>hi &amp; &lt;b&gt;</status><delay xmlns='urn:xmpp:delay' stamp='2024'/></presence> \n<presence from='a@x' type='probe' to='s@gw'/>"
        );
        r.feed(data.as_bytes());
        let ev = events(&mut r);
        assert_eq!(ev.len(), 5, "{ev:?}");
        assert!(matches!(&ev[0], Event::StreamStart(h) if h.contains("id='abc'")));
        assert_eq!(ev[1], Event::Stanza("<handshake/>".into()));
        assert_eq!(ev[2], Event::Stanza("<presence from='a@x' type='subscribed'/>".into()));
        assert!(matches!(&ev[3], Event::Stanza(s) if s.starts_with("<presence to=") && s.ends_with("</presence>")));
        assert_eq!(ev[4], Event::Stanza("<presence from='a@x' type='probe' to='s@gw'/>".into()));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn stanzas_split_at_every_byte() {
        let stanza = "<presence from='a@x/r' to='b@gw'><show>away</show><status a='1>2'>gone &gt; lunch</status><!-- c <x> --><x><![CDATA[<not a tag>]]></x></presence>";
        let data = format!("{HEADER}{stanza}<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>");
        let mut r = StanzaReader::new(65536);
        let mut got = Vec::new();
        for b in data.as_bytes() {
            r.feed(std::slice::from_ref(b));
            got.extend(events(&mut r));
        }
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[1], Event::Stanza(stanza.into()));
        assert!(matches!(&got[2], Event::Stanza(s) if s.starts_with("<iq")));
        assert_eq!(got[3], Event::StreamEnd);
    }

    #[test]
    fn refuses_bad_streams() {
        let mut r = StanzaReader::new(300);
        r.feed(format!("{HEADER}<message><body>{}</body></message>", "x".repeat(400)).as_bytes());
        assert!(matches!(r.next_event(), Ok(Some(Event::StreamStart(_)))));
        assert_eq!(r.next_event(), Err(StreamError::TooLarge(300)));

        // Without an end in sight, the buffer is still bounded.
        let mut r = StanzaReader::new(300);
        r.feed(format!("{HEADER}<message><body>").as_bytes());
        let _ = r.next_event();
        assert_eq!(r.next_event(), Ok(None));
        r.feed("y".repeat(400).as_bytes());
        assert_eq!(r.next_event(), Err(StreamError::TooLarge(300)));

        let mut r = StanzaReader::new(1000);
        r.feed(b"<!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream>");
        assert_eq!(r.next_event(), Err(StreamError::Forbidden("DTD")));

        let mut r = StanzaReader::new(1000);
        r.feed(b"<html><body>");
        assert!(matches!(r.next_event(), Err(StreamError::NotXmpp(_))));

        let mut r = StanzaReader::new(1000);
        r.feed(format!("{HEADER}hello").as_bytes());
        let _ = r.next_event();
        assert!(matches!(r.next_event(), Err(StreamError::NotXmpp(_))));

        let mut r = StanzaReader::new(1000);
        r.feed(format!("{HEADER}</presence>").as_bytes());
        let _ = r.next_event();
        assert!(matches!(r.next_event(), Err(StreamError::NotXmpp(_))));

        let mut r = StanzaReader::new(1000);
        r.feed(format!("{HEADER}<presence>\u{0}").as_bytes());
        r.feed(&[0xff, 0xfe]);
        r.feed(b"</presence>");
        let _ = r.next_event();
        assert_eq!(r.next_event(), Err(StreamError::NotUtf8));
    }

    #[test]
    fn handshake_digest_matches_prosody() {
        // From a capture with Prosody 0.12 (secret s3cr3t).
        assert_eq!(
            handshake_digest("d37e25c5-0c1e-4524-bf12-343af625d2fc", "s3cr3t"),
            "cb0416081a166b218ef6335f3ada8fdc73afd448"
        );
    }

    #[test]
    fn header_and_stanza_parsing() {
        let start = "<stream:stream from='gw.test' id='d37e' xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept'>";
        assert_eq!(header_attr(start, "id").as_deref(), Some("d37e"));
        assert_eq!(header_attr(start, "nope"), None);
        let err = "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Given token does not match calculated token</text></stream:error>";
        let (name, text) = parse_stanza(err, "jabber:component:accept", |n| {
            (n.tag_name().name().to_string(), child_text(n, "text").map(str::to_string))
        })
        .unwrap();
        assert_eq!(name, "error");
        assert_eq!(text.as_deref(), Some("Given token does not match calculated token"));
        assert!(parse_stanza("<presence><x></presence>", "jabber:client", |_| ()).is_err());
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
    }

    /// Throughput of framing plus parsing, fed in 1460-byte reads (MSS-sized): run with
    /// `cargo test --release -p xmpp-stream -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_throughput() {
        let stanza = "<presence from='alice@xmpp.test/laptop' to='tester*sip.test@sip-xmpp.xmpp.test' xml:lang='en' id='a1b2c3'><show>away</show><status>lunch</status><delay xmlns='urn:xmpp:delay' from='xmpp.test' stamp='2026-01-01T00:00:00Z'/></presence>";
        let n = 200_000;
        let mut data = HEADER.as_bytes().to_vec();
        for _ in 0..n {
            data.extend_from_slice(stanza.as_bytes());
        }
        let t = std::time::Instant::now();
        let mut r = StanzaReader::new(65536);
        let mut count = 0;
        for chunk in data.chunks(1460) {
            r.feed(chunk);
            while let Some(e) = r.next_event().unwrap() {
                if let Event::Stanza(s) = e {
                    count += 1;
                    std::hint::black_box(s);
                }
            }
        }
        let framing = t.elapsed();
        assert_eq!(count, n);
        let t = std::time::Instant::now();
        for _ in 0..n / 10 {
            std::hint::black_box(
                parse_stanza(stanza, "jabber:component:accept", |n| n.attribute("from").map(str::len)).unwrap(),
            );
        }
        let parse = t.elapsed() * 10;
        eprintln!(
            "framing: {n} stanzas ({} bytes) in {framing:?} = {:.2} us/stanza, {:.0} MB/s; roxmltree parse: {:.2} us/stanza",
            data.len(),
            framing.as_secs_f64() * 1e6 / n as f64,
            data.len() as f64 / framing.as_secs_f64() / 1e6,
            parse.as_secs_f64() * 1e6 / n as f64
        );
    }
}
