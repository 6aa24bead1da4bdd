//! Unit tests for every rule of the crate, including hostile input.

use super::*;

const P: &str = "urn:ietf:params:xml:ns:pidf";

fn pidf(entity: &str, tuple: &str, basic: &str, extra: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<presence xmlns=\"{P}\" entity=\"{entity}\">\n\
         <tuple id=\"{tuple}\"><status><basic>{basic}</basic></status></tuple>{extra}\n</presence>"
    )
}

fn reparse(s: &str) -> Document<'_> {
    assert!(s.starts_with(XML_DECL), "{s}");
    assert_eq!(s.matches("<?xml").count(), 1, "{s}");
    Document::parse(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn tuple_ids(d: &Document) -> Vec<String> {
    d.root_element().children().filter(|n| named(*n, "tuple")).map(|n| n.attribute("id").unwrap().to_owned()).collect()
}

// ---- limits and validation ----

#[test]
fn default_limits() {
    assert_eq!(Limits::default(), Limits { max_bytes: 65536, max_depth: 32, max_nodes: 10_000 });
}

#[test]
fn check_accepts_pidf_and_any_xml() {
    let l = Limits::default();
    assert_eq!(check_pidf(pidf("sip:a@b", "t1", "open", "").as_bytes(), &l), Ok(()));
    let prefixed = format!("<p:presence xmlns:p=\"{P}\" entity=\"sip:a@b\"/>");
    assert_eq!(check_pidf(prefixed.as_bytes(), &l), Ok(()));
    let dialog = "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"full\"/>";
    assert_eq!(check_xml(dialog.as_bytes(), &l), Ok(()));
    assert_eq!(check_pidf(dialog.as_bytes(), &l), Err(PidfError::NotPidf));
    // Right local name, wrong or missing namespace.
    assert_eq!(check_pidf(b"<presence/>", &l), Err(PidfError::NotPidf));
    assert_eq!(check_pidf(b"<presence xmlns=\"urn:x\"/>", &l), Err(PidfError::NotPidf));
}

#[test]
fn check_refuses_size_utf8_malformed() {
    let l = Limits { max_bytes: 10, ..Limits::default() };
    assert_eq!(check_xml(b"<a>0123456789</a>", &l), Err(PidfError::TooLarge { size: 17, max: 10 }));
    let l = Limits::default();
    assert_eq!(check_xml(b"<a>\xff</a>", &l), Err(PidfError::NotUtf8));
    for bad in ["", "<a>", "<a></b>", "text", "<a x='1' x='2'/>", "<p:a/>", "<a/><b/>"] {
        let e = check_xml(bad.as_bytes(), &l).unwrap_err();
        assert!(matches!(e, PidfError::Malformed(_)), "{bad}: {e:?}");
        assert!(e.to_string().starts_with("malformed XML"));
    }
}

#[test]
fn check_refuses_dtd_and_entity_expansion() {
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
                  <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]><lolz>&lol2;</lolz>";
    assert_eq!(check_xml(laughs.as_bytes(), &Limits::default()), Err(PidfError::Dtd));
    assert_eq!(check_xml(b"<!DOCTYPE a><a/>", &Limits::default()), Err(PidfError::Dtd));
}

#[test]
fn check_depth_limit() {
    let l = Limits { max_depth: 3, ..Limits::default() };
    assert_eq!(check_xml(b"<a><b><c/></b></a>", &l), Ok(()));
    assert_eq!(check_xml(b"<a><b><c><d/></c></b></a>", &l), Ok(()), "self-closing adds no depth");
    assert_eq!(check_xml(b"<a><b><c><d></d></c></b></a>", &l), Err(PidfError::TooDeep(3)));
    // Siblings do not accumulate depth.
    assert_eq!(check_xml(b"<a><b><c></c><c></c><c></c><c></c></b></a>", &l), Ok(()));
    // Markup-like bytes inside comments, CDATA, PIs and quoted values are not tags.
    let tricky = b"<a x='>b>c>d>' y=\"/>\"><!-- <b><c><d> --><?pi <b><c>?><![CDATA[<b><c><d>]]><b/></a>";
    assert_eq!(check_xml(tricky, &l), Ok(()));
}

