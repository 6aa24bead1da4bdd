use super::*;
use chrono::TimeZone;

const ALICE: Watcher = Watcher { uri: "sip:alice@example.com", from_domain: "example.com" };

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()
}

fn doc(rules: &str) -> Rules {
    let text = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy">{rules}</cr:ruleset>"#
    );
    Rules::parse(&text).unwrap()
}

fn rule(id: &str, cond: &str, sh: &str, tr: &str) -> String {
    let actions = if sh.is_empty() {
        String::new()
    } else {
        format!("<cr:actions><sub-handling>{sh}</sub-handling></cr:actions>")
    };
    let tr = if tr.is_empty() { String::new() } else { format!("<cr:transformations>{tr}</cr:transformations>") };
    format!(r#"<cr:rule id="{id}"><cr:conditions>{cond}</cr:conditions>{actions}{tr}</cr:rule>"#)
}

fn one(uri: &str) -> String {
    format!(r#"<cr:identity><cr:one id="{uri}"/></cr:identity>"#)
}

fn eval(r: &Rules, w: &Watcher, mode: Mode) -> Decision {
    r.evaluate(w, None, now(), mode, false)
}

fn sh(r: &Rules, w: &Watcher, mode: Mode) -> Option<SubHandling> {
    eval(r, w, mode).sub_handling
}

// ---------------------------------------------------------------- parsing

#[test]
fn parse_stores_rule_parts() {
    let r = doc(&rule(
        "a",
        r#"<cr:identity><cr:one id="sip:x@y"/><cr:many domain="d"><cr:except id="sip:z@d"/></cr:many></cr:identity>
           <cr:sphere value="work"/><cr:validity><cr:from>2024-01-01T00:00:00Z</cr:from><cr:until>bogus</cr:until></cr:validity>"#,
        "allow",
        "<provide-services><all-services/></provide-services><provide-persons>FALSE</provide-persons>\
         <provide-devices><deviceID>urn:x</deviceID><class>c</class></provide-devices>\
         <provide-activities>true</provide-activities><provide-mood>false</provide-mood>\
         <provide-user-input>bare</provide-user-input><provide-all-attributes/>\
         <provide-unknown-attribute ns=\"urn:x\" name=\"y\">true</provide-unknown-attribute>",
    ));
    let rl = &r.rules()[0];
    assert_eq!(rl.id.as_deref(), Some("a"));
    assert!(rl.is_rule);
    assert_eq!(rl.sub_handling.as_deref(), Some("allow"));
    let c = rl.conditions.as_ref().unwrap();
    assert_eq!(c.identities[0].ones, vec![Some("sip:x@y".to_string())]);
    assert_eq!(c.identities[0].manys[0].domain.as_deref(), Some("d"));
    assert_eq!(c.identities[0].manys[0].excepts[0].id.as_deref(), Some("sip:z@d"));
    assert_eq!(c.spheres[0].value.as_deref(), Some("work"));
    assert!(c.validities[0].parse_error);
    assert!(c.validities[0].bounds[0].at.is_some());
    let t = rl.transformations.as_ref().unwrap();
    assert_eq!(t.services, Some(Provide::All));
    assert_eq!(t.persons, Some(Provide::Bool(false)));
    assert_eq!(t.devices, Some(Provide::List(vec![Selector::DeviceId("urn:x".into()), Selector::Class("c".into())])));
    assert_eq!(t.attributes, vec!["activities".to_string()]);
    assert_eq!(t.user_input, Some(UserInput::Bare));
    assert!(t.all_attributes);
    assert_eq!(t.unknown_attributes, vec![("urn:x".into(), "y".into())]);
    assert_eq!(t.raw.len(), 8);
}

#[test]
fn parse_rejects_non_ruleset() {
    for bad in
        [r#"<ruleset/>"#, r#"<ruleset xmlns="urn:other"/>"#, r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"/>"#]
    {
        assert_eq!(Rules::parse(bad), Err(RulesError::NotRuleset), "{bad}");
    }
}

#[test]
fn parse_rejects_malformed_without_panic() {
    for bad in [
        "",
        "not xml",
        "<ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\">",
        "<a></b>",
        "\u{0}\u{1}<<<>>>",
        "<x y='1' y='2'/>",
        "<p:ruleset/>",
    ] {
        assert!(matches!(Rules::parse(bad), Err(RulesError::Xml(_))), "{bad:?}");
    }
}

#[test]
fn parse_refuses_dtd_and_entities() {
    let lol = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<ruleset xmlns="urn:ietf:params:xml:ns:common-policy">&lol2;</ruleset>"#;
    assert!(matches!(Rules::parse(lol), Err(RulesError::Xml(_))));
    let ext = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><ruleset xmlns="urn:ietf:params:xml:ns:common-policy">&x;</ruleset>"#;
    assert!(matches!(Rules::parse(ext), Err(RulesError::Xml(_))));
}

#[test]
fn parse_refuses_deep_nesting_and_oversize_quickly() {
    let t = std::time::Instant::now();
    let ns = "urn:ietf:params:xml:ns:common-policy";
    let deep = format!("<ruleset xmlns=\"{ns}\">{}{}</ruleset>", "<a>".repeat(100), "</a>".repeat(100));
    assert_eq!(Rules::parse(&deep), Err(RulesError::TooDeep));
    let huge = format!("<ruleset xmlns=\"{ns}\">{}{}</ruleset>", "<a>".repeat(100_000), "</a>".repeat(100_000));
    assert!(matches!(Rules::parse(&huge), Err(RulesError::Xml(_))));
    let big = format!("<ruleset xmlns=\"{ns}\">{}</ruleset>", " ".repeat(MAX_DOCUMENT_BYTES));
    assert!(matches!(Rules::parse(&big), Err(RulesError::TooLarge(_))));
    let wide = format!("<ruleset xmlns=\"{ns}\">{}</ruleset>", "<a/>".repeat(60_000));
    assert!(matches!(Rules::parse(&wide), Err(RulesError::Xml(_))));
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
}

// ------------------------------------------------------ identity conditions

#[test]
fn one_id_exact_case_sensitive_both_modes() {
    let r = doc(&rule("a", &one("sip:alice@example.com"), "allow", ""));
    let upper = Watcher { uri: "sip:Alice@example.com", ..ALICE };
    for m in [Mode::Kamailio, Mode::Rfc] {
        assert_eq!(sh(&r, &ALICE, m), Some(SubHandling::Allow));
        assert_eq!(sh(&r, &upper, m), None);
    }
}

#[test]
fn kamailio_one_without_id_aborts() {
    let r =
        doc(&(rule("a", "<cr:identity><cr:one/></cr:identity>", "allow", "")
            + &rule("b", &one(ALICE.uri), "allow", "")));
    let d = eval(&r, &ALICE, Mode::Kamailio);
    assert_eq!(d.fault, Some(Fault::OneWithoutId { rule: 0 }));
    assert_eq!(d.rule, None);
    assert_eq!(eval(&r, &ALICE, Mode::Rfc).matched, vec![1]);
}

#[test]
fn kamailio_many_domain_lax_compare() {
    assert!(!kamailio_many_domain_mismatch("example.com", "example.com"));
    assert!(!kamailio_many_domain_mismatch("example.com", "attacker.or")); // same length
    assert!(!kamailio_many_domain_mismatch("example.com", "exam")); // From is a prefix
    assert!(kamailio_many_domain_mismatch("example.com", "example.comx"));
    assert!(kamailio_many_domain_mismatch("example.com", "other.org"));
    let r = doc(&rule("a", r#"<cr:identity><cr:many domain="example.com"/></cr:identity>"#, "allow", ""));
    let evil = Watcher { uri: "sip:eve@attacker.or", from_domain: "attacker.or" };
    assert_eq!(sh(&r, &evil, Mode::Kamailio), Some(SubHandling::Allow));
    assert_eq!(sh(&r, &evil, Mode::Rfc), None);
    // Kamailio uses the From domain, RFC the watcher URI's domain (any case).
    let w = Watcher { uri: "sip:bob@EXAMPLE.COM;transport=tcp", from_domain: "other.org" };
    assert_eq!(sh(&r, &w, Mode::Kamailio), None);
    assert_eq!(sh(&r, &w, Mode::Rfc), Some(SubHandling::Allow));
}

#[test]
fn many_without_domain_matches_everyone() {
    let r = doc(&rule("a", "<cr:identity><cr:many/></cr:identity>", "confirm", ""));
    for m in [Mode::Kamailio, Mode::Rfc] {
        assert_eq!(sh(&r, &ALICE, m), Some(SubHandling::Confirm));
    }
}

#[test]
fn except_id_kamailio_off_by_one_vs_rfc() {
    assert!(!kamailio_except_id_matches("sip:alice@example.com", "sip:alice@example.com"));
    assert!(kamailio_except_id_matches("sip:alice@example.comX", "sip:alice@example.com"));
    assert!(!kamailio_except_id_matches("", ""));
    let r = doc(&rule(
        "a",
        r#"<cr:identity><cr:many><cr:except id="sip:alice@example.com"/></cr:many></cr:identity>"#,
        "allow",
        "",
    ));
    assert_eq!(sh(&r, &ALICE, Mode::Kamailio), Some(SubHandling::Allow));
    assert_eq!(sh(&r, &ALICE, Mode::Rfc), None);
    let r = doc(&rule(
        "a",
        r#"<cr:identity><cr:many><cr:except id="sip:alice@example.com!"/></cr:many></cr:identity>"#,
        "allow",
        "",
    ));
    assert_eq!(sh(&r, &ALICE, Mode::Kamailio), None);
    assert_eq!(sh(&r, &ALICE, Mode::Rfc), Some(SubHandling::Allow));
}

#[test]
fn except_domain_excludes() {
    let r = doc(&rule(
        "a",
        r#"<cr:identity><cr:many><cr:except domain="example.com"/></cr:many></cr:identity>"#,
        "allow",
        "",
    ));
    for m in [Mode::Kamailio, Mode::Rfc] {
        assert_eq!(sh(&r, &ALICE, m), None);
    }
    let bob = Watcher { uri: "sip:bob@Example.COM", from_domain: "Example.COM" };
    assert_eq!(sh(&r, &bob, Mode::Kamailio), Some(SubHandling::Allow)); // case-sensitive
    assert_eq!(sh(&r, &bob, Mode::Rfc), None); // case-insensitive
}

#[test]
fn kamailio_excluded_many_cancels_one_match() {
    let r = doc(&rule(
        "a",
        r#"<cr:identity><cr:one id="sip:alice@example.com"/><cr:many><cr:except domain="example.com"/></cr:many></cr:identity>"#,
        "allow",
        "",
    ));
    assert_eq!(sh(&r, &ALICE, Mode::Kamailio), None);
    assert_eq!(sh(&r, &ALICE, Mode::Rfc), Some(SubHandling::Allow));
}

#[test]
fn missing_identity_skipped_in_kamailio_matches_all_in_rfc() {
    let r = doc(&(rule("a", "", "block", "") + &rule("b", &one(ALICE.uri), "allow", "")));
    assert_eq!(eval(&r, &ALICE, Mode::Kamailio).rule, Some(1));
    let d = eval(&r, &ALICE, Mode::Rfc);
    assert_eq!(d.matched, vec![0, 1]);
    assert_eq!(d.sub_handling, Some(SubHandling::Allow));
}

// -------------------------------------------------------------- combination

#[test]
fn kamailio_first_match_vs_rfc_maximum() {
    let r = doc(&(rule("a", &one(ALICE.uri), "confirm", "")
        + &rule("b", "<cr:identity><cr:many/></cr:identity>", "polite-block", "")
        + &rule("c", &one(ALICE.uri), "block", "")));
    let k = eval(&r, &ALICE, Mode::Kamailio);
    assert_eq!((k.rule, k.sub_handling), (Some(0), Some(SubHandling::Confirm)));
    let f = eval(&r, &ALICE, Mode::Rfc);
    assert_eq!(f.matched, vec![0, 1, 2]);
    assert_eq!(f.sub_handling, Some(SubHandling::PoliteBlock));
}

#[test]
fn kamailio_missing_conditions_or_comment_aborts() {
    let ok = rule("b", &one(ALICE.uri), "allow", "");
    let r = doc(&(r#"<cr:rule id="a"><cr:actions/></cr:rule>"#.to_string() + &ok));
    let d = eval(&r, &ALICE, Mode::Kamailio);
    assert_eq!(d.fault, Some(Fault::MissingConditions { rule: 0 }));
    assert_eq!(d.sub_handling, None);
    // RFC: a rule without conditions matches everyone (it has no sub-handling here).
    assert_eq!(eval(&r, &ALICE, Mode::Rfc).matched, vec![0, 1]);
    let r = doc(&format!("<!-- note -->{ok}"));
    assert_eq!(eval(&r, &ALICE, Mode::Kamailio).fault, Some(Fault::MissingConditions { rule: 0 }));
    assert_eq!(sh(&r, &ALICE, Mode::Rfc), Some(SubHandling::Allow));
}

#[test]
fn sub_handling_parsing_per_mode() {
    let r = doc(&rule("a", &one(ALICE.uri), "allowed", ""));
    assert_eq!(sh(&r, &ALICE, Mode::Kamailio), Some(SubHandling::Allow));
    assert_eq!(sh(&r, &ALICE, Mode::Rfc), None);
    let r = doc(&rule("a", &one(ALICE.uri), " allow ", ""));
    let d = eval(&r, &ALICE, Mode::Kamailio);
    assert!(d.is_error());
    assert_eq!(sh(&r, &ALICE, Mode::Rfc), Some(SubHandling::Allow));
    assert_eq!(SubHandling::from_kamailio("polite-block"), Some(SubHandling::PoliteBlock));
    assert!(SubHandling::Block < SubHandling::Confirm && SubHandling::PoliteBlock < SubHandling::Allow);
}

#[test]
fn rfc_rule_without_sub_handling_contributes_nothing() {
    let r = doc(&(rule("a", &one(ALICE.uri), "", "") + &rule("b", &one(ALICE.uri), "confirm", "")));
    let d = eval(&r, &ALICE, Mode::Rfc);
    assert_eq!((d.matched.len(), d.sub_handling), (2, Some(SubHandling::Confirm)));
    let k = eval(&r, &ALICE, Mode::Kamailio);
    assert_eq!((k.rule, k.sub_handling), (Some(0), None));
}

// ------------------------------------------------------ sphere and validity

#[test]
fn sphere_condition_per_mode() {
    let r =
        doc(&rule("a", &(r#"<cr:sphere value="work">work</cr:sphere>"#.to_string() + &one(ALICE.uri)), "allow", ""));
    let k = |s, check| r.evaluate(&ALICE, s, now(), Mode::Kamailio, check).sub_handling;
    let f = |s| r.evaluate(&ALICE, s, now(), Mode::Rfc, false).sub_handling;
    assert_eq!(k(Some("home"), false), Some(SubHandling::Allow)); // check disabled
    assert_eq!(k(None, true), Some(SubHandling::Allow)); // no presentity sphere
    assert_eq!(k(Some("WORK"), true), Some(SubHandling::Allow));
    assert_eq!(k(Some("home"), true), None);
    assert_eq!(f(Some("Work")), Some(SubHandling::Allow));
    assert_eq!(f(Some("home")), None);
    assert_eq!(f(None), None);
    // Kamailio compares the text content, not the value attribute.
    let r = doc(&rule("a", &(r#"<cr:sphere value="work"/>"#.to_string() + &one(ALICE.uri)), "allow", ""));
    assert_eq!(r.evaluate(&ALICE, Some("work"), now(), Mode::Kamailio, true).sub_handling, None);
    assert_eq!(r.evaluate(&ALICE, Some("work"), now(), Mode::Rfc, true).sub_handling, Some(SubHandling::Allow));
}

fn validity(from: &str, until: &str) -> String {
    format!("<cr:validity><cr:from>{from}</cr:from><cr:until>{until}</cr:until></cr:validity>")
}

#[test]
fn validity_window_both_modes() {
    let inside = validity("2024-01-01T00:00:00Z", "2024-12-31T23:59:59+02:00");
    let before = validity("2025-01-01T00:00:00", "2025-02-01T00:00:00");
    let after = validity("2023-01-01T00:00:00.5Z", "2023-02-01T00:00:00Z");
    for m in [Mode::Kamailio, Mode::Rfc] {
        let ok = doc(&rule("a", &(inside.clone() + &one(ALICE.uri)), "allow", ""));
        assert_eq!(sh(&ok, &ALICE, m), Some(SubHandling::Allow));
        for v in [&before, &after] {
            let no = doc(&rule("a", &(v.clone() + &one(ALICE.uri)), "allow", ""));
            assert_eq!(sh(&no, &ALICE, m), None, "{v}");
        }
    }
}

#[test]
fn validity_parse_error_aborts_kamailio_only() {
    let bad = validity("yesterday", "2030-01-01T00:00:00Z");
    let r = doc(&(rule("a", &(bad + &one(ALICE.uri)), "block", "") + &rule("b", &one(ALICE.uri), "allow", "")));
    let d = eval(&r, &ALICE, Mode::Kamailio);
    assert_eq!((d.fault, d.rule), (Some(Fault::BadValidity { rule: 0 }), None));
    assert_eq!(eval(&r, &ALICE, Mode::Rfc).matched, vec![1]);
    let no_until = "<cr:validity><cr:from>2024-01-01T00:00:00Z</cr:from></cr:validity>";
    let r = doc(&rule("a", &(no_until.to_string() + &one(ALICE.uri)), "allow", ""));
    assert_eq!(eval(&r, &ALICE, Mode::Kamailio).fault, Some(Fault::BadValidity { rule: 0 }));
    let pre_epoch = validity("1960-01-01T00:00:00Z", "2030-01-01T00:00:00Z");
    let r = doc(&rule("a", &(pre_epoch + &one(ALICE.uri)), "allow", ""));
    assert_eq!(eval(&r, &ALICE, Mode::Kamailio).fault, Some(Fault::BadValidity { rule: 0 }));
    assert_eq!(sh(&r, &ALICE, Mode::Rfc), Some(SubHandling::Allow));
}

#[test]
fn kamailio_validity_flag_is_sticky_across_rules() {
    let inside = validity("2024-01-01T00:00:00Z", "2024-12-31T00:00:00Z");
    let expired = validity("2020-01-01T00:00:00Z", "2020-02-01T00:00:00Z");
    let r = doc(&(rule("a", &(inside + &one("sip:nobody@x")), "block", "")
        + &rule("b", &(expired + &one(ALICE.uri)), "allow", "")));
    assert_eq!(eval(&r, &ALICE, Mode::Kamailio).rule, Some(1));
    assert_eq!(eval(&r, &ALICE, Mode::Rfc).rule, None);
}

// ------------------------------------------------------- subscription state

#[test]
fn subscription_state_mapping() {
    let d = |mode, sub_handling, matched: Vec<usize>| Decision {
        mode,
        sub_handling,
        rule: matched.first().copied(),
        matched,
        fault: None,
    };
    let st = |dec: &Decision, has, prev| subscription_state(dec, has, prev, "probation");
    for m in [Mode::Kamailio, Mode::Rfc] {
        let m1 = |s| d(m, s, vec![0]);
        assert_eq!(
            st(&m1(Some(SubHandling::Block)), true, Status::Active),
            (Status::Terminated, Some("rejected".into()))
        );
        assert_eq!(st(&m1(Some(SubHandling::Confirm)), true, Status::Active), (Status::Pending, None));
        assert_eq!(
            st(&m1(Some(SubHandling::PoliteBlock)), true, Status::Pending),
            (Status::Active, Some("polite-block".into()))
        );
        assert_eq!(st(&m1(Some(SubHandling::Allow)), true, Status::Pending), (Status::Active, None));
        assert_eq!(st(&m1(None), true, Status::Active), (Status::Pending, None));
        assert_eq!(st(&d(m, None, vec![]), false, Status::Active), (Status::Pending, None));
        assert_eq!(st(&d(m, None, vec![]), true, Status::Pending), (Status::Pending, None));
    }
    assert_eq!(
        st(&d(Mode::Kamailio, None, vec![]), true, Status::Active),
        (Status::Terminated, Some("probation".into()))
    );
    assert_eq!(st(&d(Mode::Rfc, None, vec![]), true, Status::Active), (Status::Pending, None));
    assert_eq!(Status::Waiting as u8, 4);
}

// ---------------------------------------------------------- transformations

const PIDF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" xmlns:c="urn:ietf:params:xml:ns:pidf:cipid" entity="sip:p@example.com">
  <tuple id="t1"><status><basic>open</basic></status><contact>sip:p@10.0.0.1</contact><rpid:class>work</rpid:class><note>busy</note></tuple>
  <tuple id="t2"><status><basic>open</basic></status><contact>im:p@example.com</contact></tuple>
  <note>root note</note>
  <dm:person id="p1"><rpid:activities><rpid:meeting/></rpid:activities><rpid:mood><rpid:happy/></rpid:mood><rpid:user-input idle-threshold="600" last-input="2024-01-01T00:00:00Z">idle</rpid:user-input><dm:note>hi</dm:note><c:homepage>http://x</c:homepage></dm:person>
  <dm:device id="d1"><dm:deviceID>urn:device:1</dm:deviceID><rpid:class>mobile</rpid:class></dm:device>
</presence>"#;

fn ids(body: &str) -> Vec<String> {
    let d = Document::parse(body).unwrap();
    d.descendants()
        .filter(|n| n.is_element() && n.parent().is_some_and(|p| p == d.root_element()))
        .map(|n| n.attribute("id").map_or(n.tag_name().name().to_string(), str::to_string))
        .collect()
}

fn tr(rules: &Rules, mode: Mode) -> String {
    let d = eval(rules, &ALICE, mode);
    rules.transform(&d, PIDF, mode).unwrap().body
}

fn with_tr(t: &str) -> Rules {
    doc(&rule("a", &one(ALICE.uri), "allow", t))
}

#[test]
fn kamailio_no_match_or_no_transformations_unchanged() {
    let r = doc(&rule("a", &one("sip:other@x"), "allow", ""));
    assert_eq!(tr(&r, Mode::Kamailio), PIDF);
    let r = with_tr("");
    assert_eq!(tr(&r, Mode::Kamailio), PIDF);
    let d = eval(&r, &ALICE, Mode::Kamailio);
    assert!(matches!(r.transform(&d, "<broken", Mode::Kamailio), Err(RulesError::Xml(_))));
    let nomatch = eval(&doc(&rule("a", &one("sip:o@x"), "allow", "")), &ALICE, Mode::Kamailio);
    assert_eq!(r.transform(&nomatch, "<broken", Mode::Kamailio).unwrap().body, "<broken");
}

#[test]
fn kamailio_false_true_text() {
    let out = tr(&with_tr("<provide-services>FALSE</provide-services>"), Mode::Kamailio);
    assert_eq!(ids(&out), vec!["note", "p1", "d1"]);
    assert!(out.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#));
    let out = tr(&with_tr("<provide-persons>false</provide-persons>"), Mode::Kamailio);
    assert_eq!(ids(&out), vec!["t1", "t2", "note", "d1"]);
    assert_eq!(tr(&with_tr("<provide-services>TRUE</provide-services>"), Mode::Kamailio), PIDF);
}

#[test]
fn kamailio_selectors() {
    let cases = [
        ("<all-services/>", vec!["t1", "t2"]),
        ("<class>WORK</class>", vec!["t1"]),
        ("<occurrence-id>T2</occurrence-id>", vec!["t2"]),
        ("<service-uri>SIP:p@10.0.0.1</service-uri>", vec!["t1"]),
        ("<service-uri-scheme>IM</service-uri-scheme>", vec!["t2"]),
        ("<class>none</class>", vec![]),
    ];
    for (sel, want) in cases {
        let out = tr(&with_tr(&format!("<provide-services>{sel}</provide-services>")), Mode::Kamailio);
        let mut want: Vec<&str> = want;
        want.extend(["note", "p1", "d1"]);
        assert_eq!(ids(&out), want, "{sel}");
    }
}

#[test]
fn kamailio_quirks_devices_noop_and_sibling_walk() {
    // provide-devices looks for <devices>: nothing happens.
    let out = tr(&with_tr("<provide-devices>FALSE</provide-devices>"), Mode::Kamailio);
    assert_eq!(out, PIDF);
    // The walk stops at the first sibling with another name.
    let pidf = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="a"/><note/><tuple id="b"/></presence>"#;
    let r = with_tr("<provide-services><occurrence-id>x</occurrence-id></provide-services>");
    let d = eval(&r, &ALICE, Mode::Kamailio);
    let out = r.transform(&d, pidf, Mode::Kamailio).unwrap();
    assert_eq!(out.body, r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><note/><tuple id="b"/></presence>"#);
    // A tuple without <class> borrows the next tuple's class.
    let pidf = r#"<presence><tuple id="a"/><tuple id="b"><class>x</class></tuple></presence>"#;
    let r = with_tr("<provide-services><class>x</class></provide-services>");
    let out = r.transform(&d, pidf, Mode::Kamailio).unwrap();
    assert_eq!(out.removed, 0);
    // Other provide-XYZ act generically on the first XYZ element.
    let out = tr(&with_tr("<provide-activities>false</provide-activities>"), Mode::Kamailio);
    assert!(!out.contains("activities") && out.contains("rpid:mood"));
}

#[test]
fn rfc_no_match_gives_empty_root() {
    let r = doc(&rule("a", &one("sip:other@x"), "allow", ""));
    let out = tr(&r, Mode::Rfc);
    assert!(out.ends_with("entity=\"sip:p@example.com\"></presence>"), "{out}");
    assert!(ids(&out).is_empty());
    let d = eval(&r, &ALICE, Mode::Rfc);
    assert_eq!(r.transform(&d, "<x/>", Mode::Rfc), Err(RulesError::NotPidf));
}

#[test]
fn rfc_default_deny_and_selectors() {
    assert!(ids(&tr(&with_tr(""), Mode::Rfc)).is_empty());
    let cases = [
        ("<provide-services><all-services/></provide-services>", vec!["t1", "t2"]),
        ("<provide-services><class>work</class></provide-services>", vec!["t1"]),
        ("<provide-services><class>WORK</class></provide-services>", vec![]),
        ("<provide-services><service-uri-scheme>IM</service-uri-scheme></provide-services>", vec!["t2"]),
        ("<provide-services><service-uri>sip:p@10.0.0.1</service-uri></provide-services>", vec!["t1"]),
        ("<provide-persons><occurrence-id>p1</occurrence-id></provide-persons>", vec!["p1"]),
        ("<provide-devices><deviceID>urn:device:1</deviceID></provide-devices>", vec!["d1"]),
        ("<provide-devices><class>mobile</class></provide-devices>", vec!["d1"]),
        ("<provide-note>true</provide-note>", vec!["note"]),
    ];
    for (t, want) in cases {
        assert_eq!(ids(&tr(&with_tr(t), Mode::Rfc)), want, "{t}");
    }
}

#[test]
fn rfc_union_across_rules() {
    let r = doc(&(rule(
        "a",
        &one(ALICE.uri),
        "allow",
        "<provide-services><occurrence-id>t1</occurrence-id></provide-services>",
    ) + &rule(
        "b",
        "<cr:identity><cr:many/></cr:identity>",
        "",
        "<provide-services><occurrence-id>t2</occurrence-id></provide-services><provide-persons><all-persons/></provide-persons>",
    )));
    assert_eq!(ids(&tr(&r, Mode::Rfc)), vec!["t1", "t2", "p1"]);
    // Kamailio: only the first rule's transformations apply.
    assert_eq!(ids(&tr(&r, Mode::Kamailio)), vec!["t1", "note", "p1", "d1"]);
}

#[test]
fn rfc_attribute_transformations() {
    let base = "<provide-services><all-services/></provide-services><provide-persons><all-persons/></provide-persons>";
    let out = tr(&with_tr(base), Mode::Rfc);
    assert!(out.contains("<basic>open</basic>") && out.contains("<contact>sip:p@10.0.0.1</contact>"));
    for gone in ["rpid:class", "<note>busy", "activities", "rpid:mood", "user-input", "dm:note", "homepage"] {
        assert!(!out.contains(gone), "{gone} in {out}");
    }
    let out = tr(
        &with_tr(&format!(
            "{base}<provide-activities>true</provide-activities><provide-note>true</provide-note>\
             <provide-class>true</provide-class><provide-user-input>bare</provide-user-input>\
             <provide-unknown-attribute ns=\"urn:ietf:params:xml:ns:pidf:cipid\" name=\"homepage\">true</provide-unknown-attribute>"
        )),
        Mode::Rfc,
    );
    for kept in ["<rpid:activities>", "<note>busy</note>", "<dm:note>hi", "<rpid:class>work", "<c:homepage>"] {
        assert!(out.contains(kept), "{kept} missing in {out}");
    }
    assert!(out.contains("<rpid:user-input>idle</rpid:user-input>"), "{out}");
    assert!(!out.contains("rpid:mood"));
    let out = tr(&with_tr(&format!("{base}<provide-user-input>thresholds</provide-user-input>")), Mode::Rfc);
    assert!(out.contains(r#"<rpid:user-input idle-threshold="600">idle"#), "{out}");
    let out = tr(&with_tr(&format!("{base}<provide-all-attributes/>")), Mode::Rfc);
    for kept in ["rpid:mood", "last-input", "homepage", "<note>busy"] {
        assert!(out.contains(kept), "{kept}");
    }
    assert!(out.contains("root note") && !out.contains("d1"));
}

#[test]
fn polite_block_document_is_closed_pidf() {
    let body = polite_block_document("sip:a&b@example.com");
    let d = Document::parse(&body).unwrap();
    let root = d.root_element();
    assert!(is(&root, NS_PIDF, "presence"));
    assert_eq!(root.attribute("entity"), Some("sip:a&b@example.com"));
    let basic = d.descendants().find(|n| is(n, NS_PIDF, "basic")).unwrap();
    assert_eq!(basic.text(), Some("closed"));
    assert_eq!(d.descendants().filter(|n| is(n, NS_PIDF, "tuple")).count(), 1);
}

#[test]
fn uri_domain_extraction() {
    assert_eq!(uri_domain("sip:a@b.c"), "b.c");
    assert_eq!(uri_domain("sip:a@b.c:5060;transport=tcp"), "b.c");
    assert_eq!(uri_domain("sips:[::1]:5061"), "[::1]");
    assert_eq!(uri_domain("sip:host.only"), "host.only");
}
