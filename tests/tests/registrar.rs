//! usrloc + registrar end to end: REGISTER per RFC 3261 §10 over real UDP (add, refresh,
//! remove one, `*`, a contact parameter overriding Expires, clamping to max_expires, q-values,
//! out-of-order CSeq), malformed REGISTERs refused with nothing stored, expiry on the timer,
//! `lookup("location")` relaying a MESSAGE to the registered phone (through its Path, with
//! Route headers, to a sipp edge proxy), usrloc's matching_mode 1 (sipp) and 2, the ul.* RPCs,
//! sipp's registration scenario, the `location` table across restarts on SQLite, PostgreSQL
//! and MariaDB, and db_mode 4 (read-only) on SQLite.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use e2e::dbs::Database;
use e2e::kamailio::{SippServer, reply};
use e2e::sip::{Client, header, headers, request, status};
use e2e::{Host, database_tests, eventually};
use serde_json::{Value, json};

/// A registrar; `usrloc` is extra `[modparam.usrloc]` lines.
fn registrar(name: &str, usrloc: &str) -> Host {
    registrar_with(name, usrloc, "")
}

/// A registrar with extra `[modparam.registrar]` lines too.
fn registrar_with(name: &str, usrloc: &str, registrar: &str) -> Host {
    let config = format!(
        r#"loadmodule = ["usrloc", "registrar"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@", "tcp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.usrloc]
timer_interval = 1
{usrloc}
[modparam.registrar]
min_expires = 2
max_expires = 900
{registrar}
[[route]]
method = "REGISTER"
hdr.X-Nat = "yes"
do = ["setbflag(6)", "save(\"location\")"]
[[route]]
method = "REGISTER"
do = ["save(\"location\")"]
[[route]]
method = "MESSAGE"
hdr.X-Want-Nat = "yes"
do = ["lookup(\"location\")", "isbflagset(6)", "t_relay()"]
on_fail = "404 Not Found"
[[route]]
method = ["MESSAGE", "INVITE"]
do = ["lookup(\"location\")", "t_relay()"]
on_fail = "404 Not Found"
"#
    );
    Host::start(name, &config)
}

/// A REGISTER for `user` from `c` with `Call-ID: call_id` and `CSeq: cseq`; `extra` are
/// header lines (Contact, Expires, ...).
fn register(c: &Client, h: &Host, user: &str, call_id: &str, cseq: u32, extra: &[&str]) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let mut m = format!(
        "REGISTER sip:127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/{} {};branch=z9hG4bK-reg-{pid}-{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@sip.test>;tag=r{n}\r\nTo: <sip:{user}@sip.test>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n",
        h.sip,
        c.transport(),
        c.local()
    );
    for line in extra {
        m.push_str(line);
        m.push_str("\r\n");
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m
}

/// `(contact URI, expires)` of every Contact of a 200.
fn bindings(r: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = headers(r, "Contact")
        .iter()
        .map(|c| {
            let uri = c.split('>').next().unwrap_or("").trim_start_matches('<').to_string();
            let e = c.split(";expires=").nth(1).and_then(|e| e.split(';').next()).and_then(|e| e.parse().ok());
            (uri, e.unwrap_or(0))
        })
        .collect();
    v.sort();
    v
}

fn lookup(h: &Host, aor: &str) -> Value {
    h.rpc("ul.lookup", json!(["location", aor]))
}

