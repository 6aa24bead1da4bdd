//! pua_usrloc end to end: registrar + usrloc + pua + pua_usrloc publishing to presence +
//! presence_xml on the same host (pua's outbound_proxy is the host itself). A watcher of the
//! AoR sees `open` when the phone registers, `closed` when it unregisters or its registration
//! expires; a REGISTER with two contacts publishes both; a REGISTER whose route did not call
//! `pua_set_publish()` publishes nothing.

use std::time::Duration;

use e2e::PRESENCE_ROUTES;
use e2e::notify::{next_notify_within, publications};
use e2e::sip::{Client, request, status};
use e2e::{Host, eventually};
use serde_json::Value;
use serde_json::json;

fn server(name: &str) -> Host {
    server_with(
        name,
        "",
        r#"[[route]]
method = "REGISTER"
hdr.X-Silent = "yes"
do = ["save(\"location\")"]
[[route]]
method = "REGISTER"
do = ["pua_set_publish()", "save(\"location\")"]
"#,
    )
}

/// registrar + pua_usrloc + presence on one host; `pua_usrloc` is extra modparam lines,
/// `routes` the REGISTER routes.
fn server_with(name: &str, pua_usrloc: &str, routes: &str) -> Host {
    let config = format!(
        r#"loadmodule = ["usrloc", "registrar", "pua", "pua_usrloc", "presence", "presence_xml"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@", "tcp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.usrloc]
timer_interval = 1
[modparam.registrar]
min_expires = 2
[modparam.pua]
db_url = "sqlite://pua.sqlite"
outbound_proxy = "sip:127.0.0.1:@SIP@"
[modparam.pua_usrloc]
default_domain = "example.com"
{pua_usrloc}
[modparam.presence_xml]
force_active = 1
{routes}
{PRESENCE_ROUTES}"#
    );
    Host::start(name, &config)
}

fn register(c: &Client, h: &Host, user: &str, call_id: &str, cseq: u32, extra: &[&str]) -> String {
    let local = c.local();
    let mut m = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r{cseq}\r\nTo: <sip:{user}@example.com>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
    );
    for line in extra {
        m.push_str(line);
        m.push_str("\r\n");
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    let _ = h;
    m
}

fn basic(notify: &str) -> &'static str {
    let body = notify.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    if body.contains("<basic>open</basic>") {
        "open"
    } else if body.contains("<basic>closed</basic>") {
        "closed"
    } else {
        "none"
    }
}

/// A watcher subscribed to `user@example.com` (its first NOTIFY consumed).
fn watch(h: &Host, user: &str) -> Client {
    let mut w = Client::udp(h.sip_addr());
    let sub = request(&w, "SUBSCRIBE", &format!("sip:{user}@example.com"), &["Event: presence", "Expires: 600"], "");
    let r = w.transact(&sub);
    assert_eq!(status(&r), 200, "{r}");
    next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY");
    w
}

