//! Content-Type (RFC 3261 §20.15).

use super::params::{Params, take_params};
use crate::scan::{self, skip_lws, take_token};

/// A media type with parameters, e.g. `application/pidf+xml;charset=utf-8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    top: &'a str,
    sub: &'a str,
    params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parses `m-type SLASH m-subtype *(SEMI m-parameter)`.
    pub fn parse(s: &'a [u8]) -> Option<MediaType<'a>> {
        let s = scan::trim_lws(s);
        let t_end = take_token(s, 0);
        let slash = skip_lws(s, t_end);
        if t_end == 0 || s.get(slash) != Some(&b'/') {
            return None;
        }
        let sub_start = skip_lws(s, slash + 1);
        let sub_end = take_token(s, sub_start);
        if sub_end == sub_start {
            return None;
        }
        let (params, end) = take_params(s, sub_end)?;
        (end == s.len()).then_some(MediaType {
            top: scan::utf8(s.get(..t_end)?)?,
            sub: scan::utf8(s.get(sub_start..sub_end)?)?,
            params,
        })
    }

    /// The type, e.g. `application`.
    pub fn media_type(&self) -> &'a str {
        self.top
    }

    /// The subtype, e.g. `pidf+xml`.
    pub fn subtype(&self) -> &'a str {
        self.sub
    }

    /// Whether this is `top/sub` (case-insensitive).
    pub fn is(&self, top: &str, sub: &str) -> bool {
        self.top.eq_ignore_ascii_case(top) && self.sub.eq_ignore_ascii_case(sub)
    }

    /// The parameters.
    pub fn params(&self) -> Params<'a> {
        self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let m = MediaType::parse(b"multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(m.params().get("boundary"), Some(Some("7a9cbec02ceef655")));
        let m = MediaType::parse(b"application / pidf+xml ; charset=\"utf-8\"").unwrap();
        assert_eq!(m.subtype(), "pidf+xml");
        assert!(MediaType::parse(b"application").is_none());
        assert!(MediaType::parse(b"application/").is_none());
        assert!(MediaType::parse(b"a/b c").is_none());
    }
}
