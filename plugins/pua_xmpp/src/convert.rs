//! The document conversions of pua_xmpp, without I/O: XMPP `<presence>` → PIDF for a PUBLISH,
//! a PIDF or watcher-info NOTIFY body → what goes into XMPP stanzas, SIP reply codes → XMPP
//! stanza error conditions (reference §9.2).

use xmpp_stream::escape;

/// What pua_xmpp reads from an XMPP `<presence>` stanza.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmppPresence {
    /// `type` (empty: available).
    pub ty: String,
    /// `<show>`.
    pub show: Option<String>,
    /// `<status>`.
    pub status: Option<String>,
    /// A `urn:xmpp:delay` child: a copy of an earlier presence (Prosody sends those on a probe).
    pub delayed: bool,
}

/// Reads a `<presence>` stanza; Err when it is not well-formed XML.
pub fn read_presence(xml: &str) -> Result<XmppPresence, String> {
    xmpp_stream::parse_stanza(xml, "jabber:component:accept", |n| XmppPresence {
        ty: n.attribute("type").unwrap_or("").to_string(),
        show: xmpp_stream::child_text(n, "show").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        status: xmpp_stream::child_text(n, "status").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        delayed: n.children().any(|c| c.is_element() && c.tag_name().name() == "delay"),
    })
    .map_err(|e| e.to_string())
}

/// What an XMPP `<presence>` to the component makes the gateway do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// PUBLISH the sender's presence.
    Publish,
    /// End the sender's publication.
    Unpublish,
    /// SUBSCRIBE the sender to the SIP user behind the addressee (again, for a probe).
    Subscribe,
    /// End that SUBSCRIBE.
    Unsubscribe,
    /// Nothing, for this reason.
    Ignore(&'static str),
}

/// The action for a presence of `ty` from `from` (reference §9.2, with Prosody's ways).
pub fn action(ty: &str, from: &str) -> Action {
    match ty {
        "" => Action::Publish,
        // Prosody acknowledges a pending inbound subscription with an `unavailable` from the
        // user's bare JID; it says nothing about the user's resources, and real clients send
        // their presence from a full JID.
        "unavailable" if !from.contains('/') => Action::Ignore("unavailable from a bare JID"),
        "unavailable" => Action::Unpublish,
        // Prosody probes (from the bare and the full JID) once a subscription exists: the
        // SUBSCRIBE is refreshed and its NOTIFY brings the current state.
        "subscribe" | "probe" => Action::Subscribe,
        "unsubscribe" => Action::Unsubscribe,
        "subscribed" | "unsubscribed" => Action::Ignore("SIP watchers are authorized by the presence server"),
        "error" => Action::Ignore("an error stanza"),
        _ => Action::Ignore("unknown type"),
    }
}

/// RPID activity element of an XMPP `<show>`.
fn activity(show: &str) -> Option<&'static str> {
    match show {
        "away" | "xa" => Some("away"),
        "dnd" => Some("busy"),
        _ => None, // chat: available, no activity
    }
}

/// Kamailio's note for a `<show>` when the stanza has no `<status>`.
fn show_note(show: &str) -> &str {
    match show {
        "xa" => "Away",
        "chat" => "Online",
        "dnd" => "Busy (DND)",
        other => other,
    }
}

/// The PIDF an available XMPP presence is published as: `basic` open, the `<status>` text (or
/// Kamailio's text for the `<show>`) as the note, RPID activities from the `<show>`.
pub fn pidf(entity: &str, p: &XmppPresence) -> String {
    let note = match (&p.status, &p.show) {
        (Some(s), _) => s.as_str(),
        (None, Some(show)) => show_note(show),
        (None, None) => "",
    };
    let mut out = String::with_capacity(512);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"");
    out.push_str(&escape(entity));
    out.push_str("\">\n  <tuple>\n    <status>\n      <basic>open</basic>\n    </status>\n");
    if !note.is_empty() {
        out.push_str("    <note>");
        out.push_str(&escape(note));
        out.push_str("</note>\n");
    }
    out.push_str("  </tuple>\n");
    if let Some(show) = &p.show {
        out.push_str("  <dm:person>\n");
        if let Some(a) = activity(show) {
            out.push_str("    <rpid:activities><rpid:");
            out.push_str(a);
            out.push_str("/></rpid:activities>\n");
        }
        out.push_str("  </dm:person>\n");
    }
    out.push_str("</presence>\n");
    out
}

