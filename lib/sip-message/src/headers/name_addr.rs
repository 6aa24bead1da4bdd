//! `name-addr` / `addr-spec` values with header parameters: From, To, Contact, Route,
//! Record-Route, Refer-To, ... (RFC 3261 §20.10, §25.1).

use std::borrow::Cow;

use super::params::{Params, take_params};
use crate::scan::{self, is_lws, is_token, skip_lws};
use crate::uri::{SipUri, UriError};

/// One address with its header parameters, e.g. `"Alice" <sip:alice@example.com>;tag=1928`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    display: Option<&'a [u8]>,
    quoted: bool,
    uri: &'a str,
    bracketed: bool,
    params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one address value (not a comma-separated list). `None` if it does not match
    /// `(name-addr / addr-spec) *(SEMI param)`.
    ///
    /// Accepted beyond the strict grammar, as RFC 4475 asks: no LWS between a token display
    /// name and `<` (§3.1.1.6). Rejected: unterminated quotes (§3.1.2.6), LWS inside `<...>`
    /// (§3.1.2.14), unquoted display names with non-token characters (§3.1.2.15) and an
    /// addr-spec containing `?` (§3.1.2.13).
    pub fn parse(s: &'a [u8]) -> Option<NameAddr<'a>> {
        let s = scan::trim_lws(s);
        let mut pos = 0;
        let mut display = None;
        let mut quoted = false;
        let bracketed;
        let uri;
        if s.first() == Some(&b'"') {
            let end = scan::take_quoted(s, 0)?;
            display = s.get(1..end - 1);
            quoted = true;
            pos = skip_lws(s, end);
            if s.get(pos) != Some(&b'<') {
                return None;
            }
        } else if let Some(lt) = s.iter().position(|&b| b == b'<') {
            let name = scan::trim_lws(s.get(..lt).unwrap_or_default());
            if !name.iter().all(|&b| is_token(b) || is_lws(b)) {
                return None;
            }
            if !name.is_empty() {
                display = Some(name);
            }
            pos = lt;
        }
        if s.get(pos) == Some(&b'<') {
            let inner_start = pos + 1;
            let gt = s.get(inner_start..).and_then(|r| r.iter().position(|&b| b == b'>')).map(|i| inner_start + i)?;
            let inner = s.get(inner_start..gt).unwrap_or_default();
            if !is_uri_text(inner, true) {
                return None;
            }
            uri = scan::utf8(inner)?;
            bracketed = true;
            pos = gt + 1;
        } else {
            // addr-spec: parameters after the URI are header parameters (RFC 3261 §20).
            let end = s.iter().position(|&b| b == b';' || is_lws(b)).unwrap_or(s.len());
            let text = s.get(..end).unwrap_or_default();
            if !is_uri_text(text, false) {
                return None;
            }
            uri = scan::utf8(text)?;
            bracketed = false;
            pos = end;
        }
        let (params, end) = take_params(s, pos)?;
        if end != s.len() {
            return None;
        }
        Some(NameAddr { display, quoted, uri, bracketed, params })
    }

    /// The display name as written: the inside of the quotes (escapes not resolved) or the
    /// token sequence. `None` if absent or not UTF-8.
    pub fn display_name(&self) -> Option<&'a str> {
        self.display.and_then(scan::utf8)
    }

    /// The display name bytes as written (see [`NameAddr::display_name`]).
    pub fn display_name_bytes(&self) -> Option<&'a [u8]> {
        self.display
    }

    /// The display name with quoted-pairs resolved and folds unfolded; borrowed unless that
    /// changes something.
    pub fn display_name_unescaped(&self) -> Option<Cow<'a, str>> {
        let d = self.display_name()?;
        let unfolded = scan::unfold(d);
        if !self.quoted || !unfolded.contains('\\') {
            return Some(unfolded);
        }
        let mut out = String::with_capacity(unfolded.len());
        let mut chars = unfolded.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        Some(Cow::Owned(out))
    }

    /// Whether the display name was a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// The URI text.
    pub fn uri_str(&self) -> &'a str {
        self.uri
    }

    /// The URI, parsed.
    pub fn uri(&self) -> Result<SipUri<'a>, UriError> {
        SipUri::parse(self.uri)
    }

    /// Whether the URI was enclosed in `<>` (name-addr form).
    pub fn is_bracketed(&self) -> bool {
        self.bracketed
    }

    /// The header parameters.
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// The `expires` parameter of a Contact. `None` when absent or not a valid delta-seconds
    /// (RFC 4475 §3.1.2.4: an overlarge value may be treated as absent); the raw text is
    /// available through [`NameAddr::params`].
    pub fn expires(&self) -> Option<u32> {
        self.params.get("expires").flatten().and_then(|v| scan::parse_u32(v.as_bytes()))
    }

    /// The `q` parameter of a Contact in thousandths (`q=0.33` is 330). `None` when absent or
    /// not a valid qvalue.
    pub fn q(&self) -> Option<u16> {
        parse_qvalue(self.params.get("q").flatten()?)
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        let scale = [100u16, 10, 1].get(i).copied().unwrap_or(0);
        thousandths += u16::from(b - b'0') * scale;
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A URI as it may appear in a header: `scheme ":" ...` without whitespace; inside `<>` any
/// character but whitespace and `<>`; outside, also no `?` and `,` (they need brackets).
fn is_uri_text(s: &[u8], bracketed: bool) -> bool {
    let Some(colon) = s.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = s.get(..colon).unwrap_or_default();
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && colon + 1 < s.len()
        && s.iter()
            .all(|&b| b > b' ' && b != 0x7f && b != b'<' && b != b'>' && (bracketed || !matches!(b, b'?' | b',')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> NameAddr<'_> {
        NameAddr::parse(s.as_bytes()).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn forms() {
        let a = na(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#);
        assert_eq!(a.display_name(), Some(r#"J Rosenberg \\\""#));
        assert_eq!(a.display_name_unescaped().unwrap(), r#"J Rosenberg \""#);
        assert_eq!(a.uri_str(), "sip:jdrosen@example.com");
        assert_eq!(a.tag(), Some("98asjd8"));

        let a = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert!(!a.is_bracketed());
        assert_eq!(a.uri_str(), "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(a.tag(), Some("1918181833n"));

        let a = na("caller<sip:caller@example.com>;tag=323");
        assert_eq!(a.display_name(), Some("caller"));

        let a = na("sip:+19725552222@gw1.example.net;unknownparam");
        assert_eq!(a.uri_str(), "sip:+19725552222@gw1.example.net");
        assert_eq!(a.params().get("unknownparam"), Some(None));

        let a = na("<sip:+19725552222@gw1.example.net;unknownparam>");
        assert!(a.params().is_empty());
        assert!(a.uri().unwrap().param("unknownparam").is_some());

        let a = na(r#""Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33"#);
        assert_eq!(a.q(), Some(330));
        assert_eq!(a.params().get("newparam"), Some(Some("newvalue")));
        assert_eq!(a.params().get("secondparam"), Some(None));
        assert_eq!(na("<sip:a@b>;expires=3600;q=1").expires(), Some(3600));
        assert_eq!(na("<sip:a@b>;expires=280297596632815").expires(), None);
        assert_eq!(na("<http://www.example.com>;tag=3234233").uri_str(), "http://www.example.com");
        assert_eq!(na("isbn:2983792873").uri_str(), "isbn:2983792873");
    }

    #[test]
    fn rejections() {
        for bad in [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            r#""Watson, Thomas" < sip:t.watson@example.org >"#,
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            r#""Joe" <sip:joe@example.org>;;;;"#,
            "<sip:a@b",
            "",
            "sip:",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.001"), Some(1));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
        assert_eq!(parse_qvalue("2"), None);
    }
}
