//! The real peers the `pua` tests talk to, checked with a raw SIP client, so that a pua test
//! that fails against them fails because of pua, not because of the peer:
//! * Kamailio's own presence server (`e2e::kamailio::Kamailio`, `tests/kamailio/presence.cfg`)
//!   answers PUBLISH and SUBSCRIBE as the reference describes;
//! * the SIPp presence-server scenarios `tests/sipp/pua_*.xml` (`e2e::kamailio::SippServer`)
//!   accept the wire Kamailio's pua produces (kamailio-behaviour.md §2.5, §12), replayed here
//!   by hand, and fail (exit code ≠ 0, with a `FAIL: …` line) when it is wrong.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::kamailio::{self, Kamailio, SippServer};
use e2e::sip::{self, Client};

const PIDF_OPEN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@sip.test\">\n  <tuple id=\"t1\"><status><basic>open</basic></status></tuple>\n</presence>\n";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Reads messages on `client` until one satisfies `want` (answering any NOTIFY on the way with
/// 200); panics after `timeout`.
fn wait_for(client: &mut Client, k: &Kamailio, what: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = client.recv(left).unwrap_or_else(|| panic!("no {what} within {timeout:?}:\n{}", k.log()));
        if msg.starts_with("NOTIFY ") {
            client.send(kamailio::reply(&msg, 200, "OK").as_bytes());
        }
        if want(&msg) {
            return msg;
        }
    }
}

/// The method in `msg`'s CSeq.
fn cseq_method(msg: &str) -> String {
    sip::header(msg, "CSeq").and_then(|c| c.split_whitespace().nth(1).map(str::to_string)).unwrap_or_default()
}

