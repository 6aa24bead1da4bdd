//! Unit tests: checks (including hostile XML), aggregation with Kamailio's rules, the dummy
//! document and the pua_dialoginfo body.

use std::time::{Duration, Instant};

use super::*;

fn doc(entity: &str, dialogs: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"{NS}\" version=\"0\" state=\"full\" entity=\"{entity}\">{dialogs}</dialog-info>"
    )
}

fn dialog(id: &str, state: &str) -> String {
    format!("<dialog id=\"{id}\" direction=\"initiator\"><state>{state}</state></dialog>")
}

fn reparse(s: &str) -> Document<'_> {
    assert!(s.starts_with(XML_DECL), "{s}");
    let d = Document::parse(s).unwrap_or_else(|e| panic!("{e}: {s}"));
    assert!(d.root_element().has_tag_name((NS, "dialog-info")), "{s}");
    d
}

/// (id, state) of the dialogs of an aggregated document, all in the dialog-info namespace.
fn dialogs(s: &str) -> Vec<(String, String)> {
    let d = reparse(s);
    d.root_element()
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            assert!(n.has_tag_name((NS, "dialog")), "{s}");
            let state = n.children().find(|c| c.has_tag_name((NS, "state"))).map(text_content).unwrap_or_default();
            (n.attribute("id").unwrap_or_default().to_owned(), state)
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

const SINGLE: Options = Options { force_single_dialog: true, force_dummy_dialog: false };

// ---- checks ----

#[test]
fn check_accepts_dialog_info() {
    let l = Limits::default();
    assert_eq!(check(doc("sip:a@b", &dialog("d1", "early")).as_bytes(), &l), Ok(()));
    let prefixed = format!("<d:dialog-info xmlns:d=\"{NS}\" version=\"3\" state=\"partial\" entity=\"sip:a@b\"/>");
    assert_eq!(check(prefixed.as_bytes(), &l), Ok(()));
}

#[test]
fn check_refuses_wrong_root_and_missing_attributes() {
    let l = Limits::default();
    for bad in [
        "<dialog-info version=\"0\" state=\"full\" entity=\"sip:a@b\"/>".to_string(),
        "<dialog-info xmlns=\"urn:x\" version=\"0\" state=\"full\" entity=\"sip:a@b\"/>".to_string(),
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a@b\"/>".to_string(),
        format!("<dialog xmlns=\"{NS}\" id=\"x\"/>"),
    ] {
        let e = check(bad.as_bytes(), &l).unwrap_err();
        assert_eq!(e, DialogInfoError::NotDialogInfo, "{bad}");
        assert_eq!(e.sip_status(), 415);
    }
    for (attrs, missing) in [
        ("state=\"full\" entity=\"sip:a@b\"", "version"),
        ("version=\"0\" entity=\"sip:a@b\"", "state"),
        ("version=\"0\" state=\"full\"", "entity"),
    ] {
        let body = format!("<dialog-info xmlns=\"{NS}\" {attrs}/>");
        let e = check(body.as_bytes(), &l).unwrap_err();
        assert_eq!(e, DialogInfoError::MissingAttribute(missing));
        assert_eq!(e.sip_status(), 400);
        assert!(e.to_string().contains(missing));
    }
}

#[test]
fn check_refuses_malformed_large_and_not_utf8() {
    let l = Limits::default();
    for bad in ["", "<dialog-info", "<dialog-info xmlns='urn:ietf:params:xml:ns:dialog-info'><dialog>", "text"] {
        let e = check(bad.as_bytes(), &l).unwrap_err();
        assert!(matches!(e, DialogInfoError::Xml(PidfError::Malformed(_))), "{bad}: {e:?}");
        assert_eq!(e.sip_status(), 415);
    }
    assert_eq!(check(b"<a>\xff</a>", &l).unwrap_err().sip_status(), 415);
    let small = Limits { max_bytes: 10, ..l };
    let e = check(doc("sip:a@b", "").as_bytes(), &small).unwrap_err();
    assert_eq!(e.sip_status(), 413);
}

#[test]
fn check_refuses_hostile_xml_quickly() {
    let l = Limits::default();
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
         <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
         <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\
         <dialog-info xmlns=\"{NS}\" version=\"0\" state=\"full\" entity=\"sip:a@b\">&lol3;</dialog-info>"
    );
    let external = format!(
        "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><dialog-info xmlns=\"{NS}\" version=\"0\" state=\"full\" entity=\"&x;\"/>"
    );
    let deep = format!(
        "<dialog-info xmlns=\"{NS}\" version=\"0\" state=\"full\" entity=\"sip:a@b\">{}{}</dialog-info>",
        "<dialog>".repeat(100_000),
        "</dialog>".repeat(100_000)
    );
    let wide = doc("sip:a@b", &"<x/>".repeat(20_000));
    let big = Limits { max_bytes: usize::MAX, ..l };
    let t = Instant::now();
    assert_eq!(check(laughs.as_bytes(), &l), Err(DialogInfoError::Xml(PidfError::Dtd)));
    assert_eq!(check(external.as_bytes(), &l), Err(DialogInfoError::Xml(PidfError::Dtd)));
    let e = check(deep.as_bytes(), &big).unwrap_err();
    assert_eq!(e, DialogInfoError::Xml(PidfError::TooDeep(32)));
    assert_eq!(e.sip_status(), 400);
    assert_eq!(check(wide.as_bytes(), &big), Err(DialogInfoError::Xml(PidfError::TooManyNodes(10_000))));
    assert!(t.elapsed() < Duration::from_millis(500), "refused in {:?}", t.elapsed());
}

