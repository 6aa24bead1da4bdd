//! The SIP ⇄ XMPP address translations of Kamailio's xmpp module (`util.c`, reference §9.1),
//! in one place: with the domain separator (`sip:bob*jabber.org@gateway` ⇄ `bob@jabber.org`)
//! or, when `gwmap` is set, by a table of domains (`user@sipdom` ⇄ `user@xmppdom`).

/// How addresses are translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translator {
    /// `domain_separator` (its first character).
    pub separator: char,
    /// SIP domain that stands for XMPP users (`gateway_domain`).
    pub gateway_domain: String,
    /// XMPP domain that stands for SIP users (`xmpp_domain`, the component's name).
    pub xmpp_domain: String,
    /// `gwmap` pairs (SIP domain, XMPP domain); when non-empty the separator is not used.
    pub gwmap: Vec<(String, String)>,
}

/// Parses `gwmap` values (`sipdom=xmppdom;sipdom2=xmppdom2;dom3`): a name alone maps to itself.
pub fn parse_gwmap<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<(String, String)>, String> {
    let mut map = Vec::new();
    for value in values {
        for item in value.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let (sip, xmpp) = match item.split_once('=') {
                Some((s, x)) => (s.trim(), x.trim()),
                None => (item, ""),
            };
            if sip.is_empty() || sip.contains(['@', ' ']) || xmpp.contains(['@', ' ']) {
                return Err(format!("gwmap: bad entry {item:?} (expected sipdomain=xmppdomain)"));
            }
            let xmpp = if xmpp.is_empty() { sip } else { xmpp };
            map.push((sip.to_ascii_lowercase(), xmpp.to_ascii_lowercase()));
        }
    }
    Ok(map)
}

/// `user` and `host` (no port, no parameters) of a SIP URI; tolerates a name-addr (`"A" <sip:..>;tag=x`).
pub fn sip_user_host(uri: &str) -> Option<(&str, &str)> {
    let uri = match (uri.find('<'), uri.find('>')) {
        (Some(a), Some(b)) if a < b => &uri[a + 1..b],
        _ => uri.trim(),
    };
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:"))?;
    let rest = rest.split([';', '?']).next().unwrap_or(rest);
    let (user, hostport) = rest.split_once('@')?;
    let host = if hostport.starts_with('[') {
        hostport.split_inclusive(']').next().unwrap_or(hostport)
    } else {
        hostport.split(':').next().unwrap_or(hostport)
    };
    (!user.is_empty() && !host.is_empty()).then_some((user, host))
}

/// `local` and `domain` of a JID, the resource dropped.
pub fn jid_local_domain(jid: &str) -> Option<(&str, &str)> {
    let bare = jid.trim().split('/').next().unwrap_or(jid);
    let (local, domain) = bare.split_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some((local, domain))
}

impl Translator {
    fn to_xmpp_domain<'a>(&'a self, sip: &'a str) -> &'a str {
        self.gwmap.iter().find(|(s, _)| s.eq_ignore_ascii_case(sip)).map_or(sip, |(_, x)| x.as_str())
    }

    fn to_sip_domain<'a>(&'a self, xmpp: &'a str) -> &'a str {
        self.gwmap.iter().find(|(_, x)| x.eq_ignore_ascii_case(xmpp)).map_or(xmpp, |(s, _)| s.as_str())
    }

    /// `sip:bob*jabber.org@gateway_domain` → `bob@jabber.org` (the XMPP user a SIP URI of the
    /// gateway stands for).
    pub fn decode_sip_xmpp(&self, uri: &str) -> Option<String> {
        let (user, host) = sip_user_host(uri)?;
        if !self.gwmap.is_empty() {
            return Some(format!("{user}@{}", self.to_xmpp_domain(host)));
        }
        let (local, domain) = user.split_once(self.separator)?;
        (!local.is_empty() && !domain.is_empty()).then(|| format!("{local}@{domain}"))
    }

    /// `sip:alice@sip.org` → `alice*sip.org@xmpp_domain` (the JID a SIP user has on the XMPP side).
    pub fn encode_sip_xmpp(&self, uri: &str) -> Option<String> {
        let (user, host) = sip_user_host(uri)?;
        if !self.gwmap.is_empty() {
            return Some(format!("{user}@{}", self.to_xmpp_domain(host)));
        }
        Some(format!("{user}{}{host}@{}", self.separator, self.xmpp_domain))
    }

    /// `alice*sip.org@xmpp_domain/res` → `sip:alice@sip.org` (the SIP user a JID of the
    /// component stands for).
    pub fn decode_xmpp_sip(&self, jid: &str) -> Option<String> {
        let (local, domain) = jid_local_domain(jid)?;
        if !self.gwmap.is_empty() {
            return Some(format!("sip:{local}@{}", self.to_sip_domain(domain)));
        }
        let (user, host) = local.split_once(self.separator)?;
        (!user.is_empty() && !host.is_empty()).then(|| format!("sip:{user}@{host}"))
    }

