//! The dialog event package (`presence` + `presence_dialoginfo`) end to end over real UDP:
//! two publications of one presentity aggregated into one dialog-info NOTIFY body, malformed
//! and hostile bodies refused without changing anything, force_single_dialog and
//! force_dummy_dialog.

use std::time::{Duration, Instant};

use e2e::Host;
use e2e::PRESENCE_ROUTES;
use e2e::notify::{body, next_notify, no_notify, publications};
use e2e::sip::{Client, header, request, status};
use serde_json::json;

const NS: &str = "urn:ietf:params:xml:ns:dialog-info";

fn dialog_info(entity: &str, dialogs: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><dialog-info xmlns="{NS}" version="0" state="full" entity="{entity}">{dialogs}</dialog-info>"#
    )
}

fn dialog(id: &str, direction: &str, state: &str) -> String {
    format!(
        r#"<dialog id="{id}" call-id="call-{id}" direction="{direction}"><state>{state}</state><local><identity>sip:bob@example.com</identity></local></dialog>"#
    )
}

/// A presence server with the dialog package; `dialoginfo` is `[modparam.presence_dialoginfo]`.
fn server(name: &str, dialoginfo: &str) -> Host {
    Host::start(
        name,
        &format!(
            r#"loadmodule = ["presence", "presence_dialoginfo"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.presence]
db_url = "sqlite://presence.sqlite"
[modparam.presence_dialoginfo]
{dialoginfo}
{PRESENCE_ROUTES}"#
        ),
    )
}

fn publish(c: &mut Client, h: &Host, user: &str, extra: &[&str], body: &str) -> String {
    let ruri = format!("sip:{user}@127.0.0.1:{}", h.sip);
    let mut headers = vec!["Event: dialog", "Expires: 3600"];
    headers.extend_from_slice(extra);
    if !body.is_empty() {
        headers.push("Content-Type: application/dialog-info+xml");
    }
    c.transact(&request(c, "PUBLISH", &ruri, &headers, body))
}

fn subscribe(c: &mut Client, h: &Host, user: &str) -> String {
    let ruri = format!("sip:{user}@127.0.0.1:{}", h.sip);
    c.transact(&request(c, "SUBSCRIBE", &ruri, &["Event: dialog", "Expires: 600"], ""))
}

/// The `id`s of the `<dialog>` elements of a NOTIFY body, in order.
fn dialog_ids(b: &str) -> Vec<String> {
    b.split("<dialog ").skip(1).filter_map(|d| d.split("id=\"").nth(1)?.split('"').next().map(str::to_string)).collect()
}

fn version(b: &str) -> u64 {
    let root = b.split("<dialog-info").nth(1).expect("a dialog-info root");
    root.split(" version=\"").nth(1).and_then(|v| v.split('"').next()).and_then(|v| v.parse().ok()).expect("version")
}

