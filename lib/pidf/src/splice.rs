//! Byte-range XML editing shared by the document crates (pidf, dialog-info): names, text,
//! tag boundaries, namespace declarations and escaping, working on the original text so
//! whatever an edit does not touch is kept exactly.

use roxmltree::Node;

/// Element whose local name equals `name` ASCII case-insensitively, as
/// libxml2's `xmlStrcasecmp(node->name, ...)` in Kamailio.
pub fn named(n: Node, name: &str) -> bool {
    n.is_element() && n.tag_name().name().eq_ignore_ascii_case(name)
}

/// Concatenated text of all descendants (libxml2 `xmlNodeGetContent`).
pub fn text_content(n: Node) -> String {
    n.descendants().filter(Node::is_text).filter_map(|t| t.text()).collect()
}

/// Index just past the first `pat` at or after `from` (end of input if none).
pub fn skip_past(b: &[u8], from: usize, pat: &[u8]) -> usize {
    b.get(from..).and_then(|s| s.windows(pat.len()).position(|w| w == pat)).map_or(b.len(), |p| from + p + pat.len())
}

/// For a tag whose body starts at `from` (after `<`): index just past its
/// closing `>` (skipping quoted values) and whether it ends with `/>`.
pub fn tag_end(b: &[u8], from: usize) -> (usize, bool) {
    let mut quote = 0u8;
    for (i, &c) in b.iter().enumerate().skip(from) {
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
        } else if c == b'"' || c == b'\'' {
            quote = c;
        } else if c == b'>' {
            return (i + 1, i > from && b[i - 1] == b'/');
        }
    }
    (b.len(), false)
}

/// The element's qualified name as written (`p:tuple`).
pub fn qname<'t>(text: &'t str, n: Node) -> &'t str {
    let rest = text.get(n.range().start + 1..).unwrap_or_default();
    let len = rest.find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>').unwrap_or(rest.len());
    &rest[..len]
}

/// Appends ` xmlns[:prefix]="uri"`.
pub fn push_decl(out: &mut String, prefix: Option<&str>, uri: &str) {
    out.push_str(" xmlns");
    if let Some(p) = prefix {
        out.push(':');
        out.push_str(p);
    }
    out.push_str("=\"");
    escape_into(out, uri);
    out.push('"');
}

/// Prefixes declared by `xmlns` attributes in the attribute part of a start
/// tag (`None` for the default namespace).
pub fn declared_prefixes(attrs: &str) -> Vec<Option<&str>> {
    let b = attrs.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    loop {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(|c| !c.is_ascii_whitespace() && !b"=/>".contains(c)) {
            i += 1;
        }
        if i == start {
            return found;
        }
        let name = &attrs[start..i];
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace() || *c == b'=') {
            i += 1;
        }
        let Some(&quote) = b.get(i) else { return found };
        i = skip_past(b, i + 1, &[quote]);
        if name == "xmlns" {
            found.push(None);
        } else if let Some(p) = name.strip_prefix("xmlns:") {
            found.push(Some(p));
        }
    }
}

/// Escapes text for use in element content or a double-quoted attribute.
/// Tabs and line breaks become references so attribute values survive
/// attribute-value normalisation unchanged.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}
