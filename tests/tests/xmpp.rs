//! The SIP/XMPP presence gateway (xmpp + pua + pua_xmpp + presence + presence_xml, the config of
//! configs/xmpp-gateway.toml) against a real XMPP server: Debian's Prosody with an XEP-0114
//! component and two users, and XMPP clients logged in over c2s.
//!
//! (a) a SIP watcher of alice@xmpp.test gets NOTIFYs as alice comes online with a status, goes
//! away, goes offline; (b) bob@xmpp.test, subscribed to sip:romeo@sip.test, gets presence
//! stanzas as romeo's PUBLISHes change; Prosody restarts in the middle and both directions work
//! again once the component has reconnected; a wrong component secret is logged clearly and
//! retried, and the host stays up.

use std::time::{Duration, Instant};

use e2e::notify::{body, next_notify_within};
use e2e::sip::{Client, header, request, status};
use e2e::xmpp::{self, COMPONENT, Prosody, attr};
use e2e::{Host, eventually};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

/// configs/xmpp-gateway.toml on the test's ports, with Prosody's component port and `secret`.
fn gateway_config(prosody: &Prosody, secret: &str) -> String {
    let example = std::fs::read_to_string(e2e::root().join("configs/xmpp-gateway.toml")).expect("example config");
    let config = example
        .replace("127.0.0.1:5060", "127.0.0.1:@SIP@")
        .replace("127.0.0.1:5080", "127.0.0.1:@HTTP@")
        .replace("xmpp_port = 5347", &format!("xmpp_port = {}", prosody.component))
        .replace("xmpp_password = \"s3cr3t\"", &format!("xmpp_password = \"{secret}\""))
        // NOTIFYs to the gateway URIs of XMPP users must reach this host.
        .replace("gateway_domain = \"sip-xmpp.test\"", "gateway_domain = \"127.0.0.1:@SIP@\"")
        .replace("log_level = \"info\"", "log_level = \"debug\"\nmodules_path = [\"@MODULES@\"]");
    assert!(config.contains("@MODULES@") && config.contains(&prosody.component.to_string()), "{config}");
    config
}

fn connections(h: &Host) -> usize {
    h.log().matches("xmpp: connected to").count()
}

fn wait_connected(h: &Host, n: usize) {
    assert!(
        eventually(Duration::from_secs(20), || connections(h) >= n),
        "component connection {n} missing:\n{}",
        h.log()
    );
}

fn pidf(entity: &str, basic: &str, note: &str, activity: Option<&str>) -> String {
    let person = activity.map_or(String::new(), |a| {
        format!("<dm:person id=\"p1\"><rpid:activities><rpid:{a}/></rpid:activities></dm:person>")
    });
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="{entity}"><tuple id="romeo-phone"><status><basic>{basic}</basic></status><note>{note}</note></tuple>{person}</presence>"#
    )
}

/// romeo's PUBLISH straight to the gateway's presence server; returns the ETag.
fn publish_romeo(c: &mut Client, etag: Option<&str>, expires: u32, body: &str) -> Option<String> {
    let mut headers = vec!["Event: presence".to_string(), format!("Expires: {expires}")];
    if let Some(e) = etag {
        headers.push(format!("SIP-If-Match: {e}"));
    }
    if !body.is_empty() {
        headers.push("Content-Type: application/pidf+xml".into());
    }
    let h: Vec<&str> = headers.iter().map(String::as_str).collect();
    let r = c.transact(&request(c, "PUBLISH", "sip:romeo@sip.test", &h, body));
    assert_eq!(status(&r), 200, "{r}");
    header(&r, "SIP-ETag")
}

/// The next NOTIFY whose body satisfies `pred` (earlier ones answered and skipped).
fn notify_where(w: &mut Client, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + T;
    let mut skipped = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(n) = next_notify_within(w, left) {
            if pred(body(&n)) {
                return n;
            }
            skipped.push(body(&n).to_string());
        }
    }
    panic!("no NOTIFY with {what} within {T:?}; bodies seen: {skipped:#?}");
}

/// The next presence stanza from romeo's JID satisfying `pred`.
fn romeo_presence(bob: &mut xmpp::Client, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let romeo = format!("romeo*sip.test@{COMPONENT}");
    bob.wait_for(T, |s| {
        s.starts_with("<presence")
            && attr(s, "from").is_some_and(|f| f.split('/').next() == Some(romeo.as_str()))
            && attr(s, "type").as_deref() != Some("subscribed")
            && pred(s)
    })
    .unwrap_or_else(|| panic!("bob got no presence from {romeo} with {what}; stanzas: {:#?}", bob.seen))
}

