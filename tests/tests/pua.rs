//! `pua` end to end against Kamailio's own presence server (Debian's kamailio 5.6 with
//! presence + presence_xml, started per test): PUBLISH lands in its `presentity` table, a
//! SUBSCRIBE gets its NOTIFYs, refreshes go on, and the state survives a restart of our host —
//! on SQLite, PostgreSQL and MariaDB, in db_mode 0 and 2.
//!
//! The `testpua` module drives the API over RPC (as pua_mi would) and records callbacks.

use std::time::Duration;

use e2e::dbs;
use e2e::kamailio::{Kamailio, SippServer};
use e2e::{Host, eventually};
use serde_json::{Value, json};

use e2e::database_tests;

/// Host config: pua + testpua, NOTIFYs matched and answered through the route.
fn config(db_url: &str, db_mode: u8, extra: &str) -> String {
    format!(
        r#"loadmodule = ["pua", "testpua"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.pua]
db_url = "{db_url}"
db_mode = {db_mode}
update_period = 10
{extra}
[[route]]
method = "NOTIFY"
do = ["pua_update_contact()", "testpua_notify()"]
"#
    )
}

fn publish(host: &Host, uri: &str, expires: i64, body: &str, id: &str, cb: u64) -> Value {
    host.result("testpua.publish", json!([uri, expires, "presence", body, id, "", cb]))
}

fn pidf(entity: &str, basic: &str, note: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}"><tuple id="t1"><status><basic>{basic}</basic></status><note>{note}</note></tuple></presence>"#
    )
}

/// The callbacks recorded for `cb`.
fn callbacks(host: &Host, cb: u64) -> Vec<Value> {
    let all = host.result("testpua.callbacks", json!([]));
    all.as_array().unwrap().iter().filter(|c| c["cb_param"] == cb).cloned().collect()
}

fn wait_callbacks(host: &Host, cb: u64, n: usize) -> Vec<Value> {
    let ok = eventually(Duration::from_secs(10), || callbacks(host, cb).len() >= n);
    assert!(ok, "no {n} callbacks for {cb}: {}\n{}", host.result("testpua.callbacks", json!([])), host.log());
    callbacks(host, cb)
}

fn list(host: &Host, filter: &str) -> Vec<Value> {
    host.result("pua.list", json!([filter])).as_array().unwrap().clone()
}

fn of_kind(host: &Host, filter: &str, kind: &str) -> Vec<Value> {
    list(host, filter).into_iter().filter(|r| r["kind"] == kind).collect()
}

