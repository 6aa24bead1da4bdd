//! Pseudo-variables in route arguments: `$ru`, `$fU`, `$hdr(Event)`, `$avp(name)`, ...
//!
//! Arguments are parsed once, when the config is loaded, into a [`Template`] of literal text
//! and variables (an unknown variable is a config error); each request expands them without
//! parsing again.

use std::fmt::Write as _;

use sip_message::{HeaderName, Message};

use super::super::context::RequestCtx;

/// One variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pv {
    /// `$ru` Request-URI (after rewrites).
    Ru,
    /// `$rU` its user.
    RUser,
    /// `$rd` its host.
    RDomain,
    /// `$rp` its port.
    RPort,
    /// `$fu` From URI.
    Fu,
    /// `$fU` From user.
    FUser,
    /// `$fd` From host.
    FDomain,
    /// `$fn` From display name.
    FName,
    /// `$ft` From tag.
    FTag,
    /// `$tu` To URI.
    Tu,
    /// `$tU` To user.
    TUser,
    /// `$td` To host.
    TDomain,
    /// `$tt` To tag.
    TTag,
    /// `$ci` Call-ID.
    CallId,
    /// `$cs` CSeq number.
    CSeq,
    /// `$rm` method.
    Method,
    /// `$si` source IP.
    SrcIp,
    /// `$sp` source port.
    SrcPort,
    /// `$pr` / `$proto` transport.
    Proto,
    /// `$ua` User-Agent.
    UserAgent,
    /// `$ct` first Contact value.
    Contact,
    /// `$rb` body.
    Body,
    /// `$au` user part of the digest username (Proxy-Authorization, else Authorization).
    AuthUser,
    /// `$aU` the whole digest username.
    AuthUsername,
    /// `$ar` the digest realm.
    AuthRealm,
    /// `$hdr(Name)` first value of a header.
    Hdr(String),
    /// `$avp(name)` last value of an AVP.
    Avp(String),
}

/// Literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(Pv),
}

/// A parsed argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

fn simple(name: &str) -> Option<Pv> {
    Some(match name {
        "ru" => Pv::Ru,
        "rU" => Pv::RUser,
        "rd" => Pv::RDomain,
        "rp" => Pv::RPort,
        "fu" => Pv::Fu,
        "fU" => Pv::FUser,
        "fd" => Pv::FDomain,
        "fn" => Pv::FName,
        "ft" => Pv::FTag,
        "tu" => Pv::Tu,
        "tU" => Pv::TUser,
        "td" => Pv::TDomain,
        "tt" => Pv::TTag,
        "ci" => Pv::CallId,
        "cs" => Pv::CSeq,
        "rm" => Pv::Method,
        "si" => Pv::SrcIp,
        "sp" => Pv::SrcPort,
        "pr" | "proto" => Pv::Proto,
        "ua" => Pv::UserAgent,
        "ct" => Pv::Contact,
        "rb" => Pv::Body,
        "au" => Pv::AuthUser,
        "aU" => Pv::AuthUsername,
        "ar" => Pv::AuthRealm,
        _ => return None,
    })
}

/// The variables a config may use, for error messages.
pub const KNOWN: &str = "$ru $rU $rd $rp $fu $fU $fd $fn $ft $tu $tU $td $tt $ci $cs $rm $si $sp $pr $ua $ct $rb $au $aU $ar $hdr(Name) $avp(name)";

impl Template {
    /// Parses `text`. `$$` is a literal `$`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                lit.push('$');
                rest = r;
                continue;
            }
            let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(rest.len());
            let name = &rest[..name_len];
            let after = &rest[name_len..];
            let (pv, used) = match (name, after.strip_prefix('(')) {
                ("hdr" | "avp", Some(inner)) => {
                    let close = inner.find(')').ok_or_else(|| format!("`${name}(` is not closed"))?;
                    let arg = inner[..close].trim();
                    if arg.is_empty() {
                        return Err(format!("`${name}()` needs a name"));
                    }
                    let pv = if name == "hdr" { Pv::Hdr(arg.to_string()) } else { Pv::Avp(arg.to_string()) };
                    (pv, name_len + 1 + close + 1)
                }
                ("hdr" | "avp", None) => return Err(format!("`${name}` needs a name: ${name}(...)")),
                _ => match simple(name) {
                    Some(pv) => (pv, name_len),
                    None => return Err(format!("unknown pseudo-variable `${name}` (known: {KNOWN})")),
                },
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(pv));
            rest = &rest[used..];
        }
        lit.push_str(rest);
        if !lit.is_empty() || parts.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// The text when there are no variables.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Expands the template for `ctx`. A variable with no value expands to nothing (Kamailio
    /// prints `<null>`; an empty string is easier for modules to test).
    pub fn expand(&self, ctx: &RequestCtx) -> String {
        if let Some(s) = self.literal() {
            return s.to_string();
        }
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => value(v, ctx, &mut out),
            }
        }
        out
    }
}

fn user_host_port(uri: &str, out: &mut String, what: u8) {
    if let Ok(u) = sip_message::SipUri::parse(uri) {
        match what {
            0 => out.push_str(u.user().unwrap_or("")),
            1 => out.push_str(u.host().map(|h| h.as_str()).unwrap_or("")),
            _ => {
                if let Some(p) = u.port() {
                    let _ = write!(out, "{p}");
                }
            }
        }
    }
}