fn contact_count(h: &Host) -> usize {
    let d = h.result("ul.dump", json!([]));
    d["Domains"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["Domain"]["AoRs"].as_array().cloned().unwrap_or_default())
        .map(|a| a["Info"]["Contacts"].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn register_refresh_remove_star_and_expiry() {
    let h = registrar("registrar-basic", "");
    let mut c = Client::udp(h.sip_addr());
    let a = format!("sip:alice@{}", c.local());
    let b = "sip:alice@192.0.2.7:5070".to_string();

    // Add: the header's expiry.
    let r = c.transact(&register(&c, &h, "alice", "reg-1", 1, &["Expires: 600", &format!("Contact: <{a}>")]));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(bindings(&r), [(a.clone(), 600)]);

    // A second binding, its parameter overriding the header, with a q-value.
    let r = c.transact(&register(
        &c,
        &h,
        "alice",
        "reg-2",
        1,
        &["Expires: 600", &format!("Contact: <{b}>;expires=120;q=0.5")],
    ));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(bindings(&r), [(a.clone(), 600), (b.clone(), 120)], "the 200 lists every binding");
    assert!(headers(&r, "Contact").iter().any(|v| v.ends_with(";q=0.5")), "{r}");

    // Refresh with a higher CSeq; an over-long expiry is clamped to max_expires (900).
    let r = c.transact(&register(&c, &h, "alice", "reg-1", 2, &["Expires: 999999", &format!("Contact: <{a}>")]));
    assert_eq!(bindings(&r), [(a.clone(), 900), (b.clone(), 120)], "{r}");
    // Below min_expires (2): raised.
    let r = c.transact(&register(&c, &h, "alice", "reg-2", 2, &[&format!("Contact: <{b}>;expires=1")]));
    assert_eq!(bindings(&r), [(a.clone(), 900), (b.clone(), 2)], "{r}");

    // The same CSeq again (a new transaction, not a retransmission) and an older one: 500,
    // nothing changes.
    let r = c.transact(&register(&c, &h, "alice", "reg-1", 2, &["Expires: 30", &format!("Contact: <{a}>")]));
    assert_eq!(status(&r), 500, "{r}");
    assert_eq!(header(&r, "P-Registrar-Error").as_deref(), Some("Retransmission"));
    let r = c.transact(&register(&c, &h, "alice", "reg-1", 1, &["Expires: 30", &format!("Contact: <{a}>")]));
    assert_eq!((status(&r), header(&r, "P-Registrar-Error").as_deref()), (500, Some("Out of order request")));

    // A query (no Contact) lists the bindings.
    let r = c.transact(&register(&c, &h, "alice", "reg-9", 1, &[]));
    assert_eq!(bindings(&r).len(), 2, "{r}");

    // ul.lookup has them, with received and socket.
    let l = lookup(&h, "alice");
    assert_eq!(l["result"]["AoR"], "alice", "{l}");
    let list = l["result"]["Contacts"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let first = list.iter().find(|c| c["Contact"]["Address"] == a.as_str()).expect("contact a");
    assert_eq!(first["Contact"]["Received"], "[not set]", "the contact is where the REGISTER came from");
    assert_eq!(first["Contact"]["Socket"], format!("udp:127.0.0.1:{}", h.sip));
    assert_eq!(first["Contact"]["Call-ID"], "reg-1");
    let other = list.iter().find(|c| c["Contact"]["Address"] == b.as_str()).expect("contact b");
    assert_eq!(other["Contact"]["Received"], format!("sip:{}", c.local()), "behind NAT: the source is kept");

    // B expires on the timer (2 s, timer every second).
    assert!(
        eventually(Duration::from_secs(6), || lookup(&h, "alice")["result"]["Contacts"].as_array().map_or(0, Vec::len)
            == 1),
        "{}",
        lookup(&h, "alice")
    );

    // Remove one binding with expires=0, then everything with `*`.
    let c2 = "sip:alice@192.0.2.8".to_string();
    c.transact(&register(&c, &h, "alice", "reg-3", 1, &[&format!("Contact: <{c2}>")]));
    let r = c.transact(&register(&c, &h, "alice", "reg-3", 2, &[&format!("Contact: <{c2}>;expires=0")]));
    assert_eq!(bindings(&r), [(a.clone(), bindings(&r)[0].1)], "{r}");
    let r = c.transact(&register(&c, &h, "alice", "reg-4", 1, &["Expires: 0", "Contact: *"]));
    assert_eq!((status(&r), bindings(&r).len()), (200, 0), "{r}");
    let l = lookup(&h, "alice");
    assert_eq!(l["error"]["code"], 404, "{l}");
    assert_eq!(contact_count(&h), 0);
}

/// use_path stores the Path and returns it in the 200; max_contacts refuses a binding too many
/// with 503 and stores nothing of that REGISTER.
#[test]
fn path_and_max_contacts() {
    let h = registrar_with("registrar-path", "", "use_path = 1\nmax_contacts = 2");
    let mut c = Client::udp(h.sip_addr());
    let path = "<sip:edge.example.com;lr>";
    let r =
        c.transact(&register(&c, &h, "jill", "p-1", 1, &[&format!("Path: {path}"), "Contact: <sip:jill@192.0.2.21>"]));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(header(&r, "Path").as_deref(), Some(path), "{r}");
    assert_eq!(lookup(&h, "jill")["result"]["Contacts"][0]["Contact"]["Path"], path);

    let r = c.transact(&register(&c, &h, "jill", "p-2", 1, &["Contact: <sip:jill@192.0.2.22>"]));
    assert_eq!(bindings(&r).len(), 2, "{r}");
    let r = c.transact(&register(&c, &h, "jill", "p-3", 1, &["Contact: <sip:jill@192.0.2.23>"]));
    assert_eq!(status(&r), 503, "{r}");
    assert_eq!(header(&r, "P-Registrar-Error").as_deref(), Some("Too many registered contacts"));
    assert_eq!(lookup(&h, "jill")["result"]["Contacts"].as_array().map_or(0, Vec::len), 2);
    // Replacing one within the limit is fine: remove one and add one in the same REGISTER.
    let r = c.transact(&register(
        &c,
        &h,
        "jill",
        "p-2",
        2,
        &["Contact: <sip:jill@192.0.2.22>;expires=0", "Contact: <sip:jill@192.0.2.23>"],
    ));
    assert_eq!(status(&r), 200, "{r}");
    let mut got: Vec<String> = bindings(&r).into_iter().map(|(u, _)| u).collect();
    got.sort();
    assert_eq!(got, ["sip:jill@192.0.2.21", "sip:jill@192.0.2.23"]);
}

#[test]
fn malformed_registers_are_refused_and_store_nothing() {
    let h = registrar("registrar-bad", "");
    let mut c = Client::udp(h.sip_addr());
    let ok = format!("Contact: <sip:bob@{}>", c.local());
    // A Contact the SIP core cannot read is answered 400 before any route runs; the others
    // reach save(), which says why in P-Registrar-Error.
    let cases: [(&[&str], Option<&str>); 6] = [
        (&["Contact: <sip:bob@192.0.2.1;expires=5"], None),
        (&["Contact: <mailto:bob@example.com>"], Some("Contact parse error")),
        (&["Expires: soon", &ok], Some("Expires parse error")),
        (&[&format!("{ok};expires=later")], Some("Invalid expires param in contact")),
        (&[&format!("{ok};q=7")], Some("Invalid q param in contact")),
        (&["Contact: *"], Some("* used in contact and expires is not zero")),
    ];
    for (i, (extra, why)) in cases.iter().enumerate() {
        let r = c.transact(&register(&c, &h, "bob", &format!("bad-{i}"), 1, extra));
        assert_eq!(status(&r), 400, "{extra:?}: {r}");
        if why.is_some() {
            assert_eq!(header(&r, "P-Registrar-Error").as_deref(), *why, "{extra:?}: {r}");
        }
    }
    let r = c.transact(&register(&c, &h, "bob", "bad-x", 1, &["Expires: 0", "Contact: *, <sip:bob@192.0.2.1>"]));
    assert_eq!(header(&r, "P-Registrar-Error").as_deref(), Some("* used in contact and more than 1 contact"), "{r}");
    // To without a user part.
    let m = register(&c, &h, "bob", "bad-y", 1, &[&ok]).replace("To: <sip:bob@sip.test>", "To: <sip:sip.test>");
    let r = c.transact(&m);
    assert_eq!((status(&r), header(&r, "P-Registrar-Error").as_deref()), (400, Some("No username in To URI")), "{r}");
    assert_eq!(contact_count(&h), 0, "nothing was stored");

    // A good one after them works, and a bad one then leaves it as it was.
    let r = c.transact(&register(&c, &h, "bob", "good", 1, &[&ok]));
    assert_eq!(status(&r), 200, "{r}");
    let before = lookup(&h, "bob")["result"].clone();
    let r = c.transact(&register(&c, &h, "bob", "good", 2, &[&ok, "Contact: <sip:bob@192.0.2.1>;q=x"]));
    assert_eq!(status(&r), 400, "{r}");
    assert_eq!(lookup(&h, "bob")["result"], before);
}

/// lookup("location") rewrites the Request-URI to the registered contact and t_relay()
/// forwards the MESSAGE there; an unregistered user gets 404.
#[test]
fn lookup_relays_to_the_registered_contact() {
    let h = registrar("registrar-lookup", "");
    let mut phone = Client::udp(h.sip_addr());
    let contact = format!("sip:carol@{}", phone.local());
    let r = phone.transact(&register(&phone, &h, "carol", "reg-carol", 1, &[&format!("Contact: <{contact}>")]));
    assert_eq!(status(&r), 200, "{r}");

    let mut sender = Client::udp(h.sip_addr());
    let msg =
        request(&sender, "MESSAGE", &format!("sip:carol@127.0.0.1:{}", h.sip), &["Content-Type: text/plain"], "hi");
    sender.send(msg.as_bytes());
    let got = phone.recv(Duration::from_secs(5)).expect("the MESSAGE reaches the phone");
    assert!(got.starts_with(&format!("MESSAGE {contact} SIP/2.0")), "{got}");
    phone.send(reply(&got, 200, "OK").as_bytes());
    let r = sender.recv(Duration::from_secs(5)).expect("200 upstream");
    assert_eq!(status(&r), 200, "{r}");

    let msg =
        request(&sender, "MESSAGE", &format!("sip:dave@127.0.0.1:{}", h.sip), &["Content-Type: text/plain"], "hi");
    let r = sender.transact(&msg);
    assert_eq!(status(&r), 404, "{r}");
}

/// A phone behind NAT registers a Contact with its private address; lookup() sends the
/// MESSAGE to the address the REGISTER came from (the destination URI), with the Request-URI
/// still the registered Contact, as Kamailio does with received + $du.
#[test]
fn lookup_reaches_a_phone_behind_nat_at_its_received_address() {
    let h = registrar("registrar-nat", "");
    let mut phone = Client::udp(h.sip_addr());
    // 192.0.2.0/24 is TEST-NET-1: nothing answers there, so only the received address works.
    let contact = "sip:erin@192.0.2.10:5062".to_string();
    let r = phone.transact(&register(&phone, &h, "erin", "reg-erin", 1, &[&format!("Contact: <{contact}>")]));
    assert_eq!(status(&r), 200, "{r}");

    let mut sender = Client::udp(h.sip_addr());
    let msg =
        request(&sender, "MESSAGE", &format!("sip:erin@127.0.0.1:{}", h.sip), &["Content-Type: text/plain"], "hi");
    sender.send(msg.as_bytes());
    let got = phone.recv(Duration::from_secs(5)).expect("the MESSAGE reaches the phone at its source address");
    assert!(got.starts_with(&format!("MESSAGE {contact} SIP/2.0")), "{got}");
    phone.send(reply(&got, 200, "OK").as_bytes());
    let r = sender.recv(Duration::from_secs(5)).expect("200 upstream");
    assert_eq!(status(&r), 200, "{r}");
}

/// A phone registered over TCP is reached over its own connection: the relay finds the
/// connection by the contact's address; the stored received address says transport=tcp when
/// the contact names another address.
#[test]
fn lookup_reaches_a_tcp_phone_over_its_connection() {
    let h = registrar("registrar-tcp", "");
    let mut phone = Client::tcp(h.sip_addr());
    let contact = format!("sip:kim@{};transport=tcp", phone.local());
    let r = phone.transact(&register(&phone, &h, "kim", "tcp-1", 1, &[&format!("Contact: <{contact}>")]));
    assert_eq!(status(&r), 200, "{r}");
    let socket = &lookup(&h, "kim")["result"]["Contacts"][0]["Contact"]["Socket"];
    assert_eq!(*socket, format!("tcp:127.0.0.1:{}", h.sip));

    let mut sender = Client::udp(h.sip_addr());
    let msg = request(&sender, "MESSAGE", &format!("sip:kim@127.0.0.1:{}", h.sip), &["Content-Type: text/plain"], "hi");
    sender.send(msg.as_bytes());
    let got = phone.recv(Duration::from_secs(5)).expect("the MESSAGE reaches the phone over its connection");
    assert!(got.starts_with(&format!("MESSAGE {contact} SIP/2.0")), "{got}");
    phone.send(reply(&got, 200, "OK").as_bytes());
    assert_eq!(status(&sender.recv(Duration::from_secs(5)).expect("200 upstream")), 200);

    let other = "sip:kim@192.0.2.30:5060";
    let r = phone.transact(&register(&phone, &h, "kim", "tcp-2", 1, &[&format!("Contact: <{other}>")]));
    assert_eq!(status(&r), 200, "{r}");
    let l = lookup(&h, "kim");
    let c = l["result"]["Contacts"].as_array().unwrap().iter().find(|c| c["Contact"]["Address"] == other).cloned();
    assert_eq!(c.unwrap()["Contact"]["Received"], format!("sip:{};transport=tcp", phone.local()), "{l}");
}

#[test]
fn rpc_dump_lookup_rm() {
    let h = registrar("registrar-rpc", "");
    let mut c = Client::udp(h.sip_addr());
    for (user, n) in [("erin", 1), ("erin", 2), ("frank", 1)] {
        let r = c.transact(&register(
            &c,
            &h,
            user,
            &format!("{user}-{n}"),
            1,
            &[&format!("Contact: <sip:{user}@192.0.2.{n}>")],
        ));
        assert_eq!(status(&r), 200, "{r}");
    }
    let d = h.result("ul.dump", json!([]));
    let dom = &d["Domains"][0]["Domain"];
    assert_eq!(dom["Domain"], "location", "{d}");
    assert_eq!(dom["AoRs"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(dom["AoRs"][0]["Info"]["AoR"], "erin");
    assert_eq!(dom["AoRs"][0]["Info"]["Contacts"].as_array().unwrap().len(), 2);
    assert!(dom["AoRs"][0]["Info"]["Contacts"][0]["Contact"]["Expires"].as_i64().unwrap() > 850);
    let brief = h.result("ul.dump", json!(["brief"]));
    assert!(brief["Domains"][0]["Domain"]["AoRs"][0]["Info"]["Contacts"][0]["Contact"].get("Call-ID").is_none());

    assert_eq!(h.rpc("ul.lookup", json!(["nosuch", "erin"]))["error"]["message"], "Domain not found");
    assert_eq!(h.rpc("ul.lookup", json!(["location", "nobody"]))["error"]["code"], 404);
    h.result("ul.rm_contact", json!(["location", "erin", "sip:erin@192.0.2.1"]));
    assert_eq!(lookup(&h, "erin")["result"]["Contacts"].as_array().unwrap().len(), 1);
    assert_eq!(h.rpc("ul.rm_contact", json!(["location", "erin", "sip:erin@192.0.2.9"]))["error"]["code"], 404);
    h.result("ul.rm", json!(["location", "erin"]));
    assert_eq!(lookup(&h, "erin")["error"]["code"], 404);
    assert_eq!(contact_count(&h), 1, "frank stays");
}

/// sipp registers, refreshes, sends a malformed Contact and unregisters
/// (tests/sipp/register.xml), 20 phones.
#[test]
fn sipp_register_scenario() {
    let h = registrar("registrar-sipp", "");
    let scenario = e2e::root().join("tests/sipp/register.xml");
    let err = h.dir.join("sipp-err.log");
    let out = std::process::Command::new("sipp")
        .args(["-sf", scenario.to_str().unwrap(), "-m", "20", "-r", "20", "-i", "127.0.0.1", "-s", "phone"])
        .args(["-p", &e2e::free_port().to_string()])
        .args(["-nostdin", "-timeout", "30s", "-trace_err", "-error_file", err.to_str().unwrap()])
        .arg(format!("127.0.0.1:{}", h.sip))
        .output()
        .expect("sipp is missing: run scripts/install-test-deps.sh (Debian package sip-tester)");
    assert!(
        out.status.success(),
        "sipp failed ({:?}):\n{}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&err).unwrap_or_default(),
        h.log()
    );
    assert_eq!(contact_count(&h), 0, "every phone unregistered");
}

/// Runs `tests/sipp/<scenario>.xml` as phones (UAC) against `h`, `calls` calls: `Ok` when sipp
/// exited 0 (every check passed), else its output and error log.
fn sipp_phones(h: &Host, scenario: &str, calls: u32) -> Result<(), String> {
    let file = e2e::root().join(format!("tests/sipp/{scenario}.xml"));
    let err = h.dir.join(&format!("sipp-{scenario}-err.log"));
    let _ = std::fs::remove_file(&err);
    let out = std::process::Command::new("sipp")
        .args(["-sf", file.to_str().unwrap(), "-m", &calls.to_string(), "-r", "10", "-i", "127.0.0.1", "-s", "phone"])
        .args(["-p", &e2e::free_port().to_string()])
        .args(["-nostdin", "-timeout", "20s", "-trace_err", "-error_file", err.to_str().unwrap()])
        .arg(format!("127.0.0.1:{}", h.sip))
        .output()
        .expect("sipp is missing: run scripts/install-test-deps.sh (Debian package sip-tester)");
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "sipp failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&err).unwrap_or_default()
    ))
}

/// usrloc `matching_mode = 1`: the same Contact URI from two Call-IDs is two bindings, each
/// refreshed and removed on its own (tests/sipp/register_callid_matching.xml, 5 phones). The
/// same scenario fails against matching_mode 0, where the second Call-ID takes the binding over.
#[test]
fn matching_mode_1_keeps_a_binding_per_call_id() {
    let h = registrar("registrar-match-callid", "matching_mode = 1");
    if let Err(e) = sipp_phones(&h, "register_callid_matching", 5) {
        panic!("{e}\n{}", h.log());
    }
    assert_eq!(contact_count(&h), 0, "every binding was removed");

    // The same URI twice in ul.lookup, one per Call-ID.
    let mut c = Client::udp(h.sip_addr());
    let uri = "sip:lena@192.0.2.40";
    for call in ["m1-a", "m1-b"] {
        let r = c.transact(&register(&c, &h, "lena", call, 1, &[&format!("Contact: <{uri}>")]));
        assert_eq!(status(&r), 200, "{r}");
    }
    let l = lookup(&h, "lena");
    let mut calls: Vec<String> = l["result"]["Contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Contact"]["Call-ID"].as_str().unwrap_or("").to_string())
        .collect();
    calls.sort();
    assert_eq!(calls, ["m1-a", "m1-b"], "{l}");
    // An old CSeq is still refused within its own Call-ID.
    let r = c.transact(&register(&c, &h, "lena", "m1-a", 1, &[&format!("Contact: <{uri}>")]));
    assert_eq!(status(&r), 500, "{r}");

    let h0 = registrar("registrar-match-uri", "");
    assert!(sipp_phones(&h0, "register_callid_matching", 1).is_err(), "matching_mode 0 must fail the scenario");
}

/// usrloc `matching_mode = 2`: the same Contact URI registered through two edge proxies (two
/// Paths) is two bindings; a REGISTER through one of them refreshes only its own.
#[test]
fn matching_mode_2_keeps_a_binding_per_path() {
    let h = registrar_with("registrar-match-path", "matching_mode = 2", "use_path = 1");
    let mut c = Client::udp(h.sip_addr());
    let uri = "sip:mia@192.0.2.41";
    let edge = |n: u32| format!("Path: <sip:edge{n}.test;lr>");
    let r = c.transact(&register(&c, &h, "mia", "m2", 1, &[&edge(1), "Expires: 600", &format!("Contact: <{uri}>")]));
    assert_eq!(status(&r), 200, "{r}");
    let r = c.transact(&register(&c, &h, "mia", "m2", 2, &[&edge(2), "Expires: 300", &format!("Contact: <{uri}>")]));
    assert_eq!(status(&r), 200, "{r}");
    let paths = |h: &Host| {
        let l = lookup(h, "mia");
        let mut v: Vec<(String, i64)> = l["result"]["Contacts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["Contact"]["Path"].as_str().unwrap_or("").to_string(),
                            c["Contact"]["Expires"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let p = paths(&h);
    assert_eq!(p.len(), 2, "two bindings of one URI: {p:?}");
    assert_eq!((p[0].0.as_str(), p[1].0.as_str()), ("<sip:edge1.test;lr>", "<sip:edge2.test;lr>"));
    assert!(p[0].1 > 500 && p[1].1 <= 300, "{p:?}");
    // Through edge 1 again: only its binding changes.
    let r = c.transact(&register(&c, &h, "mia", "m2", 3, &[&edge(1), "Expires: 100", &format!("Contact: <{uri}>")]));
    assert_eq!(status(&r), 200, "{r}");
    let p = paths(&h);
    assert!(p[0].1 <= 100 && p[1].1 > 100, "edge1 refreshed to 100, edge2 kept: {p:?}");
    // Removing through edge 2 leaves edge 1's.
    let r = c.transact(&register(&c, &h, "mia", "m2", 4, &[&edge(2), &format!("Contact: <{uri}>;expires=0")]));
    assert_eq!(status(&r), 200, "{r}");
    let p = paths(&h);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "<sip:edge1.test;lr>");
}

/// RFC 3327: a phone registered through an edge proxy (Path) is reached through it. The
/// MESSAGE goes to the first Path hop (a sipp UAS playing the edge proxy) with the Path as
/// Route headers in order and the Request-URI still the phone's Contact, whose address
/// (TEST-NET-1) nothing answers at. `path_use_received` stores the edge's `received` parameter.
#[test]
fn lookup_routes_through_the_stored_path() {
    let mut edge = SippServer::start("path_proxy_uas", 1, &[], Duration::from_secs(20));
    let h = registrar_with("registrar-path-route", "", "use_path = 1\npath_use_received = 1");
    let mut phone = Client::udp(h.sip_addr());
    let first = format!("<sip:127.0.0.1:{};lr;received=sip:198.51.100.7%3A5099>", edge.port);
    let path = format!("Path: {first}, <sip:edge2.test;lr>");
    let contact = "sip:phone@192.0.2.50:5060";
    let r = phone.transact(&register(&phone, &h, "paula", "path-1", 1, &[&path, &format!("Contact: <{contact}>")]));
    assert_eq!(status(&r), 200, "{r}");
    let l = lookup(&h, "paula");
    assert_eq!(l["result"]["Contacts"][0]["Contact"]["Received"], "sip:198.51.100.7:5099", "path_use_received: {l}");

    let mut sender = Client::udp(h.sip_addr());
    let msg =
        request(&sender, "MESSAGE", &format!("sip:paula@127.0.0.1:{}", h.sip), &["Content-Type: text/plain"], "hi");
    sender.send(msg.as_bytes());
    let r = sender.recv(Duration::from_secs(5)).unwrap_or_else(|| panic!("no answer\n{}\n{}", edge.report(), h.log()));
    assert_eq!(status(&r), 200, "{r}\n{}", edge.report());
    if let Err(e) = edge.wait() {
        panic!("{e}\n{}", h.log());
    }
    // The order, exactly: the first Path hop on top, then the second, before the request's own.
    let seen = edge.messages();
    let route1 = format!("Route: {first}\r\nRoute: <sip:edge2.test;lr>\r\n");
    assert!(seen.contains(&format!("MESSAGE {contact} SIP/2.0")), "{seen}");
    assert!(seen.replace("\r\n", "\n").contains(&route1.replace("\r\n", "\n")), "{seen}");
}

/// db_mode 4 (read-only): the table written by a db_mode 1 registrar is loaded at start; new
/// registrations and removals work in memory and never reach the table.
#[test]
fn db_mode_4_loads_and_never_writes() {
    let db = e2e::dbs::sqlite();
    let file = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    let rows = |f: &std::path::Path| {
        let mut v: Vec<String> = e2e::kamailio::query(f, "SELECT username, contact, cseq, expires, ruid FROM location")
            .iter()
            .map(|r| Value::Object(r.clone()).to_string())
            .collect();
        v.sort();
        v
    };
    let mut w = registrar("registrar-ro-writer", &format!("db_mode = 1\ndb_url = \"{}\"", db.url));
    let mut c = Client::udp(w.sip_addr());
    for user in ["olga", "otto"] {
        let r = c.transact(&register(
            &c,
            &w,
            user,
            &format!("ro-{user}"),
            1,
            &[&format!("Contact: <sip:{user}@192.0.2.60>")],
        ));
        assert_eq!(status(&r), 200, "{r}");
    }
    w.stop();
    let before = rows(&file);
    assert_eq!(before.len(), 2, "{before:?}");

    let mut h = registrar("registrar-ro", &format!("db_mode = 4\ndb_url = \"{}\"", db.url));
    assert_eq!(
        lookup(&h, "olga")["result"]["Contacts"][0]["Contact"]["Address"],
        "sip:olga@192.0.2.60",
        "loaded at start\n{}",
        h.log()
    );
    let mut c = Client::udp(h.sip_addr());
    let r = c.transact(&register(&c, &h, "pia", "ro-pia", 1, &["Contact: <sip:pia@192.0.2.61>"]));
    assert_eq!(status(&r), 200, "{r}");
    let r = c.transact(&register(&c, &h, "olga", "ro-olga", 2, &["Contact: <sip:olga@192.0.2.60>;expires=0"]));
    assert_eq!((status(&r), bindings(&r).len()), (200, 0), "{r}");
    let r = c.transact(&register(&c, &h, "otto", "ro-otto", 2, &["Expires: 120", "Contact: <sip:otto@192.0.2.60>"]));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(lookup(&h, "pia")["result"]["Contacts"].as_array().map_or(0, Vec::len), 1, "kept in memory");
    assert_eq!(lookup(&h, "olga")["error"]["code"], 404);
    h.result("ul.rm", json!(["location", "otto"]));
    h.stop();
    assert_eq!(rows(&file), before, "db_mode 4 wrote to the table");

    // Started again, it has the table's contacts back, not what it did in memory.
    h.restart();
    assert_eq!(lookup(&h, "olga")["result"]["Contacts"].as_array().map_or(0, Vec::len), 1);
    assert_eq!(lookup(&h, "pia")["error"]["code"], 404);
    h.stop();
    assert_eq!(rows(&file), before);
}

/// The `location` table across restarts: write-through (1) and database-only (3) survive a
/// crash (SIGKILL), write-back (2) is written at shutdown; expired contacts are deleted from the
/// table too.
fn location_table_survives_restarts(db: &Database) {
    for mode in [1, 2, 3] {
        let mut h = registrar(
            &format!("registrar-db{mode}-{}", db.kind),
            &format!("db_mode = {mode}\ndb_url = \"{}\"", db.url),
        );
        let mut c = Client::udp(h.sip_addr());
        let user = format!("gina{mode}");
        let r = c.transact(&register(
            &c,
            &h,
            &user,
            "db-1",
            1,
            &["User-Agent: phone/2", &format!("Contact: <sip:{user}@192.0.2.5>;q=0.25")],
        ));
        assert_eq!(status(&r), 200, "{r}");
        let short = format!("short{mode}");
        let r =
            c.transact(&register(&c, &h, &short, "db-2", 1, &[&format!("Contact: <sip:{short}@192.0.2.6>;expires=2")]));
        assert_eq!(status(&r), 200, "{r}");
        assert!(eventually(Duration::from_secs(6), || lookup(&h, &short)["error"]["code"] == 404));
        if mode != 2 {
            h.kill();
        } else {
            h.stop();
        }
        h.restart();
        let l = lookup(&h, &user);
        let contact = &l["result"]["Contacts"][0]["Contact"];
        assert_eq!(contact["Address"], format!("sip:{user}@192.0.2.5"), "db_mode {mode}: {l}\n{}", h.log());
        assert_eq!(contact["Q"], 0.25);
        assert_eq!(contact["User-Agent"], "phone/2");
        assert_eq!(contact["Call-ID"], "db-1");
        let left = contact["Expires"].as_i64().expect("seconds left");
        assert!((850..=900).contains(&left), "expires (max_expires 900) survives as a DATETIME: {left}");
        assert_eq!(lookup(&h, &short)["error"]["code"], 404, "the expired contact is gone from the table");
        // A refresh after the restart updates the same row (the CSeq check still holds).
        let r = c.transact(&register(&c, &h, &user, "db-1", 1, &[&format!("Contact: <sip:{user}@192.0.2.5>")]));
        assert_eq!(status(&r), 500, "CSeq 1 again after the restart: {r}");
        let r =
            c.transact(&register(&c, &h, &user, "db-1", 2, &[&format!("Contact: <sip:{user}@192.0.2.5>;expires=0")]));
        assert_eq!((status(&r), bindings(&r).len()), (200, 0), "{r}");
        h.stop();
        h.restart();
        assert_eq!(lookup(&h, &user)["error"]["code"], 404, "db_mode {mode}: the removal reached the table");
    }
}

/// db_mode 3: two registrars on one database see each other's registrations and removals.
fn two_registrars_share_the_table(db: &Database) {
    let usrloc = format!("db_mode = 3\ndb_url = \"{}\"", db.url);
    let a = registrar(&format!("registrar-share-a-{}", db.kind), &usrloc);
    let b = registrar(&format!("registrar-share-b-{}", db.kind), &usrloc);
    let mut c = Client::udp(a.sip_addr());
    let r = c.transact(&register(&c, &a, "ivy", "share-1", 1, &["Contact: <sip:ivy@192.0.2.11>"]));
    assert_eq!(status(&r), 200, "{r}");
    let l = lookup(&b, "ivy");
    assert_eq!(l["result"]["Contacts"][0]["Contact"]["Address"], "sip:ivy@192.0.2.11", "{l}");
    let mut cb = Client::udp(b.sip_addr());
    // B refreshes it (same row, same ruid) and adds one; A sees both.
    let r = cb.transact(&register(
        &cb,
        &b,
        "ivy",
        "share-1",
        2,
        &["Contact: <sip:ivy@192.0.2.11>", "Contact: <sip:ivy@192.0.2.12>"],
    ));
    assert_eq!(bindings(&r).len(), 2, "{r}");
    let l = lookup(&a, "ivy");
    assert_eq!(l["result"]["Contacts"].as_array().map_or(0, Vec::len), 2, "{l}");
    let ruid = |h: &Host| {
        lookup(h, "ivy")["result"]["Contacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Contact"]["Address"] == "sip:ivy@192.0.2.11")
            .map(|c| c["Contact"]["Ruid"].clone())
    };
    assert_eq!(ruid(&a), ruid(&b));
    let d = a.result("ul.dump", json!([]));
    assert_eq!(d["Domains"][0]["Domain"]["AoRs"][0]["Info"]["Contacts"].as_array().map_or(0, Vec::len), 2, "{d}");
    // An out-of-order REGISTER at A is refused against what B wrote.
    let r = c.transact(&register(&c, &a, "ivy", "share-1", 1, &["Contact: <sip:ivy@192.0.2.11>"]));
    assert_eq!(status(&r), 500, "{r}");
    b.result("ul.rm", json!(["location", "ivy"]));
    assert_eq!(lookup(&a, "ivy")["error"]["code"], 404);
}

database_tests! {
    location_table_sqlite: "sqlite", location_table_survives_restarts;
    location_table_postgres: "postgres", location_table_survives_restarts;
    location_table_mariadb: "mariadb", location_table_survives_restarts;
    shared_table_sqlite: "sqlite", two_registrars_share_the_table;
    shared_table_postgres: "postgres", two_registrars_share_the_table;
    shared_table_mariadb: "mariadb", two_registrars_share_the_table;
}

/// The row Kamailio's tools read: SQLite's `location` has Kamailio's columns and values.
#[test]
fn location_row_on_sqlite() {
    let db = e2e::dbs::sqlite();
    let h = registrar("registrar-row", &format!("db_mode = 1\ndb_url = \"{}\"", db.url));
    let mut c = Client::udp(h.sip_addr());
    let r =
        c.transact(&register(&c, &h, "hank", "row-1", 5, &["Expires: 300", "Contact: <sip:hank@192.0.2.9:5062>;q=1"]));
    assert_eq!(status(&r), 200, "{r}");
    let path = db.url.trim_start_matches("sqlite://");
    let rows = e2e::kamailio::query(
        std::path::Path::new(path),
        "SELECT username, domain, contact, received, socket, callid, cseq, q, expires, ruid FROM location",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["username"], "hank");
    assert_eq!(row["domain"], Value::Null, "use_domain = 0");
    assert_eq!(row["contact"], "sip:hank@192.0.2.9:5062");
    assert_eq!(row["received"], format!("sip:{}", c.local()));
    assert_eq!(row["socket"], format!("udp:127.0.0.1:{}", h.sip));
    assert_eq!((row["callid"].as_str(), row["cseq"].as_i64(), row["q"].as_f64()), (Some("row-1"), Some(5), Some(1.0)));
    let expires = row["expires"].as_str().expect("DATETIME text");
    assert_eq!(expires.len(), "2026-11-23 00:00:00".len(), "{expires}");
    assert!(row["ruid"].as_str().unwrap().starts_with("uloc-"), "{row:?}");
}
