//! The fuzz targets' entry points, shared by `fuzz/fuzz_targets/*` (cargo-fuzz) and by the
//! corpus replay test (`tests/tests/fuzz_corpus.rs`, plain `cargo test`), so both feed the
//! corpus through exactly the same code. Each function takes arbitrary bytes and must return
//! without panicking; the `assert!`s are properties that hold for any input.

use super::puahost::{config_diagnostic, config_value, rpc_envelope, rpc_framing};
use sip_message::{HeaderName, Message, ReplyOptions, SipUri};

/// A target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("sip_message", sip_message),
    ("pidf", pidf),
    ("dialog_info", dialog_info),
    ("pres_rules", pres_rules),
    ("jsonrpc", jsonrpc),
    ("config", config),
    ("xmpp", xmpp),
    ("winfo", winfo),
];

fn uri(u: &SipUri<'_>) {
    let _ = (u.as_str(), u.scheme(), u.scheme_str(), u.opaque(), u.user(), u.user_unescaped(), u.password());
    if let Some(h) = u.host() {
        let _ = (h.as_str(), h.ip());
        let _ = h.eq_host(&h);
    }
    let _ = (u.port(), u.params_str(), u.transport(), u.lr(), u.maddr(), u.user_param(), u.headers_str());
    for (k, v) in u.params() {
        let _ = (k, v, u.param(k));
    }
    for h in u.headers() {
        let _ = h;
    }
    let _ = u.equivalent(u);
}

fn name_addr(n: &sip_message::headers::NameAddr<'_>) {
    let _ = (n.display_name(), n.display_name_bytes(), n.display_name_unescaped(), n.is_quoted());
    let _ = (n.uri_str(), n.is_bracketed(), n.tag(), n.expires(), n.q());
    for p in n.params().iter() {
        let _ = p;
    }
    if let Ok(u) = n.uri() {
        uri(&u);
    }
}

/// SIP: stream framing, parse, every typed accessor, validation, and a reply written for
/// every request that can be answered, which must parse back with the same Call-ID.
pub fn sip_message(data: &[u8]) {
    let _ = sip_message::frame_stream(data, 65_535);
    let _ = sip_message::frame_stream(data, 64);
    let Ok(parsed) = sip_message::parse(data) else { return };
    let msg = Message::new(data, &parsed);
    let _ = (msg.start_line(), msg.body_range(), msg.is_request(), msg.is_response(), msg.version());
    let _ = (msg.method(), msg.status_code(), msg.reason(), msg.body(), msg.request_uri_str());
    if let Some(u) = msg.request_uri() {
        uri(&u);
    }
    for e in msg.header_entries() {
        let _ = msg.entry_name(e);
        if let Ok(v) = std::str::from_utf8(msg.entry_value(e)) {
            let _ = (sip_message::unfold(v), sip_message::unquote(v), sip_message::percent_decode(v));
        }
    }
    for via in msg.vias().flatten() {
        let _ = (via.protocol_name(), via.protocol_version(), via.transport(), via.host().as_str(), via.port());
        let _ = (via.branch(), via.received(), via.received_ip(), via.rport(), via.maddr(), via.ttl());
        let _ = via.has_rfc3261_branch();
        for p in via.params().iter() {
            let _ = p;
        }
    }
    let _ = msg.top_via();
    for n in [msg.from(), msg.to()].into_iter().flatten() {
        name_addr(&n);
    }
    let _ = msg.call_id();
    if let Ok(c) = msg.cseq() {
        let _ = c;
    }
    for c in msg.contacts().flatten() {
        if let Some(a) = c.address() {
            name_addr(a);
        }
    }
    for n in msg.routes().chain(msg.record_routes()).flatten() {
        name_addr(&n);
    }
    if let Ok(Some(n)) = msg.refer_to() {
        name_addr(&n);
    }
    let _ = (msg.expires(), msg.min_expires(), msg.max_forwards(), msg.content_length());
    if let Ok(Some(e)) = msg.event() {
        let _ = (e.event_type(), e.package(), e.template(), e.id());
        for p in e.params().iter() {
            let _ = p;
        }
    }
    if let Ok(Some(s)) = msg.subscription_state() {
        let _ = (s.state(), s.expires(), s.reason(), s.retry_after());
    }
    let _ = (msg.sip_etag(), msg.sip_if_match());
    for t in msg.allow_events().chain(msg.tokens(HeaderName::SUPPORTED)) {
        let _ = t;
    }
    if let Ok(Some(ct)) = msg.content_type() {
        let _ = (ct.media_type(), ct.subtype(), ct.is("application", "pidf+xml"));
        for p in ct.params().iter() {
            let _ = p;
        }
    }
    for v in msg.headers_named("x-unknown") {
        let _ = v;
    }
    let valid = msg.validate().is_ok();
    let _ = (msg.can_reply(), msg.has_to_tag());
    if msg.is_request() && msg.check_replyable().is_ok() {
        let mut out = Vec::new();
        let opts = ReplyOptions {
            to_tag: Some("fz1"),
            received: Some("192.0.2.1"),
            rport: Some(5060),
            headers: &[("Retry-After", "5")],
            body: None,
        };
        if sip_message::write_reply(&mut out, &msg, 400, "Bad Request", &opts).is_ok() {
            let back = sip_message::parse(&out).expect("a reply we wrote must parse");
            let reply = Message::new(&out, &back);
            assert_eq!(reply.status_code(), Some(400));
            if valid {
                assert_eq!(reply.call_id().ok(), msg.call_id().ok(), "Call-ID copied");
            }
        }
    }
}