#[test]
fn check_node_limit() {
    let l = Limits { max_nodes: 50, ..Limits::default() };
    let many = format!("<a>{}</a>", "<b/>".repeat(100));
    assert_eq!(check_xml(many.as_bytes(), &l), Err(PidfError::TooManyNodes(50)));
}

#[test]
fn hostile_nesting_refused_quickly() {
    let l = Limits { max_bytes: 4 << 20, ..Limits::default() };
    let bomb = "<a>".repeat(350_000); // ~1 MB
    let unterminated = format!("<a x='{}", "<".repeat(1 << 20));
    let flat = "<a/>".repeat(250_000);
    let t = std::time::Instant::now();
    assert_eq!(check_xml(bomb.as_bytes(), &l), Err(PidfError::TooDeep(32)));
    assert!(check_xml(unterminated.as_bytes(), &l).is_err());
    assert!(check_xml(flat.as_bytes(), &l).is_err());
    // Loose sanity bound only; the real cost is a few milliseconds.
    assert!(t.elapsed() < std::time::Duration::from_millis(100), "{:?}", t.elapsed());
}

// ---- aggregate ----

#[test]
fn aggregate_empty_and_single() {
    assert_eq!(aggregate(&[]), None);
    assert_eq!(aggregate(&["<broken"]), None);
    assert_eq!(aggregate(&["<notpresence/>"]), None);
    let one = pidf("sip:a@b", "t1", "open", "");
    let out = aggregate(&[&one]).unwrap();
    assert_eq!(out, format!("{XML_DECL}{}", one.split_once("?>\n").unwrap().1));
}

#[test]
fn aggregate_appends_newest_first_and_drops_duplicate_ids() {
    let old = pidf("sip:a@b", "t1", "closed", "<note>old</note>");
    let mid = pidf("sip:a@b", "T2", "open", "<note>mid</note>");
    let dup = pidf("sip:a@b", "t2", "closed", "<note>dup of mid</note>");
    let new = pidf("sip:a@b", "t3", "open", "");
    let out = aggregate(&[&old, &mid, &dup, &new]).unwrap();
    let d = reparse(&out);
    // dup (next newest) is appended first; mid has the same id (case-insensitively) and is dropped.
    assert_eq!(tuple_ids(&d), ["t3", "t2", "t1"]);
    let notes: Vec<_> = d.root_element().children().filter(|n| named(*n, "note")).filter_map(|n| n.text()).collect();
    assert_eq!(notes, ["dup of mid", "old"]);
    assert_eq!(d.root_element().attribute("entity"), Some("sip:a@b"));
}

#[test]
fn aggregate_candidate_matching_base_is_dropped_and_tupleless_appended() {
    let old = pidf("sip:a@b", "t1", "closed", "");
    let person = format!("<presence xmlns=\"{P}\" entity=\"e\"><note>no tuple</note></presence>");
    let new = pidf("sip:a@b", "t1", "open", "");
    let d_out = aggregate(&[&old, &person, &new]).unwrap();
    let d = reparse(&d_out);
    assert_eq!(tuple_ids(&d), ["t1"]);
    assert!(d_out.contains("<note>no tuple</note>"));
    assert!(d_out.contains("<basic>open</basic>") && !d_out.contains("closed"));
}

#[test]
fn aggregate_skips_unparseable_even_newest() {
    let a = pidf("sip:a@b", "t1", "open", "");
    let b = pidf("sip:a@b", "t2", "open", "");
    let out = aggregate(&[&a, "<presence><oops></presence>", &b, "\u{0}garbage"]).unwrap();
    assert_eq!(tuple_ids(&reparse(&out)), ["t2", "t1"]);
}

#[test]
fn aggregate_self_closing_base() {
    let base = format!("<presence xmlns=\"{P}\" entity=\"e\" />");
    let old = pidf("e", "t1", "open", "");
    let out = aggregate(&[&old, &base]).unwrap();
    assert_eq!(tuple_ids(&reparse(&out)), ["t1"]);
    assert!(out.ends_with("</presence>"));
}

