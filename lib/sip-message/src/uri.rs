//! URIs (RFC 3261 §19.1, RFC 3966 for `tel:`), parsed zero-copy from a `&str`.

use core::fmt;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::scan::{eq_unescaped, hex_val, percent_decode};

/// The URI scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
    /// Any other scheme; the rest of the URI is kept opaque.
    Other,
}

/// The host part of a SIP URI or of a Via sent-by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A host name (not resolved, not lower-cased).
    Name(&'a str),
    /// A dotted-quad IPv4 address.
    Ipv4(&'a str),
    /// An IPv6 reference, *without* the surrounding brackets.
    Ipv6(&'a str),
}

impl<'a> Host<'a> {
    /// The host text as written (IPv6 without brackets).
    pub fn as_str(&self) -> &'a str {
        match *self {
            Host::Name(s) | Host::Ipv4(s) | Host::Ipv6(s) => s,
        }
    }

    /// The address, for IPv4 and IPv6 hosts. Tolerates the `:::` form that RFC 3261's ABNF
    /// accidentally allowed (RFC 5118 §4.10) by reading it as `::`.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Name(_) => None,
            Host::Ipv4(s) => s.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            Host::Ipv6(s) => match s.parse::<Ipv6Addr>() {
                Ok(a) => Some(IpAddr::V6(a)),
                Err(_) if s.contains(":::") => s.replacen(":::", "::", 1).parse::<Ipv6Addr>().ok().map(IpAddr::V6),
                Err(_) => None,
            },
        }
    }

    /// Parses a host: `[IPv6]`, dotted-quad IPv4 or a host name. `None` if it is none of them.
    pub fn parse(s: &'a str) -> Option<Host<'a>> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            return is_ipv6_text(inner).then_some(Host::Ipv6(inner));
        }
        if s.is_empty() {
            return None;
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return s.parse::<Ipv4Addr>().is_ok().then_some(Host::Ipv4(s));
        }
        // Host names are alnum, '-' and '.'; '_' is accepted because it occurs in the field.
        let ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !s.starts_with(['.', '-']);
        ok.then_some(Host::Name(s))
    }

    /// Compares hosts: names case-insensitively, addresses by value when they parse.
    pub fn eq_host(&self, other: &Host<'_>) -> bool {
        match (self.ip(), other.ip()) {
            (Some(a), Some(b)) => a == b,
            _ => self.as_str().eq_ignore_ascii_case(other.as_str()),
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv6(s) => write!(f, "[{s}]"),
            Host::Name(s) | Host::Ipv4(s) => f.write_str(s),
        }
    }
}

/// Lexical check of an IPv6 reference's inside: hex digits, ':' and '.' (for an embedded
/// IPv4), at least two colons. Deliberately not a full RFC 4291 check: RFC 5118 §4.10 asks
/// receivers to tolerate `2001:db8:::192.0.2.1`; [`Host::ip`] does the exact parse.
fn is_ipv6_text(s: &str) -> bool {
    (2..=45).contains(&s.len())
        && s.bytes().filter(|&b| b == b':').count() >= 2
        && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// Why a URI did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UriError {
    /// No `scheme:` prefix, or an empty remainder.
    Scheme,
    /// Bad user or password characters or escapes.
    UserInfo,
    /// Missing or malformed host.
    Host,
    /// Port not a decimal number below 65536.
    Port,
    /// Malformed URI parameter.
    Param,
    /// Malformed `?header=value` part.
    Headers,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UriError::Scheme => "bad URI scheme",
            UriError::UserInfo => "bad URI user part",
            UriError::Host => "bad URI host",
            UriError::Port => "bad URI port",
            UriError::Param => "bad URI parameter",
            UriError::Headers => "bad URI headers",
        })
    }
}

impl std::error::Error for UriError {}

/// A parsed URI. For `sip:`/`sips:` every component is available; for `tel:` the number is in
/// [`SipUri::user`] and its parameters in [`SipUri::params`]; other schemes are opaque
/// ([`SipUri::opaque`]). All strings borrow from the input, still `%`-escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    raw: &'a str,
    scheme: Scheme,
    scheme_str: &'a str,
    opaque: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: Option<Host<'a>>,
    port: Option<u16>,
    /// Parameters including each leading ';' (empty if none).
    params: &'a str,
    /// Headers without the leading '?' (empty if none).
    headers: &'a str,
}