/// What a presence NOTIFY body says, for the XMPP side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipPresence {
    /// `basic` open somewhere.
    pub open: bool,
    /// `<show>` value.
    pub show: Option<&'static str>,
    /// `<status>` text.
    pub status: Option<String>,
    /// `<priority>` from the first `contact priority`.
    pub priority: Option<String>,
}

/// Kamailio's `<show>` for a note (`pua_xmpp` simple2xmpp.c).
fn note_show(note: &str) -> Option<&'static str> {
    let n = note.trim().to_ascii_lowercase();
    match n.as_str() {
        "away" | "on the phone" => Some("away"),
        "busy" => Some("xa"),
        "dnd" | "do not disturb" | "busy (dnd)" => Some("dnd"),
        _ => None,
    }
}

/// `<show>` for an RPID activity.
fn activity_show(name: &str) -> Option<&'static str> {
    match name {
        "away" | "on-the-phone" | "meal" | "appointment" | "meeting" | "steering" | "travel" => Some("away"),
        "busy" | "performance" | "presentation" | "worship" => Some("dnd"),
        "vacation" | "sleeping" | "holiday" => Some("xa"),
        _ => None,
    }
}

/// Reads a PIDF body: basic, the RPID activity (else Kamailio's note mapping) as `<show>`, the
/// first note as `<status>` unless it became the `<show>`.
pub fn read_pidf(body: &str) -> Result<SipPresence, String> {
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 20_000, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(body, opts).map_err(|e| format!("bad PIDF: {e}"))?;
    if doc.root_element().tag_name().name() != "presence" {
        return Err("not a PIDF document".into());
    }
    let elements = || doc.descendants().filter(|n| n.is_element());
    let open = elements()
        .filter(|n| n.tag_name().name() == "basic")
        .any(|n| n.text().is_some_and(|t| t.trim().eq_ignore_ascii_case("open")));
    let note = elements().find(|n| n.tag_name().name() == "note").and_then(|n| n.text()).map(str::trim);
    let activity = elements()
        .find(|n| n.tag_name().name() == "activities")
        .and_then(|a| a.children().filter(|c| c.is_element()).find_map(|c| activity_show(c.tag_name().name())));
    let (show, status) = match (activity, note) {
        (Some(a), note) => (Some(a), note.filter(|n| !n.is_empty()).map(str::to_string)),
        (None, Some(n)) => match note_show(n) {
            Some(s) => (Some(s), None),
            None => (None, (!n.is_empty()).then(|| n.to_string())),
        },
        (None, None) => (None, None),
    };
    let priority =
        elements().find(|n| n.tag_name().name() == "contact").and_then(|c| c.attribute("priority")).map(str::to_string);
    Ok(SipPresence { open, show, status, priority })
}

/// The `<presence>` stanza for a SIP presence state.
pub fn presence_stanza(from: &str, to: &str, id: &str, p: &SipPresence) -> String {
    let mut out = format!("<presence from='{}' to='{}' id='{}'", escape(from), escape(to), escape(id));
    if !p.open {
        out.push_str(" type='unavailable'/>");
        return out;
    }
    out.push('>');
    if let Some(show) = p.show {
        out.push_str("<show>");
        out.push_str(show);
        out.push_str("</show>");
    }
    if let Some(s) = &p.status {
        out.push_str("<status>");
        out.push_str(&escape(s));
        out.push_str("</status>");
    }
    if let Some(pr) = p.priority.as_deref().and_then(|p| p.parse::<f32>().ok()) {
        // PIDF priorities are 0..1; XMPP's are integers.
        out.push_str(&format!("<priority>{}</priority>", (pr * 127.0).round().clamp(-128.0, 127.0) as i32));
    }
    out.push_str("</presence>");
    out
}