#[test]
fn kamailio_presence_server_publish_subscribe_notify() {
    if let Err(e) = kamailio::check_installed() {
        panic!("{e}");
    }
    let k = Kamailio::start_presence();

    // PUBLISH (UDP) → 200 with SIP-ETag and the granted Expires; the row is in presentity.
    let mut publisher = Client::udp(k.addr());
    let publish = sip::request(
        &publisher,
        "PUBLISH",
        "sip:alice@sip.test",
        &["Event: presence", "Expires: 60", "Content-Type: application/pidf+xml"],
        PIDF_OPEN,
    );
    let r = publisher.transact(&publish);
    assert_eq!(sip::status(&r), 200, "PUBLISH:\n{r}\n{}", k.log());
    let etag1 = sip::header(&r, "SIP-ETag").unwrap_or_else(|| panic!("200 without SIP-ETag:\n{r}"));
    assert_eq!(sip::header(&r, "Expires").as_deref(), Some("60"), "{r}");
    // Kamailio's ETag format: a.<startup time>.<pid>.<counter>.<publication number>
    assert!(etag1.starts_with("a.") && etag1.split('.').count() == 5, "ETag format: {etag1}");
    let rows = k.presentity();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!((row.username.as_str(), row.domain.as_str(), row.event.as_str()), ("alice", "sip.test", "presence"));
    assert_eq!(row.etag, etag1);
    assert!((row.expires - (now() + 60)).abs() <= 3, "expires {} vs now+60 {}", row.expires, now() + 60);
    assert!(row.body.contains("<basic>open</basic>"), "{}", row.body);

    // SUBSCRIBE from another UDP socket → 200 (subs_respond_200=1) and a NOTIFY with the state.
    let mut watcher = Client::udp(k.addr());
    let subscribe = sip::request(&watcher, "SUBSCRIBE", "sip:alice@sip.test", &["Event: presence", "Expires: 60"], "");
    let call_id = sip::header(&subscribe, "Call-ID").unwrap();
    watcher.send(subscribe.as_bytes());
    let mut ok = None;
    let mut notify = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ok.is_none() || notify.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = watcher.recv(left).unwrap_or_else(|| panic!("no 200 + NOTIFY for the SUBSCRIBE:\n{}", k.log()));
        if msg.starts_with("NOTIFY ") {
            watcher.send(kamailio::reply(&msg, 200, "OK").as_bytes());
            notify.get_or_insert(msg);
        } else if cseq_method(&msg) == "SUBSCRIBE" && sip::status(&msg) >= 200 {
            ok = Some(msg);
        }
    }
    let (ok, notify) = (ok.unwrap(), notify.unwrap());
    assert!(matches!(sip::status(&ok), 200 | 202), "SUBSCRIBE:\n{ok}");
    assert_eq!(sip::header(&ok, "Expires").as_deref(), Some("60"), "{ok}");
    assert!(sip::header(&ok, "Contact").is_some(), "SUBSCRIBE 2xx without Contact:\n{ok}");
    let server_tag = kamailio::tag(&sip::header(&ok, "To").unwrap()).expect("To-tag in the 2xx");
    assert_eq!(sip::header(&notify, "Call-ID").as_deref(), Some(call_id.as_str()), "{notify}");
    assert_eq!(sip::header(&notify, "Event").as_deref(), Some("presence"), "{notify}");
    assert_eq!(kamailio::tag(&sip::header(&notify, "From").unwrap()).as_deref(), Some(server_tag.as_str()));
    assert!(sip::header(&notify, "Subscription-State").is_some_and(|s| s.starts_with("active;expires=")), "{notify}");
    assert_eq!(sip::header(&notify, "Content-Type").as_deref(), Some("application/pidf+xml"), "{notify}");
    assert!(kamailio::body(&notify).contains("<basic>open</basic>"), "NOTIFY body:\n{notify}");

    let watchers = k.active_watchers();
    assert_eq!(watchers.len(), 1, "{watchers:?}");
    let w = &watchers[0];
    assert_eq!(w.presentity_uri, "sip:alice@sip.test");
    assert_eq!((w.watcher_username.as_str(), w.watcher_domain.as_str()), ("tester", "sip.test"));
    assert_eq!(w.callid, call_id);
    assert_eq!(w.to_tag, server_tag);
    assert_eq!(w.status, 1, "force_active=1 makes the subscription active");
    assert_eq!(w.contact, format!("sip:tester@{}", watcher.local()));

    // A refresh PUBLISH (SIP-If-Match, no body) gets a new ETag: a.….<n+1>.
    let refresh = sip::request(
        &publisher,
        "PUBLISH",
        "sip:alice@sip.test",
        &["Event: presence", "Expires: 60", &format!("SIP-If-Match: {etag1}")],
        "",
    );
    let r = publisher.transact(&refresh);
    assert_eq!(sip::status(&r), 200, "refresh PUBLISH:\n{r}");
    let etag2 = sip::header(&r, "SIP-ETag").expect("SIP-ETag");
    assert_ne!(etag2, etag1);
    assert!(etag2.ends_with(".1"), "publication number incremented: {etag1} -> {etag2}");
    assert_eq!(k.presentity().iter().map(|p| p.etag.clone()).collect::<Vec<_>>(), vec![etag2.clone()]);
    // A refresh notifies the watchers too; the stale ETag now gets 412.
    wait_for(&mut watcher, &k, "NOTIFY after the refresh", Duration::from_secs(10), |m| m.starts_with("NOTIFY "));
    let stale = sip::request(
        &publisher,
        "PUBLISH",
        "sip:alice@sip.test",
        &["Event: presence", "Expires: 60", &format!("SIP-If-Match: {etag1}")],
        "",
    );
    let r = publisher.transact(&stale);
    assert_eq!(sip::status(&r), 412, "stale ETag:\n{r}");

    // Removal (Expires: 0) → 200, a NOTIFY with the offline state (basic closed), no row left.
    let remove = sip::request(
        &publisher,
        "PUBLISH",
        "sip:alice@sip.test",
        &["Event: presence", "Expires: 0", &format!("SIP-If-Match: {etag2}")],
        "",
    );
    let r = publisher.transact(&remove);
    assert_eq!(sip::status(&r), 200, "removal PUBLISH:\n{r}");
    let closed =
        wait_for(&mut watcher, &k, "NOTIFY after the removal", Duration::from_secs(10), |m| m.starts_with("NOTIFY "));
    assert!(kamailio::body(&closed).contains("<basic>closed</basic>"), "offline NOTIFY:\n{closed}");
    assert!(k.presentity().is_empty(), "{:?}", k.presentity());

    // Unsubscribe in the dialog → 200 and a terminated NOTIFY; the watcher row goes.
    let contact = sip::header(&ok, "Contact").unwrap();
    let target = contact.trim_start_matches('<').split('>').next().unwrap().to_string();
    // Same dialog: the original From (tag) and Call-ID, the server's To-tag, the next CSeq.
    let unsubscribe = sip::request(&watcher, "SUBSCRIBE", &target, &["Event: presence", "Expires: 0"], "");
    let unsubscribe = with_header(&unsubscribe, "CSeq", "2 SUBSCRIBE");
    let unsubscribe = with_header(&unsubscribe, "From", &sip::header(&subscribe, "From").unwrap());
    let unsubscribe = with_header(&unsubscribe, "To", &format!("<sip:alice@sip.test>;tag={server_tag}"));
    let unsubscribe = with_header(&unsubscribe, "Call-ID", &call_id);
    watcher.send(unsubscribe.as_bytes());
    let r = wait_for(&mut watcher, &k, "200 to the unsubscribe", Duration::from_secs(10), |m| {
        sip::status(m) >= 200 && cseq_method(m) == "SUBSCRIBE"
    });
    assert_eq!(sip::status(&r), 200, "unsubscribe:\n{r}");
    assert_eq!(sip::header(&r, "Expires").as_deref(), Some("0"), "{r}");
    let last = wait_for(&mut watcher, &k, "terminated NOTIFY", Duration::from_secs(10), |m| {
        m.starts_with("NOTIFY ") && sip::header(m, "Subscription-State").is_some_and(|s| s.starts_with("terminated"))
    });
    assert_eq!(sip::header(&last, "Subscription-State").as_deref(), Some("terminated;reason=timeout"), "{last}");
    assert!(e2e::eventually(Duration::from_secs(5), || k.active_watchers().is_empty()), "{:?}", k.active_watchers());
}