/// PUBLISH (initial, modify, refresh, remove) into Kamailio's presentity table and a
/// SUBSCRIBE that receives Kamailio's NOTIFYs; the timer refreshes both.
fn against_kamailio(db: &dbs::Database, db_mode: u8) {
    // The server grants at most 20 s, so the "forever" (-1) publication and subscription are
    // refreshed within the test (every update_period-5 = 5 s, when under update_period left).
    // One SIP worker: Kamailio's db_sqlite has no busy timeout, so two workers writing at once
    // (a PUBLISH and a SUBSCRIBE refresh) fail with "database is locked".
    let kam = Kamailio::start_presence_with("children=1\nmodparam(\"presence\", \"max_expires\", 20)");
    let host = Host::start(
        &format!("pua-kam-{}-{db_mode}", db.kind),
        &config(&db.url, db_mode, &format!("outbound_proxy = \"{}\"", kam.uri())),
    );
    let alice = "sip:alice@example.com";

    // Initial PUBLISH: lands in presentity with our body and the ETag our record keeps.
    assert_eq!(publish(&host, alice, -1, &pidf(alice, "open", "first"), "a1", 1), 0);
    let cb = wait_callbacks(&host, 1, 1);
    assert_eq!(cb[0]["code"], 200, "{cb:?}\n{}", kam.log());
    let rows = kam.presentity();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].username.as_str(), rows[0].domain.as_str(), rows[0].event.as_str()),
        ("alice", "example.com", "presence")
    );
    assert!(rows[0].body.contains("first"), "{}", rows[0].body);
    let records = list(&host, "alice");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["etag"], rows[0].etag.as_str(), "pua keeps the server's ETag");
    let tuple = records[0]["tuple_id"].clone();

    // Modify: same row, new body, the tuple id stays.
    assert_eq!(publish(&host, alice, -1, &pidf(alice, "closed", "second"), "a1", 2), 0);
    wait_callbacks(&host, 2, 1);
    let rows = kam.presentity();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].body.contains("second"), "{}", rows[0].body);
    assert_eq!(of_kind(&host, "alice", "publish")[0]["tuple_id"], tuple);

    // SUBSCRIBE: Kamailio answers and NOTIFYs our contact with alice's state.
    let contact = format!("sip:watcher@127.0.0.1:{}", host.sip);
    let code =
        host.result("testpua.subscribe", json!([alice, "sip:bob@example.com", "presence", -1, contact, "", kam.uri()]));
    assert_eq!(code, 0);
    let notified = eventually(Duration::from_secs(10), || {
        host.result("testpua.notifies", json!([]))
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["is_dialog"] == 0 && n["body"].as_str().unwrap_or("").contains("second"))
    });
    assert!(notified, "{}\n{}\n{}", host.result("testpua.notifies", json!([])), host.log(), kam.log());
    let watchers = kam.active_watchers();
    assert_eq!(watchers.len(), 1, "{watchers:?}");
    let subs = of_kind(&host, "alice", "subscribe");
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["state"], "established");
    assert_eq!(subs[0]["to_tag"], watchers[0].to_tag.as_str());
    assert_eq!(subs[0]["call_id"], watchers[0].callid.as_str());

    // The timer refreshes both before they expire.
    let (etag, expires) = (kam.presentity()[0].etag.clone(), kam.presentity()[0].expires);
    let refreshed = eventually(Duration::from_secs(40), || {
        let p = kam.presentity();
        let w = kam.active_watchers();
        p.len() == 1 && p[0].expires > expires && w.len() == 1 && w[0].remote_cseq >= 2
    });
    assert!(refreshed, "{:?} {:?}\n{}", kam.presentity(), kam.active_watchers(), host.log());
    let p = kam.presentity();
    assert!(p[0].body.contains("second"), "a refresh keeps the body: {}", p[0].body);
    assert_ne!(p[0].etag, etag, "Kamailio issues a new ETag on refresh");
    assert_eq!(of_kind(&host, "alice", "publish")[0]["etag"], p[0].etag.as_str(), "and pua follows it");

    // Remove: Expires 0 deletes the presentity; the record goes.
    assert_eq!(publish(&host, alice, 0, "", "a1", 3), 0);
    wait_callbacks(&host, 3, 1);
    assert!(eventually(Duration::from_secs(5), || kam.presentity().is_empty()), "{:?}", kam.presentity());
    assert!(
        eventually(Duration::from_secs(5), || of_kind(&host, "alice", "publish").is_empty()),
        "{:?}",
        list(&host, "alice")
    );
}

database_tests! {
    kamailio_presence_sqlite_db_mode_0: "sqlite", |db| against_kamailio(db, 0);
    kamailio_presence_sqlite_db_mode_2: "sqlite", |db| against_kamailio(db, 2);
    kamailio_presence_postgres_db_mode_0: "postgres", |db| against_kamailio(db, 0);
    kamailio_presence_postgres_db_mode_2: "postgres", |db| against_kamailio(db, 2);
    kamailio_presence_mariadb_db_mode_0: "mariadb", |db| against_kamailio(db, 0);
    kamailio_presence_mariadb_db_mode_2: "mariadb", |db| against_kamailio(db, 2);
}

// ---------------------------------------------------------------------------------------------
// The wire, checked by SIPp presence-server scenarios (tests/sipp/pua_*.xml; each fails with a
// `FAIL: …` line when a header, tag, CSeq, route or Expires is not what the reference says).

/// Where the wire tests keep pua's records.
#[derive(Clone, Copy)]
enum Store {
    /// No database.
    Memory,
    /// db_mode 2 on SQLite: every operation reads and writes the table.
    SqliteDbOnly,
}

/// A host with pua sending PUBLISH through `proxy`.
fn wire_host(name: &str, proxy: &str, store: Store) -> (Host, Option<dbs::Database>) {
    let (db, mode) = match store {
        Store::Memory => (None, 0),
        Store::SqliteDbOnly => (Some(dbs::sqlite()), 2),
    };
    let url = db.as_ref().map_or(String::new(), |d| d.url.clone());
    (Host::start(name, &config(&url, mode, &format!("outbound_proxy = \"{proxy}\""))), db)
}