/// A bodyless presence stanza of `ty` (subscribe, subscribed, unsubscribed, unavailable).
pub fn typed_stanza(from: &str, to: &str, id: Option<&str>, ty: &str) -> String {
    match id {
        Some(id) => format!("<presence from='{}' to='{}' id='{}' type='{ty}'/>", escape(from), escape(to), escape(id)),
        None => format!("<presence from='{}' to='{}' type='{ty}'/>", escape(from), escape(to)),
    }
}

/// The watcher URIs of a watcher-info document (terminated watchers left out).
pub fn read_winfo(body: &str) -> Result<Vec<String>, String> {
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 100_000, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(body, opts).map_err(|e| format!("bad watcherinfo: {e}"))?;
    if doc.root_element().tag_name().name() != "watcherinfo" {
        return Err("not a watcherinfo document".into());
    }
    Ok(doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "watcher")
        .filter(|n| n.attribute("status") != Some("terminated"))
        .filter_map(|n| n.text().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string))
        .collect())
}

/// Kamailio's XMPP stanza error condition for a SIP failure code.
pub fn error_condition(code: u16) -> &'static str {
    match code {
        400 | 413 | 414 | 415 | 416 | 420 | 421 | 423 | 513 => "bad-request",
        401 => "not-authorized",
        402 => "payment-required",
        403 => "forbidden",
        404 | 481 | 485 | 604 => "item-not-found",
        405 => "not-allowed",
        407 => "registration-required",
        408 | 503 | 600 | 603 => "service-unavailable",
        301 | 410 => "gone",
        300 | 302 | 305 => "redirect",
        480 => "recipient-unavailable",
        484 => "jid-malformed",
        491 => "unexpected-request",
        500 => "internal-server-error",
        501 => "feature-not-implemented",
        502 => "remote-server-not-found",
        504 => "remote-server-timeout",
        _ => "not-acceptable",
    }
}

