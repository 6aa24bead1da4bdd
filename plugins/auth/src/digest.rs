//! HTTP digest computations (RFC 2617 §3.2.2, RFC 7616 §3.4, RFC 3261 §22.4) and the parsing of
//! `Authorization` / `Proxy-Authorization` values. Pure; unit-tested against the RFCs' vectors.

use md5::{Digest, Md5};
use sha2::Sha256;

/// Hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (RFC 2617; the default when no `algorithm` is given).
    Md5,
    /// SHA-256 (RFC 7616).
    Sha256,
}

impl Algorithm {
    /// From an `algorithm` parameter (`None`: absent). `-sess` variants are not supported.
    pub fn from_param(p: Option<&str>) -> Option<Algorithm> {
        match p {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            Some(_) => None,
        }
    }

    /// The name in a challenge.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Length of a hash in hex.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// Lower-case hex of the hash of `parts` joined by `:`.
    pub fn hash_hex(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            d.finalize().to_vec()
        }
        let bytes = match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        };
        hex(&bytes)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// HA1 = H(username:realm:password).
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// The `qop` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// No qop (RFC 2069 compatibility).
    None,
    /// `auth`.
    Auth,
    /// `auth-int`: the body is part of HA2.
    AuthInt,
}

/// The expected `response` for the credentials' fields (`ha1` in hex, as stored).
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: Qop,
    method: &str,
    uri: &str,
    body: &[u8],
) -> String {
    let ha2 = match qop {
        Qop::AuthInt => {
            let hbody = alg.hash_hex(&[body]);
            alg.hash_hex(&[method.as_bytes(), uri.as_bytes(), hbody.as_bytes()])
        }
        _ => alg.hash_hex(&[method.as_bytes(), uri.as_bytes()]),
    };
    match qop {
        Qop::None => alg.hash_hex(&[ha1.as_bytes(), nonce.as_bytes(), ha2.as_bytes()]),
        Qop::Auth | Qop::AuthInt => {
            let q: &[u8] = if qop == Qop::Auth { b"auth" } else { b"auth-int" };
            alg.hash_hex(&[ha1.as_bytes(), nonce.as_bytes(), nc.as_bytes(), cnonce.as_bytes(), q, ha2.as_bytes()])
        }
    }
}

/// Compares two hex strings without an early exit (case-insensitive, as hex may be either).
pub fn hex_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())) == 0
}

/// Why a credentials value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredError {
    /// Not `Digest ...`.
    #[error("not Digest credentials")]
    NotDigest,
    /// A parameter is malformed (unterminated quote, no `=`).
    #[error("malformed parameter list")]
    Malformed,
    /// A required parameter is missing.
    #[error("the `{0}` parameter is missing")]
    Missing(&'static str),
    /// `qop` without `nc`/`cnonce`, or an unknown qop/algorithm.
    #[error("unsupported or inconsistent `{0}`")]
    Unsupported(&'static str),
}

/// Digest credentials (RFC 3261 §25.1 `credentials`), borrowed from the header value. Quoted
/// values are kept as written between the quotes (digest values carry no escapes in practice;
/// a backslash makes the value malformed rather than silently different).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username`.
    pub username: &'a str,
    /// `realm`.
    pub realm: &'a str,
    /// `nonce`.
    pub nonce: &'a str,
    /// `uri` (digest-uri).
    pub uri: &'a str,
    /// `response`.
    pub response: &'a str,
    /// `algorithm`, when given.
    pub algorithm: Option<&'a str>,
    /// `cnonce`.
    pub cnonce: &'a str,
    /// `opaque`.
    pub opaque: &'a str,
    /// `qop`, when given.
    pub qop: Option<&'a str>,
    /// `nc` (8 hex digits).
    pub nc: &'a str,
}

