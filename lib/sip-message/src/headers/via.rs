//! Via (RFC 3261 §20.42, RFC 3581 `rport`, RFC 5118 §4.5 `received` with or without brackets).

use std::net::IpAddr;

use super::params::Params;
use crate::scan::{self, skip_lws, take_token};
use crate::uri::Host;

/// One Via value (a Via header line may carry several, comma-separated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    protocol_name: &'a str,
    protocol_version: &'a str,
    transport: &'a str,
    host: Host<'a>,
    port: Option<u16>,
    params: Params<'a>,
}

impl<'a> Via<'a> {
    /// Parses one via-parm. LWS is allowed around `/`, `:`, `;` and `=`, as RFC 3261 allows (and
    /// RFC 4475 §3.1.1.1 exercises); empty parameters or values are rejected (§3.1.2.1).
    pub fn parse(s: &'a [u8]) -> Option<Via<'a>> {
        let s = scan::trim_lws(s);
        let mut parts = [""; 3];
        let mut pos = 0;
        for (i, part) in parts.iter_mut().enumerate() {
            if i > 0 {
                pos = skip_lws(s, pos);
                if s.get(pos) != Some(&b'/') {
                    return None;
                }
                pos = skip_lws(s, pos + 1);
            }
            let end = take_token(s, pos);
            if end == pos {
                return None;
            }
            *part = scan::utf8(s.get(pos..end)?)?;
            pos = end;
        }
        let [protocol_name, protocol_version, transport] = parts;
        let host_start = skip_lws(s, pos);
        if host_start == pos {
            return None;
        }
        let host_end = if s.get(host_start) == Some(&b'[') {
            host_start + s.get(host_start..)?.iter().position(|&b| b == b']')? + 1
        } else {
            let mut i = host_start;
            while s.get(i).is_some_and(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
                i += 1;
            }
            i
        };
        let host = Host::parse(scan::utf8(s.get(host_start..host_end)?)?)?;
        pos = skip_lws(s, host_end);
        let mut port = None;
        if s.get(pos) == Some(&b':') {
            let p_start = skip_lws(s, pos + 1);
            let mut p_end = p_start;
            while s.get(p_end).is_some_and(u8::is_ascii_digit) {
                p_end += 1;
            }
            let digits = scan::utf8(s.get(p_start..p_end)?)?;
            if digits.is_empty() || digits.len() > 5 {
                return None;
            }
            port = Some(digits.parse::<u16>().ok()?);
            pos = p_end;
        } else {
            pos = host_end;
        }
        // Validate the parameters in the same pass that checks the ones this crate reads.
        let params_start = skip_lws(s, pos);
        let mut p = pos;
        while let Some((param, next)) = scan::next_param(s, p).ok()? {
            if !param_is_sane(param.name, param.value) {
                return None;
            }
            p = next;
        }
        let end = skip_lws(s, p);
        if end != s.len() {
            return None;
        }
        let raw = if s.get(params_start) == Some(&b';') { scan::trim_lws(s.get(params_start..end)?) } else { &[] };
        Some(Via { protocol_name, protocol_version, transport, host, port, params: Params::new(raw) })
    }

    /// `SIP` in `SIP/2.0/UDP`.
    pub fn protocol_name(&self) -> &'a str {
        self.protocol_name
    }

    /// `2.0` in `SIP/2.0/UDP`.
    pub fn protocol_version(&self) -> &'a str {
        self.protocol_version
    }

    /// The transport as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or anything else).
    pub fn transport(&self) -> &'a str {
        self.transport
    }

    /// The sent-by host.
    pub fn host(&self) -> Host<'a> {
        self.host
    }

    /// The sent-by port, if explicit.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// All parameters (`branch`, `received`, `rport`, `maddr`, `ttl` and any other).
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// The `received` parameter as written (with or without `[]` around an IPv6 address).
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// The `received` parameter as an address.
    pub fn received_ip(&self) -> Option<IpAddr> {
        received_ip(self.received()?)
    }

    /// The `rport` parameter: `None` if absent, `Some(None)` if present without value (a request
    /// asking for it), `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params.get("ttl").flatten().and_then(|t| t.parse().ok())
    }

    /// Whether the branch carries the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

/// Checks the syntax of the parameters this crate interprets (`rport`, `received`, `ttl`).
fn param_is_sane(name: &[u8], value: Option<&[u8]>) -> bool {
    let small_number =
        |v: &[u8], digits: usize, max: u32| v.len() <= digits && scan::parse_u32(v).is_some_and(|n| n <= max);
    if name.eq_ignore_ascii_case(b"rport") {
        value.is_none_or(|v| small_number(v, 5, 65535))
    } else if name.eq_ignore_ascii_case(b"received") {
        value.and_then(scan::utf8).and_then(received_ip).is_some()
    } else if name.eq_ignore_ascii_case(b"ttl") {
        value.is_some_and(|v| small_number(v, 3, 255))
    } else {
        true
    }
}

/// A `received` value as an address, with or without `[]` around IPv6 (RFC 5118 §4.5).
fn received_ip(r: &str) -> Option<IpAddr> {
    let inner = r.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(r);
    if inner.contains(':') { Host::Ipv6(inner).ip() } else { Host::Ipv4(inner).ip() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tortuous_via() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.protocol_name(), v.protocol_version(), v.transport()), ("SIP", "2.0", "UDP"));
        assert_eq!(v.host(), Host::Ipv4("192.0.2.2"));
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = Via::parse(b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8").unwrap();
        assert_eq!(v.host(), Host::Name("spindle.example.com"));
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn ports_rport_received() {
        let v = Via::parse(b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d8;rport").unwrap();
        assert_eq!(v.port(), Some(5070));
        assert_eq!(v.rport(), Some(None));
        let v = Via::parse(b"SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111").unwrap();
        assert_eq!(v.host(), Host::Ipv6("2001:db8::9:1"));
        assert!(v.received_ip().is_some());
        let v = Via::parse(b"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3").unwrap();
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert!(v.received_ip().is_some());
        let v = Via::parse(b"SIP/2.0/UDP h;rport=5060;received=192.0.2.1;ttl=16;maddr=x").unwrap();
        assert_eq!(v.rport(), Some(Some(5060)));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.maddr(), Some("x"));
        assert!(Via::parse(b"SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19").is_some());
    }

    #[test]
    fn rejections() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;received=not an ip",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP [::1",
        ] {
            assert!(Via::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