/// Each wire test runs with records in memory and in the database only (db_mode 2).
macro_rules! wire_tests {
    ($($name:ident),* $(,)?) => {
        mod wire {
            $(
                mod $name {
                    #[test]
                    fn memory() {
                        super::super::$name(super::super::Store::Memory);
                    }
                    #[test]
                    fn sqlite_db_mode_2() {
                        super::super::$name(super::super::Store::SqliteDbOnly);
                    }
                }
            )*
        }
    };
}

wire_tests!(
    publish_initial_refresh_modify_remove,
    publish_412_republishes_the_body,
    publish_423_retries_with_min_expires,
    subscribe_notify_refresh_unsubscribe,
    subscribe_481_resubscribes,
    subscribe_early_notify_matches,
);

fn wait_list(host: &Host, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let ok = eventually(Duration::from_secs(20), || f(&list(host, "")));
    assert!(ok, "{what}: {:?}\n{}", list(host, ""), host.log());
    list(host, "")
}

/// Initial (Expires default+1, body) → the timer's refresh (If-Match, no body) → modify
/// (If-Match, body) → remove (Expires 0), each with the ETag of the previous 200.
fn publish_initial_refresh_modify_remove(store: Store) {
    let mut s =
        SippServer::start("pua_publish_flow", 4, &[("expires", "3601"), ("granted", "12")], Duration::from_secs(60));
    let (host, _db) = wire_host("pua-wire-publish", &s.uri(), store);
    let uri = "sip:alice@sip.test";
    assert_eq!(publish(&host, uri, -1, &pidf(uri, "open", "x"), "p1", 1), 0);
    assert_eq!(wait_callbacks(&host, 1, 1)[0]["etag"], "etag1");
    // 12 s granted: refreshed by the timer (under update_period left), with etag1.
    wait_list(&host, "the refresh", |l| l.first().is_some_and(|r| r["etag"] == "etag2"));
    assert_eq!(publish(&host, uri, -1, &pidf(uri, "closed", "y"), "p1", 2), 0);
    assert_eq!(wait_callbacks(&host, 2, 1)[0]["etag"], "etag3");
    assert_eq!(publish(&host, uri, 0, "", "p1", 3), 0);
    assert_eq!(wait_callbacks(&host, 3, 1)[0]["code"], 200);
    wait_list(&host, "the removal", <[Value]>::is_empty);
    s.passed();
}

/// A 412 to the timer's refresh is answered by a new PUBLISH with the whole stored body.
fn publish_412_republishes_the_body(store: Store) {
    let mut s =
        SippServer::start("pua_publish_412", 3, &[("expires", "3601"), ("granted", "12")], Duration::from_secs(60));
    let (host, _db) = wire_host("pua-wire-412", &s.uri(), store);
    let uri = "sip:alice@sip.test";
    assert_eq!(publish(&host, uri, -1, &pidf(uri, "open", "x"), "p1", 1), 0);
    wait_callbacks(&host, 1, 1);
    wait_list(&host, "the new publication", |l| l.first().is_some_and(|r| r["etag"] == "etag2"));
    s.passed();
}

/// 423 Interval Too Brief: retried once with Min-Expires; the caller hears one final reply.
fn publish_423_retries_with_min_expires(store: Store) {
    let mut s =
        SippServer::start("pua_publish_423", 2, &[("expires", "61"), ("min_expires", "1800")], Duration::from_secs(30));
    let (host, _db) = wire_host("pua-wire-423", &s.uri(), store);
    let uri = "sip:alice@sip.test";
    assert_eq!(publish(&host, uri, 60, &pidf(uri, "open", "x"), "p1", 1), 0);
    let cb = wait_callbacks(&host, 1, 1);
    assert_eq!(cb[0]["code"], 200, "{cb:?}");
    s.passed();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(callbacks(&host, 1).len(), 1, "exactly one callback per request");
    let l = list(&host, "");
    assert_eq!(l.len(), 1, "Kamailio drops the record after a 423; we keep it: {l:?}");
}

