//! CSeq (RFC 3261 §20.16).

use crate::Method;
use crate::scan::{self, is_lws, is_token_str, skip_lws};

/// A CSeq value: sequence number and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (leading zeros allowed on the wire).
    pub number: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`. A number that does not fit in 32 bits is rejected (RFC 4475
    /// §3.1.2.4); the stricter `< 2**31` rule is checked by `Message::validate`.
    pub fn parse(s: &'a [u8]) -> Option<CSeq<'a>> {
        let s = scan::trim_lws(s);
        let digits_end = s.iter().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
        let number = scan::parse_u32(s.get(..digits_end)?)?;
        if !s.get(digits_end).copied().is_some_and(is_lws) {
            return None;
        }
        let m = s.get(skip_lws(s, digits_end)..)?;
        if !is_token_str(m) {
            return None;
        }
        Some(CSeq { number, method: Method::from_token(scan::utf8(m)?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_forms() {
        assert_eq!(CSeq::parse(b"0009\r\n  INVITE"), Some(CSeq { number: 9, method: Method::Invite }));
        let c = CSeq::parse(b"139122385 !interesting-Method0123456789_*+`.%indeed'~").unwrap();
        assert_eq!(c.method, Method::Other("!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(CSeq::parse(b"36893488147419103232 REGISTER").is_none());
        assert!(CSeq::parse(b"1INVITE").is_none());
        assert!(CSeq::parse(b"1 INVITE x").is_none());
        assert!(CSeq::parse(b"INVITE").is_none());
        assert!(CSeq::parse(b"1 ").is_none());
    }
}
