//! Body processing before a PUBLISH (Kamailio's `pres_process_body` and `bla_process_body`).
//!
//! * PIDF: the first `<tuple>` gets an `id` when it has none (the record's tuple id, or a new
//!   one that is then kept), and the first `<person>` gets the same id when it has none. The
//!   presence server aggregates documents by their first tuple id, so the id must stay the same
//!   across every update of one publication.
//! * dialog-info / reginfo: the `version` attribute of the root element is set to the record's
//!   counter.
//!
//! The document is streamed through quick-xml and written back event by event, so everything
//! else (namespaces, prefixes, text, comments) is kept; a body that is not well-formed XML is
//! refused, as Kamailio's libxml parse refuses it.

use quick_xml::Reader;
use quick_xml::Writer;
use quick_xml::events::{BytesStart, Event};

/// Longest tuple id kept (Kamailio's buffer: 49 characters).
const MAX_TUPLE_ID: usize = 49;

fn local_name_is(e: &BytesStart<'_>, name: &str) -> bool {
    e.local_name().as_ref().eq_ignore_ascii_case(name)
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref().eq_ignore_ascii_case(name))
        .and_then(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned()))
}

/// `start` with attribute `name` set to `value` (replaced if present, else appended).
fn with_attr(start: &BytesStart<'_>, name: &str, value: &str) -> BytesStart<'static> {
    let mut out = BytesStart::new(start.name().as_ref().to_string());
    for a in start.attributes().flatten() {
        if a.key.as_ref() != name {
            out.push_attribute(a);
        }
    }
    out.push_attribute((name, value));
    out
}

/// Rewrites `body`, letting `edit` replace start tags; returns the new text.
fn rewrite(body: &str, mut edit: impl FnMut(&BytesStart<'_>) -> Option<BytesStart<'static>>) -> Result<String, String> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(false);
    let mut writer = Writer::new(Vec::with_capacity(body.len() + 64));
    let mut root_seen = false;
    loop {
        let event = reader.read_event().map_err(|e| format!("the body is not well-formed XML: {e}"))?;
        let event = match event {
            Event::Eof => break,
            Event::Start(s) => {
                root_seen = true;
                match edit(&s) {
                    Some(new) => Event::Start(new),
                    None => Event::Start(s),
                }
            }
            Event::Empty(s) => {
                root_seen = true;
                match edit(&s) {
                    Some(new) => Event::Empty(new),
                    None => Event::Empty(s),
                }
            }
            other => other,
        };
        writer.write_event(event).map_err(|e| format!("cannot write the body: {e}"))?;
    }
    if !root_seen {
        return Err("the body has no XML element".into());
    }
    String::from_utf8(writer.into_inner()).map_err(|e| format!("the body is not UTF-8: {e}"))
}

/// PIDF: makes sure the first tuple (and the first person) carry the publication's tuple id.
/// `stored` is the record's tuple id, `new_id` makes one when neither the record nor the body
/// has one. Returns the body to send and the tuple id to keep.
pub fn pidf_tuple_id(
    body: &str,
    stored: Option<&str>,
    new_id: impl FnOnce() -> String,
) -> Result<(String, String), String> {
    // Pass 1: what the document already says.
    let mut reader = Reader::from_str(body);
    let mut existing = None;
    let mut has_tuple = false;
    loop {
        match reader.read_event().map_err(|e| format!("the body is not well-formed XML: {e}"))? {
            Event::Eof => break,
            Event::Start(s) | Event::Empty(s) if local_name_is(&s, "tuple") => {
                has_tuple = true;
                existing = attr(&s, "id");
                break;
            }
            _ => {}
        }
    }
    if !has_tuple {
        // Nothing to tag; the body still has to be XML.
        rewrite(body, |_| None)?;
        return Ok((body.to_string(), stored.unwrap_or_default().to_string()));
    }
    let id = match (existing.as_deref(), stored) {
        (Some(id), _) if !id.is_empty() => {
            if id.len() > MAX_TUPLE_ID {
                return Err(format!("tuple id `{id}` is longer than {MAX_TUPLE_ID} characters"));
            }
            id.to_string()
        }
        (_, Some(s)) if !s.is_empty() => s.to_string(),
        _ => new_id(),
    };
    let (mut tuple_done, mut person_done) = (false, false);
    let out = rewrite(body, |s| {
        if !tuple_done && local_name_is(s, "tuple") {
            tuple_done = true;
            return attr(s, "id").is_none().then(|| with_attr(s, "id", &id));
        }
        if !person_done && local_name_is(s, "person") {
            person_done = true;
            return attr(s, "id").is_none().then(|| with_attr(s, "id", &id));
        }
        None
    })?;
    Ok((out, id))
}

/// Sets `version` on the first element named `element` (dialog-info, reginfo).
pub fn set_version(body: &str, element: &str, version: i32) -> Result<String, String> {
    let mut done = false;
    let v = version.to_string();
    let out = rewrite(body, |s| {
        if !done && local_name_is(s, element) {
            done = true;
            return Some(with_attr(s, "version", &v));
        }
        None
    })?;
    if !done {
        return Err(format!("the body has no <{element}> element"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIDF: &str = r#"<?xml version="1.0"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:alice@example.com">
  <tuple><status><basic>open</basic></status></tuple>
  <dm:person><dm:note>Lunch</dm:note></dm:person>
</presence>"#;

    #[test]
    fn adds_a_tuple_id_and_keeps_it() {
        let (out, id) = pidf_tuple_id(PIDF, None, || "0x7f1".into()).unwrap();
        assert_eq!(id, "0x7f1");
        assert!(out.contains(r#"<tuple id="0x7f1">"#), "{out}");
        assert!(out.contains(r#"<dm:person id="0x7f1">"#), "{out}");
        assert!(out.contains("<dm:note>Lunch</dm:note>") && out.contains("entity=\"sip:alice@example.com\""), "{out}");
        // An update reuses the stored id.
        let (out, id) = pidf_tuple_id(PIDF, Some("0x7f1"), || unreachable!()).unwrap();
        assert_eq!(id, "0x7f1");
        assert!(out.contains(r#"<tuple id="0x7f1">"#));
    }

    #[test]
    fn an_id_in_the_body_wins_and_is_kept() {
        let body = PIDF.replace("<tuple>", r#"<tuple id="t1">"#);
        let (out, id) = pidf_tuple_id(&body, None, || unreachable!()).unwrap();
        assert_eq!(id, "t1");
        assert!(out.contains(r#"<tuple id="t1">"#) && out.contains(r#"<dm:person id="t1">"#), "{out}");
        let long = PIDF.replace("<tuple>", &format!(r#"<tuple id="{}">"#, "x".repeat(50)));
        assert!(pidf_tuple_id(&long, None, || "y".into()).is_err());
    }

    #[test]
    fn refuses_broken_xml() {
        assert!(pidf_tuple_id("<presence><tuple></presence>", None, || "x".into()).is_err());
        assert!(pidf_tuple_id("not xml at all", None, || "x".into()).is_err());
        assert!(set_version("<dialog-info", "dialog-info", 1).is_err());
    }

    #[test]
    fn sets_the_version() {
        let d = r#"<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="sip:a@b"><dialog id="1"><state>early</state></dialog></dialog-info>"#;
        let out = set_version(d, "dialog-info", 7).unwrap();
        assert!(out.contains(r#"version="7""#) && !out.contains(r#"version="0""#), "{out}");
        assert!(out.contains("<state>early</state>"));
        let r = r#"<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" state="full"/>"#;
        assert!(set_version(r, "reginfo", 3).unwrap().contains(r#"version="3""#));
        assert!(set_version(r, "dialog-info", 3).is_err());
    }
}