/// SUBSCRIBE through `proxy` (pua's outbound_proxy modparam is for PUBLISH only, as in
/// Kamailio; a SUBSCRIBE takes the caller's).
fn subscribe(host: &Host, uri: &str, expires: i64, proxy: &str) -> Value {
    let contact = format!("sip:watcher@127.0.0.1:{}", host.sip);
    host.result("testpua.subscribe", json!([uri, "sip:bob@sip.test", "presence", expires, contact, "", proxy]))
}

/// SUBSCRIBE → 200 (tag, Record-Route, Contact) → NOTIFY matched and answered 200 → refresh in
/// the dialog (R-URI = Contact, Route, CSeq+1) → unsubscribe (Expires 0, CSeq+2).
fn subscribe_notify_refresh_unsubscribe(store: Store) {
    let mut s =
        SippServer::start("pua_subscribe_flow", 1, &[("expires", "3610"), ("granted", "12")], Duration::from_secs(60));
    let (host, _db) = wire_host("pua-wire-subscribe", &s.uri(), store);
    let uri = "sip:alice@sip.test";
    assert_eq!(subscribe(&host, uri, -1, &s.uri()), 0);
    let n = eventually(Duration::from_secs(10), || {
        !host.result("testpua.notifies", json!([])).as_array().unwrap().is_empty()
    });
    assert!(n, "{}", host.log());
    let notifies = host.result("testpua.notifies", json!([]));
    assert_eq!(notifies[0]["is_dialog"], 0, "{notifies}");
    assert!(notifies[0]["body"].as_str().unwrap().contains("open"), "{notifies}");
    // The refresh (12 s granted) goes in the dialog; then the test unsubscribes.
    wait_list(&host, "the refresh", |l| l.first().is_some_and(|r| r["cseq"].as_i64() >= Some(2)));
    assert_eq!(subscribe(&host, uri, 0, &s.uri()), 0);
    wait_list(&host, "the unsubscribe", <[Value]>::is_empty);
    s.passed();
}

/// A 481 to the refresh: a new initial SUBSCRIBE to the stored Contact.
fn subscribe_481_resubscribes(store: Store) {
    let mut s =
        SippServer::start("pua_subscribe_481", 2, &[("expires", "3610"), ("granted", "12")], Duration::from_secs(60));
    let (host, _db) = wire_host("pua-wire-481", &s.uri(), store);
    let uri = "sip:alice@sip.test";
    assert_eq!(subscribe(&host, uri, -1, &s.uri()), 0);
    wait_list(&host, "the first dialog", |l| l.first().is_some_and(|r| r["state"] == "established"));
    let first = list(&host, "")[0]["call_id"].clone();
    wait_list(&host, "the new dialog", |l| {
        l.first().is_some_and(|r| r["state"] == "established" && r["call_id"] != first)
    });
    s.passed();
}

/// A NOTIFY that arrives before the SUBSCRIBE's 200 still matches (the temporary dialog).
fn subscribe_early_notify_matches(store: Store) {
    let mut s = SippServer::start("pua_subscribe_early_notify", 1, &[("expires", "3610")], Duration::from_secs(30));
    let (host, _db) = wire_host("pua-wire-early", &s.uri(), store);
    assert_eq!(subscribe(&host, "sip:alice@sip.test", -1, &s.uri()), 0);
    s.passed();
    let notifies = host.result("testpua.notifies", json!([]));
    let codes: Vec<_> = notifies.as_array().unwrap().iter().map(|n| n["is_dialog"].clone()).collect();
    // 1: only the temporary dialog matched (no 2xx yet); 0: the established one.
    assert_eq!(codes, [json!(1), json!(0)], "{notifies}");
}

// ---------------------------------------------------------------------------------------------
// Restarts: SIGTERM in db_mode 0 (the write-back flushes on the way out), SIGKILL in db_mode 2
// (nothing to flush). The refreshes go on with the stored ETag, dialog and body.

#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Term,
    Kill,
}