/// Parameter `name` of the digest credentials as Kamailio's `$au`/`$ar` read them: the first
/// Proxy-Authorization, else the first Authorization. Commas inside quotes do not split.
fn credentials_param<'a>(msg: &Message<'a>, name: &str) -> Option<&'a str> {
    let value = msg.header(HeaderName::PROXY_AUTHORIZATION).or_else(|| msg.header(HeaderName::AUTHORIZATION))?;
    let value = std::str::from_utf8(value).ok()?.trim_start();
    let mut rest = value.split_once(char::is_whitespace)?.1;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (val, next) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim_end(), &after[end..])
            }
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(val);
        }
        rest = next;
    }
}

fn value(v: &Pv, ctx: &RequestCtx, out: &mut String) {
    let msg: Message<'_> = ctx.msg.view();
    match v {
        Pv::Ru => out.push_str(&ctx.ruri()),
        Pv::RUser => user_host_port(&ctx.ruri(), out, 0),
        Pv::RDomain => user_host_port(&ctx.ruri(), out, 1),
        Pv::RPort => user_host_port(&ctx.ruri(), out, 2),
        Pv::Fu | Pv::FUser | Pv::FDomain | Pv::FName | Pv::FTag => {
            if let Ok(f) = msg.from() {
                match v {
                    Pv::Fu => out.push_str(f.uri_str()),
                    Pv::FUser => user_host_port(f.uri_str(), out, 0),
                    Pv::FDomain => user_host_port(f.uri_str(), out, 1),
                    Pv::FName => out.push_str(&f.display_name_unescaped().unwrap_or_default()),
                    _ => out.push_str(f.tag().unwrap_or("")),
                }
            }
        }
        Pv::Tu | Pv::TUser | Pv::TDomain | Pv::TTag => {
            if let Ok(t) = msg.to() {
                match v {
                    Pv::Tu => out.push_str(t.uri_str()),
                    Pv::TUser => user_host_port(t.uri_str(), out, 0),
                    Pv::TDomain => user_host_port(t.uri_str(), out, 1),
                    _ => out.push_str(t.tag().unwrap_or("")),
                }
            }
        }
        Pv::CallId => out.push_str(msg.call_id().unwrap_or("")),
        Pv::CSeq => {
            if let Ok(c) = msg.cseq() {
                let _ = write!(out, "{}", c.number);
            }
        }
        Pv::Method => out.push_str(msg.method().map(|m| m.as_str()).unwrap_or("")),
        Pv::SrcIp => {
            let _ = write!(out, "{}", ctx.src.addr.ip());
        }
        Pv::SrcPort => {
            let _ = write!(out, "{}", ctx.src.addr.port());
        }
        Pv::Proto => out.push_str(ctx.src.proto.param()),
        Pv::UserAgent => out.push_str(msg.header_str(HeaderName::USER_AGENT).unwrap_or("")),
        Pv::Contact => out.push_str(msg.header_str(HeaderName::CONTACT).unwrap_or("")),
        Pv::Body => out.push_str(&String::from_utf8_lossy(msg.body())),
        Pv::AuthUser | Pv::AuthUsername | Pv::AuthRealm => {
            let key = if *v == Pv::AuthRealm { "realm" } else { "username" };
            if let Some(val) = credentials_param(&msg, key) {
                out.push_str(if *v == Pv::AuthUser { val.split('@').next().unwrap_or(val) } else { val });
            }
        }
        Pv::Hdr(name) => {
            if let Some(v) = msg.headers_named(name).next() {
                out.push_str(&String::from_utf8_lossy(v));
            }
        }
        Pv::Avp(name) => {
            if let Some(v) = ctx.avp(name) {
                out.push_str(&v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_templates() {
        assert_eq!(Template::parse("open").unwrap().literal(), Some("open"));
        assert_eq!(Template::parse("").unwrap().literal(), Some(""));
        let t = Template::parse("sip:$rU@$rd;x=$hdr(Event)$$").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Lit("sip:".into()),
                Part::Var(Pv::RUser),
                Part::Lit("@".into()),
                Part::Var(Pv::RDomain),
                Part::Lit(";x=".into()),
                Part::Var(Pv::Hdr("Event".into())),
                Part::Lit("$".into()),
            ]
        );
        assert_eq!(Template::parse("$avp(caller)").unwrap().parts, vec![Part::Var(Pv::Avp("caller".into()))]);
    }

    #[test]
    fn reads_digest_username_and_realm() {
        let raw = b"REGISTER sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:a@a.test>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nAuthorization: Digest realm=\"a.test\", username=\"alice@b.test\", nonce=\"x,y\", uri=\"sip:a.test\", response=\"0\"\r\nContent-Length: 0\r\n\r\n";
        let parsed = sip_message::parse(raw).unwrap();
        let msg = Message::new(raw, &parsed);
        assert_eq!(credentials_param(&msg, "username"), Some("alice@b.test"));
        assert_eq!(credentials_param(&msg, "realm"), Some("a.test"));
        assert_eq!(credentials_param(&msg, "uri"), Some("sip:a.test"), "a quoted comma does not split");
        assert_eq!(credentials_param(&msg, "opaque"), None);
        assert_eq!(Template::parse("$au@$ar").unwrap().parts.len(), 3);
    }

    #[test]
    fn refuses_unknown_and_broken() {
        assert!(Template::parse("$nope").unwrap_err().contains("unknown pseudo-variable `$nope`"));
        assert!(Template::parse("$hdr(Event").is_err());
        assert!(Template::parse("$hdr").is_err());
        assert!(Template::parse("$avp()").is_err());
    }
}