#[test]
fn aggregate_adds_missing_namespace_declarations() {
    let base = pidf("e", "t1", "open", "");
    let old = format!(
        "<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\" xmlns:rpid=\"{NS_RPID}\" xmlns:u=\"urn:x&amp;y\" entity=\"e\">\
         <dm:person id=\"p1\" u:a=\"1\"><rpid:activities><rpid:away/></rpid:activities></dm:person>\
         <tuple id=\"t2\"><status><basic>open</basic></status></tuple></presence>"
    );
    let out = aggregate(&[&old, &base]).unwrap();
    let d = reparse(&out);
    let person = d.descendants().find(|n| n.tag_name().name() == "person").unwrap();
    assert_eq!(person.tag_name().namespace(), Some(NS_DM));
    assert_eq!(person.attribute(("urn:x&y", "a")), Some("1"));
    let away = d.descendants().find(|n| n.tag_name().name() == "away").unwrap();
    assert_eq!(away.tag_name().namespace(), Some(NS_RPID));
    // The default namespace is shared, so it is not repeated; pidf elements stay pidf.
    let t2 = d.descendants().find(|n| n.attribute("id") == Some("t2")).unwrap();
    assert_eq!(t2.tag_name().namespace(), Some(P));
    assert!(!out.contains(&format!("<tuple xmlns=\"{P}\"")));
    assert!(out.contains("urn:x&amp;y"));
}

#[test]
fn aggregate_keeps_matching_bindings_and_fixes_conflicts() {
    let base = format!(
        "<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\" xmlns:x=\"urn:one\" entity=\"e\">\
         <tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>"
    );
    let old = format!(
        "<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\" xmlns:x=\"urn:two\" entity=\"e\">\
         <dm:person id=\"p\"><x:y/></dm:person></presence>"
    );
    let out = aggregate(&[&old, &base]).unwrap();
    assert!(out.contains("<dm:person xmlns:x=\"urn:two\" id=\"p\">"), "{out}");
    let d = reparse(&out);
    let y = d.descendants().find(|n| n.tag_name().name() == "y").unwrap();
    assert_eq!(y.tag_name().namespace(), Some("urn:two"));
}

#[test]
fn aggregate_default_namespace_differences() {
    // Base uses a prefix, candidate the default namespace.
    let base = format!(
        "<p:presence xmlns:p=\"{P}\" entity=\"e\"><p:tuple id=\"t1\"><p:status><p:basic>open</p:basic></p:status></p:tuple></p:presence>"
    );
    let old = pidf("e", "t2", "closed", "");
    let out = aggregate(&[&old, &base]).unwrap();
    let d = reparse(&out);
    for n in d.descendants().filter(Node::is_element) {
        assert_eq!(n.tag_name().namespace(), Some(P), "{out}");
    }
    assert_eq!(tuple_ids(&d), ["t1", "t2"]);
    // Candidate uses a prefix and an unqualified extension element; base has a default namespace.
    let old = format!(
        "<p:presence xmlns:p=\"{P}\" entity=\"e\"><p:tuple id=\"t3\"><p:status><p:basic>open</p:basic></p:status>\
         <ext/></p:tuple><p:note>n</p:note></p:presence>"
    );
    let base = pidf("e", "t1", "open", "");
    let out = aggregate(&[&old, &base]).unwrap();
    let d = reparse(&out);
    let ext = d.descendants().find(|n| n.tag_name().name() == "ext").unwrap();
    assert!(ext.tag_name().namespace().is_none_or(str::is_empty), "{out}");
    let t3 = d.descendants().find(|n| n.attribute("id") == Some("t3")).unwrap();
    assert_eq!(t3.tag_name().namespace(), Some(P));
    // xmlns="" only where unqualified names need it.
    assert!(out.contains("<p:note xmlns:p="), "{out}");
    assert!(!out.contains("<p:note xmlns:p=\"urn:ietf:params:xml:ns:pidf\" xmlns=\"\""), "{out}");
}

#[test]
fn aggregate_does_not_duplicate_own_declarations() {
    let base = pidf("e", "t1", "open", "");
    let old = format!(
        "<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\" entity=\"e\"><dm:person xmlns:dm = '{NS_DM}' id=\"p\"/></presence>"
    );
    let out = aggregate(&[&old, &base]).unwrap();
    reparse(&out);
    assert_eq!(out.matches("xmlns:dm").count(), 1, "{out}");
}

// ---- offline ----