#[test]
fn presence_both_ways_through_prosody_with_a_restart() {
    if !xmpp::available() {
        panic!("prosody is not installed: run scripts/install-test-deps.sh");
    }
    let mut prosody = Prosody::start("gateway", "s3cr3t");
    let h = Host::start("xmpp-gateway", &gateway_config(&prosody, "s3cr3t"));
    wait_connected(&h, 1);
    let juliet_uri = |h: &Host| format!("sip:alice*xmpp.test@127.0.0.1:{}", h.sip);

    // (a) alice is online with a status; a SIP watcher subscribes to her gateway URI.
    let mut alice = xmpp::Client::login(prosody.c2s, "alice", "alicepw", "laptop");
    alice.approve = true;
    alice.online("<presence><status>hello from alice</status></presence>");
    let mut watcher = Client::udp(h.sip_addr());
    let sub = request(&watcher, "SUBSCRIBE", &juliet_uri(&h), &["Event: presence", "Expires: 600"], "");
    let r = watcher.transact(&sub);
    assert_eq!(status(&r), 200, "{r}");
    // The gateway asks alice (from the watcher's JID), she approves, Prosody sends her presence.
    let ask = alice
        .wait_for(T, |s| attr(s, "type").as_deref() == Some("subscribe"))
        .unwrap_or_else(|| panic!("no subscribe for alice: {:#?}\n{}", alice.seen, h.log()));
    assert_eq!(attr(&ask, "from").as_deref(), Some(format!("tester*sip.test@{COMPONENT}").as_str()), "{ask}");
    let n = notify_where(&mut watcher, "open and alice's status", |b| {
        b.contains("<basic>open</basic>") && b.contains("hello from alice")
    });
    assert!(body(&n).contains(&format!("alice*xmpp.test@127.0.0.1:{}", h.sip)), "entity: {n}");

    // A second SIP watcher: alice is asked again and leaves it pending, so Prosody acknowledges
    // with an `unavailable` from her bare JID. That is not alice going offline: the first
    // watcher sees no closed state.
    alice.approve = false;
    let mut watcher2 = Client::udp(h.sip_addr());
    let sub2 = request(&watcher2, "SUBSCRIBE", &juliet_uri(&h), &["Event: presence", "Expires: 600"], "")
        .replace("sip:tester@sip.test", "sip:mercutio@sip.test");
    assert_eq!(status(&watcher2.transact(&sub2)), 200);
    alice
        .wait_for(T, |s| {
            attr(s, "type").as_deref() == Some("subscribe")
                && attr(s, "from").is_some_and(|f| f.starts_with("mercutio*sip.test@"))
        })
        .unwrap_or_else(|| panic!("no subscribe from the second watcher: {:#?}", alice.seen));
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        if let Some(n) = next_notify_within(&mut watcher, left) {
            assert!(body(&n).contains("<basic>open</basic>"), "alice is still online:\n{n}\n{}", h.log());
        }
    }
    assert!(
        h.log().contains("ignored: unavailable from a bare JID"),
        "Prosody's acknowledgement reached the gateway:\n{}",
        h.log()
    );
    alice.approve = true;

    let t = Instant::now();
    alice.send("<presence><show>away</show><status>lunch</status></presence>");
    let n = notify_where(&mut watcher, "away", |b| b.contains("rpid:away") && b.contains("lunch"));
    assert!(body(&n).contains("<basic>open</basic>"), "{n}");
    eprintln!("measure: XMPP <presence> to SIP NOTIFY in {:?}", t.elapsed());

    alice.send("<presence type='unavailable'/>");
    notify_where(&mut watcher, "closed", |b| b.contains("<basic>closed</basic>") || !b.contains("<basic>open</basic>"));

    alice.send("<presence><status>back again</status></presence>");
    notify_where(&mut watcher, "open again", |b| b.contains("<basic>open</basic>") && b.contains("back again"));

    // (b) bob subscribes to romeo's JID; romeo PUBLISHes over SIP.
    let mut bob = xmpp::Client::login(prosody.c2s, "bob", "bobpw", "phone");
    bob.online("<presence/>");
    bob.send(&format!("<presence to='romeo*sip.test@{COMPONENT}' type='subscribe'/>"));
    bob.wait_for(T, |s| attr(s, "type").as_deref() == Some("subscribed"))
        .unwrap_or_else(|| panic!("bob's subscription not accepted: {:#?}\n{}\n{}", bob.seen, h.log(), prosody.log()));
    let mut romeo = Client::udp(h.sip_addr());
    let etag = publish_romeo(&mut romeo, None, 600, &pidf("sip:romeo@sip.test", "open", "ready", None));
    let p = romeo_presence(&mut bob, "available", |s| attr(s, "type").is_none() && s.contains("ready"));
    assert!(!p.contains("<show>"), "{p}");
    let t = Instant::now();
    let etag = publish_romeo(
        &mut romeo,
        etag.as_deref(),
        600,
        &pidf("sip:romeo@sip.test", "open", "stepped out", Some("away")),
    );
    romeo_presence(&mut bob, "away", |s| s.contains("<show>away</show>") && s.contains("stepped out"));
    eprintln!("measure: SIP PUBLISH to XMPP <presence> in {:?}", t.elapsed());
    publish_romeo(&mut romeo, etag.as_deref(), 0, "");
    romeo_presence(&mut bob, "unavailable", |s| attr(s, "type").as_deref() == Some("unavailable"));

    // Prosody restarts: the component reconnects and presence flows again both ways.
    let t = Instant::now();
    prosody.restart();
    let restarted = t.elapsed();
    wait_connected(&h, 2);
    eprintln!(
        "measure: Prosody restarted in {restarted:?}, component connected again {:?} after the stop",
        t.elapsed()
    );
    assert!(h.log().contains("XMPP server") && h.log().contains("restarting in"), "the loss is logged:\n{}", h.log());
    let mut alice = xmpp::Client::login(prosody.c2s, "alice", "alicepw", "laptop");
    alice.approve = true;
    alice.online("<presence><status>after the restart</status></presence>");
    notify_where(&mut watcher, "alice after the restart", |b| {
        b.contains("<basic>open</basic>") && b.contains("after the restart")
    });
    let mut bob = xmpp::Client::login(prosody.c2s, "bob", "bobpw", "phone");
    bob.online("<presence/>");
    std::thread::sleep(Duration::from_millis(300));
    let etag = publish_romeo(&mut romeo, None, 600, &pidf("sip:romeo@sip.test", "open", "ready again", None));
    romeo_presence(&mut bob, "available after the restart", |s| attr(s, "type").is_none() && s.contains("ready again"));

    // bob unsubscribes: the SIP subscription ends, and romeo's next PUBLISH reaches him no more.
    let watchers = |h: &Host| h.result("presence.watcher_list", json!(["basic", "sip:romeo@sip.test"])).to_string();
    assert!(watchers(&h).contains("bob*xmpp.test"), "{}", watchers(&h));
    bob.send(&format!("<presence to='romeo*sip.test@{COMPONENT}' type='unsubscribe'/>"));
    assert!(
        eventually(T, || !watchers(&h).contains("bob*xmpp.test")),
        "bob still watches: {}\n{}",
        watchers(&h),
        h.log()
    );
    publish_romeo(&mut romeo, etag.as_deref(), 600, &pidf("sip:romeo@sip.test", "open", "nobody listens", None));
    let late = bob.wait_for(Duration::from_millis(1500), |s| s.contains("nobody listens"));
    assert!(late.is_none(), "presence after the unsubscribe: {late:?}");
    drop(h);
    prosody.stop();
}

