use super::*;

fn dialog() -> FfiDialog {
    FfiDialog {
        h_entry: 3,
        h_id: 7,
        call_id: "call-1".into(),
        from_uri: "sip:alice@ex.com".into(),
        from_tag: "ft".into(),
        to_uri: "sip:bob@ex.com".into(),
        to_tag: "tt".into(),
        req_uri: "sip:bob@192.0.2.9:5062".into(),
        caller_contact: "sip:alice@192.0.2.1".into(),
        callee_contact: "sip:bob@192.0.2.2".into(),
        state: 2,
        init_ts: 0x100,
        lifetime: 3600,
        ..Default::default()
    }
}

fn all_local(_: &str) -> bool {
    true
}

fn no_flag(_: u32) -> bool {
    false
}

#[test]
fn state_mapping() {
    let s = Settings::default();
    assert_eq!(s.states(cb::CREATED, None), (Some(State::Trying), None));
    assert_eq!(s.states(cb::EARLY, None), (Some(State::Early), Some(State::Early)));
    assert_eq!(s.states(cb::CONFIRMED_NA, None), (Some(State::Confirmed), Some(State::Confirmed)));
    assert_eq!(s.states(cb::REQ_WITHIN, Some("INFO")), (Some(State::Confirmed), Some(State::Confirmed)));
    assert_eq!(s.states(cb::REQ_WITHIN, Some("PRACK")), (None, None));
    assert_eq!(s.states(cb::REQ_WITHIN, Some("UPDATE")), (None, None));
    for k in [cb::FAILED, cb::TERMINATED, cb::EXPIRED] {
        assert_eq!(s.states(k, None), (Some(State::Terminated), Some(State::Terminated)));
    }
    assert_eq!(s.states(cb::CONFIRMED, None), (None, None), "the ACK publishes nothing");

    let s = Settings {
        caller_confirmed: true,
        callee_trying: true,
        publish_dialog_req_within: false,
        ..Default::default()
    };
    assert_eq!(s.states(cb::CREATED, None), (Some(State::Trying), Some(State::Trying)));
    assert_eq!(s.states(cb::EARLY, None), (Some(State::Confirmed), Some(State::Early)));
    assert_eq!(s.states(cb::REQ_WITHIN, Some("INFO")), (None, None));
}

#[test]
fn publishes_for_both_sides_with_one_id() {
    let s = Settings::default();
    let d = dialog();
    let p = s.publishes(cb::EARLY, None, &d, &Marks::default(), all_local, no_flag);
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].pres_uri, "sip:alice@ex.com");
    assert_eq!(p[1].pres_uri, "sip:bob@ex.com");
    assert_eq!(p[0].id, "DIALOG_PUBLISH.padi-100-3-7");
    assert_eq!(p[0].id, p[1].id, "caller and callee share the id");
    assert_eq!((p[0].flag, p[0].source_flag, p[0].event), (UPDATE_TYPE, source::DIALOG_PUBLISH, event::DIALOG));
    assert_eq!(p[0].content_type, "application/dialog-info+xml");
    assert_eq!(p[0].expires, 3600);

    let caller = p[0].body.as_deref().unwrap();
    assert!(caller.contains("entity=\"sip:alice@ex.com\""), "{caller}");
    assert!(
        caller.contains(
            "id=\"padi-100-3-7\" call-id=\"call-1\" local-tag=\"ft\" remote-tag=\"tt\" direction=\"initiator\""
        ),
        "{caller}"
    );
    assert!(caller.contains("<state>early</state>"), "{caller}");
    assert!(
        caller.contains(
            "<local>\n      <identity>sip:alice@ex.com</identity>\n      <target uri=\"sip:alice@192.0.2.1\"/>"
        ),
        "{caller}"
    );
    assert!(
        caller
            .contains("<remote>\n      <identity>sip:bob@ex.com</identity>\n      <target uri=\"sip:bob@192.0.2.2\"/>"),
        "{caller}"
    );
    let callee = p[1].body.as_deref().unwrap();
    assert!(callee.contains("local-tag=\"tt\" remote-tag=\"ft\" direction=\"recipient\""), "{callee}");
    assert!(
        callee.contains("<identity>sip:bob@ex.com</identity>\n      <target uri=\"sip:bob@192.0.2.2\"/>\n    </local>"),
        "{callee}"
    );

    let t = s.publishes(cb::TERMINATED, None, &d, &Marks::default(), all_local, no_flag);
    assert_eq!(t[0].expires, TERMINATED_EXPIRES);
    let body = t[0].body.as_deref().unwrap();
    assert!(body.contains("<state>terminated</state>") && !body.contains("local-tag"), "no tags after early: {body}");
}

#[test]
fn only_local_uris_publish() {
    let s = Settings::default();
    let d = dialog();
    let p = s.publishes(cb::CONFIRMED_NA, None, &d, &Marks::default(), |u| u.contains("alice"), no_flag);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].pres_uri, "sip:alice@ex.com");
    assert!(s.publishes(cb::CONFIRMED_NA, None, &d, &Marks::default(), |_| false, no_flag).is_empty());
}