#[test]
fn offline_forces_closed_and_keeps_first_tuple_only() {
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\" entity=\"sip:a@b\">\
         <tuple id=\"t1\"><status><basic>open</basic><x:e xmlns:x=\"urn:x\">k</x:e></status><contact>sip:c</contact></tuple>\
         <tuple id=\"t2\"><status><basic>open</basic></status></tuple><dm:person id=\"p\"/></presence>"
    );
    let out = offline(&doc).unwrap();
    assert_eq!(
        out,
        format!(
            "{XML_DECL}<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\" entity=\"sip:a@b\"><tuple id=\"t1\">\
             <status><basic>closed</basic><x:e xmlns:x=\"urn:x\">k</x:e></status></tuple></presence>"
        )
    );
    reparse(&out);
}

#[test]
fn offline_adds_missing_basic_and_status() {
    let no_basic =
        format!("<presence xmlns=\"{P}\" entity=\"e\"><tuple id=\"t\"><status><x/></status></tuple></presence>");
    let out = offline(&no_basic).unwrap();
    assert!(out.contains("<status><basic>closed</basic><x/></status>"), "{out}");
    let empty_status = format!("<presence xmlns=\"{P}\" entity=\"e\"><tuple id=\"t\"><status/></tuple></presence>");
    assert!(offline(&empty_status).unwrap().contains("<status><basic>closed</basic></status>"));
    let no_status = format!("<presence xmlns=\"{P}\" entity=\"e\"><tuple id=\"t\"><note>x</note></tuple></presence>");
    let out = offline(&no_status).unwrap();
    assert!(out.ends_with("<tuple id=\"t\"><status><basic>closed</basic></status></tuple></presence>"), "{out}");
    let self_closing = format!("<presence xmlns=\"{P}\" entity=\"e\"><tuple id=\"t\"/></presence>");
    let out = offline(&self_closing).unwrap();
    assert!(out.ends_with("<tuple id=\"t\"><status><basic>closed</basic></status></tuple></presence>"), "{out}");
    let empty_basic = format!("<presence xmlns=\"{P}\"><tuple id=\"t\"><status><basic/></status></tuple></presence>");
    assert!(offline(&empty_basic).unwrap().contains("<basic>closed</basic>"));
}

#[test]
fn offline_respects_prefixes() {
    let doc =
        format!("<p:presence xmlns:p=\"{P}\" entity=\"e\"><p:tuple id=\"t\"><p:note>x</p:note></p:tuple></p:presence>");
    let out = offline(&doc).unwrap();
    assert!(out.ends_with("<p:tuple id=\"t\"><p:status><p:basic>closed</p:basic></p:status></p:tuple></p:presence>"));
    let d = reparse(&out);
    assert!(d.descendants().filter(Node::is_element).all(|n| n.tag_name().namespace() == Some(P)));
    let doc = format!(
        "<p:presence xmlns:p=\"{P}\"><p:tuple id=\"t\"><p:status><p:basic>open</p:basic></p:status></p:tuple></p:presence>"
    );
    assert!(offline(&doc).unwrap().contains("<p:basic>closed</p:basic>"));
    // A tuple outside the pidf namespace still gets a pidf status.
    let odd = format!("<p:presence xmlns:p=\"{P}\"><tuple id=\"t\"/></p:presence>");
    let out = offline(&odd).unwrap();
    let d = reparse(&out);
    let basic = d.descendants().find(|n| n.tag_name().name() == "basic").unwrap();
    assert_eq!(basic.tag_name().namespace(), Some(P));
}

#[test]
fn offline_refuses_without_tuple() {
    assert_eq!(offline(&format!("<presence xmlns=\"{P}\"><note/></presence>")), None);
    assert_eq!(offline(&format!("<presence xmlns=\"{P}\"/>")), None);
    assert_eq!(offline("<other><tuple/></other>"), None);
    assert_eq!(offline("not xml"), None);
}

// ---- dummy ----