#[test]
fn a_wrong_secret_is_logged_and_retried() {
    if !xmpp::available() {
        panic!("prosody is not installed: run scripts/install-test-deps.sh");
    }
    let prosody = Prosody::start("wrong-secret", "s3cr3t");
    let mut h = Host::start("xmpp-wrong-secret", &gateway_config(&prosody, "not-the-secret"));
    let refused = |h: &Host| h.log().matches("not-authorized (Given token does not match calculated token)").count();
    assert!(eventually(Duration::from_secs(10), || refused(&h) >= 2), "no retry after the refusal:\n{}", h.log());
    let log = h.log();
    assert!(log.contains(&format!("refused component {COMPONENT}")) && log.contains("xmpp_password"), "{log}");
    assert!(log.contains("restarting in"), "{log}");
    assert_eq!(connections(&h), 0, "{log}");
    assert!(h.alive(), "the host keeps running");
    let mut c = Client::udp(h.sip_addr());
    let r = c.transact(&request(&c, "OPTIONS", &format!("sip:127.0.0.1:{}", h.sip), &[], ""));
    assert_eq!(status(&r), 200, "{r}");
    // NOTIFYs that belong to no subscription of the gateway, or carry another event, get 481.
    let uri = format!("sip:alice*xmpp.test@127.0.0.1:{}", h.sip);
    for event in ["presence", "dialog", ""] {
        let mut headers = vec!["Subscription-State: active;expires=60", "Content-Type: application/pidf+xml"];
        let ev = format!("Event: {event}");
        if !event.is_empty() {
            headers.push(&ev);
        }
        let r = c.transact(&request(&c, "NOTIFY", &uri, &headers, "<presence><tuple>"));
        assert_eq!(status(&r), 481, "{r}");
    }
    assert!(h.alive());
}