const LIMITS: pidf::Limits = pidf::Limits { max_bytes: 64 * 1024, max_depth: 32, max_nodes: 10_000 };

/// PIDF: the body check, then (for a body that passes) aggregation with itself, the offline
/// form, single-body selection and the basic/activities/sphere lookups.
pub fn pidf(data: &[u8]) {
    let _ = pidf::check_xml(data, &LIMITS);
    if pidf::check_pidf(data, &LIMITS).is_err() {
        return;
    }
    let Ok(doc) = std::str::from_utf8(data) else { return };
    let agg = pidf::aggregate(&[doc, doc]);
    if let Some(a) = &agg {
        let _ = pidf::check_xml(a.as_bytes(), &pidf::Limits { max_bytes: usize::MAX, ..LIMITS });
    }
    let _ = pidf::offline(doc);
    let _ = pidf::single_body(&[doc, doc], "open,closed", "basic");
    let _ = (pidf::check_basic(doc, "open"), pidf::check_activities(doc, "busy"), pidf::sphere(doc));
    let _ = pidf::dummy("sip:a@b");
}

/// dialog-info: the body check, then aggregation in each of Kamailio's modes.
pub fn dialog_info(data: &[u8]) {
    if dialog_info::check(data, &LIMITS).is_err() {
        return;
    }
    let Ok(doc) = std::str::from_utf8(data) else { return };
    for (single, dummy) in [(false, false), (true, false), (true, true)] {
        let options = dialog_info::Options { force_single_dialog: single, force_dummy_dialog: dummy };
        let _ = dialog_info::aggregate("sip:a@example.com", 7, &[doc, doc], options);
    }
    let _ = dialog_info::aggregate("sip:a@example.com", 7, &[doc], Default::default());
}

const SAMPLE_PIDF: &str = r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@example.com"><tuple id="t1"><status><basic>open</basic></status><note>hi</note></tuple><rpid:person id="p"><rpid:activities><rpid:busy/></rpid:activities><rpid:sphere>work</rpid:sphere></rpid:person></presence>"#;

/// pres-rules: parse, evaluate for a watcher in both modes, transform a PIDF document.
pub fn pres_rules(data: &[u8]) {
    let Ok(doc) = std::str::from_utf8(data) else { return };
    let Ok(rules) = pres_rules::Rules::parse(doc) else { return };
    let watcher = pres_rules::Watcher { uri: "sip:bob@example.com", from_domain: "example.com" };
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    for mode in [pres_rules::Mode::Kamailio, pres_rules::Mode::Rfc] {
        for sphere in [None, Some("work")] {
            let decision = rules.evaluate(&watcher, sphere, now, mode, true);
            let _ = rules.transform(&decision, SAMPLE_PIDF, mode);
        }
    }
}