// ---- aggregation ----

#[test]
fn aggregate_puts_every_dialog_under_one_root() {
    let a = doc("sip:alice@x", &dialog("d1", "confirmed"));
    let b = doc("sip:alice@x", &format!("{}{}", dialog("d2", "early"), dialog("d3", "trying")));
    let out = aggregate("sip:alice@example.com", 7, &[&a, &b], Options::default()).unwrap();
    let d = reparse(&out);
    let root = d.root_element();
    assert_eq!(root.attribute("version"), Some("7"));
    assert_eq!(root.attribute("state"), Some("full"));
    assert_eq!(root.attribute("entity"), Some("sip:alice@example.com"));
    assert_eq!(dialogs(&out), pairs(&[("d1", "confirmed"), ("d2", "early"), ("d3", "trying")]));
    assert_eq!(check(out.as_bytes(), &Limits::default()), Ok(()));
}

#[test]
fn aggregate_keeps_extensions_and_namespaces() {
    // A prefixed source root, an extension namespace on the root, and a child in no namespace.
    let a = format!(
        "<d:dialog-info xmlns:d=\"{NS}\" xmlns:sa=\"urn:ietf:params:xml:ns:sa-dialog-info\" version=\"1\" state=\"full\" entity=\"sip:a@x\">\
         <d:dialog id=\"p1\"><d:state>confirmed</d:state><sa:appearance>1</sa:appearance></d:dialog><note>hi</note></d:dialog-info>"
    );
    let b = doc("sip:a@x", &dialog("d2", "early"));
    let out = aggregate("sip:a@x", 0, &[&a, &b], Options::default()).unwrap();
    let d = reparse(&out);
    let els: Vec<Node> = d.root_element().children().filter(|n| n.is_element()).collect();
    assert_eq!(els.len(), 3, "{out}");
    assert!(els[0].has_tag_name((NS, "dialog")), "{out}");
    let app = els[0].descendants().find(|n| n.has_tag_name("appearance")).unwrap();
    assert_eq!(app.tag_name().namespace(), Some("urn:ietf:params:xml:ns:sa-dialog-info"));
    assert_eq!(els[1].tag_name().name(), "note");
    assert!(els[1].tag_name().namespace().is_none_or(str::is_empty), "no-namespace child stays so: {out}");
    assert!(els[2].has_tag_name((NS, "dialog")));
    // The copied dialog's own text is byte for byte.
    assert!(out.contains(&dialog("d2", "early")), "{out}");
}

#[test]
fn aggregate_escapes_the_entity_and_skips_unparseable_documents() {
    let a = doc("sip:a@x", &dialog("d1", "early"));
    let out = aggregate("sip:a&b\"@x", 1, &["<broken", &a], Options::default()).unwrap();
    assert_eq!(reparse(&out).root_element().attribute("entity"), Some("sip:a&b\"@x"));
    assert_eq!(dialogs(&out), pairs(&[("d1", "early")]));
    assert_eq!(aggregate("sip:a@x", 1, &["<broken", "nope"], Options::default()), None);
}

#[test]
fn no_publications_give_no_body_or_the_dummy() {
    assert_eq!(aggregate("sip:a@x", 0, &[], Options::default()), None);
    assert_eq!(aggregate("sip:a@x", 0, &[], SINGLE), None);
    let dummy_opts = Options { force_single_dialog: false, force_dummy_dialog: true };
    let out = aggregate("sip:a@x", 4, &[], dummy_opts).unwrap();
    assert_eq!(out, dummy("sip:a@x", 4));
    assert_eq!(dialogs(&out), pairs(&[(DUMMY_DIALOG_ID, "terminated")]));
    let d = reparse(&out);
    let dl = d.root_element().first_element_child().unwrap();
    assert_eq!(dl.attribute("direction"), Some("recipient"));
    assert_eq!(d.root_element().attribute("version"), Some("4"));
    // With publications the dummy is not added.
    let a = doc("sip:a@x", &dialog("d1", "early"));
    assert_eq!(dialogs(&aggregate("sip:a@x", 0, &[&a], dummy_opts).unwrap()), pairs(&[("d1", "early")]));
}