/// `unreserved` minus alphanumerics (RFC 3261 §25.1 `mark`).
fn is_mark(b: u8) -> bool {
    matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')')
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || is_mark(b)
}

/// Checks a component where `%` must start a valid `%HH` escape and every other byte satisfies
/// `allowed`.
fn check_escaped(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let ok =
                b.get(i + 1).copied().and_then(hex_val).is_some() && b.get(i + 2).copied().and_then(hex_val).is_some();
            if !ok {
                return false;
            }
            i += 3;
        } else if allowed(c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

fn is_header_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

impl<'a> SipUri<'a> {
    /// Parses a URI. Never panics.
    pub fn parse(raw: &'a str) -> Result<SipUri<'a>, UriError> {
        let colon = raw.find(':').ok_or(UriError::Scheme)?;
        let scheme_str = raw.get(..colon).ok_or(UriError::Scheme)?;
        let rest = raw.get(colon + 1..).unwrap_or_default();
        let scheme_ok = scheme_str.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme_str.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok || rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UriError::Scheme);
        }
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = SipUri {
            raw,
            scheme,
            scheme_str,
            opaque: rest,
            user: None,
            password: None,
            host: None,
            port: None,
            params: "",
            headers: "",
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => uri.parse_sip(rest)?,
            Scheme::Tel => {
                let (number, params) = rest.split_at(rest.find(';').unwrap_or(rest.len()));
                if number.is_empty() || !check_escaped(number, is_param_char) {
                    return Err(UriError::UserInfo);
                }
                check_params(params)?;
                uri.user = Some(number);
                uri.params = params;
            }
            Scheme::Other => {}
        }
        Ok(uri)
    }

    fn parse_sip(&mut self, rest: &'a str) -> Result<(), UriError> {
        // Neither the host, the parameters nor the headers may contain a raw '@', so the first
        // '@' ends the userinfo (RFC 3261 §25.1); userinfo may contain ';', '?' and '/'.
        let hostpart = match rest.find('@') {
            Some(at) => {
                let userinfo = rest.get(..at).unwrap_or_default();
                let (user, password) = match userinfo.find(':') {
                    Some(c) => (userinfo.get(..c).unwrap_or_default(), Some(userinfo.get(c + 1..).unwrap_or_default())),
                    None => (userinfo, None),
                };
                if user.is_empty() || !check_escaped(user, is_user_char) {
                    return Err(UriError::UserInfo);
                }
                if let Some(p) = password
                    && !check_escaped(p, is_password_char)
                {
                    return Err(UriError::UserInfo);
                }
                self.user = Some(user);
                self.password = password;
                rest.get(at + 1..).unwrap_or_default()
            }
            None => rest,
        };
        let host_end = if hostpart.starts_with('[') {
            hostpart.find(']').map(|i| i + 1).ok_or(UriError::Host)?
        } else {
            hostpart.find([':', ';', '?']).unwrap_or(hostpart.len())
        };
        let host_text = hostpart.get(..host_end).unwrap_or_default();
        self.host = Some(Host::parse(host_text).ok_or(UriError::Host)?);
        let mut tail = hostpart.get(host_end..).unwrap_or_default();
        if let Some(p) = tail.strip_prefix(':') {
            let end = p.find([';', '?']).unwrap_or(p.len());
            let digits = p.get(..end).unwrap_or_default();
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(UriError::Port);
            }
            self.port = Some(digits.parse::<u16>().map_err(|_| UriError::Port)?);
            tail = p.get(end..).unwrap_or_default();
        }
        let q = tail.find('?').unwrap_or(tail.len());
        let params = tail.get(..q).unwrap_or_default();
        check_params(params)?;
        self.params = params;
        if let Some(h) = tail.get(q..).and_then(|t| t.strip_prefix('?')) {
            let ok = !h.is_empty()
                && h.split('&').all(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    !k.is_empty() && check_escaped(k, is_header_char) && check_escaped(v, is_header_char)
                });
            if !ok {
                return Err(UriError::Headers);
            }
            self.headers = h;
        }
        Ok(())
    }

    /// The whole URI as given.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The scheme as written.
    pub fn scheme_str(&self) -> &'a str {
        self.scheme_str
    }

    /// Everything after `scheme:` (the whole content for schemes other than sip/sips/tel).
    pub fn opaque(&self) -> &'a str {
        self.opaque
    }

    /// The user part, still escaped (the number for `tel:`).
    pub fn user(&self) -> Option<&'a str> {
        self.user
    }

    /// The user part with `%HH` escapes decoded (RFC 4475 §3.1.1.4: `%00` stays a NUL byte, the
    /// user is not cut there).
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(percent_decode)
    }

    /// The password, still escaped.
    pub fn password(&self) -> Option<&'a str> {
        self.password
    }

    /// The host (sip/sips only).
    pub fn host(&self) -> Option<Host<'a>> {
        self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The raw parameter section, each parameter with its leading `;`.
    pub fn params_str(&self) -> &'a str {
        self.params
    }

    /// Iterates over `(name, value)` URI parameters, still escaped.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        self.params.split(';').skip(1).map(|p| match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        })
    }

    /// Looks a URI parameter up by name (case-insensitive, escapes decoded): `Some(None)` for a
    /// flag parameter such as `lr`.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params().find(|(n, _)| eq_unescaped(n.as_bytes(), name.as_bytes(), true)).map(|(_, v)| v)
    }

    /// The `transport` parameter.
    pub fn transport(&self) -> Option<&'a str> {
        self.param("transport").flatten()
    }

    /// Whether the `lr` (loose routing) parameter is present.
    pub fn lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.param("maddr").flatten()
    }

    /// The `user` parameter (`phone`, `ip`, ...).
    pub fn user_param(&self) -> Option<&'a str> {
        self.param("user").flatten()
    }

    /// The raw header section (without `?`), empty if none.
    pub fn headers_str(&self) -> &'a str {
        self.headers
    }

    /// Iterates over `(name, value)` URI headers, still escaped.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.headers.split('&').filter(|s| !s.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, "")))
    }

    /// URI equivalence per RFC 3261 §19.1.4.
    ///
    /// Escapes are decoded before comparing; user and password compare case-sensitively, the
    /// rest case-insensitively; a port, `transport`, `user`, `ttl`, `method` or `maddr` present
    /// in only one URI makes them differ, other parameters present in only one are ignored;
    /// headers must match as sets. For `tel:` the number and parameters are compared the same
    /// way; other schemes compare their text case-insensitively.
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        if self.scheme == Scheme::Other {
            return self.scheme_str.eq_ignore_ascii_case(other.scheme_str)
                && eq_unescaped(self.opaque.as_bytes(), other.opaque.as_bytes(), true);
        }
        let opt_eq = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => eq_unescaped(a.as_bytes(), b.as_bytes(), false),
            _ => false,
        };
        if !opt_eq(self.user, other.user) || !opt_eq(self.password, other.password) {
            return false;
        }
        match (self.host, other.host) {
            (Some(a), Some(b)) if a.eq_host(&b) => {}
            (None, None) => {}
            _ => return false,
        }
        if self.port != other.port {
            return false;
        }
        const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
        for (name, value) in self.params() {
            match other.param_decoded(name) {
                Some(v2) => {
                    let same = match (value, v2) {
                        (None, None) => true,
                        (Some(a), Some(b)) => eq_unescaped(a.as_bytes(), b.as_bytes(), true),
                        _ => false,
                    };
                    if !same {
                        return false;
                    }
                }
                None => {
                    if MUST_MATCH.iter().any(|m| eq_unescaped(name.as_bytes(), m.as_bytes(), true)) {
                        return false;
                    }
                }
            }
        }
        for (name, _) in other.params() {
            if self.param_decoded(name).is_none()
                && MUST_MATCH.iter().any(|m| eq_unescaped(name.as_bytes(), m.as_bytes(), true))
            {
                return false;
            }
        }
        let headers_in = |a: &SipUri<'_>, b: &SipUri<'_>| {
            a.headers().all(|(n, v)| {
                b.headers().any(|(n2, v2)| {
                    eq_unescaped(n.as_bytes(), n2.as_bytes(), true) && eq_unescaped(v.as_bytes(), v2.as_bytes(), true)
                })
            })
        };
        headers_in(self, other) && headers_in(other, self)
    }

    /// Like [`SipUri::param`] but the searched name may itself be escaped.
    fn param_decoded(&self, name: &str) -> Option<Option<&'a str>> {
        self.params().find(|(n, _)| eq_unescaped(n.as_bytes(), name.as_bytes(), true)).map(|(_, v)| v)
    }
}

