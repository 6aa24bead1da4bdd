//! The real peers the `pua` tests talk to: Kamailio's own presence server (started from
//! `tests/kamailio/presence.cfg` by `e2e::kamailio::Kamailio`) answers PUBLISH and SUBSCRIBE
//! as the reference describes. These tests check the harness itself with a raw SIP client, so
//! a pua test that fails against Kamailio fails because of pua, not because of the peer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::kamailio::{self, Kamailio};
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