#[test]
fn single_dialog_with_one_publication_keeps_all() {
    let a = doc("sip:a@x", &format!("{}{}", dialog("d1", "confirmed"), dialog("d2", "early")));
    assert_eq!(
        dialogs(&aggregate("sip:a@x", 0, &[&a], SINGLE).unwrap()),
        pairs(&[("d1", "confirmed"), ("d2", "early")])
    );
}

fn single(docs: &[String]) -> Vec<(String, String)> {
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    dialogs(&aggregate("sip:a@x", 0, &refs, SINGLE).expect("a winner"))
}

#[test]
fn single_dialog_priority_early_confirmed_proceeding_trying_terminated() {
    let p = |id: &str, st: &str| doc("sip:a@x", &dialog(id, st));
    assert_eq!(single(&[p("d1", "confirmed"), p("d2", "early")]), pairs(&[("d2", "early")]));
    assert_eq!(single(&[p("d2", "early"), p("d1", "confirmed")]), pairs(&[("d2", "early")]));
    assert_eq!(single(&[p("d1", "terminated"), p("d2", "confirmed")]), pairs(&[("d2", "confirmed")]));
    assert_eq!(single(&[p("d1", "trying"), p("d2", "proceeding")]), pairs(&[("d2", "proceeding")]));
    assert_eq!(single(&[p("d1", "trying"), p("d2", "terminated")]), pairs(&[("d1", "trying")]));
    assert_eq!(single(&[p("d1", "terminated"), p("d2", "terminated")]), pairs(&[("d2", "terminated")]));
    // States compare case-insensitively (pua_dialoginfo's "Trying").
    assert_eq!(single(&[p("d1", "Trying"), p("d2", "TERMINATED")]), pairs(&[("d1", "Trying")]));
    // The last candidate of a state wins.
    assert_eq!(single(&[p("d1", "early"), p("d2", "early")]), pairs(&[("d2", "early")]));
    // An unknown state is the winner only when nothing else is.
    assert_eq!(single(&[p("d1", "weird"), p("d2", "weird")]), pairs(&[("d2", "weird")]));
    assert_eq!(single(&[p("d1", "weird"), p("d2", "terminated")]), pairs(&[("d2", "terminated")]));
}

#[test]
fn single_dialog_skips_states_a_later_state_of_the_same_dialog_supersedes() {
    let p = |id: &str, st: &str| doc("sip:a@x", &dialog(id, st));
    // d1 confirmed, and also terminated (e.g. the caller's and callee's publications): the
    // confirmed one is not a candidate, the terminated one is.
    assert_eq!(single(&[p("d1", "confirmed"), p("D1", "terminated")]), pairs(&[("D1", "terminated")]));
    // early is superseded by confirmed of the same dialog, not by another dialog's.
    assert_eq!(single(&[p("d1", "early"), p("d1", "confirmed")]), pairs(&[("d1", "confirmed")]));
    assert_eq!(single(&[p("d1", "early"), p("d2", "confirmed")]), pairs(&[("d1", "early")]));
    // Kamailio sums: two early entries of one dialog reach confirmed's weight.
    assert_eq!(single(&[p("d1", "early"), p("d1", "early"), p("d2", "trying")]), pairs(&[("d2", "trying")]));
    // trying is superseded by proceeding.
    assert_eq!(single(&[p("d1", "trying"), p("d1", "proceeding")]), pairs(&[("d1", "proceeding")]));
}

#[test]
fn single_dialog_state_lookup_follows_libxml_quirks() {
    // A dialog without a state of its own takes its next sibling's (libxml's lookup walks on to
    // the following siblings); a dialog without id does not get the "latest state" check.
    let a = doc("sip:a@x", &format!("<dialog id=\"d1\"/>{}", dialog("d2", "terminated")));
    let b = doc("sip:a@x", "<dialog><state>confirmed</state></dialog>");
    let out = aggregate("sip:a@x", 0, &[&a, &b], SINGLE).unwrap();
    // b's dialog has no id and its publication saw no dialog with one: not a confirmed
    // candidate; the terminated d2 is the last terminated (d1 reads d2's state first).
    assert_eq!(dialogs(&out), pairs(&[("d2", "terminated")]));
}

