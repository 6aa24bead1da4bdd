//! Byte-level grammar helpers (RFC 3261 §25.1) shared by the start-line, header and URI
//! parsers.
//!
//! Everything works on byte slices with explicit positions and only uses `get`, so no input can
//! make these functions index out of bounds. Header values handed to these helpers come from the
//! index, where a CR or LF can only appear as part of a line fold; that is why CR and LF count
//! as linear whitespace here.

use std::borrow::Cow;

/// `token` characters: alphanum and `-.!%*_+`'~`.
#[allow(clippy::indexing_slicing)] // compile-time loop over 0..256
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        i += 1;
    }
    t
};

/// Whether `b` may appear in a `token`.
#[inline]
#[allow(clippy::indexing_slicing)] // a u8 always indexes a 256-entry table
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Whether the whole slice is a non-empty `token`.
#[inline]
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Linear whitespace inside a header value: SP, HTAB and the CR/LF of a fold.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Skips linear whitespace from `pos`.
#[inline]
pub(crate) fn skip_lws(s: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = s.get(pos) {
        if !is_lws(b) {
            break;
        }
        pos += 1;
    }
    pos
}

/// Returns the end of the `token` starting at `pos` (`pos` itself if there is none).
#[inline]
pub(crate) fn take_token(s: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = s.get(pos) {
        if !is_token(b) {
            break;
        }
        pos += 1;
    }
    pos
}

/// Given `pos` at an opening `"`, returns the position just after the closing quote, honouring
/// `\` quoted-pairs. `None` when the string is unterminated.
pub(crate) fn take_quoted(s: &[u8], pos: usize) -> Option<usize> {
    if s.get(pos) != Some(&b'"') {
        return None;
    }
    let mut i = pos + 1;
    loop {
        match s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// Trims linear whitespace on both sides.
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    let start = skip_lws(s, 0);
    let mut end = s.len();
    while end > start && s.get(end - 1).copied().is_some_and(is_lws) {
        end -= 1;
    }
    s.get(start..end).unwrap_or_default()
}

/// UTF-8 view of a slice, `None` if it is not UTF-8.
#[inline]
pub(crate) fn utf8(s: &[u8]) -> Option<&str> {
    std::str::from_utf8(s).ok()
}

/// Parses a non-empty run of ASCII digits into a `u32`; `None` on anything else or overflow.
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(v)
}

/// Splits a header value into comma-separated elements, ignoring commas inside quoted strings
/// and `<...>`. Elements are trimmed; empty elements are yielded (callers decide whether the
/// header's grammar allows them).
#[derive(Clone, Debug)]
pub(crate) struct CommaSplit<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        CommaSplit { s, pos: 0, done: false }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    /// Offset of the element in the split slice, and the element.
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let mut i = start;
        loop {
            // Jump to the next byte that matters instead of matching every byte.
            let Some(k) = self.s.get(i..).and_then(|r| memchr::memchr3(b',', b'"', b'<', r)) else {
                i = self.s.len();
                self.done = true;
                break;
            };
            i += k;
            match self.s.get(i) {
                Some(b'"') => match take_quoted(self.s, i) {
                    Some(end) => i = end,
                    None => {
                        // Unterminated quote: the rest is one (malformed) element.
                        i = self.s.len();
                        self.done = true;
                        break;
                    }
                },
                Some(b'<') => match self.s.get(i..).and_then(|r| memchr::memchr(b'>', r)) {
                    Some(gt) => i += gt + 1,
                    None => {
                        // Unclosed '<': the rest is one (malformed) element.
                        i = self.s.len();
                        self.done = true;
                        break;
                    }
                },
                _ => break, // ','
            }
        }
        self.pos = i + 1;
        let raw = self.s.get(start..i).unwrap_or_default();
        let lead = skip_lws(raw, 0);
        Some((start + lead, trim_lws(raw)))
    }
}

/// One `;name[=value]` parameter of a header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawParam<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: Option<&'a [u8]>,
}

/// Reads the next `*( SEMI generic-param )` item at `pos` (LWS allowed around `;` and `=`).
///
/// Returns `Ok(None)` when the next non-LWS byte is not `;` (the caller checks what follows),
/// `Err(())` on an empty or malformed parameter.
pub(crate) fn next_param(s: &[u8], pos: usize) -> Result<Option<(RawParam<'_>, usize)>, ()> {
    let p = skip_lws(s, pos);
    if s.get(p) != Some(&b';') {
        return Ok(None);
    }
    let name_start = skip_lws(s, p + 1);
    let name_end = take_token(s, name_start);
    if name_end == name_start {
        return Err(());
    }
    let name = s.get(name_start..name_end).unwrap_or_default();
    let after = skip_lws(s, name_end);
    if s.get(after) != Some(&b'=') {
        return Ok(Some((RawParam { name, value: None }, name_end)));
    }
    let v_start = skip_lws(s, after + 1);
    let v_end = match s.get(v_start) {
        Some(b'"') => take_quoted(s, v_start).ok_or(())?,
        Some(b'[') => {
            // IPv6 reference (e.g. received=[2001:db8::1]).
            let close = s.get(v_start..).and_then(|r| r.iter().position(|&b| b == b']')).ok_or(())?;
            v_start + close + 1
        }
        _ => {
            let mut i = v_start;
            while let Some(&b) = s.get(i) {
                // Lenient on purpose: `host` values such as an unbracketed IPv6 address in
                // `received` contain ':' which is not a token character.
                if b <= b' ' || b == 0x7f || matches!(b, b';' | b',' | b'"' | b'<' | b'>') {
                    break;
                }
                i += 1;
            }
            i
        }
    };
    if v_end == v_start {
        return Err(());
    }
    let value = s.get(v_start..v_end);
    Ok(Some((RawParam { name, value }, v_end)))
}