/// PUBLISH over TCP works too (the pua tests may use either transport).
#[test]
fn kamailio_presence_server_publish_over_tcp() {
    let k = Kamailio::start_presence();
    let mut c = Client::tcp(k.addr());
    let publish = sip::request(
        &c,
        "PUBLISH",
        "sip:bob@sip.test",
        &["Event: presence", "Expires: 3600", "Content-Type: application/pidf+xml"],
        &PIDF_OPEN.replace("alice", "bob"),
    );
    let r = c.transact(&publish);
    assert_eq!(sip::status(&r), 200, "{r}");
    assert!(sip::header(&r, "SIP-ETag").is_some(), "{r}");
    let rows = k.presentity();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].username, "bob");
}

/// `start_presence_with` overrides modparams: max_expires caps the PUBLISH Expires, and a
/// SUBSCRIBE below min_expires gets 423 with Min-Expires.
#[test]
fn kamailio_presence_server_extra_modparams() {
    let k = Kamailio::start_presence_with(
        "modparam(\"presence\", \"max_expires\", 1800)\nmodparam(\"presence\", \"min_expires\", 120)",
    );
    let mut c = Client::udp(k.addr());
    let publish = sip::request(
        &c,
        "PUBLISH",
        "sip:carol@sip.test",
        &["Event: presence", "Expires: 3601", "Content-Type: application/pidf+xml"],
        &PIDF_OPEN.replace("alice", "carol"),
    );
    let r = c.transact(&publish);
    assert_eq!(sip::status(&r), 200, "{r}");
    assert_eq!(sip::header(&r, "Expires").as_deref(), Some("1800"), "max_expires caps the PUBLISH:\n{r}");
    let subscribe = sip::request(&c, "SUBSCRIBE", "sip:carol@sip.test", &["Event: presence", "Expires: 60"], "");
    let r = c.transact(&subscribe);
    assert_eq!(sip::status(&r), 423, "{r}");
    assert_eq!(sip::header(&r, "Min-Expires").as_deref(), Some("120"), "{r}");
}

