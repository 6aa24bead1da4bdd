//! The engine with a fake clock: what goes on the wire and what is stored, for every path of
//! reference §2.5 and the fixes on top of it.

use plugin_api::api::pua::{PublishInfo, SENT_NOTHING, SubscribeInfo, UaRecord, event, source};

use super::*;
use crate::events::Events;
use crate::store::MemoryStore;

const PIDF: &str = r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple><status><basic>open</basic></status></tuple></presence>"#;

fn engine() -> Engine<MemoryStore> {
    let mut n = 0;
    Engine::new(Config::defaults(), Events::with_defaults(false, false), MemoryStore::new(), move || {
        n += 1;
        format!("tok{n}")
    })
}

fn publish(body: Option<&str>, expires: i32, cb: u64) -> PublishInfo {
    PublishInfo {
        id: "UL_PUBLISH.c1".into(),
        pres_uri: "sip:alice@example.com".into(),
        body: body.map(str::to_string),
        expires,
        source_flag: source::UL_PUBLISH,
        event: event::PRESENCE,
        cb_param: cb,
        ..Default::default()
    }
}

fn ok(etag: &str, expires: i64) -> ReplyInfo {
    ReplyInfo { code: 200, etag: Some(etag.into()), expires: Some(expires), ..Default::default() }
}

fn code(code: u16) -> ReplyInfo {
    ReplyInfo { code, ..Default::default() }
}

/// The single request among the effects.
fn sent(effects: &[Effect]) -> (u64, Request) {
    let sends: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { key, request } => Some((*key, request.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "{effects:?}");
    sends.into_iter().next().unwrap()
}

fn notified(effects: &[Effect]) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify { record, .. } => Some(record.cb_param),
            _ => None,
        })
        .collect()
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.extra_headers.split("\r\n").find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
}