/// Validates the parameter list at `pos` and returns the position after it (after trailing
/// LWS). `Err` on an empty or malformed parameter.
pub(crate) fn scan_params(s: &[u8], mut pos: usize) -> Result<usize, ()> {
    while let Some((_, next)) = next_param(s, pos)? {
        pos = next;
    }
    Ok(skip_lws(s, pos))
}

/// Removes the quotes of a quoted string and resolves its `\` escapes; other values are
/// returned unchanged. Borrowed unless an escape forces a copy.
pub fn unquote(s: &str) -> Cow<'_, str> {
    let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return Cow::Borrowed(s);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Replaces each line fold (CRLF or LF followed by whitespace) with a single space. Borrowed
/// when the value is not folded.
pub fn unfold(s: &str) -> Cow<'_, str> {
    if !s.contains(['\r', '\n']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut in_fold = false;
    for c in s.chars() {
        match c {
            '\r' | '\n' => in_fold = true,
            ' ' | '\t' if in_fold => {}
            _ => {
                if in_fold {
                    out.push(' ');
                    in_fold = false;
                }
                out.push(c);
            }
        }
    }
    Cow::Owned(out)
}

/// Value of one hex digit.
#[inline]
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%HH` escapes. Borrowed when there is nothing to decode; a `%` not followed by two
/// hex digits is kept literally.
pub fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    Cow::Owned(Unescaped::new(s.as_bytes()).collect())
}

/// Iterator over the bytes of a `%`-escaped string, decoded.
#[derive(Clone, Debug)]
pub(crate) struct Unescaped<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Unescaped<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Unescaped { s, pos: 0 }
    }
}

impl Iterator for Unescaped<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.s.get(self.pos)?;
        if b == b'%' {
            let hi = self.s.get(self.pos + 1).copied().and_then(hex_val);
            let lo = self.s.get(self.pos + 2).copied().and_then(hex_val);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                self.pos += 3;
                return Some(hi << 4 | lo);
            }
        }
        self.pos += 1;
        Some(b)
    }
}

/// Compares two `%`-escaped strings after decoding, without allocating.
pub(crate) fn eq_unescaped(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    let mut x = Unescaped::new(a);
    let mut y = Unescaped::new(b);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) => {
                let same = if ignore_case { p.eq_ignore_ascii_case(&q) } else { p == q };
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let v = br#""a, b" <sip:x@y;p=1,2>, c ,, "unterminated, x"#;
        let parts: Vec<&[u8]> = CommaSplit::new(v).map(|(_, p)| p).collect();
        assert_eq!(parts, vec![&br#""a, b" <sip:x@y;p=1,2>"#[..], b"c", b"", br#""unterminated, x"#]);
    }

    #[test]
    fn params_with_lws_and_quotes() {
        let s = b" ;  tag    = 1918181833n ;\r\n  x=\"a;b\" ; lr ;received=[::1]";
        let mut pos = 0;
        let mut got = Vec::new();
        while let Ok(Some((p, next))) = next_param(s, pos) {
            got.push((p.name, p.value));
            pos = next;
        }
        assert_eq!(
            got,
            vec![
                (&b"tag"[..], Some(&b"1918181833n"[..])),
                (b"x", Some(br#""a;b""#)),
                (b"lr", None),
                (b"received", Some(b"[::1]")),
            ]
        );
        assert!(scan_params(b";;", 0).is_err());
        assert!(scan_params(b";a=", 0).is_err());
    }

    #[test]
    fn unquote_unfold_unescape() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(unfold("a\r\n  b\r\n\tc"), "a b c");
        assert_eq!(&*percent_decode("%75se%72%00"), b"user\0");
        assert_eq!(&*percent_decode("%zz%4"), b"%zz%4");
        assert!(eq_unescaped(b"%6C%72", b"lr", false));
        assert!(eq_unescaped(b"ABC", b"a%62c", true));
        assert!(!eq_unescaped(b"ABC", b"a%62c", false));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0009"), Some(9));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"-1"), None);
    }
}