/// The `<presence type='error'>` for a failed SUBSCRIBE.
pub fn error_stanza(from: &str, to: &str, code: u16) -> String {
    format!(
        "<presence from='{}' to='{}' type='error'><error type='cancel'><{} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        escape(from),
        escape(to),
        error_condition(code)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xmpp_presence_to_pidf() {
        let p = read_presence("<presence from='a@x/r' to='b*s@gw'><show>away</show><status>out &amp; about</status><delay xmlns='urn:xmpp:delay' stamp='x'/></presence>").unwrap();
        assert_eq!(p.show.as_deref(), Some("away"));
        assert_eq!(p.status.as_deref(), Some("out & about"));
        assert!(p.delayed);
        let doc = pidf("sip:a*x@gw", &p);
        let back = read_pidf(&doc).unwrap();
        assert_eq!(
            back,
            SipPresence { open: true, show: Some("away"), status: Some("out & about".into()), priority: None }
        );
        assert!(doc.contains("<rpid:away/>") && doc.contains("entity=\"sip:a*x@gw\""), "{doc}");

        let p = read_presence("<presence from='a@x/r'><show>dnd</show></presence>").unwrap();
        let doc = pidf("sip:a*x@gw", &p);
        assert!(doc.contains("<note>Busy (DND)</note>") && doc.contains("<rpid:busy/>"), "{doc}");
        let p = read_presence("<presence from='a@x/r'><show>chat</show></presence>").unwrap();
        let doc = pidf("sip:a*x@gw", &p);
        assert!(doc.contains("<note>Online</note>") && !doc.contains("activities"), "{doc}");
        let p = read_presence("<presence from='a@x/r'/>").unwrap();
        let doc = pidf("sip:a*x@gw", &p);
        assert!(!doc.contains("note") && !doc.contains("person"), "{doc}");
        assert!(read_pidf(&doc).unwrap().open);
        assert_eq!(read_presence("<presence type='unavailable' from='a@x/r'/>").unwrap().ty, "unavailable");
        assert!(read_presence("<presence><show></presence>").is_err());
        // Hostile status text stays text.
        let p = XmppPresence { status: Some("</note><x>".into()), ..Default::default() };
        assert_eq!(read_pidf(&pidf("sip:a@b", &p)).unwrap().status.as_deref(), Some("</note><x>"));
    }

    #[test]
    fn pidf_to_xmpp_presence() {
        let closed = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:r@s"><tuple id="t"><status><basic>closed</basic></status></tuple></presence>"#;
        let p = read_pidf(closed).unwrap();
        assert!(!p.open);
        assert_eq!(
            presence_stanza("r*s@gw", "a@x", "t1", &p),
            "<presence from='r*s@gw' to='a@x' id='t1' type='unavailable'/>"
        );
        let note = |n: &str| {
            read_pidf(&format!(r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="t"><status><basic>open</basic></status><contact priority="0.8">sip:r@h</contact><note>{n}</note></tuple></presence>"#)).unwrap()
        };
        assert_eq!(note("On the phone").show, Some("away"));
        assert_eq!(note("busy").show, Some("xa"));
        assert_eq!(note("Do Not Disturb").show, Some("dnd"));
        let p = note("lunch &lt;b&gt;");
        assert_eq!((p.show, p.status.as_deref()), (None, Some("lunch <b>")));
        assert_eq!(
            presence_stanza("r*s@gw", "a@x", "t", &p),
            "<presence from='r*s@gw' to='a@x' id='t'><status>lunch &lt;b&gt;</status><priority>102</priority></presence>"
        );
        let rpid = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"><tuple id="t"><status><basic>open</basic></status><note>in a meeting</note></tuple><dm:person id="p"><rpid:activities><rpid:busy/></rpid:activities></dm:person></presence>"#;
        let p = read_pidf(rpid).unwrap();
        assert_eq!((p.open, p.show, p.status.as_deref()), (true, Some("dnd"), Some("in a meeting")));
        assert!(read_pidf("<presence><tuple>").is_err());
        assert!(read_pidf("<foo/>").is_err());
        assert!(read_pidf(r#"<!DOCTYPE x [<!ENTITY a "b">]><presence/>"#).is_err());
    }

    #[test]
    fn winfo_watchers() {
        let doc = r#"<?xml version="1.0"?><watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="full"><watcher-list resource="sip:a*x@gw" package="presence"><watcher id="1" event="subscribe" status="active">sip:w@s</watcher><watcher id="2" event="timeout" status="terminated">sip:old@s</watcher><watcher id="3" event="subscribe" status="pending">sip:p@s</watcher></watcher-list></watcherinfo>"#;
        assert_eq!(read_winfo(doc).unwrap(), vec!["sip:w@s".to_string(), "sip:p@s".to_string()]);
        assert!(read_winfo("<presence/>").is_err());
        assert!(read_winfo("<watcherinfo").is_err());
    }

    #[test]
    fn actions_and_prosody_quirks() {
        assert_eq!(action("", "a@x/r"), Action::Publish);
        assert_eq!(action("unavailable", "a@x/r"), Action::Unpublish);
        assert!(matches!(action("unavailable", "a@x"), Action::Ignore(_)), "bare JID: Prosody's ack");
        assert_eq!(action("probe", "a@x"), Action::Subscribe);
        assert_eq!(action("probe", "a@x/r"), Action::Subscribe);
        assert_eq!(action("subscribe", "a@x"), Action::Subscribe);
        assert_eq!(action("unsubscribe", "a@x"), Action::Unsubscribe);
        assert!(matches!(action("subscribed", "a@x"), Action::Ignore(_)));
        assert!(matches!(action("bogus", "a@x"), Action::Ignore(_)));
    }

    #[test]
    fn error_conditions() {
        assert_eq!(error_condition(404), "item-not-found");
        assert_eq!(error_condition(408), "service-unavailable");
        assert_eq!(error_condition(489), "not-acceptable");
        assert!(
            error_stanza("r*s@gw", "a@x", 403).contains("<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>")
        );
        assert_eq!(typed_stanza("a", "b", None, "subscribed"), "<presence from='a' to='b' type='subscribed'/>");
    }
}