/// Replaces the first header `name` of `msg` with `value`.
fn with_header(msg: &str, name: &str, value: &str) -> String {
    let (head, body) = msg.split_once("\r\n\r\n").unwrap();
    let mut done = false;
    let lines: Vec<String> = head
        .split("\r\n")
        .map(|l| match l.split_once(':') {
            Some((n, _)) if !done && n.trim().eq_ignore_ascii_case(name) => {
                done = true;
                format!("{name}: {value}")
            }
            _ => l.to_string(),
        })
        .collect();
    format!("{}\r\n\r\n{body}", lines.join("\r\n"))
}

// ---------------------------------------------------------------------------------------------
// The SIPp scenarios for pua, fed the wire Kamailio's pua sends.

/// A unique token for Call-IDs, tags and branches.
fn unique() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}x{n}x{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos())
}

/// A PUBLISH as Kamailio's pua builds it (§2.5.1): a new transaction with a fresh Call-ID and
/// From-tag, R-URI = To = From = `uri`, then Max-Forwards, Event, Expires, [SIP-If-Match],
/// [Content-Type] (only with a body), no Contact. `extra` lines go before Content-Length.
fn pua_publish(c: &Client, uri: &str, expires: u32, etag: Option<&str>, body: Option<&str>, extra: &str) -> String {
    let n = unique();
    let local = c.local();
    let mut m = format!(
        "PUBLISH {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n};rport\r\nTo: <{uri}>\r\nFrom: <{uri}>;tag={n}\r\nCSeq: 10 PUBLISH\r\nCall-ID: {n}@127.0.0.1\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: {expires}\r\n"
    );
    if let Some(e) = etag {
        m.push_str(&format!("SIP-If-Match: {e}\r\n"));
    }
    if body.is_some() {
        m.push_str("Content-Type: application/pidf+xml\r\n");
    }
    m.push_str(extra);
    let body = body.unwrap_or("");
    m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    m
}

/// Sends `msg` and returns the final reply, or None after 3 s (a failed check gets none).
fn ask(c: &mut Client, msg: &str) -> Option<String> {
    c.send(msg.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let r = c.recv(deadline.saturating_duration_since(std::time::Instant::now()))?;
        if sip::status(&r) >= 200 {
            return Some(r);
        }
    }
}

/// [`pua_publish`] from `c`, then [`ask`].
fn publish(
    c: &mut Client,
    uri: &str,
    expires: u32,
    etag: Option<&str>,
    body: Option<&str>,
    extra: &str,
) -> Option<String> {
    let msg = pua_publish(c, uri, expires, etag, body, extra);
    ask(c, &msg)
}

/// `(status, SIP-ETag, Expires)` of a reply.
fn publish_reply(r: &str) -> (u16, String, String) {
    (sip::status(r), sip::header(r, "SIP-ETag").unwrap_or_default(), sip::header(r, "Expires").unwrap_or_default())
}

#[test]
fn sipp_pua_publish_flow_accepts_the_reference_wire() {
    let mut s =
        SippServer::start("pua_publish_flow", 4, &[("expires", "3601"), ("granted", "30")], Duration::from_secs(30));
    let mut c = Client::udp(s.addr());
    let uri = "sip:alice@sip.test";
    let r = publish(&mut c, uri, 3601, None, Some(PIDF_OPEN), "").expect("reply to the initial PUBLISH");
    assert_eq!(publish_reply(&r), (200, "etag1".into(), "30".into()), "{r}");
    let r = publish(&mut c, uri, 25, Some("etag1"), None, "").expect("reply to the refresh");
    assert_eq!(publish_reply(&r), (200, "etag2".into(), "25".into()), "{r}");
    let r = publish(&mut c, uri, 3590, Some("etag2"), Some(PIDF_OPEN), "").expect("reply to the modify");
    assert_eq!(publish_reply(&r), (200, "etag3".into(), "3590".into()), "{r}");
    let r = publish(&mut c, uri, 0, Some("etag3"), None, "").expect("reply to the remove");
    assert_eq!(publish_reply(&r), (200, "etag3".into(), "0".into()), "{r}");
    s.passed();
}

