//! `bla_handle_notify()`'s checks on an incoming NOTIFY (reference §7), in Kamailio's order:
//! the dialog it claims to belong to (To with tag, Call-ID, From with tag), then, once pua
//! knows that dialog, `Subscription-State`, the body and the Contact. Each refusal carries the
//! SIP status it is answered with.

use dialog_info::{DialogInfoError, Limits};
use plugin_api::api::pua::{PublishInfo, UaRecord, event, source};
use plugin_api::sip::Message;
use plugin_api::sip::sip_message::headers::SubState;

/// Why a NOTIFY is refused; [`NotifyError::status`] is the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The To header is missing or unparseable.
    #[error("cannot parse the To header")]
    BadTo,
    /// The To header has no tag: not within a dialog.
    #[error("the To header has no tag")]
    NoToTag,
    /// No Call-ID.
    #[error("cannot parse the Call-ID header")]
    BadCallId,
    /// The From header is missing or unparseable.
    #[error("cannot parse the From header")]
    BadFrom,
    /// The From header has no tag.
    #[error("the From header has no tag")]
    NoFromTag,
    /// pua has no dialog;sla subscription with this Call-ID and tags.
    #[error("NOTIFY in a non-existing dialog")]
    NoDialog,
    /// No `Subscription-State` header, or one that cannot be parsed.
    #[error("no valid Subscription-State header")]
    BadSubscriptionState,
    /// `active` or `pending` without `;expires=`.
    #[error("no expires in Subscription-State")]
    NoExpires,
    /// Content-Length 0 (Kamailio: "content length= 0").
    #[error("the NOTIFY has no body")]
    EmptyBody,
    /// The body is not a well-formed dialog-info document within the limits.
    #[error("bad dialog-info body: {0}")]
    BadBody(#[from] DialogInfoError),
    /// No Contact, or a Contact without an address.
    #[error("no Contact header")]
    NoContact,
    /// The Contact URI cannot go into a header line.
    #[error("the Contact URI cannot be carried in a header")]
    BadContact,
}

impl NotifyError {
    /// The reply: 481 for a NOTIFY outside any of our subscriptions (RFC 6665 §4.1.3), 413
    /// for a body over the limit, 400 for everything else the phone got wrong.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            NotifyError::NoDialog => (481, "Subscription does not exist"),
            NotifyError::BadBody(DialogInfoError::Xml(dialog_info::PidfError::TooLarge { .. })) => {
                (413, "Request Entity Too Large")
            }
            _ => (400, "Bad Request"),
        }
    }
}

/// The dialog a NOTIFY names, as `pua`'s `is_dialog` looks it up: our local tag is the
/// NOTIFY's To-tag, the phone's tag its From-tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyDialog<'a> {
    /// The To URI: the watcher of our subscription (the BLA line), and the presentity the
    /// PUBLISH goes to.
    pub to_uri: &'a str,
    /// The From URI: the presentity of our subscription.
    pub from_uri: &'a str,
    /// Call-ID.
    pub call_id: &'a str,
    /// The To-tag (our tag).
    pub local_tag: &'a str,
    /// The From-tag (the phone's tag).
    pub remote_tag: &'a str,
}

impl NotifyDialog<'_> {
    /// The query for `is_dialog`: Call-ID, tags and the BLA_SUBSCRIBE source flag.
    pub fn query(&self) -> UaRecord {
        UaRecord {
            pres_uri: self.from_uri.to_string(),
            watcher_uri: self.to_uri.to_string(),
            call_id: self.call_id.to_string(),
            from_tag: self.local_tag.to_string(),
            to_tag: self.remote_tag.to_string(),
            event: event::BLA,
            flag: source::BLA_SUBSCRIBE,
            ..Default::default()
        }
    }
}

/// Step 1: the dialog identifiers, each required.
pub fn dialog_of<'a>(msg: &Message<'a>) -> Result<NotifyDialog<'a>, NotifyError> {
    let to = msg.to().map_err(|_| NotifyError::BadTo)?;
    let local_tag = to.tag().filter(|t| !t.is_empty()).ok_or(NotifyError::NoToTag)?;
    let call_id = msg.call_id().map_err(|_| NotifyError::BadCallId)?;
    let from = msg.from().map_err(|_| NotifyError::BadFrom)?;
    let remote_tag = from.tag().filter(|t| !t.is_empty()).ok_or(NotifyError::NoFromTag)?;
    Ok(NotifyDialog { to_uri: to.uri_str(), from_uri: from.uri_str(), call_id, local_tag, remote_tag })
}