impl<'a> Credentials<'a> {
    /// Parses `Digest username="..", realm="..", ...`.
    pub fn parse(value: &'a str) -> Result<Credentials<'a>, CredError> {
        let v = value.trim_start();
        let (scheme, mut rest) = v.split_at(v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len()));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(CredError::NotDigest);
        }
        let mut c = Credentials::default();
        loop {
            rest = rest.trim_start_matches(|ch: char| ch.is_ascii_whitespace() || ch == ',');
            if rest.is_empty() {
                break;
            }
            let eq = rest.find('=').ok_or(CredError::Malformed)?;
            let name = rest[..eq].trim();
            rest = rest[eq + 1..].trim_start();
            let value;
            if let Some(q) = rest.strip_prefix('"') {
                let end = q.find('"').ok_or(CredError::Malformed)?;
                value = &q[..end];
                if value.contains('\\') {
                    return Err(CredError::Malformed);
                }
                rest = &q[end + 1..];
            } else {
                let end = rest.find(|ch: char| ch == ',' || ch.is_ascii_whitespace()).unwrap_or(rest.len());
                value = &rest[..end];
                rest = &rest[end..];
            }
            if name.is_empty() {
                return Err(CredError::Malformed);
            }
            match name.to_ascii_lowercase().as_str() {
                "username" => c.username = value,
                "realm" => c.realm = value,
                "nonce" => c.nonce = value,
                "uri" => c.uri = value,
                "response" => c.response = value,
                "algorithm" => c.algorithm = Some(value),
                "cnonce" => c.cnonce = value,
                "opaque" => c.opaque = value,
                "qop" => c.qop = Some(value),
                "nc" => c.nc = value,
                _ => {}
            }
        }
        for (field, name) in [(c.username, "username"), (c.nonce, "nonce"), (c.uri, "uri"), (c.response, "response")] {
            if field.is_empty() {
                return Err(CredError::Missing(name));
            }
        }
        Ok(c)
    }

    /// The qop, checked: with qop, `nc` (8 hex digits) and `cnonce` are required.
    pub fn qop(&self) -> Result<Qop, CredError> {
        let q = match self.qop {
            None => return Ok(Qop::None),
            Some(q) if q.eq_ignore_ascii_case("auth") => Qop::Auth,
            Some(q) if q.eq_ignore_ascii_case("auth-int") => Qop::AuthInt,
            Some(_) => return Err(CredError::Unsupported("qop")),
        };
        if self.cnonce.is_empty() || self.nc_value().is_none() {
            return Err(CredError::Unsupported("nc"));
        }
        Ok(q)
    }

    /// `nc` as a number (it must be 8 hex digits, RFC 2617 §3.2.2).
    pub fn nc_value(&self) -> Option<u32> {
        (self.nc.len() == 8).then(|| u32::from_str_radix(self.nc, 16).ok()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_vector() {
        // RFC 2617 §3.5.
        let h = ha1(Algorithm::Md5, "Mufasa", "testrealm@host.com", "Circle Of Life");
        let r = response(
            Algorithm::Md5,
            &h,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            Qop::Auth,
            "GET",
            "/dir/index.html",
            b"",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_md5_and_sha256_vectors() {
        // RFC 7616 §3.9.1.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let run = |alg| {
            let h = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            response(alg, &h, nonce, "00000001", cnonce, Qop::Auth, "GET", "/dir/index.html", b"")
        };
        assert_eq!(run(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(run(Algorithm::Sha256), "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    }

    #[test]
    fn no_qop_and_auth_int() {
        // RFC 2069 form: H(HA1:nonce:HA2).
        let h = ha1(Algorithm::Md5, "a", "r", "p");
        let ha2 = Algorithm::Md5.hash_hex(&[b"REGISTER", b"sip:r"]);
        let want = Algorithm::Md5.hash_hex(&[h.as_bytes(), b"n", ha2.as_bytes()]);
        assert_eq!(response(Algorithm::Md5, &h, "n", "", "", Qop::None, "REGISTER", "sip:r", b""), want);
        let a = response(Algorithm::Md5, &h, "n", "00000001", "c", Qop::AuthInt, "M", "u", b"body");
        let b = response(Algorithm::Md5, &h, "n", "00000001", "c", Qop::AuthInt, "M", "u", b"other");
        assert_ne!(a, b, "auth-int covers the body");
    }

    #[test]
    fn parses_credentials() {
        let c = Credentials::parse(
            "Digest username=\"alice\",realm=\"example.com\", nonce=\"abc=\", uri=\"sip:example.com\", \
             response=\"0123\", algorithm=MD5, cnonce=\"xyz\", qop=auth, nc=0000000a, opaque=\"\"",
        )
        .unwrap();
        assert_eq!(
            (c.username, c.realm, c.nonce, c.uri, c.response),
            ("alice", "example.com", "abc=", "sip:example.com", "0123")
        );
        assert_eq!((c.algorithm, c.qop, c.nc_value(), c.cnonce), (Some("MD5"), Some("auth"), Some(10), "xyz"));
        assert_eq!(c.qop(), Ok(Qop::Auth));
    }

    #[test]
    fn refuses_bad_credentials() {
        assert_eq!(Credentials::parse("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), Err(CredError::NotDigest));
        assert_eq!(Credentials::parse("Digest username=\"a"), Err(CredError::Malformed));
        assert_eq!(Credentials::parse("Digest username"), Err(CredError::Malformed));
        assert_eq!(
            Credentials::parse("Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""),
            Err(CredError::Missing("username"))
        );
        let c = Credentials::parse("Digest username=a, nonce=n, uri=u, response=r, qop=auth").unwrap();
        assert_eq!(c.qop(), Err(CredError::Unsupported("nc")));
        let c = Credentials::parse("Digest username=a, nonce=n, uri=u, response=r, qop=auth, nc=1, cnonce=c").unwrap();
        assert_eq!(c.qop(), Err(CredError::Unsupported("nc")), "nc must be 8 hex digits");
        assert_eq!(Algorithm::from_param(Some("MD5-sess")), None);
        assert!(hex_eq("ABcd", "abCD") && !hex_eq("abcd", "abce") && !hex_eq("ab", "abc"));
    }
}