/// A counter of pua's from the host's Prometheus endpoint.
fn metric(host: &Host, name: &str) -> i64 {
    let (_, text) = e2e::http_request(host.http.unwrap(), "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("puahost_pua_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no puahost_pua_{name} in\n{text}"))
}

fn restart_against_kamailio(db: &dbs::Database, db_mode: u8, how: Stop) {
    let kam = Kamailio::start_presence_with("children=1\nmodparam(\"presence\", \"max_expires\", 20)");
    let mut host = Host::start(
        &format!("pua-restart-{}-{db_mode}", db.kind),
        // fetch_rows = 1: the start-up load reads a row per page.
        &config(&db.url, db_mode, &format!("outbound_proxy = \"{}\"\nfetch_rows = 1", kam.uri())),
    );
    let alice = "sip:alice@example.com";
    assert_eq!(publish(&host, alice, -1, &pidf(alice, "open", "kept across restarts"), "r1", 1), 0);
    assert_eq!(wait_callbacks(&host, 1, 1)[0]["code"], 200);
    let contact = format!("sip:watcher@127.0.0.1:{}", host.sip);
    let code =
        host.result("testpua.subscribe", json!([alice, "sip:bob@example.com", "presence", -1, contact, "", kam.uri()]));
    assert_eq!(code, 0);
    assert!(eventually(Duration::from_secs(10), || of_kind(&host, "alice", "subscribe")
        .first()
        .is_some_and(|r| r["state"] == "established")));
    let before_pub = of_kind(&host, "alice", "publish")[0].clone();
    let before_sub = of_kind(&host, "alice", "subscribe")[0].clone();

    match how {
        Stop::Term => assert!(host.stop().is_some_and(|s| s.success()), "{}", host.log()),
        Stop::Kill => host.kill(),
    }
    let watcher = kam.active_watchers()[0].clone();
    let presentity = kam.presentity()[0].clone();
    host.restart();

    // The records are back as they were.
    let after_pub = of_kind(&host, "alice", "publish");
    assert_eq!(after_pub.len(), 1, "{after_pub:?}\n{}", host.log());
    for k in ["etag", "tuple_id", "body_bytes", "content_type", "pres_id", "flag", "event_flag"] {
        assert_eq!(after_pub[0][k], before_pub[k], "{k}: {after_pub:?} vs {before_pub}");
    }
    let after_sub = of_kind(&host, "alice", "subscribe");
    assert_eq!(after_sub.len(), 1, "{after_sub:?}");
    for k in ["call_id", "to_tag", "from_tag", "remote_contact", "contact", "state"] {
        assert_eq!(after_sub[0][k], before_sub[k], "{k}: {after_sub:?} vs {before_sub}");
    }

    // And refreshed in place: the same presentity row, accepted at once (a stale ETag would
    // have drawn a 412 and a new publication), and the same dialog (Call-ID, tags, CSeq on).
    let refreshed = eventually(Duration::from_secs(40), || {
        let p = kam.presentity();
        let w = kam.active_watchers();
        p.len() == 1 && p[0].expires > presentity.expires && w.len() == 1 && w[0].remote_cseq > watcher.remote_cseq
    });
    assert!(refreshed, "{:?}\n{:?}\n{}\n{}", kam.presentity(), kam.active_watchers(), host.log(), kam.log());
    let p = kam.presentity();
    assert_ne!(p[0].etag, presentity.etag);
    assert_eq!(metric(&host, "replies_failed_total"), 0, "no 412/481 after the restart:\n{}", host.log());
    assert!(p[0].body.contains("kept across restarts"));
    let w = kam.active_watchers();
    assert_eq!(
        (w[0].callid.as_str(), w[0].to_tag.as_str(), w[0].from_tag.as_str()),
        (watcher.callid.as_str(), watcher.to_tag.as_str(), watcher.from_tag.as_str())
    );
    assert_eq!(of_kind(&host, "alice", "publish")[0]["etag"], p[0].etag.as_str());

    // Once more: what the refreshes changed (ETag, CSeq, expiry) was stored too (db_mode 0:
    // rewritten in place by the write-back; db_mode 2: as it happened).
    let (pub_now, sub_now) =
        (of_kind(&host, "alice", "publish")[0].clone(), of_kind(&host, "alice", "subscribe")[0].clone());
    match how {
        Stop::Term => assert!(host.stop().is_some_and(|s| s.success()), "{}", host.log()),
        Stop::Kill => host.kill(),
    }
    host.restart();
    let (pub_again, sub_again) =
        (of_kind(&host, "alice", "publish")[0].clone(), of_kind(&host, "alice", "subscribe")[0].clone());
    for k in ["etag", "expires", "body_bytes"] {
        assert_eq!(pub_again[k], pub_now[k], "{k}: {pub_again} vs {pub_now}");
    }
    for k in ["cseq", "expires", "call_id"] {
        assert_eq!(sub_again[k], sub_now[k], "{k}: {sub_again} vs {sub_now}");
    }
}

database_tests! {
    restart_sigterm_sqlite_db_mode_0: "sqlite", |db| restart_against_kamailio(db, 0, Stop::Term);
    restart_sigkill_sqlite_db_mode_2: "sqlite", |db| restart_against_kamailio(db, 2, Stop::Kill);
    restart_sigterm_postgres_db_mode_0: "postgres", |db| restart_against_kamailio(db, 0, Stop::Term);
    restart_sigkill_postgres_db_mode_2: "postgres", |db| restart_against_kamailio(db, 2, Stop::Kill);
    restart_sigterm_mariadb_db_mode_0: "mariadb", |db| restart_against_kamailio(db, 0, Stop::Term);
    restart_sigkill_mariadb_db_mode_2: "mariadb", |db| restart_against_kamailio(db, 2, Stop::Kill);
}

/// After a restart a 412 is still answered with the whole body: it comes from pua_body.
fn restart_then_412(db_mode: u8, how: Stop) {
    let mut s =
        SippServer::start("pua_publish_412", 3, &[("expires", "3601"), ("granted", "12")], Duration::from_secs(60));
    let db = dbs::sqlite();
    let mut host =
        Host::start("pua-restart-412", &config(&db.url, db_mode, &format!("outbound_proxy = \"{}\"", s.uri())));
    let uri = "sip:alice@sip.test";
    assert_eq!(publish(&host, uri, -1, &pidf(uri, "open", "the body"), "p1", 1), 0);
    wait_callbacks(&host, 1, 1);
    let before = list(&host, "")[0].clone();
    match how {
        Stop::Term => assert!(host.stop().is_some_and(|s| s.success())),
        Stop::Kill => host.kill(),
    }
    host.restart();
    assert_eq!(list(&host, "")[0]["body_bytes"], before["body_bytes"]);
    wait_list(&host, "the new publication", |l| l.first().is_some_and(|r| r["etag"] == "etag2"));
    s.passed();
}

#[test]
fn restart_sigterm_db_mode_0_then_412_republishes_the_stored_body() {
    restart_then_412(0, Stop::Term);
}

#[test]
fn restart_sigkill_db_mode_2_then_412_republishes_the_stored_body() {
    restart_then_412(2, Stop::Kill);
}

// ---------------------------------------------------------------------------------------------
// Bad input from the network: clear log lines, nothing stored wrongly, the host stays up.

/// A raw UDP "presence server" the test answers by hand.
fn recv_request(sock: &std::net::UdpSocket) -> (String, std::net::SocketAddr) {
    let mut buf = vec![0u8; 65535];
    let (n, from) = sock.recv_from(&mut buf).expect("a request from pua within the timeout");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

fn answer(sock: &std::net::UdpSocket, to: std::net::SocketAddr, request: &str, extra: &str) {
    let reply = e2e::kamailio::reply(request, 200, "OK")
        .replace("Content-Length: 0\r\n", &format!("{extra}Content-Length: 0\r\n"));
    sock.send_to(reply.as_bytes(), to).unwrap();
}

#[test]
fn bad_replies_and_notifies_change_nothing() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let proxy = format!("sip:{}", sock.local_addr().unwrap());
    let (mut host, _db) = wire_host("pua-bad-input", &proxy, Store::SqliteDbOnly);
    let uri = "sip:alice@sip.test";

    // A 2xx without SIP-ETag: the caller hears 200, nothing is stored (no ETag to refresh with).
    assert_eq!(publish(&host, uri, 60, &pidf(uri, "open", "a"), "p1", 1), 0);
    let (req, from) = recv_request(&sock);
    answer(&sock, from, &req, "Expires: 60\r\n");
    wait_callbacks(&host, 1, 1);
    assert!(list(&host, "").is_empty(), "{:?}", list(&host, ""));

    // Garbage, then a 2xx whose Expires is not a number: the garbage is dropped by the parser,
    // the 2xx stores nothing.
    assert_eq!(publish(&host, uri, 60, &pidf(uri, "open", "b"), "p1", 2), 0);
    let (req, from) = recv_request(&sock);
    sock.send_to(b"SIP/2.0 200\r\n\x00\xff garbage", from).unwrap();
    answer(&sock, from, &req, "SIP-ETag: e1\r\nExpires: soon\r\n");
    wait_callbacks(&host, 2, 1);
    assert!(list(&host, "").is_empty(), "{:?}", list(&host, ""));

    // A good one is stored.
    assert_eq!(publish(&host, uri, 60, &pidf(uri, "open", "c"), "p1", 3), 0);
    let (req, from) = recv_request(&sock);
    answer(&sock, from, &req, "SIP-ETag: e2\r\nExpires: 60\r\n");
    wait_callbacks(&host, 3, 1);
    let before = list(&host, "");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["etag"], "e2");

    // NOTIFYs without tags, with a broken Contact, with junk: pua_update_contact() refuses them,
    // testpua answers 481, the record is untouched.
    let mut c = e2e::sip::Client::udp(host.sip_addr());
    for extra in [
        &["Event: presence", "Contact: <sip:x@127.0.0.1>"][..],
        &["Event: presence", "Contact: <<<not a uri", "Subscription-State: active"][..],
        &["Event: presence", "Contact: *"][..],
    ] {
        let notify =
            e2e::sip::request(&c, "NOTIFY", &format!("sip:watcher@127.0.0.1:{}", host.sip), extra, "<presence/>\u{1}");
        let r = c.transact(&notify);
        assert!(e2e::sip::status(&r) >= 400, "{r}");
    }
    c.send(b"NOTIFY sip:x SIP/2.0\r\nVia: broken\r\n\r\n");
    assert!(host.alive(), "{}", host.log());
    assert_eq!(list(&host, ""), before);
    assert!(host.log().contains("PUBLISH 2xx without SIP-ETag or Expires"), "{}", host.log());
}