/// baresip's refresh (Content-Type with an empty body) is not what pua sends: the scenario fails.
#[test]
fn sipp_pua_publish_flow_fails_a_refresh_with_content_type() {
    let mut s =
        SippServer::start("pua_publish_flow", 4, &[("expires", "3601"), ("granted", "30")], Duration::from_secs(3));
    let mut c = Client::udp(s.addr());
    let uri = "sip:alice@sip.test";
    let r = publish(&mut c, uri, 3601, None, Some(PIDF_OPEN), "").expect("reply to the initial PUBLISH");
    assert_eq!(sip::status(&r), 200, "{r}");
    let refresh = pua_publish(&c, uri, 25, Some("etag1"), None, "Content-Type: application/pidf+xml\r\n");
    assert_eq!(ask(&mut c, &refresh), None, "a failed check sends no reply");
    let err = s.wait().expect_err("sipp must fail");
    assert!(err.contains("FAIL: PUBLISH 2 (refresh): no Content-Type without a body"), "{err}");
}

/// Step 2 may be a modify (Kamailio retries only then) or a bodiless refresh (puahost retries
/// that too, with the stored body).
#[test]
fn sipp_pua_publish_412_accepts_the_reference_wire() {
    for refresh in [false, true] {
        let keys = [("expires", "3601"), ("granted", if refresh { "20" } else { "3601" })];
        let mut s = SippServer::start("pua_publish_412", 3, &keys, Duration::from_secs(30));
        let mut c = Client::udp(s.addr());
        let uri = "sip:alice@sip.test";
        let r = publish(&mut c, uri, 3601, None, Some(PIDF_OPEN), "").expect("reply to the initial PUBLISH");
        assert_eq!(publish_reply(&r), (200, "etag1".into(), keys[1].1.into()), "{r}");
        let body = if refresh { None } else { Some(PIDF_OPEN) };
        let r = publish(&mut c, uri, 3590, Some("etag1"), body, "").expect("reply to the modify/refresh");
        assert_eq!(sip::status(&r), 412, "{r}");
        // §2.5.2: the full body again as a new publication, expires = desired - now + 3 (+1).
        let r = publish(&mut c, uri, 3604, None, Some(PIDF_OPEN), "").expect("reply to the retry");
        assert_eq!(publish_reply(&r), (200, "etag2".into(), "3604".into()), "{r}");
        s.passed();
    }
}

#[test]
fn sipp_pua_publish_423_accepts_a_retry_with_min_expires() {
    let mut s =
        SippServer::start("pua_publish_423", 2, &[("expires", "61"), ("min_expires", "1800")], Duration::from_secs(30));
    let mut c = Client::udp(s.addr());
    let uri = "sip:alice@sip.test";
    let r = publish(&mut c, uri, 61, None, Some(PIDF_OPEN), "").expect("reply to the initial PUBLISH");
    assert_eq!(sip::status(&r), 423, "{r}");
    assert_eq!(sip::header(&r, "Min-Expires").as_deref(), Some("1800"), "{r}");
    let r = publish(&mut c, uri, 1800, None, Some(PIDF_OPEN), "").expect("reply to the retry");
    assert_eq!(publish_reply(&r), (200, "etag1".into(), "1800".into()), "{r}");
    s.passed();
}

#[test]
fn sipp_pua_publish_423_fails_a_retry_above_min_expires() {
    let mut s =
        SippServer::start("pua_publish_423", 2, &[("expires", "61"), ("min_expires", "1800")], Duration::from_secs(3));
    let mut c = Client::udp(s.addr());
    let uri = "sip:alice@sip.test";
    let r = publish(&mut c, uri, 61, None, Some(PIDF_OPEN), "").expect("reply to the initial PUBLISH");
    assert_eq!(sip::status(&r), 423, "{r}");
    assert_eq!(publish(&mut c, uri, 1801, None, Some(PIDF_OPEN), ""), None);
    let err = s.wait().expect_err("sipp must fail");
    assert!(err.contains("Expires must equal Min-Expires: got '1801', expected '1800'"), "{err}");
}

