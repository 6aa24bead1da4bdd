//! What Kamailio's presence core reads from `dialog` event bodies (RFC 4235 dialog-info) to
//! handle their PUBLISHes (reference §10.3): the first dialog's id (a new publication replaces
//! the stored ones of that dialog) and its state (an update to a terminated dialog is
//! skipped). The bodies were checked by the package's CHECK_BODY hook before they were stored,
//! so a plain scan of the tags is enough here; element names match by local name, whatever
//! their namespace prefix, as Kamailio's `xmlNodeGetNodeByName`.

/// The `id` attribute and the `<state>` text of the first `<dialog>` element of `body`.
pub fn first_dialog(body: &[u8]) -> Option<(&str, Option<&str>)> {
    let text = std::str::from_utf8(body).ok()?;
    let (attrs, after) = find_start_tag(text, "dialog")?;
    let id = attribute(attrs, "id")?;
    let state = find_start_tag(after, "state").and_then(|(_, rest)| rest.split('<').next()).map(str::trim);
    Some((id, state))
}

/// The attributes text and what follows the start tag of the first element named `local`.
fn find_start_tag<'a>(text: &'a str, local: &str) -> Option<(&'a str, &'a str)> {
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let name_end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
        let name = &rest[..name_end];
        let name = name.rsplit(':').next().unwrap_or(name);
        if name == local {
            let close = rest.find('>')?;
            return Some((&rest[name_end..close], &rest[close + 1..]));
        }
    }
    None
}

/// The value of attribute `name` in a start tag's attributes text.
fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attrs;
    loop {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let value = rest[eq + 1..].trim_start();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let end = value[1..].find(quote)? + 1;
        if key == name {
            return Some(&value[1..end]);
        }
        rest = &value[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_dialog_id_and_state() {
        let body = br#"<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:a@x"><dialog id='d1' call-id="c" direction="initiator"><state event="x"> terminated </state></dialog><dialog id="d2"><state>early</state></dialog></dialog-info>"#;
        assert_eq!(first_dialog(body), Some(("d1", Some("terminated"))));
        let prefixed = br#"<d:dialog-info xmlns:d="urn:ietf:params:xml:ns:dialog-info"><d:dialog id="p"><d:state>confirmed</d:state></d:dialog></d:dialog-info>"#;
        assert_eq!(first_dialog(prefixed), Some(("p", Some("confirmed"))));
        assert_eq!(first_dialog(br#"<dialog-info entity="sip:a@x"/>"#), None, "no dialog");
        assert_eq!(first_dialog(br#"<dialog-info><dialog id="n"/></dialog-info>"#), Some(("n", None)));
    }
}