/// What a NOTIFY of a known dialog publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyState<'a> {
    /// The PUBLISH's Expires: 0 for `terminated`, else the `expires` of Subscription-State.
    pub expires: u32,
    /// The dialog-info document.
    pub body: &'a str,
    /// The phone's Contact URI: the value of the `header_name` header, which the presence
    /// server compares with its watchers' contacts to skip the sender.
    pub contact: &'a str,
}

/// Step 2 (after the dialog matched): Subscription-State, body, Contact.
///
/// `terminated` publishes with expires 0; `active` and `pending` need `;expires=`; an extension
/// state publishes with expires 0 too, as in Kamailio (it only tests for the three names).
/// Kamailio sends any non-empty body on; here it must be a dialog-info document within
/// `limits`, so a phone's garbage never reaches pua or the presence server.
pub fn check<'a>(msg: &Message<'a>, limits: &Limits) -> Result<NotifyState<'a>, NotifyError> {
    let state = msg
        .subscription_state()
        .map_err(|_| NotifyError::BadSubscriptionState)?
        .ok_or(NotifyError::BadSubscriptionState)?;
    let expires = match state.state() {
        SubState::Active | SubState::Pending => state.expires().ok_or(NotifyError::NoExpires)?,
        SubState::Terminated | SubState::Other(_) => 0,
    };
    let body = msg.body();
    if body.is_empty() {
        return Err(NotifyError::EmptyBody);
    }
    dialog_info::check(body, limits)?;
    // `check` accepted it, so it is UTF-8.
    let body = std::str::from_utf8(body)
        .map_err(|_| NotifyError::BadBody(DialogInfoError::Xml(dialog_info::PidfError::NotUtf8)))?;
    let contact = msg.contacts().next().and_then(Result::ok).ok_or(NotifyError::NoContact)?;
    let contact = contact.address().map(|a| a.uri_str()).filter(|u| !u.is_empty()).ok_or(NotifyError::NoContact)?;
    if contact.bytes().any(|b| b.is_ascii_control()) {
        return Err(NotifyError::BadContact);
    }
    Ok(NotifyState { expires, body, contact })
}