    /// `bob@jabber.org/res` → `sip:bob*jabber.org@gateway_domain` (the SIP URI an XMPP user has
    /// on the SIP side).
    pub fn encode_xmpp_sip(&self, jid: &str) -> Option<String> {
        let (local, domain) = jid_local_domain(jid)?;
        if !self.gwmap.is_empty() {
            return Some(format!("sip:{local}@{}", self.to_sip_domain(domain)));
        }
        Some(format!("sip:{local}{}{domain}@{}", self.separator, self.gateway_domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sep() -> Translator {
        Translator {
            separator: '*',
            gateway_domain: "sip-xmpp.example".into(),
            xmpp_domain: "sip-xmpp.xmpp.example".into(),
            gwmap: Vec::new(),
        }
    }

    #[test]
    fn separator_both_ways() {
        let t = sep();
        assert_eq!(t.decode_sip_xmpp("sip:bob*jabber.org@sip-xmpp.example").as_deref(), Some("bob@jabber.org"));
        assert_eq!(
            t.decode_sip_xmpp("<sip:bob*jabber.org@sip-xmpp.example:5060;transport=udp>;tag=1").as_deref(),
            Some("bob@jabber.org")
        );
        assert_eq!(t.encode_sip_xmpp("sip:alice@sip.org").as_deref(), Some("alice*sip.org@sip-xmpp.xmpp.example"));
        assert_eq!(
            t.encode_sip_xmpp("sip:alice@sip.org:5070;x=y").as_deref(),
            Some("alice*sip.org@sip-xmpp.xmpp.example")
        );
        assert_eq!(t.decode_xmpp_sip("alice*sip.org@sip-xmpp.xmpp.example/res").as_deref(), Some("sip:alice@sip.org"));
        assert_eq!(t.encode_xmpp_sip("bob@jabber.org/res").as_deref(), Some("sip:bob*jabber.org@sip-xmpp.example"));
        // Round trips.
        let jid = t.encode_sip_xmpp("sip:romeo@sip.test").unwrap();
        assert_eq!(t.decode_xmpp_sip(&jid).as_deref(), Some("sip:romeo@sip.test"));
        let uri = t.encode_xmpp_sip("juliet@xmpp.test/balcony").unwrap();
        assert_eq!(t.decode_sip_xmpp(&uri).as_deref(), Some("juliet@xmpp.test"));
        // Only the first separator becomes '@'.
        assert_eq!(t.decode_sip_xmpp("sip:a*b*c@gw").as_deref(), Some("a@b*c"));
    }

    #[test]
    fn untranslatable() {
        let t = sep();
        assert_eq!(t.decode_sip_xmpp("sip:bob@sip-xmpp.example"), None, "no separator");
        assert_eq!(t.decode_sip_xmpp("sip:*x@gw"), None);
        assert_eq!(t.decode_sip_xmpp("tel:+123"), None);
        assert_eq!(t.decode_sip_xmpp("sip:@gw"), None);
        assert_eq!(t.decode_xmpp_sip("plain@sip-xmpp.xmpp.example"), None);
        assert_eq!(t.encode_xmpp_sip("xmpp.test"), None, "a domain JID");
        assert_eq!(t.encode_sip_xmpp("garbage"), None);
    }

    #[test]
    fn gwmap_both_ways() {
        let map = parse_gwmap(["sip.example=xmpp.example; sip2.example = xmpp2.example", "same.example"]).unwrap();
        let t = Translator { gwmap: map, ..sep() };
        assert_eq!(t.decode_sip_xmpp("sip:bob@sip.example").as_deref(), Some("bob@xmpp.example"));
        assert_eq!(t.encode_sip_xmpp("sip:alice@SIP2.example").as_deref(), Some("alice@xmpp2.example"));
        assert_eq!(t.decode_xmpp_sip("alice@xmpp2.example/r").as_deref(), Some("sip:alice@sip2.example"));
        assert_eq!(t.encode_xmpp_sip("bob@xmpp.example").as_deref(), Some("sip:bob@sip.example"));
        assert_eq!(t.encode_xmpp_sip("c@same.example").as_deref(), Some("sip:c@same.example"));
        // Unmapped domains are kept; the separator means nothing with gwmap.
        assert_eq!(t.decode_sip_xmpp("sip:x*y@other").as_deref(), Some("x*y@other"));
        assert_eq!(t.encode_xmpp_sip("z@other/r").as_deref(), Some("sip:z@other"));
        assert!(parse_gwmap(["a@b=c"]).is_err());
        assert!(parse_gwmap(["=c"]).is_err());
        assert_eq!(parse_gwmap([""]).unwrap(), vec![]);
    }
}