#[test]
fn two_publications_one_aggregated_notify_and_bad_bodies_refused() {
    let h = server("dialoginfo-aggregate", "");
    let mut publisher = Client::udp(h.sip_addr());
    let mut watcher = Client::udp(h.sip_addr());

    let r = subscribe(&mut watcher, &h, "bob");
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    assert_eq!(header(&n, "Event").as_deref(), Some("dialog"), "{n}");
    assert!(header(&n, "Subscription-State").unwrap().starts_with("active;expires="), "no authorization: {n}");
    assert_eq!(body(&n), "", "no state and no force_dummy_dialog: no body");

    // The caller side of one call and the callee side of another, as two publications.
    let r = publish(
        &mut publisher,
        &h,
        "bob",
        &[],
        &dialog_info("sip:bob@example.com", &dialog("d1", "initiator", "confirmed")),
    );
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    assert_eq!(dialog_ids(body(&n)), ["d1"], "{n}");
    let v1 = version(body(&n));
    let r = publish(
        &mut publisher,
        &h,
        "bob",
        &[],
        &dialog_info("sip:bob@example.com", &dialog("d2", "recipient", "early")),
    );
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    let b = body(&n);
    assert_eq!(header(&n, "Content-Type").as_deref(), Some("application/dialog-info+xml"), "{n}");
    assert_eq!(b.matches("<dialog-info").count(), 1, "one document: {b}");
    assert!(b.contains(&format!("xmlns=\"{NS}\"")) && b.contains("state=\"full\""), "{b}");
    assert!(b.contains("entity=\"sip:bob@127.0.0.1\""), "the presentity is the entity: {b}");
    assert_eq!(dialog_ids(b), ["d1", "d2"], "both dialogs, oldest publication first: {b}");
    assert!(b.contains("<state>confirmed</state>") && b.contains("<state>early</state>"), "{b}");
    assert!(version(b) > v1, "versions increase: {b}");
    assert_eq!(publications(&h), 2);

    // Malformed, wrong and hostile bodies: refused before anything changes, nobody notified.
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><dialog-info xmlns="{NS}" version="0" state="full" entity="sip:bob@example.com">&lol3;</dialog-info>"#
    );
    let deep = dialog_info("sip:bob@example.com", &format!("{}{}", "<d>".repeat(5000), "</d>".repeat(5000)));
    let no_entity = format!(r#"<dialog-info xmlns="{NS}" version="0" state="full"/>"#);
    let t = Instant::now();
    for (bad, code) in [
        ("<dialog-info xmlns='urn:ietf:params:xml:ns:dialog-info'><dialog>".to_string(), 415),
        (r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.com"/>"#.to_string(), 415),
        (no_entity, 400),
        (laughs, 400),
        (deep, 400),
    ] {
        let r = publish(&mut publisher, &h, "bob", &[], &bad);
        assert_eq!(status(&r), code, "{bad}\n{r}");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "refused quickly: {:?}", t.elapsed());
    assert_eq!(publications(&h), 2, "nothing stored");
    no_notify(&mut watcher, Duration::from_millis(500));

    // A refresh of a publication with a bad body is refused too and keeps the old one.
    let r = publish(
        &mut publisher,
        &h,
        "bob",
        &[],
        &dialog_info("sip:bob@example.com", &dialog("d3", "initiator", "trying")),
    );
    let etag = header(&r, "SIP-ETag").expect("SIP-ETag");
    let n = next_notify(&mut watcher);
    assert_eq!(dialog_ids(body(&n)), ["d1", "d2", "d3"], "{n}");
    let if_match = format!("SIP-If-Match: {etag}");
    let r = publish(&mut publisher, &h, "bob", &[&if_match], "<dialog-info");
    assert_eq!(status(&r), 415, "{r}");
    no_notify(&mut watcher, Duration::from_millis(300));
    let r = publish(
        &mut publisher,
        &h,
        "bob",
        &[&if_match],
        &dialog_info("sip:bob@example.com", &dialog("d3", "initiator", "terminated")),
    );
    assert_eq!(status(&r), 200, "the ETag still matches: {r}");
    let n = next_notify(&mut watcher);
    assert!(body(&n).contains("<state>terminated</state>"), "{n}");
    assert_eq!(publications(&h), 3);

    // The package is known to the server: a SUBSCRIBE for another presentity works and an
    // unknown event still gets 489 listing dialog.
    let ruri = format!("sip:carol@127.0.0.1:{}", h.sip);
    let r = watcher.transact(&request(&watcher, "SUBSCRIBE", &ruri, &["Event: message-summary"], ""));
    assert_eq!(status(&r), 489, "{r}");
    assert!(header(&r, "Allow-Events").unwrap_or_default().contains("dialog"), "{r}");
}

#[test]
fn force_single_dialog_and_force_dummy_dialog() {
    let h = server("dialoginfo-single", "force_single_dialog = 1\nforce_dummy_dialog = 1\ndefault_expires = 120");
    let mut publisher = Client::udp(h.sip_addr());
    let mut watcher = Client::udp(h.sip_addr());

    // No publication: the terminated dummy dialog.
    let r = subscribe(&mut watcher, &h, "alice");
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    let b = body(&n);
    assert_eq!(dialog_ids(b), ["615293b33c62dec073e05d9421e9f48b"], "{n}");
    assert!(b.contains("direction=\"recipient\"") && b.contains("<state>terminated</state>"), "{b}");
    assert!(b.contains("entity=\"sip:alice@127.0.0.1\""), "{b}");

    // One publication: all its dialogs, even with force_single_dialog.
    let two = format!("{}{}", dialog("a1", "initiator", "terminated"), dialog("a2", "recipient", "confirmed"));
    let r = publish(&mut publisher, &h, "alice", &[], &dialog_info("sip:alice@example.com", &two));
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    assert_eq!(dialog_ids(body(&n)), ["a1", "a2"], "{n}");

    // Two publications: one dialog, early before confirmed before terminated.
    let r = publish(
        &mut publisher,
        &h,
        "alice",
        &[],
        &dialog_info("sip:alice@example.com", &dialog("a3", "recipient", "early")),
    );
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    assert_eq!(dialog_ids(body(&n)), ["a3"], "{n}");
    assert_eq!(body(&n).matches("<dialog ").count(), 1, "{n}");

    // The early dialog also published as confirmed: it is no longer early.
    let r = publish(
        &mut publisher,
        &h,
        "alice",
        &[],
        &dialog_info("sip:alice@example.com", &dialog("a3", "initiator", "confirmed")),
    );
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    let b = body(&n);
    assert_eq!(dialog_ids(b), ["a3"], "{n}");
    assert!(b.contains("<state>confirmed</state>") && !b.contains("early"), "{b}");

    // Another presentity without state also gets the dummy.
    let mut other = Client::udp(h.sip_addr());
    let r = subscribe(&mut other, &h, "dave");
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut other);
    assert_eq!(dialog_ids(body(&n)), ["615293b33c62dec073e05d9421e9f48b"], "{n}");

    // default_expires: the Expires of a dialog PUBLISH or SUBSCRIBE without one.
    let ruri = format!("sip:erin@127.0.0.1:{}", h.sip);
    let b = dialog_info("sip:erin@example.com", &dialog("e1", "initiator", "trying"));
    let r = publisher.transact(&request(
        &publisher,
        "PUBLISH",
        &ruri,
        &["Event: dialog", "Content-Type: application/dialog-info+xml"],
        &b,
    ));
    assert_eq!((status(&r), header(&r, "Expires").as_deref()), (200, Some("120")), "{r}");
    let mut erin = Client::udp(h.sip_addr());
    let r = erin.transact(&request(&erin, "SUBSCRIBE", &ruri, &["Event: dialog"], ""));
    assert_eq!((status(&r), header(&r, "Expires").as_deref()), (200, Some("120")), "{r}");
    let n = next_notify(&mut erin);
    assert_eq!(dialog_ids(body(&n)), ["e1"], "{n}");
}