#[test]
fn register_publishes_open_and_unregister_or_expiry_closed() {
    let h = server("pua-usrloc-flow");
    let mut w = watch(&h, "alice");
    let mut phone = Client::udp(h.sip_addr());
    let contact = format!("Contact: <sip:alice@{}>", phone.local());

    let r = phone.transact(&register(&phone, &h, "alice", "ua-1", 1, &["Expires: 60", &contact]));
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY");
    assert_eq!(basic(&n), "open", "{n}");
    assert!(n.contains("entity=\"alice@example.com\"") || n.contains("alice@example.com"), "{n}");
    assert_eq!(publications(&h), 1);

    // Unregister: the publication ends, the watcher sees closed.
    let r = phone.transact(&register(&phone, &h, "alice", "ua-1", 2, &["Expires: 0", &contact]));
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY");
    assert_eq!(basic(&n), "closed", "{n}\n{}", h.log());
    assert!(eventually(Duration::from_secs(3), || publications(&h) == 0), "{}", h.log());

    // Register again for 2 s and let it expire: usrloc's timer ends the publication (Kamailio
    // sends nothing here without branch_flag, its issue #3273).
    let r = phone.transact(&register(&phone, &h, "alice", "ua-1", 3, &["Expires: 2", &contact]));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(basic(&next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY")), "open");
    let n = next_notify_within(&mut w, Duration::from_secs(8)).expect("a NOTIFY");
    assert_eq!(basic(&n), "closed", "{n}");
    assert!(eventually(Duration::from_secs(3), || publications(&h) == 0), "{}", h.log());
}

#[test]
fn every_contact_publishes_and_only_when_asked() {
    let h = server("pua-usrloc-contacts");
    let mut phone = Client::udp(h.sip_addr());

    // Two contacts in one REGISTER: two publications (Kamailio publishes only the first).
    let r = phone.transact(&register(
        &phone,
        &h,
        "bob",
        "ua-2",
        1,
        &["Expires: 60", "Contact: <sip:bob@192.0.2.1>", "Contact: <sip:bob@192.0.2.2>"],
    ));
    assert_eq!(status(&r), 200, "{r}");
    assert!(eventually(Duration::from_secs(5), || publications(&h) == 2), "{}", h.log());

    // Removing one ends only its publication; the watcher still sees open.
    let mut w = watch(&h, "bob");
    let r = phone.transact(&register(&phone, &h, "bob", "ua-2", 2, &["Contact: <sip:bob@192.0.2.1>;expires=0"]));
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY");
    assert_eq!(basic(&n), "open", "the other contact is still registered: {n}");
    assert!(eventually(Duration::from_secs(3), || publications(&h) == 1));

    // A REGISTER whose route does not call pua_set_publish() publishes nothing.
    let r =
        phone.transact(&register(&phone, &h, "carol", "ua-3", 1, &["X-Silent: yes", "Contact: <sip:carol@192.0.2.3>"]));
    assert_eq!(status(&r), 200, "{r}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(publications(&h), 1, "{}", h.log());
    // ... but its removal is harmless (pua has nothing to end).
    let r = phone.transact(&register(&phone, &h, "carol", "ua-3", 2, &["X-Silent: yes", "Contact: *", "Expires: 0"]));
    assert_eq!(status(&r), 200, "{r}");
}

/// The acceptance against Kamailio: pua_usrloc publishes through pua's outbound_proxy to
/// Kamailio 5.6's presence server (Debian packages); its `presentity` table holds alice's open
/// document after the REGISTER, and no live row after the unregister or after bob's
/// registration expires.
#[test]
fn publishes_to_kamailios_presence_server() {
    let k = e2e::kamailio::Kamailio::start_presence();
    let config = format!(
        r#"loadmodule = ["usrloc", "registrar", "pua", "pua_usrloc"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.usrloc]
timer_interval = 1
[modparam.registrar]
min_expires = 2
[modparam.pua]
db_url = "sqlite://pua.sqlite"
outbound_proxy = "{}"
[modparam.pua_usrloc]
default_domain = "example.com"
[[route]]
method = "REGISTER"
do = ["pua_set_publish()", "save(\"location\")"]
"#,
        k.uri()
    );
    let h = Host::start("pua-usrloc-kamailio", &config);
    let mut phone = Client::udp(h.sip_addr());
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let live = |user: &str| -> Vec<e2e::kamailio::Presentity> {
        k.presentity().into_iter().filter(|p| p.username == user && p.expires > now()).collect()
    };
    // Rows Kamailio still has, expired or not: a PUBLISH with Expires 0 deletes the row at
    // once, while an expired one stays until Kamailio's clean_period (100 s).
    let rows = |user: &str| k.presentity().into_iter().filter(|p| p.username == user).count();

    let r =
        phone.transact(&register(&phone, &h, "alice", "k-1", 1, &["Expires: 60", "Contact: <sip:alice@192.0.2.1>"]));
    assert_eq!(status(&r), 200, "{r}");
    assert!(eventually(Duration::from_secs(5), || live("alice").len() == 1), "{}\n{}", h.log(), k.log());
    let p = &live("alice")[0];
    assert_eq!((p.domain.as_str(), p.event.as_str()), ("example.com", "presence"));
    assert!(p.body.contains("<basic>open</basic>") && p.body.contains("entity=\"alice@example.com\""), "{}", p.body);

    let r = phone.transact(&register(&phone, &h, "alice", "k-1", 2, &["Contact: <sip:alice@192.0.2.1>;expires=0"]));
    assert_eq!(status(&r), 200, "{r}");
    assert!(eventually(Duration::from_secs(5), || rows("alice") == 0), "{:?}\n{}", k.presentity(), h.log());

    let r = phone.transact(&register(&phone, &h, "bob", "k-2", 1, &["Expires: 2", "Contact: <sip:bob@192.0.2.2>"]));
    assert_eq!(status(&r), 200, "{r}");
    assert!(eventually(Duration::from_secs(5), || live("bob").len() == 1), "{}", h.log());
    // The row goes (not just expires): the expiry sent PUBLISH Expires 0, and pua keeps no
    // record of it.
    assert!(eventually(Duration::from_secs(8), || rows("bob") == 0), "{:?}\n{}", k.presentity(), h.log());
    assert!(
        eventually(Duration::from_secs(3), || !h.result("pua.list", json!([])).to_string().contains("bob@example.com")),
        "{}",
        h.result("pua.list", json!([]))
    );
}

/// With branch_flag, contacts saved with that branch flag publish without pua_set_publish();
/// a re-REGISTER refreshes the publication with the new expiry; the removal of a contact ends
/// its publication even when the unregistering request does not carry the flag.
#[test]
fn branch_flag_refresh_and_removal() {
    let h = server_with(
        "pua-usrloc-bflag",
        "branch_flag = 5",
        r#"[[route]]
method = "REGISTER"
hdr.X-Flag = "yes"
do = ["setbflag(5)", "save(\"location\")"]
[[route]]
method = "REGISTER"
do = ["save(\"location\")"]
"#,
    );
    let mut phone = Client::udp(h.sip_addr());
    let expires = |h: &Host| -> Option<i64> {
        let list = h.result("presence.presentity_list", json!([]));
        list.as_array()?.iter().find(|p| p["user"] == "dan").and_then(|p: &Value| p["expires"].as_i64())
    };
    let r = phone.transact(&register(
        &phone,
        &h,
        "dan",
        "bf-1",
        1,
        &["X-Flag: yes", "Expires: 60", "Contact: <sip:dan@192.0.2.4>"],
    ));
    assert_eq!(status(&r), 200, "{r}");
    assert!(eventually(Duration::from_secs(5), || expires(&h).is_some()), "{}", h.log());
    let first = expires(&h).unwrap();

    // The refresh: same publication (still one), its expiry moved by the new Expires.
    let r = phone.transact(&register(
        &phone,
        &h,
        "dan",
        "bf-1",
        2,
        &["X-Flag: yes", "Expires: 600", "Contact: <sip:dan@192.0.2.4>"],
    ));
    assert_eq!(status(&r), 200, "{r}");
    assert!(
        eventually(Duration::from_secs(5), || expires(&h).is_some_and(|e| e > first + 300)),
        "{:?} {first}",
        expires(&h)
    );
    assert_eq!(publications(&h), 1);

    // No flag: no publication for erin.
    let r = phone.transact(&register(&phone, &h, "erin", "bf-2", 1, &["Contact: <sip:erin@192.0.2.5>"]));
    assert_eq!(status(&r), 200, "{r}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(publications(&h), 1, "{}", h.log());

    // Unregistering without the flag still ends dan's publication.
    let r = phone.transact(&register(&phone, &h, "dan", "bf-1", 3, &["Expires: 0", "Contact: <sip:dan@192.0.2.4>"]));
    assert_eq!(status(&r), 200, "{r}");
    assert!(eventually(Duration::from_secs(5), || publications(&h) == 0), "{}", h.log());
}

/// baresip (Debian's baresip-core, a real SIP phone) as the phone, in `dir`, registering as
/// `user@example.com` through `host` for `regint` seconds.
fn baresip(dir: &std::path::Path, h: &Host, user: &str, regint: u32, quit_after: u32) -> std::process::Child {
    let account =
        format!("<sip:{user}@example.com>;outbound=\"sip:127.0.0.1:{}\";regint={regint};answermode=manual", h.sip);
    e2e::baresip(dir, &account, quit_after)
}

/// The acceptance with a real phone: baresip registers, the watcher sees open; baresip quits
/// (and unregisters), the watcher sees closed; baresip registers for 3 s and is killed, the
/// watcher sees closed when the registration expires.
#[test]
fn baresip_registers_and_the_watcher_follows() {
    assert!(
        std::process::Command::new("baresip").arg("-h").output().is_ok(),
        "baresip is not installed (Debian package baresip-core; scripts/install-test-deps.sh installs it)"
    );
    let h = server("pua-usrloc-baresip");
    let mut w = watch(&h, "frank");

    let dir = h.dir.join("baresip-1");
    let mut phone = baresip(&dir, &h, "frank", 600, 3);
    let n = next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY");
    assert_eq!(basic(&n), "open", "{n}\n{}", std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default());
    let n = next_notify_within(&mut w, Duration::from_secs(8)).expect("a NOTIFY");
    assert_eq!(basic(&n), "closed", "baresip unregistered when it quit: {n}");
    let _ = phone.wait();

    let dir = h.dir.join("baresip-2");
    let mut phone = baresip(&dir, &h, "frank", 3, 60);
    assert_eq!(basic(&next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY")), "open");
    // A crash: no unregistration; the registration expires (3 s, timer every second). baresip
    // refreshes before expiry, so kill it at once.
    let _ = phone.kill();
    let _ = phone.wait();
    let n = next_notify_within(&mut w, Duration::from_secs(10)).expect("a NOTIFY");
    assert_eq!(basic(&n), "closed", "the expiry ended the publication: {n}\n{}", h.log());
}

/// The shipped configs/registrar-presence.toml, on free ports in a temporary directory: a phone
/// registers, the watcher sees open; it unregisters, the watcher sees closed.
#[test]
fn shipped_registrar_presence_config_works() {
    let text = std::fs::read_to_string(e2e::root().join("configs/registrar-presence.toml")).expect("config");
    let dir = e2e::TempDir::new("registrar-presence-config");
    let config = text
        .replace("127.0.0.1:5060", "127.0.0.1:@SIP@")
        .replace("127.0.0.1:5080", "127.0.0.1:@HTTP@")
        .replace("/tmp/puahost_rpc.fifo", &dir.join("rpc.fifo").display().to_string())
        .replace("[core]\n", "[core]\nmodules_path = [\"@MODULES@\"]\n");
    assert!(config.contains("@SIP@") && config.contains("@HTTP@"), "the config's addresses changed: {config}");
    let h = Host::start_in(dir, &config);
    let mut w = watch(&h, "olga");
    let mut phone = Client::udp(h.sip_addr());
    let contact = format!("Contact: <sip:olga@{}>", phone.local());
    let r = phone.transact(&register(&phone, &h, "olga", "cfg-1", 1, &["Expires: 300", &contact]));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(basic(&next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY")), "open");
    let r = phone.transact(&register(&phone, &h, "olga", "cfg-1", 2, &["Expires: 0", &contact]));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(basic(&next_notify_within(&mut w, Duration::from_secs(5)).expect("a NOTIFY")), "closed");
    assert!(h.dir.join("registrar.sqlite").is_file(), "the database is next to the config");
}