#[test]
fn single_dialog_without_any_state_gives_no_body() {
    let a = doc("sip:a@x", "<dialog id=\"d1\"/>");
    let b = doc("sip:a@x", "<dialog id=\"d2\"/>");
    assert_eq!(aggregate("sip:a@x", 0, &[&a, &b], SINGLE), None);
    assert!(aggregate("sip:a@x", 0, &[&a, &b], Options::default()).is_some());
}

#[test]
fn single_dialog_is_linear_on_many_dialogs() {
    let many: String = (0..5000).map(|i| format!("<dialog id=\"d{i}\"/>")).collect();
    let a = doc("sip:a@x", &many);
    let b = doc("sip:a@x", &many);
    let t = Instant::now();
    assert_eq!(aggregate("sip:a@x", 0, &[&a, &b], SINGLE), None);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

// ---- the published body ----

#[test]
fn build_writes_pua_dialoginfo_bodies() {
    let d = Dialog {
        id: "padi-1".into(),
        call_id: Some("call&1".into()),
        local_tag: Some("lt".into()),
        remote_tag: Some("rt".into()),
        direction: Some(Direction::Initiator),
        state: State::Early,
        local: Some(Participant {
            identity: "sip:alice@ex.com".into(),
            identity_display: None,
            target: Some("sip:alice@5.6.7.8".into()),
            target_display: None,
        }),
        remote: Some(Participant {
            identity: "sip:bob@ex.com".into(),
            identity_display: Some("Bob <B>".into()),
            target: Some("sip:bob@1.2.3.4".into()),
            target_display: Some("bob".into()),
        }),
    };
    let out = build("sip:alice@ex.com", 0, Some(&d));
    assert_eq!(check(out.as_bytes(), &Limits::default()), Ok(()));
    let doc = reparse(&out);
    let root = doc.root_element();
    assert_eq!((root.attribute("version"), root.attribute("state")), (Some("0"), Some("full")));
    assert_eq!(root.attribute("entity"), Some("sip:alice@ex.com"));
    let dl = root.first_element_child().unwrap();
    assert!(dl.has_tag_name((NS, "dialog")));
    for (a, v) in
        [("id", "padi-1"), ("call-id", "call&1"), ("local-tag", "lt"), ("remote-tag", "rt"), ("direction", "initiator")]
    {
        assert_eq!(dl.attribute(a), Some(v), "{a}: {out}");
    }
    let names: Vec<&str> = dl.children().filter(|n| n.is_element()).map(|n| n.tag_name().name()).collect();
    assert_eq!(names, ["state", "local", "remote"]);
    assert_eq!(text_content(dl.first_element_child().unwrap()), "early");
    let remote = dl.children().find(|n| named(*n, "remote")).unwrap();
    let identity = remote.first_element_child().unwrap();
    assert_eq!((text_content(identity).as_str(), identity.attribute("display")), ("sip:bob@ex.com", Some("Bob <B>")));
    let target = remote.children().find(|n| named(*n, "target")).unwrap();
    assert_eq!((target.attribute("uri"), target.attribute("display")), (Some("sip:bob@1.2.3.4"), Some("bob")));
    // Aggregating published bodies gives them back.
    assert_eq!(
        dialogs(&aggregate("sip:alice@ex.com", 1, &[&out], Options::default()).unwrap()),
        pairs(&[("padi-1", "early")])
    );
}

#[test]
fn build_leaves_out_what_is_not_included() {
    let d = Dialog {
        id: "x".into(),
        call_id: None,
        local_tag: None,
        remote_tag: None,
        direction: Some(Direction::Recipient),
        state: State::Terminated,
        local: None,
        remote: Some(Participant { identity: "sip:c@x".into(), ..Participant::default() }),
    };
    let out = build("sip:b@x", 3, Some(&d));
    assert!(!out.contains("call-id") && !out.contains("local-tag") && !out.contains("<local>"), "{out}");
    assert!(!out.contains("<target"), "{out}");
    assert_eq!(dialogs(&out), pairs(&[("x", "terminated")]));
    let empty = build("sip:b@x", 0, None);
    assert_eq!(check(empty.as_bytes(), &Limits::default()), Ok(()));
    assert_eq!(dialogs(&empty), Vec::new());
}

#[test]
fn states_and_directions() {
    for s in [State::Trying, State::Proceeding, State::Early, State::Confirmed, State::Terminated] {
        assert_eq!(State::parse(s.as_str()), Some(s));
        assert_eq!(s.as_str(), s.as_str().to_ascii_lowercase());
    }
    assert_eq!(State::parse("Trying"), Some(State::Trying));
    assert_eq!(State::parse("ringing"), None);
    assert_eq!(Direction::Initiator.as_str(), "initiator");
    assert_eq!(Direction::Recipient.as_str(), "recipient");
}