/// The presence core's dialog rules (Kamailio's handle_publish for the `dialog` event): a new
/// publication about a dialog replaces the stored ones about the same dialog id, and an update
/// to a publication whose dialog is terminated is acknowledged and ignored.
#[test]
fn same_dialog_replaced_and_terminated_dialog_kept() {
    let h = server("dialoginfo-core-rules", "");
    let mut c = Client::udp(h.sip_addr());
    let entity = "sip:bob@127.0.0.1";
    let r = publish(&mut c, &h, "bob", &[], &dialog_info(entity, &dialog("d1", "initiator", "early")));
    assert_eq!(status(&r), 200, "{r}");
    let r = publish(&mut c, &h, "bob", &[], &dialog_info(entity, &dialog("d2", "recipient", "early")));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(publications(&h), 2);
    // A new publication (no SIP-If-Match) about d1 replaces the stored one about d1.
    let r = publish(&mut c, &h, "bob", &[], &dialog_info(entity, &dialog("d1", "initiator", "confirmed")));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(publications(&h), 2, "d1's older publication went");
    let etag = header(&r, "SIP-ETag").unwrap();
    let r = publish(
        &mut c,
        &h,
        "bob",
        &[&format!("SIP-If-Match: {etag}")],
        &dialog_info(entity, &dialog("d1", "initiator", "terminated")),
    );
    assert_eq!(status(&r), 200, "{r}");
    let etag = header(&r, "SIP-ETag").unwrap();
    // d1 ended: a late update is answered 200 with the same ETag and changes nothing.
    let r = publish(
        &mut c,
        &h,
        "bob",
        &[&format!("SIP-If-Match: {etag}")],
        &dialog_info(entity, &dialog("d1", "initiator", "confirmed")),
    );
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(header(&r, "SIP-ETag").as_deref(), Some(etag.as_str()), "{r}");
    let list = h.result("presence.presentity_show", json!(["full", "bob", "*"]));
    let bodies: Vec<&str> = list.as_array().unwrap().iter().filter_map(|p| p["body"].as_str()).collect();
    assert!(bodies.iter().any(|b| b.contains("id=\"d1\"") && b.contains("terminated")), "{list}");
    assert!(!bodies.iter().any(|b| b.contains("id=\"d1\"") && b.contains("confirmed")), "{list}");
}