#[test]
fn publish_initial_refresh_modify_remove() {
    let mut e = engine();
    let t0 = 1_000_000;
    let eff = e.send_publish(publish(Some(PIDF), 3600, 7), t0).unwrap();
    let (key, req) = sent(&eff);
    assert_eq!(req.method, "PUBLISH");
    assert_eq!(req.ruri, "sip:alice@example.com");
    assert_eq!((req.from.as_str(), req.to.as_str()), ("<sip:alice@example.com>", "<sip:alice@example.com>"));
    assert_eq!(header(&req, "Event"), Some("presence"));
    assert_eq!(header(&req, "Expires"), Some("3601"), "Expires is the request + 1");
    assert_eq!(header(&req, "SIP-If-Match"), None);
    assert_eq!(req.content_type, "application/pidf+xml");
    let body = String::from_utf8(req.body.clone()).unwrap();
    assert!(body.contains(r#"<tuple id="0xtok1">"#), "{body}");
    // The server grants 600 s of the 3600 asked for: pua refreshes to reach what was asked.
    let eff = e.on_reply(key, &ok("e1", 600), t0);
    assert_eq!(notified(&eff), vec![7]);
    let stored = e.records.all();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].publ().unwrap().etag, "e1");
    assert_eq!(stored[0].expires, t0 + 600);

    // The timer refreshes when less than update_period (100 s) is left: If-Match, no body.
    assert!(e.tick(t0 + 400).is_empty(), "too early");
    let eff = e.tick(t0 + 550);
    let (key, req) = sent(&eff);
    assert_eq!(header(&req, "SIP-If-Match"), Some("e1"));
    assert!(req.body.is_empty() && req.content_type.is_empty(), "a refresh has no body and no Content-Type");
    assert_eq!(header(&req, "Expires"), Some("3051"), "desired - now + 1");
    let eff = e.on_reply(key, &ok("e2", 600), t0 + 550);
    assert!(notified(&eff).is_empty(), "no callbacks for pua's own refreshes");

    // Modify: a new body, same tuple id.
    let eff = e.send_publish(publish(Some(&PIDF.replace("open", "closed")), 3600, 8), t0 + 560).unwrap();
    let (key, req) = sent(&eff);
    assert_eq!(header(&req, "SIP-If-Match"), Some("e2"));
    assert!(String::from_utf8(req.body).unwrap().contains(r#"<tuple id="0xtok1"><status><basic>closed"#));
    e.on_reply(key, &ok("e3", 3600), t0 + 560);

    // Remove: Expires 0 with If-Match, no body; the 200 removes the record.
    let eff = e.send_publish(publish(None, 0, 9), t0 + 570).unwrap();
    let (key, req) = sent(&eff);
    assert_eq!((header(&req, "Expires"), header(&req, "SIP-If-Match")), (Some("0"), Some("e3")));
    assert!(req.body.is_empty());
    let eff = e.on_reply(key, &ok("e3", 0), t0 + 570);
    assert_eq!(notified(&eff), vec![9]);
    assert!(e.records.all().is_empty());
}

#[test]
fn wrong_etag_no_body_and_unknown_event() {
    let mut e = engine();
    let mut p = publish(Some(PIDF), 60, 0);
    p.etag = Some("nope".into());
    assert_eq!(e.send_publish(p, 0), Err(ERR_WRONG_ETAG));
    assert_eq!(e.send_publish(publish(None, 60, 0), 0), Err(ERR_PUBLISH_NO_BODY));
    assert_eq!(
        e.send_publish(publish(None, 0, 0), 0),
        Err(SENT_NOTHING),
        "removing nothing is no error, but the caller must know no callback comes"
    );
    let mut p = publish(Some(PIDF), 60, 0);
    p.event = event::CONFERENCE;
    assert_eq!(e.send_publish(p, 0), Err(-1));
    let mut p = publish(Some("<presence"), 60, 0);
    p.id = "x".into();
    assert_eq!(e.send_publish(p, 0), Err(-1), "a body that is not XML is refused");
}

#[test]
fn publishes_of_one_record_are_serialised_and_collapse() {
    let mut e = engine();
    let eff = e.send_publish(publish(Some(PIDF), 3600, 1), 0).unwrap();
    let (k1, _) = sent(&eff);
    // Three changes while the initial PUBLISH is in flight: nothing is sent yet.
    for (i, basic) in ["closed", "open", "busy"].iter().enumerate() {
        assert_eq!(
            e.send_publish(publish(Some(&PIDF.replace("open", basic)), 3600, 10 + i as u64), 1).unwrap(),
            vec![]
        );
    }
    // The 200 stores the ETag; the latest change goes out with it.
    let eff = e.on_reply(k1, &ok("e1", 3600), 2);
    assert_eq!(notified(&eff), vec![1]);
    let (k2, req) = sent(&eff);
    assert_eq!(header(&req, "SIP-If-Match"), Some("e1"));
    assert!(String::from_utf8(req.body).unwrap().contains("busy"));
    // Every collapsed caller hears the final reply of the request that carried its change, once.
    let eff = e.on_reply(k2, &ok("e2", 3600), 3);
    assert_eq!(notified(&eff), vec![10, 11, 12]);
    assert!(e.on_reply(k2, &ok("e2", 3600), 3).is_empty(), "a reply is handled once");
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn a_412_republishes_the_full_body() {
    let mut e = engine();
    // A "forever" publication (expires -1): the timer keeps refreshing it.
    let (k, req) = sent(&e.send_publish(publish(Some(PIDF), -1, 1), 0).unwrap());
    assert_eq!(header(&req, "Expires"), Some("3601"), "default_expires + 1");
    e.on_reply(k, &ok("e1", 3600), 0);
    // A timer refresh (no body) gets 412: the server lost the state; publish it again.
    let (k, req) = sent(&e.tick(3550));
    assert!(req.body.is_empty());
    let eff = e.on_reply(k, &code(412), 3550);
    let (k, req) = sent(&eff);
    assert_eq!(header(&req, "SIP-If-Match"), None, "a fresh PUBLISH");
    assert_eq!(req.content_type, "application/pidf+xml");
    assert!(String::from_utf8(req.body).unwrap().contains(r#"<tuple id="0xtok1">"#), "the stored body, same tuple id");
    e.on_reply(k, &ok("e9", 3600), 3551);
    assert_eq!(e.records.all()[0].publ().unwrap().etag, "e9");

    // A caller's update that meets 412: its callback fires once, after the re-publish.
    let (k, _) = sent(&e.send_publish(publish(Some(PIDF), -1, 5), 3600).unwrap());
    let eff = e.on_reply(k, &code(412), 3600);
    assert!(notified(&eff).is_empty(), "not yet: the chain goes on");
    let (k, _) = sent(&eff);
    assert_eq!(notified(&e.on_reply(k, &ok("e10", 3600), 3600)), vec![5]);

    // RPC sources keep Kamailio's behaviour: no automatic re-publish.
    let mut p = publish(Some(PIDF), 3600, 6);
    p.id = "rpc".into();
    p.source_flag = source::RPC_ASYN_PUBLISH;
    let (k, _) = sent(&e.send_publish(p.clone(), 4000).unwrap());
    e.on_reply(k, &ok("r1", 3600), 4000);
    let (k, _) = sent(&e.send_publish(p, 4001).unwrap());
    let eff = e.on_reply(k, &code(412), 4001);
    assert!(eff.iter().all(|x| matches!(x, Effect::Notify { .. })), "{eff:?}");
    assert_eq!(e.records.all().len(), 1, "the RPC publication is gone");
}

#[test]
fn a_423_is_retried_with_min_expires() {
    let mut e = engine();
    let (k, _) = sent(&e.send_publish(publish(Some(PIDF), 60, 1), 0).unwrap());
    let eff = e.on_reply(k, &ReplyInfo { code: 423, min_expires: Some(1800), ..Default::default() }, 0);
    let (k, req) = sent(&eff);
    assert_eq!(header(&req, "Expires"), Some("1800"));
    assert!(!req.body.is_empty(), "the same body again");
    let eff = e.on_reply(k, &ok("e1", 1800), 1);
    assert_eq!(notified(&eff), vec![1]);
    assert_eq!(e.records.all()[0].expires, 1801);
    // A second 423 in a row ends the chain with a failure.
    let (k, _) = sent(&e.send_publish(publish(Some(PIDF), 60, 2), 10).unwrap());
    let (k, _) = sent(&e.on_reply(k, &ReplyInfo { code: 423, min_expires: Some(1800), ..Default::default() }, 10));
    let eff = e.on_reply(k, &ReplyInfo { code: 423, min_expires: Some(3600), ..Default::default() }, 10);
    assert_eq!(notified(&eff), vec![2]);
    assert!(e.records.all().is_empty(), "any other failure removes the record (Kamailio)");
}

#[test]
fn timeouts_change_nothing_failures_remove() {
    let mut e = engine();
    let (k, _) = sent(&e.send_publish(publish(Some(PIDF), 3600, 1), 0).unwrap());
    e.on_reply(k, &ok("e1", 3600), 0);
    let (k, _) = sent(&e.send_publish(publish(Some(PIDF), 3600, 2), 5).unwrap());
    let eff = e.on_reply(k, &ReplyInfo { code: 408, local: true, ..Default::default() }, 37);
    assert_eq!(notified(&eff), vec![2]);
    assert_eq!(e.records.all()[0].publ().unwrap().etag, "e1", "a local timeout leaves the record as it was");
    let (k, _) = sent(&e.send_publish(publish(Some(PIDF), 3600, 3), 40).unwrap());
    e.on_reply(k, &code(500), 40);
    assert!(e.records.all().is_empty());
}

#[test]
fn dialog_info_version_rewrite() {
    let mut cfg = Config::defaults();
    cfg.dlginfo_increase_version = true;
    let mut e = Engine::new(cfg, Events::with_defaults(true, false), MemoryStore::new(), || "t".to_string());
    let d = r#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="5" state="full" entity="sip:a@b"/>"#;
    let mut p = publish(Some(d), 60, 0);
    p.event = event::DIALOG;
    p.source_flag = source::DIALOG_PUBLISH;
    let (k, req) = sent(&e.send_publish(p.clone(), 0).unwrap());
    assert!(String::from_utf8(req.body).unwrap().contains(r#"version="0""#));
    e.on_reply(k, &ok("e", 60), 0);
    let (k, req) = sent(&e.send_publish(p.clone(), 1).unwrap());
    assert!(String::from_utf8(req.body).unwrap().contains(r#"version="1""#));
    e.on_reply(k, &ok("e2", 60), 1);
    let (_, req) = sent(&e.send_publish(p, 2).unwrap());
    assert!(String::from_utf8(req.body).unwrap().contains(r#"version="2""#));
}

fn subscribe(expires: i32, cb: u64) -> SubscribeInfo {
    SubscribeInfo {
        pres_uri: "sip:bob@example.com".into(),
        watcher_uri: "sip:alice@example.com".into(),
        contact: "sip:alice@192.0.2.1:5060".into(),
        event: event::PRESENCE,
        expires,
        source_flag: source::RPC_SUBSCRIBE,
        cb_param: cb,
        ..Default::default()
    }
}

fn dialog_key(call_id: &str, local: &str, remote: &str) -> UaRecord {
    UaRecord {
        call_id: call_id.into(),
        from_tag: local.into(),
        to_tag: remote.into(),
        flag: source::RPC_SUBSCRIBE,
        ..Default::default()
    }
}

#[test]
fn subscribe_dialog_refresh_481_and_unsubscribe() {
    let mut e = engine();
    let (k, req) = sent(&e.send_subscribe(subscribe(600, 1), 0).unwrap());
    assert_eq!(req.method, "SUBSCRIBE");
    assert_eq!(req.ruri, "sip:bob@example.com", "no remote target: the presentity");
    assert_eq!(header(&req, "Expires"), Some("610"), "SUBSCRIBE sends the request + 10");
    assert_eq!(header(&req, "Event"), Some("presence"));
    assert_eq!(header(&req, "Contact"), Some("<sip:alice@192.0.2.1:5060>"));
    assert!(
        req.extra_headers.starts_with("Event: presence\r\nContact: <sip:alice@192.0.2.1:5060>\r\nExpires: 610\r\n"),
        "Kamailio's order"
    );
    assert!(req.to_tag.is_empty() && req.route_set.is_empty());
    let (call_id, from_tag) = (req.call_id.clone(), req.from_tag.clone());
    // A NOTIFY before the 2xx matches the temporary dialog.
    assert_eq!(e.is_dialog(&dialog_key(&call_id, &from_tag, "srv")), 1);
    let reply = ReplyInfo {
        code: 200,
        expires: Some(300),
        to_tag: Some("srv".into()),
        contact: Some("<sip:bob@198.51.100.7:5070>".into()),
        record_route: vec!["<sip:p1.example;lr>".into(), "<sip:p2.example;lr>".into()],
        ..Default::default()
    };
    assert_eq!(notified(&e.on_reply(k, &reply, 0)), vec![1]);
    assert_eq!(e.is_dialog(&dialog_key(&call_id, &from_tag, "srv")), 0);
    assert_eq!(e.is_dialog(&dialog_key(&call_id, &from_tag, "other")), -1);

    // The refresh is in the dialog: remote target, reversed route set, CSeq + 1.
    let (k, req) = sent(&e.tick(250));
    assert_eq!(req.ruri, "sip:bob@198.51.100.7:5070");
    assert_eq!(header(&req, "Expires"), Some("360"), "desired (600) - now (250) + 10");
    assert_eq!(req.route_set, vec!["<sip:p2.example;lr>".to_string(), "<sip:p1.example;lr>".to_string()]);
    assert_eq!(
        (req.call_id.as_str(), req.from_tag.as_str(), req.to_tag.as_str(), req.cseq),
        (call_id.as_str(), from_tag.as_str(), "srv", 2)
    );
    // 481: the dialog is gone on the server; a new initial SUBSCRIBE goes to the remote target.
    let eff = e.on_reply(k, &code(481), 251);
    let (k, req) = sent(&eff);
    assert!(req.to_tag.is_empty() && req.call_id != call_id);
    assert_eq!(req.ruri, "sip:bob@198.51.100.7:5070");
    let reply = ReplyInfo {
        code: 202,
        expires: Some(600),
        to_tag: Some("s2".into()),
        contact: Some("<sip:bob@198.51.100.7:5070>".into()),
        ..Default::default()
    };
    e.on_reply(k, &reply, 252);
    assert!(!e.records.all()[0].is_temporary());

    // Asking again (pua.subscribe gives no remote target) refreshes the same dialog.
    let (k, req) = sent(&e.send_subscribe(subscribe(600, 2), 560).unwrap());
    assert_eq!(req.to_tag, "s2", "the existing dialog, not a new subscription");
    e.on_reply(k, &ReplyInfo { code: 200, expires: Some(600), ..Default::default() }, 560);
    // Unsubscribe: Expires 0 in the dialog; the 200 removes it.
    let (k, req) = sent(&e.send_subscribe(subscribe(0, 3), 570).unwrap());
    assert_eq!(header(&req, "Expires"), Some("0"));
    assert_eq!(req.to_tag, "s2");
    assert_eq!(
        notified(&e.on_reply(k, &ReplyInfo { code: 200, expires: Some(0), ..Default::default() }, 570)),
        vec![3]
    );
    assert!(e.records.all().is_empty());
}

#[test]
fn failed_initial_subscribe_and_timeouts() {
    let mut e = engine();
    let (k, _) = sent(&e.send_subscribe(subscribe(600, 1), 0).unwrap());
    e.on_reply(k, &code(403), 0);
    assert!(e.records.all().is_empty(), "a failed initial SUBSCRIBE leaves nothing");
    let (k, req) = sent(&e.send_subscribe(subscribe(600, 1), 0).unwrap());
    e.on_reply(
        k,
        &ReplyInfo {
            code: 200,
            expires: Some(300),
            to_tag: Some("t".into()),
            contact: Some("sip:b@h".into()),
            ..Default::default()
        },
        0,
    );
    // A refresh that times out starts over instead of dropping the subscription.
    let (k, _) = sent(&e.tick(250));
    let (_, again) = sent(&e.on_reply(k, &ReplyInfo { code: 408, local: true, ..Default::default() }, 282));
    assert!(again.to_tag.is_empty() && again.call_id != req.call_id);
}

#[test]
fn update_contact_and_lookups() {
    let mut e = engine();
    let mut s = subscribe(600, 1);
    s.id = "rls.list1".into();
    let (k, req) = sent(&e.send_subscribe(s, 0).unwrap());
    e.on_reply(
        k,
        &ReplyInfo {
            code: 200,
            expires: Some(600),
            to_tag: Some("r".into()),
            contact: Some("sip:b@h1".into()),
            ..Default::default()
        },
        0,
    );
    // NOTIFY: To-tag = our local tag, From-tag = the remote tag.
    assert!(e.update_contact(&req.call_id, &req.from_tag, "r", "<sip:b@h2:5080>"));
    assert!(!e.update_contact(&req.call_id, "r", &req.from_tag, "<sip:b@h3>"), "swapped tags do not match");
    assert_eq!(e.records.all()[0].subs().unwrap().remote_contact, "sip:b@h2:5080");
    assert_eq!(e.record_id(&dialog_key(&req.call_id, &req.from_tag, "r")), Some("rls.list1".into()));
    assert_eq!(e.subs_list("rls."), vec!["sip:bob@example.com".to_string()]);
    assert!(e.subs_list("other").is_empty());
}

/// RFC 6665 §4.1.2.4: the first NOTIFY may arrive before the SUBSCRIBE's 2xx (two receiver
/// threads, or reordering on the wire); `pua_update_contact()` matches the temporary dialog
/// instead of failing the route (which answered the NOTIFY 481 and lost the subscription).
#[test]
fn a_notify_before_the_2xx_matches_the_temporary_dialog() {
    let mut e = engine();
    let (k, req) = sent(&e.send_subscribe(subscribe(600, 1), 0).unwrap());
    let d = dialog_key(&req.call_id, &req.from_tag, "r");
    assert_eq!(e.is_dialog(&d), 1, "temporary until the 2xx");
    assert!(e.update_contact(&req.call_id, &req.from_tag, "r", "<sip:b@h1>"));
    assert_eq!(e.is_dialog(&d), 1, "still temporary: the 2xx establishes it");
    assert!(!e.update_contact("other-call", &req.from_tag, "r", "<sip:b@h1>"), "another dialog is not matched");
    e.on_reply(
        k,
        &ReplyInfo {
            code: 200,
            expires: Some(600),
            to_tag: Some("r".into()),
            contact: Some("sip:b@h1".into()),
            ..Default::default()
        },
        0,
    );
    assert_eq!(e.is_dialog(&d), 0);
    assert_eq!(e.records.all()[0].subs().unwrap().remote_contact, "sip:b@h1");
}

#[test]
fn xmpp_initial_subscriptions_are_stored_as_xmpp_subscribe() {
    let mut e = engine();
    let mut s = subscribe(600, 4);
    s.source_flag = source::XMPP_INITIAL_SUBS;
    let (k, _) = sent(&e.send_subscribe(s, 0).unwrap());
    assert_eq!(e.records.all()[0].flag, source::XMPP_SUBSCRIBE);
    let eff = e.on_reply(
        k,
        &ReplyInfo {
            code: 200,
            expires: Some(60),
            to_tag: Some("t".into()),
            contact: Some("sip:x@y".into()),
            ..Default::default()
        },
        0,
    );
    assert!(matches!(&eff[0], Effect::Notify { source_flag, .. } if *source_flag == source::XMPP_INITIAL_SUBS));
}

#[test]
fn expired_records_are_removed_when_not_wanted() {
    let mut e = engine();
    let (k, _) = sent(&e.send_publish(publish(Some(PIDF), 60, 1), 0).unwrap());
    e.on_reply(k, &ok("e1", 30), 0);
    // desired = 60 > expires (30) + 0: refreshed once, to reach what the caller asked for.
    let (eff, stats) = e.tick_with_stats(1);
    assert_eq!(stats, TickStats { refreshed: 1, late: 0, expired: 0 });
    let (k, req) = sent(&eff);
    assert_eq!(header(&req, "Expires"), Some("60"));
    e.on_reply(k, &ok("e2", 59), 1);
    // Now desired == expires: not refreshed; removed 10 s after it expired.
    assert!(e.tick(50).is_empty());
    assert_eq!(e.records.all().len(), 1);
    assert_eq!(e.tick_with_stats(71), (Vec::new(), TickStats { refreshed: 0, late: 0, expired: 1 }));
    assert!(e.records.all().is_empty());
}

#[test]
fn a_refresh_after_the_expiry_is_counted_late() {
    let mut e = engine();
    let (k, _) = sent(&e.send_publish(publish(Some(PIDF), -1, 1), 0).unwrap());
    e.on_reply(k, &ok("e1", 30), 0);
    // The pass came at 40 (the host was stalled): still refreshed, but late.
    let (eff, stats) = e.tick_with_stats(40);
    assert_eq!(stats, TickStats { refreshed: 1, late: 1, expired: 0 });
    assert_eq!(header(&sent(&eff).1, "SIP-If-Match"), Some("e1"));
}