/// The PUBLISH for a checked NOTIFY (Kamailio's `publ_info` in `bla_handle_notify`): to the To
/// URI, event `dialog;sla`, source BLA_PUBLISH, the body as is (pua rewrites its version), and
/// `<header_name>: <contact>` so the presence server can leave the sender out. No id: the
/// phones of a line share one publication, the latest state of the line, as in Kamailio.
pub fn publish_info(dialog: &NotifyDialog<'_>, state: &NotifyState<'_>, header_name: &str) -> PublishInfo {
    PublishInfo {
        pres_uri: dialog.to_uri.to_string(),
        body: Some(state.body.to_string()),
        expires: i32::try_from(state.expires).unwrap_or(i32::MAX),
        source_flag: source::BLA_PUBLISH,
        event: event::BLA,
        extra_headers: Some(format!("{header_name}: {}\r\n", state.contact)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::sip::sip_message;

    const BODY: &str = "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"7\" state=\"full\" entity=\"sip:line@example.com\"><dialog id=\"d1\"><state>confirmed</state></dialog></dialog-info>";

    fn notify(headers: &[&str], body: &str) -> String {
        let mut m = String::from(
            "NOTIFY sip:bla@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1\r\nCall-ID: c1-pua\r\nCSeq: 2 NOTIFY\r\nEvent: dialog;sla\r\n",
        );
        for h in headers {
            m.push_str(h);
            m.push_str("\r\n");
        }
        m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        m
    }

    const GOOD: [&str; 4] = [
        "From: <sip:line@example.com>;tag=phone",
        "To: <sip:line@example.com>;tag=ours",
        "Subscription-State: active;expires=300",
        "Contact: <sip:line@192.0.2.1:5070;transport=udp>",
    ];

    fn with<T>(text: &str, f: impl FnOnce(&Message<'_>) -> T) -> T {
        let parsed = sip_message::parse(text.as_bytes()).expect("parses");
        f(&Message::new(text.as_bytes(), &parsed))
    }

    fn replace(name: &str, line: Option<&str>) -> Vec<String> {
        let mut v: Vec<String> = GOOD.iter().filter(|l| !l.starts_with(name)).map(|l| l.to_string()).collect();
        v.extend(line.map(str::to_string));
        v
    }

    fn run(headers: &[String], body: &str) -> Result<(u32, String, String), NotifyError> {
        let hs: Vec<&str> = headers.iter().map(String::as_str).collect();
        with(&notify(&hs, body), |m| {
            dialog_of(m)?;
            let s = check(m, &Limits::default())?;
            Ok((s.expires, s.body.to_string(), s.contact.to_string()))
        })
    }

    #[test]
    fn a_good_notify_publishes_to_the_to_uri_with_the_sender() {
        let text = notify(&GOOD, BODY);
        with(&text, |m| {
            let d = dialog_of(m).unwrap();
            assert_eq!((d.call_id, d.local_tag, d.remote_tag), ("c1-pua", "ours", "phone"));
            let q = d.query();
            assert_eq!((q.from_tag.as_str(), q.to_tag.as_str()), ("ours", "phone"), "local tag = To-tag");
            assert_eq!((q.flag, q.event), (source::BLA_SUBSCRIBE, event::BLA));
            let s = check(m, &Limits::default()).unwrap();
            assert_eq!(s.expires, 300);
            let p = publish_info(&d, &s, "Sender");
            assert_eq!(p.pres_uri, "sip:line@example.com");
            assert_eq!(p.extra_headers.as_deref(), Some("Sender: sip:line@192.0.2.1:5070;transport=udp\r\n"));
            assert_eq!((p.event, p.source_flag, p.expires), (event::BLA, source::BLA_PUBLISH, 300));
            assert_eq!(p.body.as_deref(), Some(BODY));
            assert!(p.id.is_empty() && p.etag.is_none() && p.outbound_proxy.is_none());
        });
    }

    #[test]
    fn dialog_identifiers_are_required() {
        assert_eq!(run(&replace("To:", Some("To: <sip:line@example.com>")), BODY), Err(NotifyError::NoToTag));
        assert_eq!(run(&replace("To:", None), BODY), Err(NotifyError::BadTo));
        assert_eq!(run(&replace("From:", Some("From: <sip:line@example.com>")), BODY), Err(NotifyError::NoFromTag));
        assert_eq!(run(&replace("From:", Some("From: <sip:line@exa mple.com")), BODY), Err(NotifyError::BadFrom));
        assert_eq!(NotifyError::NoDialog.status(), (481, "Subscription does not exist"));
        assert_eq!(NotifyError::NoToTag.status().0, 400);
    }

    #[test]
    fn subscription_state() {
        let st = |v: &str| run(&replace("Subscription-State:", Some(&format!("Subscription-State: {v}"))), BODY);
        assert_eq!(st("terminated;reason=noresource").map(|s| s.0), Ok(0));
        assert_eq!(st("pending;expires=20").map(|s| s.0), Ok(20));
        assert_eq!(st("active").map(|s| s.0), Err(NotifyError::NoExpires));
        assert_eq!(st("active;expires=soon").map(|s| s.0), Err(NotifyError::BadSubscriptionState));
        assert_eq!(st("other").map(|s| s.0), Ok(0), "Kamailio: an extension state publishes with expires 0");
        assert_eq!(run(&replace("Subscription-State:", None), BODY), Err(NotifyError::BadSubscriptionState));
    }

    #[test]
    fn body_must_be_dialog_info() {
        assert_eq!(run(&GOOD.map(String::from), ""), Err(NotifyError::EmptyBody));
        let bad = run(&GOOD.map(String::from), "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\"");
        assert!(matches!(bad, Err(NotifyError::BadBody(_))), "{bad:?}");
        assert_eq!(bad.unwrap_err().status().0, 400);
        let pidf = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a@b\"/>";
        assert_eq!(run(&GOOD.map(String::from), pidf), Err(NotifyError::BadBody(DialogInfoError::NotDialogInfo)));
        let dtd = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"full\" entity=\"sip:a@b\">&a;</dialog-info>";
        assert!(matches!(run(&GOOD.map(String::from), dtd), Err(NotifyError::BadBody(_))));
        let big = format!(
            "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"full\" entity=\"sip:a@b\"><!--{}--></dialog-info>",
            "x".repeat(70_000)
        );
        assert_eq!(run(&GOOD.map(String::from), &big).unwrap_err().status().0, 413);
    }

    #[test]
    fn contact_is_required() {
        assert_eq!(run(&replace("Contact:", None), BODY), Err(NotifyError::NoContact));
        assert_eq!(run(&replace("Contact:", Some("Contact: *")), BODY), Err(NotifyError::NoContact));
        let ok = run(&replace("Contact:", Some("Contact: \"Desk\" <sip:desk@192.0.2.7>;expires=5")), BODY).unwrap();
        assert_eq!(ok.2, "sip:desk@192.0.2.7");
    }
}