impl fmt::Display for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// Validates `*( ";" pname [ "=" pvalue ] )`.
fn check_params(params: &str) -> Result<(), UriError> {
    if params.is_empty() {
        return Ok(());
    }
    let body = params.strip_prefix(';').ok_or(UriError::Param)?;
    for p in body.split(';') {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if name.is_empty() || !check_escaped(name, is_param_char) {
            return Err(UriError::Param);
        }
        if let Some(v) = value
            && (v.is_empty() || !check_escaped(v, is_param_char))
        {
            return Err(UriError::Param);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sip_uri() {
        let u = SipUri::parse("sips:alice:secret@Example.COM:5061;transport=tcp;lr?subject=x&a=b").unwrap();
        assert_eq!(u.scheme(), Scheme::Sips);
        assert_eq!(u.user(), Some("alice"));
        assert_eq!(u.password(), Some("secret"));
        assert_eq!(u.host(), Some(Host::Name("Example.COM")));
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.headers().collect::<Vec<_>>(), vec![("subject", "x"), ("a", "b")]);
    }

    #[test]
    fn rfc4475_userinfo_cases() {
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user(), Some("user;par=u%40example.net"));
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"user;par=u@example.net");
        assert_eq!(u.host(), Some(Host::Name("example.com")));
        let u = SipUri::parse(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .unwrap();
        assert_eq!(u.user(), Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
        assert_eq!(u.password(), Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
        let u = SipUri::parse("sip:%00%00@host5.example.com").unwrap();
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"\0\0");
        let u = SipUri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"sips:user@example.com");
    }

    #[test]
    fn ipv6_hosts() {
        let u = SipUri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host(), Some(Host::Ipv6("2001:db8::10")));
        assert_eq!(u.port(), Some(5070));
        let u = SipUri::parse("sip:[2001:db8::10:5070]").unwrap();
        assert_eq!(u.port(), None);
        let u = SipUri::parse("sip:user@[2001:db8:::192.0.2.1]").unwrap();
        assert!(u.host().unwrap().ip().is_some());
        assert!(SipUri::parse("sip:2001:db8::10").is_err());
        assert_eq!(SipUri::parse("sip:[2001:db8::10").unwrap_err(), UriError::Host);
    }

    #[test]
    fn other_schemes() {
        let u = SipUri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(u.scheme(), Scheme::Other);
        assert_eq!(u.opaque(), "totallyopaquecontent");
        let t = SipUri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(t.scheme(), Scheme::Tel);
        assert_eq!(t.user(), Some("+1-201-555-0123"));
        assert_eq!(t.param("phone-context"), Some(Some("example.com")));
        assert!(SipUri::parse("<sip:a@b>").is_err());
        assert!(SipUri::parse("sip:a@b; lr").is_err());
        assert!(SipUri::parse("sip:").is_err());
        assert!(SipUri::parse("sip:a@b;;").is_err());
        assert!(SipUri::parse("sip:a@b?").is_err());
    }

    #[test]
    fn equivalence_rfc3261_examples() {
        let eq = |a: &str, b: &str| SipUri::parse(a).unwrap().equivalent(&SipUri::parse(b).unwrap());
        // RFC 3261 §19.1.4, equivalent pairs.
        assert!(eq("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"));
        assert!(eq("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"));
        assert!(eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
        // Non-equivalent pairs.
        assert!(!eq("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"));
        assert!(!eq("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"));
        assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
        assert!(!eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"));
    }
}