/// A subscription dialog on the watcher side, as Kamailio's pua keeps it (§2.5.3, §2.5.4).
struct Subscriber {
    c: Client,
    pres: String,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
    /// R-URI: the presentity, then the 200's Contact.
    target: String,
    /// The 200's Record-Route, reversed.
    route: Vec<String>,
    notifies: Vec<String>,
}

impl Subscriber {
    fn new(server: std::net::SocketAddr, pres: &str) -> Subscriber {
        let n = unique();
        Subscriber {
            c: Client::udp(server),
            pres: pres.to_string(),
            call_id: format!("{n}@127.0.0.1"),
            from_tag: n,
            to_tag: None,
            cseq: 100,
            target: pres.to_string(),
            route: Vec::new(),
            notifies: Vec::new(),
        }
    }

    /// A SUBSCRIBE in this dialog (initial while there is no To-tag): Max-Forwards, Event,
    /// Contact, Expires; no Accept.
    fn request(&mut self, expires: u32, with_route: bool) -> String {
        if self.to_tag.is_some() {
            self.cseq += 1;
        }
        let local = self.c.local();
        let route: String =
            if with_route { self.route.iter().map(|r| format!("Route: {r}\r\n")).collect() } else { String::new() };
        let to_tag = self.to_tag.as_ref().map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "SUBSCRIBE {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{};rport\r\n{route}To: <{}>{to_tag}\r\nFrom: <sip:watcher@sip.test>;tag={}\r\nCSeq: {} SUBSCRIBE\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nContact: <sip:watcher@{local}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n",
            self.target,
            unique(),
            self.pres,
            self.from_tag,
            self.cseq,
            self.call_id
        )
    }

    /// Sends `msg`; returns the final reply (None after 5 s), answering NOTIFYs meanwhile.
    fn ask(&mut self, msg: &str) -> Option<String> {
        self.c.send(msg.as_bytes());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let m = self.c.recv(deadline.saturating_duration_since(std::time::Instant::now()))?;
            if m.starts_with("NOTIFY ") {
                self.answer(m);
            } else if sip::status(&m) >= 200 {
                return Some(m);
            }
        }
    }

    fn answer(&mut self, notify: String) {
        self.c.send(kamailio::reply(&notify, 200, "OK").as_bytes());
        self.notifies.push(notify);
    }

    /// Waits until `n` NOTIFYs were answered.
    fn wait_notifies(&mut self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.notifies.len() < n {
            let m = self
                .c
                .recv(deadline.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or_else(|| panic!("only {} NOTIFYs, {n} expected", self.notifies.len()));
            if m.starts_with("NOTIFY ") {
                self.answer(m);
            }
        }
    }

    /// Takes the dialog from a 2xx to the initial SUBSCRIBE.
    fn established(&mut self, ok: &str) {
        assert_eq!(sip::status(ok), 200, "{ok}");
        self.to_tag = Some(kamailio::tag(&sip::header(ok, "To").unwrap()).expect("To-tag"));
        let contact = sip::header(ok, "Contact").expect("Contact in the 200");
        self.target = contact.trim_start_matches('<').split('>').next().unwrap().to_string();
        self.route = sip::headers(ok, "Record-Route").into_iter().rev().collect();
    }
}

#[test]
fn sipp_pua_subscribe_flow_accepts_the_reference_wire() {
    let mut s =
        SippServer::start("pua_subscribe_flow", 1, &[("expires", "3610"), ("granted", "30")], Duration::from_secs(30));
    let mut w = Subscriber::new(s.addr(), "sip:alice@sip.test");
    let msg = w.request(3610, true);
    let ok = w.ask(&msg).expect("200 to the SUBSCRIBE");
    assert_eq!(sip::header(&ok, "Expires").as_deref(), Some("30"), "{ok}");
    assert_eq!(sip::header(&ok, "Record-Route"), Some(format!("<sip:127.0.0.1:{};lr>", s.port)), "{ok}");
    w.established(&ok);
    w.wait_notifies(1);
    let n = &w.notifies[0];
    assert_eq!(sip::header(n, "Call-ID").as_deref(), Some(w.call_id.as_str()), "{n}");
    assert_eq!(sip::header(n, "Subscription-State").as_deref(), Some("active;expires=30"), "{n}");
    assert!(kamailio::body(n).contains("<basic>open</basic>"), "{n}");
    let msg = w.request(3590, true);
    let r = w.ask(&msg).expect("200 to the refresh");
    assert_eq!((sip::status(&r), sip::header(&r, "Expires")), (200, Some("3590".into())), "{r}");
    let msg = w.request(0, true);
    let r = w.ask(&msg).expect("200 to the unsubscribe");
    assert_eq!((sip::status(&r), sip::header(&r, "Expires")), (200, Some("0".into())), "{r}");
    s.passed();
}