#[test]
fn dummy_body() {
    let out = dummy("al<i>ce&\"");
    let d = reparse(&out);
    let root = d.root_element();
    assert!(root.has_tag_name((P, "presence")));
    assert_eq!(root.attribute("entity"), Some("al<i>ce&\""));
    assert_eq!(root.lookup_namespace_uri(Some("c")), Some(NS_CIPID));
    assert_eq!(tuple_ids(&d), [DUMMY_TUPLE_ID]);
    assert_eq!(check_basic(&out, "open"), 1);
    let person = root.children().find(|n| n.has_tag_name((NS_DM, "person"))).unwrap();
    assert_eq!(person.attribute("id"), Some("1"));
    assert!(person.children().any(|n| n.has_tag_name((NS_RPID, "activities"))));
    let note = person.children().find(|n| n.has_tag_name((NS_DM, "note"))).unwrap();
    assert_eq!(note.text(), Some("Available"));
    assert!(root.children().any(|n| n.has_tag_name((P, "note")) && n.text() == Some("Available")));
    assert_eq!(check_pidf(out.as_bytes(), &Limits::default()), Ok(()));
}

// ---- single body ----

#[test]
fn single_body_priorities() {
    let prio = "Available|Ringing|On the Phone";
    let avail = pidf("e", "a", "open", "<note>Available</note>");
    let ring = pidf("e", "r", "open", "<note>Ringing</note>");
    let phone = pidf("e", "p", "open", "<note>On the Phone</note>");
    let other = pidf("e", "o", "open", "<note>Lunch</note>");
    let none = pidf("e", "n", "open", "");
    assert_eq!(single_body(&[], prio, "note"), None);
    // Older with a higher priority wins over the newest.
    assert_eq!(single_body(&[&phone, &ring, &avail], prio, "note"), Some(phone.as_str()));
    // Older with a lower priority does not.
    assert_eq!(single_body(&[&avail, &phone], prio, "note"), Some(phone.as_str()));
    // Text absent from the priorities ranks lowest.
    assert_eq!(single_body(&[&avail, &other], prio, "note"), Some(avail.as_str()));
    assert_eq!(single_body(&[&other, &avail], prio, "note"), Some(avail.as_str()));
    // Same text (case-insensitively) never replaces: the newest stays.
    let ring2 = pidf("e", "r2", "open", "<note>RINGING</note>");
    assert_eq!(single_body(&[&ring2, &ring], prio, "note"), Some(ring.as_str()));
    // Current without the element: Kamailio keeps it.
    assert_eq!(single_body(&[&phone, &none], prio, "note"), Some(none.as_str()));
    // Candidate without the element is skipped.
    assert_eq!(single_body(&[&none, &avail], prio, "note"), Some(avail.as_str()));
    // Empty configuration selects the newest; unparseable documents are skipped.
    assert_eq!(single_body(&[&phone, &avail], "", "note"), Some(avail.as_str()));
    assert_eq!(single_body(&[&phone, &avail], prio, ""), Some(avail.as_str()));
    assert_eq!(single_body(&[&phone, "<bad"], prio, "note"), Some(phone.as_str()));
    // Any namespace, case-insensitive local name.
    let dm = format!(
        "<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\"><dm:person><dm:NOTE>On the Phone</dm:NOTE></dm:person></presence>"
    );
    assert_eq!(single_body(&[&dm, &ring], prio, "note"), Some(dm.as_str()));
}

// ---- check_basic / check_activities ----

#[test]
fn check_basic_rules() {
    let open = pidf("e", "t", "open", "");
    assert_eq!(check_basic(&open, "open"), 1);
    assert_eq!(check_basic(&open, "OPEN"), 1);
    assert_eq!(check_basic(&open, "op"), 1, "prefix over the length of status");
    assert_eq!(check_basic(&open, "opened"), -1);
    assert_eq!(check_basic(&open, "closed"), -1);
    let two = aggregate(&[&open, &pidf("e", "t2", "closed", "")]).unwrap();
    assert_eq!(check_basic(&two, "open"), 1);
    assert_eq!(check_basic(&two, "closed"), 1);
    assert_eq!(check_basic(&format!("<presence xmlns=\"{P}\"/>"), "open"), -1);
    assert_eq!(check_basic("", "open"), -1);
    assert_eq!(check_basic("<garbage", "open"), -1);
    // A tuple with no basic anywhere after it ends the walk but keeps an earlier match.
    let stop =
        format!("<presence xmlns=\"{P}\"><tuple><status><basic>open</basic></status></tuple><tuple/></presence>");
    assert_eq!(check_basic(&stop, "open"), 1);
    let stop_first =
        format!("<presence xmlns=\"{P}\"><tuple/><tuple><status><basic>closed</basic></status></tuple></presence>");
    // Kamailio's lookup continues into following siblings, so the first tuple finds the second's basic.
    assert_eq!(check_basic(&stop_first, "closed"), 1);
}

