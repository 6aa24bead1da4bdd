//! RFC 4475 torture messages, byte-exact from the RFC's Appendix A archive (`tests/rfc4475/`).
//!
//! Every valid message of §3.1.1 must parse and validate, with the values the RFC points out;
//! every invalid message of §3.1.2 must be refused by `parse` or by `validate` (the table says
//! which); the §3.2-§3.4 messages are classified too. Nothing may panic.

mod common;

use std::borrow::Cow;

use common::{RFC4475, exercise};

use sip_message::headers::{Contact, SubState};
use sip_message::uri::{Host, Scheme};
use sip_message::{HeaderErrorKind, HeaderName, Message, Method, ParseErrorKind, ValidationError, parse};

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses and validates, handing the message to `check`.
fn valid(name: &str, check: impl FnOnce(&Message<'_>)) {
    let buf = load(name);
    let parsed = parse(&buf).unwrap_or_else(|e| panic!("{name} must parse: {e}"));
    let msg = Message::new(&buf, &parsed);
    if let Err(e) = msg.validate() {
        panic!("{name} must validate: {e}");
    }
    check(&msg);
}

fn rejected_by_parse(name: &str, kind: ParseErrorKind) {
    let buf = load(name);
    match parse(&buf) {
        Ok(_) => panic!("{name} must be refused by parse()"),
        Err(e) => assert_eq!(e.kind, kind, "{name}: {e}"),
    }
}

fn rejected_by_validate(name: &str, expected: impl Fn(&ValidationError) -> bool) -> ValidationError {
    let buf = load(name);
    let parsed = parse(&buf).unwrap_or_else(|e| panic!("{name} must parse (its fault is semantic): {e}"));
    let msg = Message::new(&buf, &parsed);
    let err = msg.validate().expect_err(name);
    assert!(expected(&err), "{name}: unexpected {err:?}");
    err
}

fn header_fault(name: HeaderName, kind: HeaderErrorKind) -> impl Fn(&ValidationError) -> bool {
    move |e| matches!(e, ValidationError::Header(h) if h.name == name && h.kind == kind)
}

#[test]
fn corpus_is_byte_exact() {
    // Spot checks that the files are the archive's, not a retyped copy: binary bytes, a
    // trailing-space start line, and the total size of the corpus.
    assert!(load("intmeth").windows(2).any(|w| w == b"\\\0"));
    assert!(load("mpart01").contains(&0));
    assert!(load("trws").starts_with(b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n"));
    assert!(load("noreason").starts_with(b"SIP/2.0 100 \r\n"));
    let total: usize = RFC4475.iter().map(|n| load(n).len()).sum();
    assert_eq!(total, 24974);
}

#[test]
fn nothing_panics_on_any_prefix() {
    for name in RFC4475 {
        let buf = load(name);
        for cut in 0..=buf.len() {
            if let Ok(p) = parse(&buf[..cut]) {
                exercise(&Message::new(&buf[..cut], &p));
            }
        }
    }
}

// ---- 3.1.1 Valid messages ----------------------------------------------------------------

#[test]
fn s3_1_1_1_wsinv() {
    valid("wsinv", |m| {
        assert_eq!(m.method(), Some(Method::Invite));
        let ruri = m.request_uri().unwrap();
        assert_eq!(ruri.param("unknownparam"), Some(None));
        let to = m.to().unwrap();
        assert_eq!(to.uri_str(), "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(to.tag(), Some("1918181833n"));
        let from = m.from().unwrap();
        assert_eq!(from.display_name_unescaped().as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(from.tag(), Some("98asjd8"));
        assert_eq!(m.max_forwards(), Ok(Some(68)));
        assert_eq!(m.call_id(), Ok("wsinv.ndaksdj@192.0.2.1"));
        assert_eq!(m.content_length(), Ok(Some(150)));
        assert_eq!(m.body().len(), 150);
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.number, cseq.method), (9, Method::Invite));
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), 3);
        assert_eq!((vias[0].transport(), vias[0].host()), ("UDP", Host::Ipv4("192.0.2.2")));
        assert_eq!(vias[0].branch(), Some("390skdjuw"));
        assert_eq!((vias[1].transport(), vias[1].branch()), ("TCP", Some("z9hG4bK9ikj8")));
        assert_eq!(vias[1].host(), Host::Name("spindle.example.com"));
        assert_eq!(vias[2].host(), Host::Ipv4("192.168.255.111"));
        assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
        // The empty Subject, the folded unknown header and the unusual unknown value.
        assert_eq!(m.header(HeaderName::SUBJECT), Some(&b""[..]));
        let nf = m.headers_named("NewFangledHeader").next().unwrap();
        assert_eq!(
            sip_message::unfold(std::str::from_utf8(nf).unwrap()),
            "newfangled value continued newfangled value"
        );
        assert_eq!(m.headers_named("UnknownHeaderWithUnusualValue").next(), Some(&b";;,,;;,;"[..]));
        let route = m.routes().next().unwrap().unwrap().uri().unwrap();
        assert!(route.lr());
        assert_eq!(route.param("unknownwith"), Some(Some("value")));
        assert_eq!(route.param("unknown-no-value"), Some(None));
        let Contact::Address(c) = m.contacts().next().unwrap().unwrap() else { panic!("contact") };
        assert_eq!(c.display_name_unescaped().as_deref(), Some(r#"Quoted string """#));
        assert_eq!(c.params().get("newparam"), Some(Some("newvalue")));
        assert_eq!(c.params().get("secondparam"), Some(None));
        assert_eq!(c.q(), Some(330));
        assert!(m.content_type().unwrap().unwrap().is("application", "sdp"));
    });
}

#[test]
fn s3_1_1_2_intmeth() {
    valid("intmeth", |m| {
        let method = "!interesting-Method0123456789_*+`.%indeed'~";
        assert_eq!(m.method(), Some(Method::Other(method)));
        let ruri = m.request_uri().unwrap();
        assert_eq!(ruri.user(), Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
        assert_eq!(ruri.password(), Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
        assert_eq!(ruri.host(), Some(Host::Name("example.com")));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
        let to = m.to().unwrap();
        assert_eq!(to.display_name_unescaped().as_deref(), Some("BEL:\x07 NUL:\0 DEL:\x7f"));
        assert_eq!(to.uri().unwrap().user(), Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
        let from = m.from().unwrap();
        assert_eq!(from.display_name(), Some("token1~` token2'+_ token3*%!.-"));
        assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
        let p = from.params().get("fromParam''~+*_!.-%").flatten().unwrap();
        assert_eq!(sip_message::unquote(p), "работающий");
        assert_eq!(m.call_id(), Ok(r#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#));
        assert_eq!(m.cseq().unwrap().method, Method::Other(method));
        assert_eq!(m.max_forwards(), Ok(Some(255)));
        let ext = m.headers_named("extensionHeader-!.%*+_`'~").next().unwrap();
        assert_eq!(std::str::from_utf8(ext).unwrap(), "\u{feff}大停電");
    });
}

#[test]
fn s3_1_1_3_esc01() {
    valid("esc01", |m| {
        let ruri = m.request_uri().unwrap();
        assert_eq!(ruri.user_unescaped().unwrap().as_ref(), b"sips:user@example.com");
        assert_eq!(ruri.host(), Some(Host::Name("example.net")));
        let to = m.to().unwrap().uri().unwrap();
        assert_eq!(to.user_unescaped().unwrap().as_ref(), b"user");
        let from = m.from().unwrap().uri().unwrap();
        assert_eq!(from.user_unescaped().unwrap().as_ref(), b"I have spaces");
        assert!(m.content_type().unwrap().unwrap().is("application", "sdp"));
        let c = m.contacts().next().unwrap().unwrap();
        let uri = c.address().unwrap().uri().unwrap();
        assert_eq!(uri.user_unescaped().unwrap().as_ref(), b"caller");
        assert!(uri.lr(), "%6C%72 is lr");
        // "value%41" is not "valueA": unescaping is not recursive.
        let v = uri.param("name").flatten().unwrap();
        assert_eq!(sip_message::percent_decode(v).as_ref(), b"value%41");
    });
}

#[test]
fn s3_1_1_4_escnull() {
    valid("escnull", |m| {
        assert_eq!(m.method(), Some(Method::Register));
        let to = m.to().unwrap().uri().unwrap();
        assert_eq!(to.user_unescaped().unwrap().as_ref(), b"null-\0-null");
        let users: Vec<Vec<u8>> = m
            .contacts()
            .map(|c| {
                let uri = c.unwrap().address().unwrap().uri().unwrap();
                uri.user_unescaped().unwrap().into_owned()
            })
            .collect();
        assert_eq!(users, [b"\0".to_vec(), b"\0\0".to_vec()], "two distinct contacts");
        let a = m.contacts().next().unwrap().unwrap().address().unwrap().uri().unwrap();
        let b = m.contacts().nth(1).unwrap().unwrap().address().unwrap().uri().unwrap();
        assert!(!a.equivalent(&b));
    });
}

#[test]
fn s3_1_1_5_esc02() {
    valid("esc02", |m| {
        assert_eq!(m.method(), Some(Method::Other("RE%47IST%45R")));
        assert_eq!(m.to().unwrap().display_name(), Some("%Z%45"));
        assert_eq!(m.from().unwrap().display_name(), Some("%Z%45"));
        assert_eq!(m.contacts().count(), 2, "C%6Fntact is not Contact");
        assert_eq!(m.headers_named("C%6Fntact").count(), 1);
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK209%fzsnel234"));
    });
}

#[test]
fn s3_1_1_6_lwsdisp() {
    valid("lwsdisp", |m| {
        let from = m.from().unwrap();
        assert_eq!(from.display_name(), Some("caller"));
        assert_eq!(from.uri_str(), "sip:caller@example.com");
        assert_eq!(from.tag(), Some("323"));
    });
}

#[test]
fn s3_1_1_7_longreq() {
    valid("longreq", |m| {
        let to = m.to().unwrap();
        let name = to.display_name().unwrap();
        assert!(name.starts_with("I have a user name of extremeextreme"));
        let uri = to.uri().unwrap();
        assert_eq!(uri.port(), Some(6000));
        let long = format!("very{}value", "long".repeat(20));
        assert_eq!(uri.param("unknownparam1"), Some(Some(long.as_str())));
        let from = m.from().unwrap();
        assert_eq!(from.tag().unwrap(), format!("12{}424", "982".repeat(50)));
        let callid = format!("longreq.one{}longcallid", "really".repeat(20));
        assert_eq!(m.call_id(), Ok(callid.as_str()));
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), 34);
        assert_eq!(vias[0].host().as_str(), "sip33.example.com");
        let last = vias.last().unwrap();
        assert_eq!(last.received(), Some("192.0.2.5"));
        assert_eq!(last.branch().unwrap(), format!("very{}branchvalue", "long".repeat(50)));
        let unknown = format!("Unknown-{}-Name", "Long".repeat(20));
        assert_eq!(m.headers_named(&unknown).count(), 1);
        assert_eq!(m.body().len(), 150);
    });
}

#[test]
fn s3_1_1_8_dblreq() {
    let buf = load("dblreq");
    valid("dblreq", |m| {
        assert_eq!(m.method(), Some(Method::Register));
        assert_eq!(m.content_length(), Ok(Some(0)));
        assert!(m.body().is_empty(), "the trailing INVITE octets are ignored");
        let (_, end) = m.body_range();
        assert!((end as usize) < buf.len());
        assert_eq!(m.cseq().unwrap().method, Method::Register);
    });
}

#[test]
fn s3_1_1_9_semiuri() {
    valid("semiuri", |m| {
        let ruri = m.request_uri().unwrap();
        assert_eq!(ruri.user_unescaped().unwrap().as_ref(), b"user;par=u@example.net");
        assert_eq!(ruri.host(), Some(Host::Name("example.com")));
        assert_eq!(m.tokens(HeaderName::ACCEPT).filter(Result::is_ok).count(), 0, "not tokens");
        assert_eq!(m.list(HeaderName::ACCEPT).count(), 6);
    });
}

#[test]
fn s3_1_1_10_transports() {
    valid("transports", |m| {
        let t: Vec<_> = m.vias().map(|v| v.unwrap().transport()).collect();
        assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    });
}

#[test]
fn s3_1_1_11_mpart01() {
    valid("mpart01", |m| {
        assert_eq!(m.method(), Some(Method::Message));
        let via = m.top_via().unwrap();
        assert_eq!(via.port(), Some(5070));
        assert_eq!(via.rport(), Some(None));
        let ct = m.content_type().unwrap().unwrap();
        assert!(ct.is("multipart", "mixed"));
        assert_eq!(ct.params().get("boundary"), Some(Some("7a9cbec02ceef655")));
        assert_eq!(m.body().len(), 553);
        assert!(m.body().contains(&0), "binary part with NULs framed by Content-Length");
        assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
    });
}

#[test]
fn s3_1_1_12_unreason() {
    valid("unreason", |m| {
        assert_eq!(m.status_code(), Some(200));
        let reason = std::str::from_utf8(m.reason().unwrap()).unwrap();
        assert_eq!(reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
        assert_eq!(m.body().len(), 154);
    });
}

#[test]
fn s3_1_1_13_noreason() {
    valid("noreason", |m| {
        assert_eq!(m.status_code(), Some(100));
        assert_eq!(m.reason(), Some(&b""[..]));
    });
}

// ---- 3.1.2 Invalid messages --------------------------------------------------------------

#[test]
fn s3_1_2_rejections() {
    use HeaderErrorKind::{Malformed, Missing, Repeated};
    // Refused by parse(): the message cannot be delimited or its start line is not SIP.
    rejected_by_parse("clerr", ParseErrorKind::ContentLengthTooLarge); // 3.1.2.2
    rejected_by_parse("ncl", ParseErrorKind::BadContentLength); // 3.1.2.3
    rejected_by_parse("ltgtruri", ParseErrorKind::BadRequestUri); // 3.1.2.7
    rejected_by_parse("lwsruri", ParseErrorKind::BadRequestUri); // 3.1.2.8
    rejected_by_parse("lwsstart", ParseErrorKind::BadStartLine); // 3.1.2.9
    rejected_by_parse("trws", ParseErrorKind::BadStartLine); // 3.1.2.10
    rejected_by_parse("bigcode", ParseErrorKind::BadStatusCode); // 3.1.2.19

    // Refused by validate(): framed fine, but a header value or the semantics are wrong.
    rejected_by_validate("badinv01", header_fault(HeaderName::VIA, Malformed)); // 3.1.2.1
    rejected_by_validate("scalar02", header_fault(HeaderName::CSEQ, Malformed)); // 3.1.2.4
    rejected_by_validate("scalarlg", header_fault(HeaderName::CSEQ, Malformed)); // 3.1.2.5
    rejected_by_validate("quotbal", header_fault(HeaderName::TO, Malformed)); // 3.1.2.6
    rejected_by_validate("escruri", |e| *e == ValidationError::BadRequestUri); // 3.1.2.11
    rejected_by_validate("baddate", |e| *e == ValidationError::BadDate); // 3.1.2.12
    rejected_by_validate("regbadct", header_fault(HeaderName::CONTACT, Malformed)); // 3.1.2.13
    rejected_by_validate("badaspec", header_fault(HeaderName::TO, Malformed)); // 3.1.2.14
    rejected_by_validate("baddn", header_fault(HeaderName::FROM, Malformed)); // 3.1.2.15
    let e = rejected_by_validate("badvers", |e| *e == ValidationError::UnsupportedVersion); // 3.1.2.16
    assert_eq!(e.status_code(), 505);
    rejected_by_validate("mismatch01", |e| *e == ValidationError::CSeqMethodMismatch); // 3.1.2.17
    rejected_by_validate("mismatch02", |e| *e == ValidationError::CSeqMethodMismatch); // 3.1.2.18

    // 3.3: application-layer faults the parser layer must still catch.
    rejected_by_validate("insuf", header_fault(HeaderName::FROM, Missing)); // 3.3.1
    rejected_by_validate("multi01", |e| matches!(e, ValidationError::Header(h) if h.kind == Repeated)); // 3.3.8
    rejected_by_parse("mcl01", ParseErrorKind::ConflictingContentLength); // 3.3.9
}

#[test]
fn s3_1_2_details() {
    // Overlarge scalars other than CSeq read as malformed / absent, not as wrapped numbers.
    let buf = load("scalar02");
    let p = parse(&buf).unwrap();
    let m = Message::new(&buf, &p);
    assert_eq!(m.max_forwards(), Ok(Some(300)));
    assert!(m.expires().is_err());
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.address().unwrap().expires(), None);
    // A 400 can still be formed for the CSeq fault (RFC: respond 400).
    assert!(m.can_reply());
    // The Content-Length error is reported with a precise offset.
    let clerr = load("clerr");
    let e = parse(&clerr).unwrap_err();
    assert_eq!(e.to_string(), format!("Content-Length larger than the body at byte {}", e.offset));
    // badaspec / quotbal still get a 400; bigcode never reaches that far.
    for name in ["badaspec", "quotbal", "badinv01", "mismatch01", "badvers"] {
        let buf = load(name);
        let p = parse(&buf).unwrap();
        assert!(Message::new(&buf, &p).can_reply(), "{name}");
    }
    let buf = load("scalarlg");
    let p = parse(&buf).unwrap();
    assert!(!Message::new(&buf, &p).can_reply(), "responses are never answered");
}

// ---- 3.2 - 3.4 -----------------------------------------------------------------------------

#[test]
fn s3_2_to_3_4_accepted() {
    valid("badbranch", |m| {
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK"));
    });
    valid("unkscm", |m| {
        assert_eq!(m.request_uri().unwrap().scheme(), Scheme::Other);
    });
    valid("novelsc", |m| {
        assert_eq!(m.request_uri().unwrap().scheme_str(), "soap.beep");
    });
    valid("unksm2", |m| {
        assert_eq!(m.to().unwrap().uri().unwrap().scheme_str(), "isbn");
        assert_eq!(m.from().unwrap().uri_str(), "http://www.example.com");
    });
    valid("bext01", |m| {
        let req: Vec<_> = m.tokens(HeaderName::REQUIRE).map(Result::unwrap).collect();
        assert_eq!(req, ["nothingSupportsThis", "nothingSupportsThisEither"]);
        assert_eq!(m.tokens(HeaderName::PROXY_REQUIRE).count(), 2);
    });
    valid("invut", |m| {
        assert!(m.content_type().unwrap().unwrap().is("application", "unknownformat"));
        assert_eq!(m.body().len(), 40);
    });
    valid("regaut01", |m| {
        assert_eq!(m.content_length(), Ok(Some(0)));
    });
    valid("bcast", |m| {
        let hosts: Vec<_> = m.vias().map(|v| v.unwrap().host()).collect();
        assert_eq!(hosts[1], Host::Ipv4("255.255.255.255"));
    });
    valid("zeromf", |m| assert_eq!(m.max_forwards(), Ok(Some(0))));
    valid("cparam01", |m| {
        let c = m.contacts().next().unwrap().unwrap();
        let a = c.address().unwrap();
        assert!(a.params().contains("unknownparam"), "a contact-param");
        assert_eq!(a.uri().unwrap().param("unknownparam"), None);
    });
    valid("cparam02", |m| {
        let c = m.contacts().next().unwrap().unwrap();
        let a = c.address().unwrap();
        assert!(!a.params().contains("unknownparam"));
        assert_eq!(a.uri().unwrap().param("unknownparam"), Some(None), "a url-parameter");
    });
    valid("regescrt", |m| {
        let c = m.contacts().next().unwrap().unwrap();
        let uri = c.address().unwrap().uri().unwrap();
        let h: Vec<_> = uri.headers().collect();
        assert_eq!(h, [("Route", "%3Csip:sip.example.com%3E")]);
    });
    valid("sdp01", |m| {
        assert_eq!(m.header_str(HeaderName::ACCEPT), Some("text/nobodyKnowsThis"));
    });
    valid("inv2543", |m| {
        assert_eq!(m.top_via().unwrap().branch(), None);
        assert_eq!(m.from().unwrap().tag(), None);
        assert_eq!(m.content_length(), Ok(None));
        assert_eq!(m.max_forwards(), Ok(None));
        assert!(m.body().starts_with(b"v=0"), "body = rest of the datagram");
        let rr = m.record_routes().next().unwrap().unwrap().uri().unwrap();
        assert_eq!(rr.maddr(), Some("ss1.example.com"));
        // addr-spec form: ";user=phone" is a header parameter of To, a URI parameter of From.
        assert_eq!(m.to().unwrap().params().get("user"), Some(Some("phone")));
        assert_eq!(m.from().unwrap().uri().unwrap().user_param(), Some("phone"));
    });
}

#[test]
fn unreferenced_test_dat_does_not_panic() {
    let buf = load("test");
    if let Ok(p) = parse(&buf) {
        exercise(&Message::new(&buf, &p));
    }
    let _: Cow<'_, str> = sip_message::unfold("x");
    let _ = SubState::Active;
}
