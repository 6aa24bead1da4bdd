//! The parts of an XCAP request: which document (RFC 4825 §6) and who asks.

use base64::Engine;

/// A pres-rules document of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub domain: String,
    /// The decoded request path, stored as `xcap.doc_uri`.
    pub doc_uri: String,
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `<url_match>pres-rules/users/<xui>/<document>` → the target; otherwise the status and text
/// to answer with.
pub fn parse_target(url: &str, url_match: &str) -> Result<Target, (u16, &'static str)> {
    let path = url.split('?').next().unwrap_or(url);
    let path = percent_decode(path).ok_or((400, "bad percent-encoding"))?;
    let rest = path.strip_prefix(url_match).ok_or((404, "not under the XCAP root"))?;
    if rest.contains("/~~/") {
        return Err((501, "node selectors are not supported: PUT, GET or DELETE whole documents"));
    }
    let rest = rest.strip_prefix("pres-rules/").ok_or((404, "only the pres-rules application usage is served"))?;
    let rest = rest.strip_prefix("users/").ok_or((404, "only users/ documents are served"))?;
    let (xui, document) = rest.split_once('/').ok_or((404, "no document name"))?;
    if document.is_empty() || document.contains('/') || document.contains("..") {
        return Err((404, "no such document"));
    }
    let identity =
        xui.strip_prefix("sip:").or_else(|| xui.strip_prefix("sips:")).ok_or((404, "the XUI must be a SIP URI"))?;
    let (user, domain) = identity.split_once('@').ok_or((404, "the XUI must be sip:user@domain"))?;
    if user.is_empty() || domain.is_empty() {
        return Err((404, "the XUI must be sip:user@domain"));
    }
    Ok(Target { user: user.to_string(), domain: domain.to_string(), doc_uri: path.clone() })
}

/// `Basic <base64(user:password)>` → (user, password).
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, data) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("/xcap-root/pres-rules/users/sip:alice@example.com/index", "/xcap-root/").unwrap();
        assert_eq!((t.user.as_str(), t.domain.as_str()), ("alice", "example.com"));
        assert_eq!(t.doc_uri, "/xcap-root/pres-rules/users/sip:alice@example.com/index");
        let t = parse_target("/xcap-root/pres-rules/users/sip%3Aalice%40example.com/index?x=1", "/xcap-root/").unwrap();
        assert_eq!(t.doc_uri, "/xcap-root/pres-rules/users/sip:alice@example.com/index");
        let err = |u| parse_target(u, "/xcap-root/").unwrap_err().0;
        assert_eq!(err("/other/pres-rules/users/sip:a@b/index"), 404);
        assert_eq!(err("/xcap-root/resource-lists/users/sip:a@b/index"), 404);
        assert_eq!(err("/xcap-root/pres-rules/global/index"), 404);
        assert_eq!(err("/xcap-root/pres-rules/users/sip:a@b/"), 404);
        assert_eq!(err("/xcap-root/pres-rules/users/alice/index"), 404);
        assert_eq!(err("/xcap-root/pres-rules/users/sip:a@b/index/~~/ruleset"), 501);
        assert_eq!(err("/xcap-root/pres-rules/users/sip:a@b/%zz"), 400);
    }

    #[test]
    fn basic() {
        assert_eq!(basic_credentials("Basic YWxpY2U6c2VjcmV0"), Some(("alice".into(), "secret".into())));
        assert_eq!(basic_credentials("Digest username=x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