/// An event another module added with `add_event`: its name, Content-Type and body processor
/// (called across the plugin boundary) shape the PUBLISH; a processor that panics fails the
/// PUBLISH with an error code and leaves the host running.
#[test]
fn add_event_with_a_body_processor() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let proxy = format!("sip:{}", sock.local_addr().unwrap());
    let (mut host, _db) = wire_host("pua-add-event", &proxy, Store::Memory);
    let uri = "sip:carol@sip.test";
    let code = host.result("testpua.publish", json!([uri, 60, "x-testpua", "hello", "t1", "", 1]));
    assert_eq!(code, 0);
    let (req, from) = recv_request(&sock);
    assert_eq!(e2e::sip::header(&req, "Event").as_deref(), Some("x-testpua"), "{req}");
    assert_eq!(e2e::sip::header(&req, "Content-Type").as_deref(), Some("text/plain"), "{req}");
    assert!(req.ends_with("\r\n\r\n[v0] hello"), "{req}");
    answer(&sock, from, &req, "SIP-ETag: x1\r\nExpires: 60\r\n");
    wait_callbacks(&host, 1, 1);
    let l = list(&host, "carol");
    assert_eq!((l[0]["event"].as_str(), l[0]["tuple_id"].as_str()), (Some("x-testpua"), Some("tp-0")), "{l:?}");

    // An update: the version moves on, the ETag is sent.
    assert_eq!(host.result("testpua.publish", json!([uri, 60, "x-testpua", "again", "t1", "", 2])), 0);
    let (req, from) = recv_request(&sock);
    assert!(req.ends_with("[v1] again"), "{req}");
    assert_eq!(e2e::sip::header(&req, "SIP-If-Match").as_deref(), Some("x1"), "{req}");
    answer(&sock, from, &req, "SIP-ETag: x2\r\nExpires: 60\r\n");
    wait_callbacks(&host, 2, 1);

    // The processor panics: the PUBLISH is refused, nothing is sent, the record is unchanged.
    assert_eq!(host.result("testpua.publish", json!([uri, 60, "x-testpua", "panic now", "t1", "", 3])), -1);
    assert!(host.alive());
    assert_eq!(list(&host, "carol")[0]["etag"], "x2");
    assert!(host.log().contains("the body processor panicked"), "{}", host.log());
}