#[test]
fn the_shipped_config_checks() {
    let out = e2e::cli(&["check", "-c", e2e::root().join("configs/xmpp-gateway.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", e2e::text(&out));
}

#[test]
fn the_server_backend_is_refused_clearly() {
    let dir = e2e::TempDir::new("xmpp-backend-server");
    let config = e2e::render(
        &std::fs::read_to_string(e2e::root().join("configs/xmpp-gateway.toml"))
            .unwrap()
            .replace("backend = \"component\"", "backend = \"server\"")
            .replace("127.0.0.1:5060", &format!("127.0.0.1:{}", e2e::free_port()))
            .replace("127.0.0.1:5080", "127.0.0.1:@HTTP@")
            .replace("log_level = \"info\"", "log_level = \"info\"\nmodules_path = [\"@MODULES@\"]"),
        e2e::free_port(),
    );
    let path = dir.write("puahost.toml", &config);
    let mut child = std::process::Command::new(e2e::puahost())
        .args(["run", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("puahost started with backend = \"server\"");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = e2e::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("backend \"server\" (XMPP server-to-server mode) is not built"), "{text}");
}

#[test]
fn messages_both_ways() {
    if !xmpp::available() {
        panic!("prosody is not installed: run scripts/install-test-deps.sh");
    }
    let prosody = Prosody::start("messages", "s3cr3t");
    // romeo's phone: the next hop of the MESSAGEs the gateway makes from XMPP messages.
    let phone_port = e2e::free_port();
    let config = gateway_config(&prosody, "s3cr3t").replace(
        "# outbound_proxy = \"sip:127.0.0.1:5070\"",
        &format!("outbound_proxy = \"sip:127.0.0.1:{phone_port}\""),
    );
    let h = Host::start("xmpp-messages", &config);
    wait_connected(&h, 1);
    let mut bob = xmpp::Client::login(prosody.c2s, "bob", "bobpw", "phone");
    bob.online("<presence/>");

    // SIP → XMPP: plain text and CPIM.
    let mut sip = Client::udp(h.sip_addr());
    let to_bob = format!("sip:bob*xmpp.test@127.0.0.1:{}", h.sip);
    let r = sip.transact(&request(&sip, "MESSAGE", &to_bob, &["Content-Type: text/plain"], "wherefore art thou <b>"));
    assert_eq!(status(&r), 200, "{r}\n{}", h.log());
    let m = bob
        .wait_for(T, |s| s.starts_with("<message"))
        .unwrap_or_else(|| panic!("no message for bob: {:#?}\n{}\n{}", bob.seen, h.log(), prosody.log()));
    assert_eq!(attr(&m, "from").as_deref(), Some(format!("tester*sip.test@{COMPONENT}").as_str()), "{m}");
    assert_eq!(attr(&m, "type").as_deref(), Some("chat"), "{m}");
    assert!(m.contains("<body>wherefore art thou &lt;b&gt;</body>"), "{m}");
    let cpim =
        "From: <sip:tester@sip.test>\r\nTo: <sip:bob*xmpp.test@gw>\r\n\r\nContent-Type: text/plain\r\n\r\nby CPIM";
    let r = sip.transact(&request(&sip, "MESSAGE", &to_bob, &["Content-Type: message/cpim"], cpim));
    assert_eq!(status(&r), 200, "{r}");
    bob.wait_for(T, |s| s.starts_with("<message") && s.contains("<body>by CPIM</body>"))
        .unwrap_or_else(|| panic!("no CPIM message for bob: {:#?}", bob.seen));
    // What cannot go to XMPP is refused by the route's on_fail.
    let r = sip.transact(&request(&sip, "MESSAGE", &to_bob, &["Content-Type: application/octet-stream"], "\u{1}"));
    assert_eq!(status(&r), 404, "{r}");

    // XMPP → SIP: bob writes to romeo's JID; the MESSAGE reaches romeo's phone.
    let sock = std::net::UdpSocket::bind(("127.0.0.1", phone_port)).expect("phone port");
    sock.set_read_timeout(Some(T)).unwrap();
    bob.send(&format!(
        "<message to='romeo*sip.test@{COMPONENT}' type='chat'><body>but soft &amp; quiet</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    ));
    let mut buf = [0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| panic!("no MESSAGE at the phone ({e}):\n{}", h.log()));
    let m = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(m.starts_with("MESSAGE sip:romeo@sip.test SIP/2.0\r\n"), "{m}");
    assert!(header(&m, "From").is_some_and(|f| f.contains(&format!("<sip:bob*xmpp.test@127.0.0.1:{}>", h.sip))), "{m}");
    assert_eq!(header(&m, "Content-Type").as_deref(), Some("text/plain"), "{m}");
    assert!(header(&m, "Contact").is_none(), "RFC 3428: no Contact in MESSAGE\n{m}");
    assert!(m.ends_with("\r\n\r\nbut soft & quiet"), "{m}");
    sock.send_to(e2e::kamailio::reply(&m, 200, "OK").as_bytes(), from).unwrap();
}