#[test]
fn check_activities_rules() {
    let doc = |persons: &str| {
        format!("<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\" xmlns:r=\"{NS_RPID}\">{persons}</presence>")
    };
    let away = "<dm:person id=\"1\"><r:activities><r:away/></r:activities></dm:person>";
    let busy = "<dm:person id=\"2\"><r:activities><r:busy/></r:activities></dm:person>";
    let empty = "<dm:person id=\"3\"><r:activities/></dm:person>";
    let missing = "<dm:person id=\"4\"/>";
    assert_eq!(check_activities(&doc(away), "away"), 1);
    assert_eq!(check_activities(&doc(away), "AWAY"), 1);
    assert_eq!(check_activities(&doc(away), "busy"), -1);
    assert_eq!(check_activities(&doc(&format!("{busy}{away}")), "away"), 1);
    assert_eq!(check_activities(&doc(""), "away"), -2);
    assert_eq!(check_activities(&doc(empty), "away"), -2);
    assert_eq!(check_activities(&doc(missing), "away"), -2);
    assert_eq!(check_activities(&doc(&format!("{away}{empty}")), "away"), 1, "earlier match kept");
    assert_eq!(check_activities(&doc(&format!("{busy}{empty}")), "away"), -2);
    assert_eq!(check_activities("<x", "away"), -1);
}

// ---- sphere ----

#[test]
fn sphere_rules() {
    let doc =
        |body: &str| format!("<presence xmlns=\"{P}\" xmlns:dm=\"{NS_DM}\" xmlns:r=\"{NS_RPID}\">{body}</presence>");
    assert_eq!(sphere(&doc("<dm:person><r:sphere> work \n</r:sphere></dm:person>")).as_deref(), Some("work"));
    assert_eq!(sphere(&doc("<dm:person><r:sphere><r:home/></r:sphere></dm:person>")).as_deref(), Some("home"));
    assert_eq!(
        sphere(&doc(
            "<dm:person/><dm:person><r:sphere>b</r:sphere></dm:person><dm:person><r:sphere>c</r:sphere></dm:person>"
        ))
        .as_deref(),
        Some("b")
    );
    assert_eq!(sphere(&doc("<dm:person><r:sphere>  </r:sphere></dm:person>")), None);
    assert_eq!(sphere(&doc("<dm:person><sphere>x</sphere></dm:person>")), None, "must be rpid");
    assert_eq!(sphere(&doc("<r:sphere>x</r:sphere>")), None, "must be under person");
    assert_eq!(sphere("<bad"), None);
}

// ---- robustness ----

#[test]
fn no_panic_on_garbage_or_truncation() {
    let samples = [
        aggregate(&[&pidf("e", "t1", "open", "<note>n</note>"), &dummy("u")]).unwrap(),
        format!(
            "<p:presence xmlns:p=\"{P}\" a='x>y'><p:tuple id=\"t\"><p:status/></p:tuple><!-- c --><![CDATA[x]]></p:presence>"
        ),
        "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>".to_owned(),
        "\u{feff}<a\u{e9} b='\u{1F600}'/>".to_owned(),
        "<<<>>>&&;<!--<![CDATA[<?".to_owned(),
    ];
    let l = Limits { max_depth: 3, max_nodes: 20, ..Limits::default() };
    for s in &samples {
        let cuts = (0..=s.len()).filter(|&i| s.is_char_boundary(i));
        for piece in cuts.flat_map(|i| [&s[..i], &s[i..]]) {
            let _ = check_xml(piece.as_bytes(), &l);
            let _ = check_pidf(piece.as_bytes(), &Limits::default());
            let _ = aggregate(&[piece, s]);
            let _ = aggregate(&[s, piece]);
            let _ = offline(piece);
            let _ = single_body(&[piece, s], "Available|Ringing", "note");
            let _ = check_basic(piece, "open");
            let _ = check_activities(piece, "away");
            let _ = sphere(piece);
            let _ = dummy(piece);
        }
        for i in 0..s.len() {
            let _ = check_xml(&s.as_bytes()[..i], &l);
        }
    }
    let _ = check_xml(&[0xff, b'<', 0x00, b'>'], &l);
}