#[test]
fn modparams_change_the_output() {
    let d = dialog();
    let s = Settings { include_tags: false, include_callid: false, include_localremote: false, ..Default::default() };
    let b = s.body(Side::Caller, State::Early, &d, &Marks::default());
    assert!(
        !b.contains("local-tag") && !b.contains("call-id") && !b.contains("<local>") && !b.contains("<remote>"),
        "{b}"
    );
    assert!(b.contains("<state>early</state>"), "{b}");

    let s = Settings { override_lifetime: 120, ..Default::default() };
    assert_eq!(s.expires(State::Confirmed, &d), 120);
    assert_eq!(s.expires(State::Terminated, &d), TERMINATED_EXPIRES);

    let s = Settings { include_req_uri: true, ..Default::default() };
    let p = s.publishes(cb::CONFIRMED_NA, None, &d, &Marks::default(), all_local, no_flag);
    assert_eq!(p[1].pres_uri, "sip:bob@192.0.2.9:5062");
    assert!(p[0].body.as_deref().unwrap().contains("<identity>sip:bob@192.0.2.9:5062</identity>"));

    let s = Settings { attribute_display: true, ..Default::default() };
    let b = s.body(Side::Caller, State::Confirmed, &d, &Marks::default());
    assert!(b.contains("<target display=\"bob\" uri=\"sip:bob@192.0.2.2\"/>"), "{b}");
}

#[test]
fn targets_fall_back_to_identities() {
    let d = FfiDialog { callee_contact: "".into(), caller_contact: "".into(), to_tag: "".into(), ..dialog() };
    let b = Settings::default().body(Side::Caller, State::Trying, &d, &Marks::default());
    assert!(b.contains("<target uri=\"sip:alice@ex.com\"/>") && b.contains("<target uri=\"sip:bob@ex.com\"/>"), "{b}");
    assert!(!b.contains("local-tag"), "{b}");
    assert_eq!(user_part("sip:bob@ex.com"), "bob");
    assert_eq!(user_part("sip:ex.com"), "");
}

#[test]
fn send_publish_flag_decides_at_created_and_skips_the_local_check() {
    let s = Settings { send_publish_flag: Some(3), ..Default::default() };
    assert!(s.keeps_marks());
    assert_eq!(s.marks(|_| false, |_| vec![]), None, "no flag on the INVITE: the dialog publishes nothing");
    let m = s.marks(|f| f == 3, |_| vec![]).expect("flagged");
    let p = s.publishes(cb::CREATED, None, &dialog(), &m, |_| false, no_flag);
    assert_eq!(p.len(), 1, "published although the URI is not local");
    assert!(!Settings::default().keeps_marks());
}

#[test]
fn disable_flags_stop_one_side() {
    let s = Settings {
        disable_caller_publish_flag: Some(4),
        disable_callee_publish_flag: Some(5),
        caller_entity_when_publish_disabled: Some("sip:queue@ex.com".into()),
        ..Default::default()
    };
    let d = dialog();
    let m = s.marks(|f| f == 4, |_| vec![]).unwrap();
    assert!(m.caller_disabled && !m.callee_disabled);
    let p = s.publishes(cb::EARLY, None, &d, &m, all_local, no_flag);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].pres_uri, "sip:bob@ex.com");
    let b = p[0].body.as_deref().unwrap();
    assert!(b.contains("<identity>sip:queue@ex.com</identity>"), "the disabled caller's stand-in: {b}");
    assert!(!b.contains("sip:alice@ex.com</identity>"), "{b}");

    // An in-dialog request with the callee's flag: no PUBLISH for the callee this time.
    let m = s.marks(|_| false, |_| vec![]).unwrap();
    let p = s.publishes(cb::REQ_WITHIN, Some("INFO"), &d, &m, all_local, |f| f == 5);
    assert_eq!(p.iter().map(|p| p.pres_uri.as_str()).collect::<Vec<_>>(), ["sip:alice@ex.com"]);
}

#[test]
fn pubruri_avps_publish_to_each_value() {
    let s = Settings { pubruri_avps: Some(("pa".into(), "pb".into())), ..Default::default() };
    let m = s
        .marks(no_flag, |name| match name {
            "pa" => vec!["sip:a1@ex.com".into(), "sip:a2@ex.com".into()],
            _ => vec![],
        })
        .unwrap();
    let p = s.publishes(cb::CONFIRMED_NA, None, &dialog(), &m, all_local, no_flag);
    assert_eq!(p.iter().map(|p| p.pres_uri.as_str()).collect::<Vec<_>>(), ["sip:a1@ex.com", "sip:a2@ex.com"]);
    assert!(p[0].body.as_deref().unwrap().contains("entity=\"sip:alice@ex.com\""), "the entity stays the caller");
    assert_eq!(avp_name("$avp(s:pubruri)"), "pubruri");
    assert_eq!(avp_name("$avp(x)"), "x");
    assert_eq!(avp_name("y"), "y");
}