/// JSON-RPC: FIFO framing (the input fed in two pieces), the kamctl repairs, JSON parsing and
/// the envelope checks of every request of a document or batch.
pub fn jsonrpc(data: &[u8]) {
    let mut framer = rpc_framing::JsonFramer::new(4096);
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(cut);
    let mut frames = framer.push(a);
    frames.extend(framer.push(b));
    let mut docs: Vec<Vec<u8>> = frames
        .into_iter()
        .filter_map(|f| match f {
            rpc_framing::Frame::Document(d) => Some(d),
            rpc_framing::Frame::Garbage(_) => None,
        })
        .collect();
    docs.push(data.to_vec());
    for doc in docs {
        let doc = rpc_envelope::escape_raw_controls(&doc);
        match serde_json::from_slice::<serde_json::Value>(&doc) {
            Ok(serde_json::Value::Object(o)) => {
                let _ = rpc_envelope::decode_call(&o);
            }
            Ok(serde_json::Value::Array(items)) => {
                for item in items {
                    if let serde_json::Value::Object(o) = item {
                        let _ = rpc_envelope::decode_call(&o);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => {
                if let Some(name) = rpc_envelope::salvage_reply_name(&doc) {
                    assert!(rpc_envelope::valid_reply_name(&name));
                }
            }
        }
    }
}

fn spans(t: &config_value::Table, out: &mut Vec<std::ops::Range<usize>>) {
    for (k, v) in t {
        out.push(k.span.clone());
        value_spans(v, out);
    }
}

fn value_spans(v: &config_value::Spanned<config_value::Value>, out: &mut Vec<std::ops::Range<usize>>) {
    out.push(v.span.clone());
    match &v.value {
        config_value::Value::Array(items) => items.iter().for_each(|i| value_spans(i, out)),
        config_value::Value::Table(t) => spans(t, out),
        _ => {}
    }
}

/// Config: the TOML reading into the spanned tree, and a diagnostic rendered at every span
/// (and at the syntax error's), as the host reports config errors.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let source = config_diagnostic::Source::new(std::path::Path::new("fuzz.toml"), text.to_string());
    let mut at = Vec::new();
    match config_value::parse(text) {
        Ok(table) => {
            spans(&table, &mut at);
            for (k, _) in &table {
                let _ = config_diagnostic::did_you_mean(&k.value, ["core", "rpc", "modparam", "route"]);
            }
        }
        Err((_, span)) => at.extend(span),
    }
    at.push(0..0);
    at.push(text.len()..text.len() + 5);
    for span in at.into_iter().take(200) {
        let d = config_diagnostic::Diagnostic::new("fuzz", Some(span)).help("help");
        let _ = source.render(&d);
    }
}

/// XMPP: the incremental stanza reader, the input fed in two pieces, each stanza parsed.
pub fn xmpp(data: &[u8]) {
    let mut reader = xmpp_stream::StanzaReader::new(4096);
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(cut);
    for piece in [a, b] {
        reader.feed(piece);
        loop {
            match reader.next_event() {
                Ok(Some(xmpp_stream::Event::Stanza(s))) => {
                    let _ = xmpp_stream::parse_stanza(&s, "jabber:component:accept", |n| {
                        let _ = xmpp_stream::child_text(n, "status");
                    });
                }
                Ok(Some(xmpp_stream::Event::StreamStart(h))) => {
                    let _ = xmpp_stream::header_attr(&h, "id");
                }
                Ok(Some(xmpp_stream::Event::StreamEnd)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Watcher-info, as the presence server writes it from a presentity URI and watchers' URIs and
/// ids (which come from SUBSCRIBEs): the document must be well-formed XML whose watcher text is
/// the URI, whatever the strings hold (XML's forbidden characters aside: SIP cannot carry them).
pub fn winfo(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split('\0');
    let resource = parts.next().unwrap_or("");
    let watchers: Vec<presence::winfo::WatcherEntry> = parts
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|c| presence::winfo::WatcherEntry {
            uri: c[0].to_string(),
            id: c.get(1).map_or_else(|| presence::winfo::waiting_id(c[0]), |s| s.to_string()),
            status: "active",
        })
        .collect();
    let doc = presence::winfo::document(3, true, resource, "presence", &watchers);
    let xml_chars = |s: &str| {
        s.chars().all(|c| matches!(c, '\t' | '\n' | '\r' | ' '..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..))
    };
    if xml_chars(text) && !text.contains('\r') {
        let parsed = roxmltree::Document::parse(&doc).unwrap_or_else(|e| panic!("winfo not well-formed ({e}):\n{doc}"));
        let uris: Vec<&str> =
            parsed.descendants().filter(|n| n.has_tag_name("watcher")).map(|n| n.text().unwrap_or("")).collect();
        let want: Vec<&str> = watchers.iter().map(|w| w.uri.as_str()).collect();
        assert_eq!(uris, want, "watcher URIs survive escaping");
    }
}