/// A refresh that ignores the Record-Route fails the scenario.
#[test]
fn sipp_pua_subscribe_flow_fails_a_refresh_without_route() {
    let mut s =
        // sipp fails at the refresh and exits then; the timeout only bounds a hang (a loaded CI
        // machine took 4 s to get there once the suite grew).
        SippServer::start("pua_subscribe_flow", 1, &[("expires", "3610"), ("granted", "30")], Duration::from_secs(15));
    let mut w = Subscriber::new(s.addr(), "sip:alice@sip.test");
    let msg = w.request(3610, true);
    let ok = w.ask(&msg).expect("200 to the SUBSCRIBE");
    w.established(&ok);
    w.wait_notifies(1);
    let msg = w.request(3590, false);
    assert_eq!(w.ask(&msg), None);
    let err = s.wait().expect_err("sipp must fail");
    assert!(err.contains("FAIL: refresh SUBSCRIBE: the Route from the 200's Record-Route: got ''"), "{err}");
}

#[test]
fn sipp_pua_subscribe_481_accepts_the_reference_wire() {
    let mut s =
        SippServer::start("pua_subscribe_481", 2, &[("expires", "3610"), ("granted", "30")], Duration::from_secs(30));
    let mut w = Subscriber::new(s.addr(), "sip:alice@sip.test");
    let msg = w.request(3610, true);
    let ok = w.ask(&msg).expect("200 to the SUBSCRIBE");
    w.established(&ok);
    let msg = w.request(3590, true);
    let r = w.ask(&msg).expect("reply to the refresh");
    assert_eq!(sip::status(&r), 481, "{r}");
    // §2.5.4: a new initial SUBSCRIBE (new Call-ID and From-tag) to the stored remote contact.
    let mut again = Subscriber::new(s.addr(), "sip:alice@sip.test");
    again.target = w.target.clone();
    let msg = again.request(3603, true);
    let ok = again.ask(&msg).expect("200 to the new SUBSCRIBE");
    assert_eq!((sip::status(&ok), sip::header(&ok, "Expires")), (200, Some("3603".into())), "{ok}");
    assert_ne!(kamailio::tag(&sip::header(&ok, "To").unwrap()), w.to_tag, "a new dialog has a new To-tag");
    s.passed();
}

#[test]
fn sipp_pua_subscribe_early_notify_accepts_the_reference_wire() {
    let mut s = SippServer::start("pua_subscribe_early_notify", 1, &[("expires", "3610")], Duration::from_secs(30));
    let mut w = Subscriber::new(s.addr(), "sip:alice@sip.test");
    let msg = w.request(3610, true);
    let ok = w.ask(&msg).expect("200 to the SUBSCRIBE");
    assert_eq!(w.notifies.len(), 1, "the NOTIFY comes before the 200");
    let early = &w.notifies[0];
    assert_eq!(kamailio::tag(&sip::header(early, "To").unwrap()), Some(w.from_tag.clone()), "{early}");
    let server_tag = kamailio::tag(&sip::header(early, "From").unwrap());
    w.established(&ok);
    assert_eq!(w.to_tag, server_tag, "the 200 has the NOTIFY's tag");
    w.wait_notifies(2);
    assert!(kamailio::body(&w.notifies[1]).contains("<basic>closed</basic>"), "{}", w.notifies[1]);
    assert_eq!(sip::header(&w.notifies[1], "CSeq").as_deref(), Some("2 NOTIFY"));
    s.passed();
}
