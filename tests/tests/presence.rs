//! The presence server (`presence` + `presence_xml`) end to end: every reply code of PUBLISH and
//! SUBSCRIBE over real UDP, NOTIFYs with aggregated bodies, hostile bodies, pres-rules
//! authorization, a restart that keeps the watchers, and Kamailio's pua (Debian's kamailio
//! 5.6, pua + pua_rpc) publishing and subscribing to it.

use std::time::{Duration, Instant};

use e2e::PRESENCE_ROUTES;
use e2e::kamailio::{Kamailio, reply};
use e2e::notify::{body, cseq_of, next_notify, publications};
use e2e::sip::{Client, header, request, status};
use e2e::{Host, database_tests, eventually};
use serde_json::{Value, json};

fn pidf(entity: &str, tuple: &str, basic: &str, note: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}"><tuple id="{tuple}"><status><basic>{basic}</basic></status><note>{note}</note></tuple></presence>"#
    )
}

/// A presence server; `xml` is extra `[modparam.presence_xml]` lines.
fn server(name: &str, xml: &str) -> Host {
    server_on(name, "sqlite://presence.sqlite", xml)
}

/// A presence server on the database at `db_url`.
fn server_on(name: &str, db_url: &str, xml: &str) -> Host {
    Host::start(name, &config_on(db_url, "min_expires = 60\nclean_period = 2\ndb_update_period = 1", xml))
}

/// The config of a presence server on `db_url`: `presence` lines for `[modparam.presence]`, `xml`
/// for `[modparam.presence_xml]`, both besides db_url.
fn config_on(db_url: &str, presence: &str, xml: &str) -> String {
    format!(
        r#"loadmodule = ["presence", "presence_xml"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@", "tcp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.presence]
db_url = "{db_url}"
{presence}
[modparam.presence_xml]
db_url = "{db_url}"
{xml}
{PRESENCE_ROUTES}"#
    )
}

fn publish(c: &mut Client, h: &Host, user: &str, extra: &[&str], body: &str) -> String {
    let ruri = format!("sip:{user}@127.0.0.1:{}", h.sip);
    let mut headers = vec!["Event: presence"];
    if !extra.iter().any(|h| h.starts_with("Expires:")) {
        headers.push("Expires: 3600");
    }
    headers.extend_from_slice(extra);
    if !body.is_empty() {
        headers.push("Content-Type: application/pidf+xml");
    }
    c.transact(&request(c, "PUBLISH", &ruri, &headers, body))
}

#[test]
fn publish_reply_codes_and_hostile_bodies() {
    let mut h = server("presence-publish", "force_active = 1");
    let mut c = Client::udp(h.sip_addr());

    let r = publish(&mut c, &h, "alice", &[], &pidf("sip:alice@example.com", "t1", "open", "here"));
    assert_eq!(status(&r), 200, "{r}");
    let etag = header(&r, "SIP-ETag").expect("SIP-ETag");
    assert!(etag.starts_with("a."), "Kamailio-shaped ETag: {etag}");
    assert_eq!(header(&r, "Expires").as_deref(), Some("3600"));
    assert_eq!(publications(&h), 1);

    let ruri = format!("sip:alice@127.0.0.1:{}", h.sip);
    let r = c.transact(&request(&c, "PUBLISH", &ruri, &["Event: message-summary"], ""));
    assert_eq!(status(&r), 489, "{r}");
    assert!(header(&r, "Allow-Events").unwrap_or_default().contains("presence"), "{r}");

    let r = publish(&mut c, &h, "alice", &["SIP-If-Match: nope"], "");
    assert_eq!(status(&r), 412, "{r}");
    let r = publish(&mut c, &h, "alice", &[], "");
    assert_eq!((status(&r), header(&r, "Content-Length")), (400, Some("0".into())), "{r}");

    // Malformed, hostile and oversized bodies: refused, nothing stored.
    let r = publish(&mut c, &h, "alice", &[], "<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple>");
    assert_eq!(status(&r), 415, "{r}");
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><presence xmlns="urn:ietf:params:xml:ns:pidf">&lol3;</presence>"#;
    let t = Instant::now();
    let r = publish(&mut c, &h, "alice", &[], laughs);
    assert_eq!(status(&r), 400, "{r}");
    let deep = format!(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf'>{}{}</presence>",
        "<a>".repeat(5000),
        "</a>".repeat(5000)
    );
    let r = publish(&mut c, &h, "alice", &[], &deep);
    assert_eq!(status(&r), 400, "{r}");
    assert!(t.elapsed() < Duration::from_secs(1), "hostile bodies are refused at once: {:?}", t.elapsed());
    let big = pidf("sip:alice@example.com", "t1", "open", &"x".repeat(70_000));
    let mut tcp = Client::tcp(h.sip_addr());
    let r = publish(&mut tcp, &h, "alice", &[], &big);
    assert_eq!(status(&r), 413, "{r}");
    assert_eq!(publications(&h), 1, "refused bodies leave the stored state alone");

    // Refresh (no body): a new ETag, the old one is gone.
    let r = publish(&mut c, &h, "alice", &[&format!("SIP-If-Match: {etag}")], "");
    assert_eq!(status(&r), 200, "{r}");
    let etag2 = header(&r, "SIP-ETag").unwrap();
    assert_ne!(etag2, etag);
    assert!(etag2.ends_with(".1"), "series number of a refresh: {etag2}");
    let r = publish(&mut c, &h, "alice", &[&format!("SIP-If-Match: {etag}")], "");
    assert_eq!(status(&r), 412, "{r}");
    let list = h.result("presence.presentity_list", json!(["full"]));
    assert!(list[0]["body"].as_str().unwrap().contains("here"), "the refresh kept the body: {list}");

    // Removal.
    let r = publish(&mut c, &h, "alice", &[&format!("SIP-If-Match: {etag2}"), "Expires: 0"], "");
    assert_eq!((status(&r), header(&r, "Expires")), (200, Some("0".into())), "{r}");
    assert_eq!(publications(&h), 0);
    assert!(h.alive());
}

#[test]
fn subscribe_notify_aggregation_and_unsubscribe() {
    let h = server("presence-subscribe", "force_active = 1");
    let mut publisher = Client::udp(h.sip_addr());
    let mut watcher = Client::udp(h.sip_addr());
    let ruri = format!("sip:bob@127.0.0.1:{}", h.sip);

    let r = watcher.transact(&request(&watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 30"], ""));
    assert_eq!(status(&r), 423, "{r}");
    assert_eq!(header(&r, "Min-Expires").as_deref(), Some("60"));
    let r = watcher.transact(&request(&watcher, "SUBSCRIBE", &ruri, &["Event: dialog"], ""));
    assert_eq!(status(&r), 489, "{r}");
    let stray = request(&watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], "")
        .replace(&format!("To: <{ruri}>"), &format!("To: <{ruri}>;tag=unknown"));
    let r = watcher.transact(&stray);
    assert_eq!(status(&r), 481, "{r}");

    let sub = request(&watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], "");
    let r = watcher.transact(&sub);
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(header(&r, "Expires").as_deref(), Some("600"));
    assert!(header(&r, "Contact").is_some(), "{r}");
    let to_tag = e2e::kamailio::tag(&header(&r, "To").unwrap()).expect("To-tag");
    let n = next_notify(&mut watcher);
    assert!(header(&n, "Subscription-State").unwrap().starts_with("active;expires="), "{n}");
    assert_eq!(body(&n), "", "no state yet: no body");
    let cseq1: u32 = header(&n, "CSeq").unwrap().split(' ').next().unwrap().parse().unwrap();

    // Two publishers of one presentity: one aggregated document.
    let r = publish(&mut publisher, &h, "bob", &[], &pidf("sip:bob@example.com", "phone", "open", "on the phone"));
    assert_eq!(status(&r), 200);
    let n = next_notify(&mut watcher);
    assert!(body(&n).contains("on the phone"), "{n}");
    let r = publish(&mut publisher, &h, "bob", &[], &pidf("sip:bob@example.com", "pc", "closed", "at lunch"));
    assert_eq!(status(&r), 200);
    let n = next_notify(&mut watcher);
    let b = body(&n);
    assert!(b.contains("id=\"phone\"") && b.contains("id=\"pc\""), "aggregated: {b}");
    assert_eq!(header(&n, "Content-Type").as_deref(), Some("application/pidf+xml"));
    let cseq3: u32 = header(&n, "CSeq").unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(cseq3, cseq1 + 2, "NOTIFY CSeq increases by one");
    let list = h.result("presence.watcher_list", json!(["basic", format!("sip:bob@127.0.0.1")]));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Unsubscribe.
    let unsub = sub
        .replace(&format!("To: <{ruri}>"), &format!("To: <{ruri}>;tag={to_tag}"))
        .replace("CSeq: 1 SUBSCRIBE", "CSeq: 2 SUBSCRIBE")
        .replace("Expires: 600", "Expires: 0")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-2-");
    let r = watcher.transact(&unsub);
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    assert_eq!(header(&n, "Subscription-State").as_deref(), Some("terminated;reason=timeout"), "{n}");
    assert!(eventually(Duration::from_secs(3), || {
        h.result("presence.watcher_list", json!(["basic", "sip:bob@127.0.0.1"])).as_array().is_some_and(Vec::is_empty)
    }));
    let r = watcher.transact(&unsub.replace("CSeq: 2", "CSeq: 3").replace("branch=z9hG4bK-2-", "branch=z9hG4bK-3-"));
    assert_eq!(status(&r), 481, "an ended subscription: {r}");
}

/// Inserts a pres-rules document for `user@127.0.0.1` into the server's xcap table.
fn put_rules(h: &Host, user: &str, rules: &str) {
    let db = h.dir.join("presence.sqlite");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.execute('PRAGMA busy_timeout=5000')\nc.execute(\"delete from xcap where username=? and domain='127.0.0.1' and doc_type=2\",(sys.argv[2],))\nc.execute(\"insert into xcap(username,domain,doc,doc_type,etag,source,doc_uri,port) values(?, '127.0.0.1', ?, 2, 'e', 1, ?, 0)\",(sys.argv[2], sys.argv[3].encode(), 'pres-rules/'+sys.argv[2]))\nc.commit()",
        ])
        .arg(&db)
        .arg(user)
        .arg(rules)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn rule(id: &str, identity: &str, action: &str, transformations: &str) -> String {
    format!(
        r#"<rule id="{id}"><conditions><identity>{identity}</identity></conditions><actions><sub-handling xmlns="urn:ietf:params:xml:ns:pres-rules">{action}</sub-handling></actions>{transformations}</rule>"#
    )
}

fn ruleset(rules: &[String]) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><ruleset xmlns="urn:ietf:params:xml:ns:common-policy">{}</ruleset>"#,
        rules.join("")
    )
}

fn subscribe_as(h: &Host, watcher: &mut Client, user_from: &str, pres: &str) -> (String, String) {
    let ruri = format!("sip:{pres}@127.0.0.1:{}", h.sip);
    let req = request(watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], "")
        .replace("From: <sip:tester@sip.test>", &format!("From: <sip:{user_from}@127.0.0.1>"));
    let r = watcher.transact(&req);
    assert!(status(&r) == 200 || status(&r) == 202, "{r}");
    (r, next_notify(watcher))
}

#[test]
fn pres_rules_authorization() {
    let h = server("presence-rules", "force_active = 0");
    let mut publisher = Client::udp(h.sip_addr());
    let r = publish(&mut publisher, &h, "carol", &[], &pidf("sip:carol@127.0.0.1", "t1", "open", "secret note"));
    assert_eq!(status(&r), 200);
    put_rules(
        &h,
        "carol",
        &ruleset(&[
            rule("a", r#"<one id="sip:friend@127.0.0.1"/>"#, "allow", ""),
            rule("b", r#"<one id="sip:enemy@127.0.0.1"/>"#, "block", ""),
            rule("c", r#"<one id="sip:ex@127.0.0.1"/>"#, "polite-block", ""),
        ]),
    );

    let mut w = Client::udp(h.sip_addr());
    let (_, n) = subscribe_as(&h, &mut w, "friend", "carol");
    assert!(header(&n, "Subscription-State").unwrap().starts_with("active"), "{n}");
    assert!(body(&n).contains("secret note"), "allowed: the document ({n})");

    let mut w = Client::udp(h.sip_addr());
    let (_, n) = subscribe_as(&h, &mut w, "enemy", "carol");
    assert_eq!(header(&n, "Subscription-State").as_deref(), Some("terminated;reason=rejected"), "{n}");
    assert_eq!(body(&n), "", "blocked: nothing");

    let mut w = Client::udp(h.sip_addr());
    let (_, n) = subscribe_as(&h, &mut w, "ex", "carol");
    assert!(header(&n, "Subscription-State").unwrap().starts_with("active"), "{n}");
    assert!(body(&n).contains("closed") && !body(&n).contains("secret"), "polite-block: neutral ({n})");

    let mut stranger = Client::udp(h.sip_addr());
    let (_, n) = subscribe_as(&h, &mut stranger, "stranger", "carol");
    assert!(header(&n, "Subscription-State").unwrap().starts_with("pending"), "{n}");
    assert_eq!(body(&n), "");

    // A rule for the stranger arrives: pending turns active with the document.
    put_rules(
        &h,
        "carol",
        &ruleset(&[
            rule("a", r#"<one id="sip:friend@127.0.0.1"/>"#, "allow", ""),
            rule("d", r#"<one id="sip:stranger@127.0.0.1"/>"#, "allow", ""),
        ]),
    );
    h.result("presence.refreshWatchers", json!(["sip:carol@127.0.0.1", "presence", 0]));
    let n = next_notify(&mut stranger);
    assert!(header(&n, "Subscription-State").unwrap().starts_with("active"), "{n}");
    assert!(body(&n).contains("secret note"), "{n}");

    // The rule goes: the stranger is terminated with the userdel reason.
    put_rules(&h, "carol", &ruleset(&[rule("a", r#"<one id="sip:friend@127.0.0.1"/>"#, "allow", "")]));
    h.result("presence.refreshWatchers", json!(["sip:carol@127.0.0.1", "presence", 0]));
    let n = next_notify(&mut stranger);
    assert_eq!(header(&n, "Subscription-State").as_deref(), Some("terminated;reason=probation"), "{n}");
}

/// presence.publish_cache_sync: a row written to the presentity table behind the server's back
/// is served after the sync.
#[test]
fn publish_cache_sync_reloads_the_table() {
    let h = server("presence-cache-sync", "force_active = 1");
    let mut publisher = Client::udp(h.sip_addr());
    assert_eq!(status(&publish(&mut publisher, &h, "jo", &[], &pidf("sip:jo@127.0.0.1", "t", "open", "sip"))), 200);
    assert_eq!(publications(&h), 1);
    let db = h.dir.join("presence.sqlite");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1])\nc.execute('PRAGMA busy_timeout=5000')\nc.execute(\"insert into presentity(username,domain,event,etag,expires,received_time,body,sender,priority,ruid) values('kim','127.0.0.1','presence','outside',?,?,?,'',0,'r1')\",(int(time.time())+600,int(time.time()),sys.argv[2].encode()))\nc.commit()",
        ])
        .arg(&db)
        .arg(pidf("sip:kim@127.0.0.1", "k", "open", "from a script"))
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(publications(&h), 1, "not seen before the sync");
    assert_eq!(h.result("presence.publish_cache_sync", json!([])), json!(2));
    let list = h.result("presence.presentity_show", json!(["full", "kim", "*"]));
    assert!(list[0]["body"].as_str().is_some_and(|b| b.contains("from a script")), "{list}");
}

/// delete_same_subs: a new dialog with an old one's Call-ID replaces it; retrieve_order 1 with
/// retrieve_order_by = "expires" makes the publication that expires last the aggregation's base.
#[test]
fn delete_same_subs_and_retrieve_order() {
    let config = config_on(
        "sqlite://presence.sqlite",
        "delete_same_subs = 1\nretrieve_order = 1\nretrieve_order_by = \"expires\"\npres_htable_size = 4",
        "force_active = 1",
    );
    let h = Host::start("presence-same-subs", &config);
    let mut watcher = Client::udp(h.sip_addr());
    let ruri = format!("sip:ivy@127.0.0.1:{}", h.sip);
    let first = request(&watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], "");
    assert_eq!(status(&watcher.transact(&first)), 200);
    next_notify(&mut watcher);
    let call_id = header(&first, "Call-ID").unwrap();
    let again = request(&watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], "");
    let again = again.replace(&header(&again, "Call-ID").unwrap(), &call_id);
    assert_eq!(status(&watcher.transact(&again)), 200);
    next_notify(&mut watcher);
    let list = h.result("presence.watcher_list", json!(["full", "sip:ivy@127.0.0.1"]));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "the older dialog with this Call-ID went: {list}");
    let other = request(&watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], "");
    assert_eq!(status(&watcher.transact(&other)), 200);
    next_notify(&mut watcher);
    let list = h.result("presence.watcher_list", json!(["basic", "sip:ivy@127.0.0.1"]));
    assert_eq!(list.as_array().map(Vec::len), Some(2), "another Call-ID is another watcher: {list}");

    let mut publisher = Client::udp(h.sip_addr());
    let long = pidf("sip:ivy@127.0.0.1", "long", "open", "expires last");
    assert_eq!(status(&publish(&mut publisher, &h, "ivy", &["Expires: 3000"], &long)), 200);
    let short = pidf("sip:ivy@127.0.0.1", "short", "open", "received last");
    assert_eq!(status(&publish(&mut publisher, &h, "ivy", &["Expires: 300"], &short)), 200);
    let mut n = next_notify(&mut watcher);
    while !body(&n).contains("id=\"short\"") {
        n = next_notify(&mut watcher);
    }
    let b = body(&n);
    let (long_at, short_at) = (b.find("id=\"long\"").unwrap(), b.find("id=\"short\"").unwrap());
    assert!(long_at < short_at, "ordered by expires, the long one is the base, the short one appended: {b}");
}

/// A presence server keeping subscriptions and publications in the database only
/// (subs_db_mode 3, publ_cache 0), as servers sharing one database run.
fn shared_server(name: &str, db_url: &str) -> Host {
    shared_server_with(name, db_url, "force_active = 1")
}

/// [`shared_server`] with `xml` as the `[modparam.presence_xml]` lines besides db_url.
fn shared_server_with(name: &str, db_url: &str, xml: &str) -> Host {
    Host::start(name, &config_on(db_url, "subs_db_mode = 3\npubl_cache = 0\nclean_period = 1", xml))
}

/// Two servers on one database: a subscription made on one is notified by the other, an ETag
/// given by one is known to the other, NOTIFY CSeqs from both never repeat, and an expired
/// publication is announced once.
fn servers_share_a_database(db: &e2e::dbs::Database) {
    let a = shared_server(&format!("presence-shared-a-{}", db.kind), &db.url);
    let b = shared_server(&format!("presence-shared-b-{}", db.kind), &db.url);
    let mut watcher = Client::udp(a.sip_addr());
    let ruri_a = format!("sip:erin@127.0.0.1:{}", a.sip);
    let sub = request(&watcher, "SUBSCRIBE", &ruri_a, &["Event: presence", "Expires: 600"], "");
    let r = watcher.transact(&sub);
    assert_eq!(status(&r), 200, "{r}");
    let to_tag = e2e::kamailio::tag(&header(&r, "To").unwrap()).expect("To-tag");
    let first = cseq_of(&next_notify(&mut watcher));
    assert_eq!(
        b.result("presence.watcher_list", json!(["basic", "sip:erin@127.0.0.1"])).as_array().map(Vec::len),
        Some(1)
    );

    // Published on B: B notifies the watcher A took, with the next CSeq.
    let mut publisher = Client::udp(b.sip_addr());
    let r = publish(&mut publisher, &b, "erin", &[], &pidf("sip:erin@127.0.0.1", "t1", "open", "via b"));
    assert_eq!(status(&r), 200, "{r}");
    let etag = header(&r, "SIP-ETag").unwrap();
    let n = next_notify(&mut watcher);
    assert!(body(&n).contains("via b"), "{n}");
    assert_eq!(cseq_of(&n), first + 1, "{n}");
    assert_eq!(publications(&a), 1, "A reads B's publication from the database");

    // B's ETag refreshed on A; the old one is then unknown to both.
    let mut publisher_a = Client::udp(a.sip_addr());
    let if_match = format!("SIP-If-Match: {etag}");
    let r = publish(&mut publisher_a, &a, "erin", &[&if_match], &pidf("sip:erin@127.0.0.1", "t1", "open", "via a"));
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    assert!(body(&n).contains("via a"), "{n}");
    assert_eq!(cseq_of(&n), first + 2, "{n}");
    let r = publish(&mut publisher, &b, "erin", &[&if_match], "");
    assert_eq!(status(&r), 412, "a replaced ETag: {r}");

    // Both servers publish at once: every NOTIFY has a CSeq of its own.
    let senders: Vec<_> = [(a.sip_addr(), a.sip), (b.sip_addr(), b.sip)]
        .into_iter()
        .enumerate()
        .map(|(i, (addr, port))| {
            std::thread::spawn(move || {
                let mut c = Client::udp(addr);
                for k in 0..15 {
                    let ruri = format!("sip:erin@127.0.0.1:{port}");
                    let body = pidf("sip:erin@127.0.0.1", &format!("s{i}-{k}"), "open", "busy");
                    let headers = ["Event: presence", "Expires: 3600", "Content-Type: application/pidf+xml"];
                    assert_eq!(status(&c.transact(&request(&c, "PUBLISH", &ruri, &headers, &body))), 200);
                }
            })
        })
        .collect();
    let mut cseqs = Vec::new();
    let quiet_until = |from: Instant| from + Duration::from_secs(2);
    let mut last = Instant::now();
    while Instant::now() < quiet_until(last) {
        if let Some(m) = watcher.recv(Duration::from_millis(100))
            && m.starts_with("NOTIFY ")
        {
            watcher.answer(&m, &reply(&m, 200, "OK"));
            cseqs.push(cseq_of(&m));
            last = Instant::now();
        }
    }
    for s in senders {
        s.join().unwrap();
    }
    let n = cseqs.len();
    cseqs.sort_unstable();
    cseqs.dedup();
    assert!(n >= 2, "NOTIFYs from both servers: {n}");
    assert_eq!(cseqs.len(), n, "no CSeq sent twice: {cseqs:?}");
    assert!(cseqs[0] > first + 2);

    // A publication that expires: announced once, by whichever server took it.
    let r = publish(&mut publisher, &b, "erin", &["Expires: 2"], &pidf("sip:erin@127.0.0.1", "short", "open", "brief"));
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    assert!(body(&n).contains("brief"), "{n}");
    let n = next_notify(&mut watcher);
    assert!(!body(&n).contains("brief"), "the expiry NOTIFY drops it: {n}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(m) = watcher.recv(Duration::from_millis(200)) {
            assert!(!m.starts_with("NOTIFY "), "a second NOTIFY for one expiry: {m}");
        }
    }

    // Unsubscribed through B: the last NOTIFY, and the row is gone for A too.
    let ruri_b = format!("sip:erin@127.0.0.1:{}", b.sip);
    let mut watcher_b = Client::udp(b.sip_addr());
    let unsub = sub
        .replace(&format!("To: <{ruri_a}>"), &format!("To: <{ruri_a}>;tag={to_tag}"))
        .replace(&format!("SUBSCRIBE {ruri_a}"), &format!("SUBSCRIBE {ruri_b}"))
        .replace("CSeq: 1 SUBSCRIBE", "CSeq: 2 SUBSCRIBE")
        .replace("Expires: 600", "Expires: 0")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-2-");
    watcher_b.send(unsub.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ok = false;
    let mut last_notify = None;
    while Instant::now() < deadline && (!ok || last_notify.is_none()) {
        if let Some(m) = watcher_b.recv(Duration::from_millis(100)) {
            ok |= status(&m) == 200;
        }
        if let Some(m) = watcher.recv(Duration::from_millis(100))
            && m.starts_with("NOTIFY ")
        {
            watcher.answer(&m, &reply(&m, 200, "OK"));
            last_notify = Some(m);
        }
    }
    assert!(ok, "unsubscribe answered 200 by B");
    let n = last_notify.expect("the last NOTIFY");
    assert_eq!(header(&n, "Subscription-State").as_deref(), Some("terminated;reason=timeout"), "{n}");
    assert!(eventually(Duration::from_secs(3), || {
        a.result("presence.watcher_list", json!(["basic", "sip:erin@127.0.0.1"])).as_array().is_some_and(Vec::is_empty)
    }));

    // A subscription that expires: one server claims it and sends the one last NOTIFY.
    let mut brief = Client::udp(b.sip_addr());
    let r = brief.transact(&request(&brief, "SUBSCRIBE", &ruri_b, &["Event: presence", "Expires: 2"], ""));
    assert_eq!(status(&r), 200, "{r}");
    next_notify(&mut brief);
    let n = next_notify(&mut brief);
    assert_eq!(header(&n, "Subscription-State").as_deref(), Some("terminated;reason=timeout"), "{n}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(m) = brief.recv(Duration::from_millis(200)) {
            assert!(!m.starts_with("NOTIFY "), "a second last NOTIFY: {m}");
        }
    }
    assert!(eventually(Duration::from_secs(3), || {
        b.result("presence.watcher_list", json!(["basic", "sip:erin@127.0.0.1"])).as_array().is_some_and(Vec::is_empty)
    }));
}

fn winfo_version(m: &str) -> u32 {
    let b = body(m);
    let v = b.split("version=\"").nth(2).or_else(|| b.split("version=\"").nth(1)).expect("version");
    v.split('"').next().unwrap().parse().unwrap()
}

/// Two servers on one SQLite file with pres-rules: a watcher subscribed through B is pending,
/// the presentity's watcher-info subscription on A hears about it, and a rule change applied
/// on A activates the watcher B took; winfo versions and CSeqs continue across the servers.
#[test]
fn shared_database_authorization_and_watcher_info() {
    let data = e2e::TempDir::new("presence-shared-rules-data");
    let file = data.join("presence.sqlite");
    let url = format!("sqlite://{}", file.display());
    let a = shared_server_with("presence-shared-rules-a", &url, "force_active = 0");
    let b = shared_server_with("presence-shared-rules-b", &url, "force_active = 0");

    let mut gina = Client::udp(a.sip_addr());
    let ruri = format!("sip:gina@127.0.0.1:{}", a.sip);
    let req = request(&gina, "SUBSCRIBE", &ruri, &["Event: presence.winfo", "Expires: 600"], "")
        .replace("From: <sip:tester@sip.test>", "From: <sip:gina@127.0.0.1>");
    assert_eq!(status(&gina.transact(&req)), 200);
    let full = next_notify(&mut gina);
    assert!(body(&full).contains("state=\"full\""), "{full}");
    let v0 = winfo_version(&full);

    let mut stranger = Client::udp(b.sip_addr());
    let req = request(
        &stranger,
        "SUBSCRIBE",
        &format!("sip:gina@127.0.0.1:{}", b.sip),
        &["Event: presence", "Expires: 600"],
        "",
    )
    .replace("From: <sip:tester@sip.test>", "From: <sip:stranger@127.0.0.1>");
    let r = stranger.transact(&req);
    assert!(status(&r) == 200 || status(&r) == 202, "{r}");
    let n = next_notify(&mut stranger);
    assert!(header(&n, "Subscription-State").unwrap().starts_with("pending"), "{n}");
    let c1 = cseq_of(&n);
    let partial = next_notify(&mut gina);
    assert!(body(&partial).contains("sip:stranger@127.0.0.1"), "B tells A's winfo watcher: {partial}");
    assert_eq!(winfo_version(&partial), v0 + 1, "{partial}");
    assert_eq!(
        a.result("presence.watcher_list", json!(["full", "sip:gina@127.0.0.1"])).as_array().map(Vec::len),
        Some(2)
    );

    let rules = ruleset(&[rule("s", r#"<one id="sip:stranger@127.0.0.1"/>"#, "allow", "")]);
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.execute('PRAGMA busy_timeout=5000')\nc.execute(\"insert into xcap(username,domain,doc,doc_type,etag,source,doc_uri,port) values('gina', '127.0.0.1', ?, 2, 'e', 1, 'pres-rules/gina', 0)\",(sys.argv[2].encode(),))\nc.commit()",
        ])
        .arg(&file)
        .arg(&rules)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    a.result("presence.refreshWatchers", json!(["sip:gina@127.0.0.1", "presence", 0]));
    let n = next_notify(&mut stranger);
    assert!(header(&n, "Subscription-State").unwrap().starts_with("active"), "A activates B's watcher: {n}");
    assert_eq!(cseq_of(&n), c1 + 1, "{n}");
    let partial = next_notify(&mut gina);
    assert!(body(&partial).contains("status=\"active\">sip:stranger@127.0.0.1</watcher>"), "{partial}");
    assert_eq!(winfo_version(&partial), v0 + 2, "{partial}");
    assert_eq!(
        b.result("presence.watcher_list", json!(["basic", "sip:gina@127.0.0.1"])).as_array().map(Vec::len),
        Some(2)
    );
}

database_tests! {
    servers_share_a_database_on_sqlite: "sqlite", servers_share_a_database;
    servers_share_a_database_on_postgres: "postgres", servers_share_a_database;
    servers_share_a_database_on_mariadb: "mariadb", servers_share_a_database;
    restart_keeps_state_on_sqlite: "sqlite", restart_keeps_state;
    restart_keeps_state_on_postgres: "postgres", restart_keeps_state;
    restart_keeps_state_on_mariadb: "mariadb", restart_keeps_state;
}

/// Publications and watchers survive a SIGTERM restart (Kamailio's tables on `db`); NOTIFY
/// CSeq keeps increasing.
/// Write-through with group commit: PUBLISHes from many publishers at once share commits, and
/// every one that got its 200 is on disk, even when the host is then killed with SIGKILL.
#[test]
fn acknowledged_publications_survive_a_crash() {
    let config = r#"loadmodule = ["presence", "presence_xml"]
[core]
children = 2
udp_workers = 8
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.presence]
db_url = "sqlite://presence.sqlite?synchronous=full"
[modparam.presence_xml]
force_active = 1
[[route]]
method = "PUBLISH"
do = ["handle_publish()"]
"#;
    let mut h = Host::start("presence-crash", config);
    let sip = h.sip_addr();
    let port = h.sip;
    let publishers: Vec<_> = (0..8)
        .map(|p| {
            std::thread::spawn(move || {
                let mut c = Client::udp(sip);
                let mut acknowledged = 0;
                for i in 0..40 {
                    let user = format!("crash-{p}-{i}");
                    let ruri = format!("sip:{user}@127.0.0.1:{port}");
                    let body = pidf(&format!("sip:{user}@127.0.0.1"), "t", "open", "on disk");
                    let headers = ["Event: presence", "Expires: 3600", "Content-Type: application/pidf+xml"];
                    let r = c.transact(&request(&c, "PUBLISH", &ruri, &headers, &body));
                    assert_eq!(status(&r), 200, "{r}");
                    acknowledged += 1;
                }
                acknowledged
            })
        })
        .collect();
    let acknowledged: usize = publishers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(acknowledged, 320);
    h.kill();
    h.restart();
    assert_eq!(publications(&h), 320, "every acknowledged PUBLISH came back from the database");
}

fn restart_keeps_state(db: &e2e::dbs::Database) {
    let mut h = server_on(&format!("presence-restart-{}", db.kind), &db.url, "force_active = 1");
    let mut watcher = Client::udp(h.sip_addr());
    let ruri = format!("sip:dave@127.0.0.1:{}", h.sip);
    let r = watcher.transact(&request(&watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], ""));
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut watcher);
    let cseq1: u32 = header(&n, "CSeq").unwrap().split(' ').next().unwrap().parse().unwrap();
    let mut publisher = Client::udp(h.sip_addr());
    let r = publish(&mut publisher, &h, "dave", &[], &pidf("sip:dave@127.0.0.1", "t0", "open", "before"));
    assert_eq!(status(&r), 200);
    next_notify(&mut watcher);
    h.stop();
    h.restart();
    let list = h.result("presence.presentity_list", json!(["full"]));
    assert!(list[0]["body"].as_str().is_some_and(|b| b.contains("before")), "the publication came back: {list}");
    let list = h.result("presence.watcher_list", json!(["basic", "sip:dave@127.0.0.1"]));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "the subscription came back: {list}");
    let r = publish(&mut publisher, &h, "dave", &[], &pidf("sip:dave@127.0.0.1", "t", "open", "back"));
    assert_eq!(status(&r), 200);
    let n = next_notify(&mut watcher);
    assert!(body(&n).contains("back"), "{n}");
    let cseq2: u32 = header(&n, "CSeq").unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(cseq2 > cseq1, "CSeq keeps increasing across the restart ({cseq1} -> {cseq2})");
}

fn kamailio_client(server: &Host) -> Kamailio {
    let template = std::fs::read_to_string(e2e::root().join("tests/kamailio/pua-client.cfg")).unwrap();
    let extra = format!("modparam(\"pua\", \"outbound_proxy\", \"sip:127.0.0.1:{}\")", server.sip);
    Kamailio::start_config("kamailio-pua-client", &template, &extra)
}

/// JSON-RPC to Kamailio over xhttp, which keeps the connection open after its reply: the reply
/// is read up to its Content-Length.
fn kamailio_rpc(k: &Kamailio, method: &str, params: Value) -> Value {
    use std::io::{Read, Write};
    let req = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", k.sip_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /RPC HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{req}",
        req.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap_or_else(|e| panic!("{e}: {}\n{}", String::from_utf8_lossy(&buf), k.log()));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                return serde_json::from_str(&body[..len]).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
            }
        }
        assert!(n > 0, "connection closed: {text}");
    }
}

#[test]
fn kamailio_pua_publishes_and_subscribes() {
    let h = server("presence-kamailio", "force_active = 1");
    let k = kamailio_client(&h);
    let pres = "sip:erin@127.0.0.1";
    let body = pidf(pres, "k1", "open", "from kamailio");
    let r = kamailio_rpc(&k, "pua.publish", json!([pres, "3600", "presence", ".", ".", ".", ".", ".", body]));
    let etag = r["result"]["SIP-ETag"].as_str().unwrap_or_else(|| panic!("{r}\n{}\n{}", k.log(), h.log())).to_string();
    let list = h.result("presence.presentity_list", json!(["full"]));
    assert_eq!(list[0]["etag"], json!(etag), "{list}");
    assert!(list[0]["body"].as_str().unwrap().contains("from kamailio"));

    // Kamailio's pua refreshes with the ETag we gave it.
    let body2 = pidf(pres, "k1", "closed", "gone home");
    let r = kamailio_rpc(&k, "pua.publish", json!([pres, "3600", "presence", ".", ".", etag, ".", ".", body2]));
    assert!(r["result"]["SIP-ETag"].is_string(), "{r}\n{}", h.log());
    assert!(eventually(Duration::from_secs(3), || {
        h.result("presence.presentity_list", json!(["full"]))[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("gone home"))
    }));

    // Kamailio subscribes: an active watcher here, and its NOTIFY reaches Kamailio.
    let watcher = format!("sip:kw@127.0.0.1:{}", k.sip_port);
    // pua sends SUBSCRIBE to the presentity URI itself (its outbound_proxy is for PUBLISH).
    let target = format!("sip:erin@127.0.0.1:{}", h.sip);
    let r = kamailio_rpc(&k, "pua.subscribe", json!([target, watcher, "presence", 600]));
    assert!(r.get("error").is_none(), "{r}");
    assert!(
        eventually(Duration::from_secs(5), || {
            h.result("presence.watcher_list", json!(["basic", pres])).as_array().is_some_and(|l| l.len() == 1)
        }),
        "{}",
        h.log()
    );
    assert!(
        eventually(Duration::from_secs(5), || k.log().contains("REQ NOTIFY") && k.log().contains("gone home")),
        "Kamailio got the NOTIFY with the state:\n{}",
        k.log()
    );
}

#[test]
fn sphere_condition_uses_the_presentitys_rpid_sphere() {
    let h = server("presence-sphere", "force_active = 0\nenable_sphere_check = 1");
    let mut publisher = Client::udp(h.sip_addr());
    let doc = r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:frank@127.0.0.1"><tuple id="t"><status><basic>open</basic></status></tuple><dm:person id="p"><rpid:sphere>work</rpid:sphere></dm:person></presence>"#;
    let r = publish(&mut publisher, &h, "frank", &[], doc);
    assert_eq!(status(&r), 200, "{r}");
    // Kamailio mode compares the rule's <sphere> text with the presentity's sphere.
    let home_only = r#"<rule id="h"><conditions><identity><one id="sip:friend@127.0.0.1"/></identity><sphere>home</sphere></conditions><actions><sub-handling xmlns="urn:ietf:params:xml:ns:pres-rules">allow</sub-handling></actions></rule>"#;
    put_rules(&h, "frank", &ruleset(&[home_only.to_string()]));
    let mut w = Client::udp(h.sip_addr());
    let (_, n) = subscribe_as(&h, &mut w, "friend", "frank");
    assert!(
        header(&n, "Subscription-State").unwrap().starts_with("pending"),
        "at work, a home-only rule does not apply: {n}"
    );
    assert_eq!(body(&n), "");
}

/// One HTTP request with optional Basic credentials; returns (status, headers, body).
fn xcap(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String, String) {
    xcap_with(port, method, path, auth, "", body)
}

/// [`xcap`] with extra header lines (each ending in CRLF).
fn xcap_with(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    extra: &str,
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: Basic {a}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{extra}Content-Type: application/auth-policy+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_string(), body.to_string())
}

#[test]
fn xcap_server_rules_change_the_watchers() {
    let xcap_port = e2e::free_port();
    let config = format!(
        r#"loadmodule = ["presence", "presence_xml", "xcap_server"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.presence]
db_url = "sqlite://presence.sqlite"
[modparam.presence_xml]
db_url = "sqlite://presence.sqlite"
integrated_xcap_server = 1
[modparam.xcap_server]
db_url = "sqlite://presence.sqlite"
http = "127.0.0.1:{xcap_port}"
{PRESENCE_ROUTES}"#
    );
    let h = Host::start("presence-xcap", &config);
    let db = h.dir.join("presence.sqlite");
    let out = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.execute('PRAGMA busy_timeout=5000')\nc.executemany(\"insert into subscriber(username,domain,password) values(?, '127.0.0.1', ?)\", [('carol','s3cret'),('mallory','m')])\nc.commit()"])
        .arg(&db)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut publisher = Client::udp(h.sip_addr());
    let r = publish(&mut publisher, &h, "carol", &[], &pidf("sip:carol@127.0.0.1", "t1", "open", "secret note"));
    assert_eq!(status(&r), 200);
    let mut stranger = Client::udp(h.sip_addr());
    let (_, n) = subscribe_as(&h, &mut stranger, "stranger", "carol");
    assert!(header(&n, "Subscription-State").unwrap().starts_with("pending"), "{n}");

    let path = "/xcap-root/pres-rules/users/sip:carol@127.0.0.1/index";
    let carol = "Y2Fyb2w6czNjcmV0"; // carol:s3cret
    let mallory = "bWFsbG9yeTpt"; // mallory:m
    let allow = ruleset(&[rule("d", r#"<one id="sip:stranger@127.0.0.1"/>"#, "allow", "")]);
    let (code, head, _) = xcap(xcap_port, "PUT", path, None, &allow);
    assert_eq!(code, 401, "{head}");
    assert!(head.contains("WWW-Authenticate: Basic"), "{head}");
    assert_eq!(xcap(xcap_port, "PUT", path, Some("Y2Fyb2w6d3Jvbmc="), &allow).0, 401, "wrong password");
    assert_eq!(xcap(xcap_port, "PUT", path, Some(mallory), &allow).0, 403, "another user's document");
    let (code, _, err) = xcap(xcap_port, "PUT", path, Some(carol), "<ruleset><rule>");
    assert_eq!(code, 409);
    assert!(err.contains("not-well-formed"), "{err}");
    assert_eq!(xcap(xcap_port, "GET", path, Some(carol), "").0, 404);
    assert_eq!(xcap(xcap_port, "GET", &format!("{path}/~~/ruleset"), Some(carol), "").0, 501);

    // The rule arrives over XCAP: the pending watcher turns active with the document.
    let (code, head, _) = xcap(xcap_port, "PUT", path, Some(carol), &allow);
    assert_eq!(code, 201, "{head}");
    let n = next_notify(&mut stranger);
    assert!(header(&n, "Subscription-State").unwrap().starts_with("active"), "{n}");
    assert!(body(&n).contains("secret note"), "{n}");
    let (code, head, doc) = xcap(xcap_port, "GET", path, Some(carol), "");
    assert_eq!((code, doc.as_str()), (200, allow.as_str()), "{head}");
    assert!(head.contains("ETag: \""), "{head}");

    // A conditional PUT with a stale ETag changes nothing.
    let block = ruleset(&[rule("d", r#"<one id="sip:stranger@127.0.0.1"/>"#, "block", "")]);
    assert_eq!(xcap_with(xcap_port, "PUT", path, Some(carol), "If-Match: \"stale\"\r\n", &block).0, 412);
    assert_eq!(xcap(xcap_port, "GET", path, Some(carol), "").2, allow, "unchanged");
    // Its rule goes (the document stays): terminated with the userdel reason.
    let friend_only = ruleset(&[rule("a", r#"<one id="sip:friend@127.0.0.1"/>"#, "allow", "")]);
    let (code, head, _) = xcap(xcap_port, "PUT", path, Some(carol), &friend_only);
    assert_eq!(code, 200, "{head}");
    let n = next_notify(&mut stranger);
    assert_eq!(header(&n, "Subscription-State").as_deref(), Some("terminated;reason=probation"), "{n}");

    // The document goes: a new watcher is pending (no rules: Kamailio's behaviour).
    let (code, head, _) = xcap(xcap_port, "DELETE", path, Some(carol), "");
    assert_eq!(code, 200, "{head}");
    assert_eq!(xcap(xcap_port, "DELETE", path, Some(carol), "").0, 404);
    let mut friend = Client::udp(h.sip_addr());
    let (_, n) = subscribe_as(&h, &mut friend, "friend", "carol");
    assert!(header(&n, "Subscription-State").unwrap().starts_with("pending"), "{n}");
}

/// sipp drives every reply code (tests/sipp/presence_reply_codes.xml): 489, 412, 415, 400, 423,
/// 481, 489 for SUBSCRIBE, then a 200.
#[test]
fn sipp_reply_codes() {
    let h = server("presence-sipp", "force_active = 1");
    let scenario = e2e::root().join("tests/sipp/presence_reply_codes.xml");
    let err = h.dir.join("sipp-err.log");
    let out = std::process::Command::new("sipp")
        .args(["-sf", scenario.to_str().unwrap(), "-m", "1", "-i", "127.0.0.1", "-p", &e2e::free_port().to_string()])
        .args(["-nostdin", "-timeout", "20s", "-trace_err", "-error_file", err.to_str().unwrap()])
        .arg(format!("127.0.0.1:{}", h.sip))
        .output()
        .expect("sipp is missing: run scripts/install-test-deps.sh (Debian package sip-tester)");
    assert!(
        out.status.success(),
        "sipp failed ({:?}):\n{}\n{}",
        out.status,
        std::fs::read_to_string(&err).unwrap_or_default(),
        h.log()
    );
    assert_eq!(publications(&h), 1, "only the valid PUBLISH stored anything");
}

/// The presentity watches its own watchers (presence.winfo): a full watcher-info document
/// first, then a partial one for each new watcher; someone else may not subscribe to it.
#[test]
fn watcher_info() {
    let h = server("presence-winfo", "force_active = 1");
    let ruri = format!("sip:gina@127.0.0.1:{}", h.sip);
    let mut other = Client::udp(h.sip_addr());
    let r = other.transact(&request(&other, "SUBSCRIBE", &ruri, &["Event: presence.winfo", "Expires: 600"], ""));
    assert_eq!(status(&r), 403, "only gina may see who watches her: {r}");

    let mut gina = Client::udp(h.sip_addr());
    let req = request(&gina, "SUBSCRIBE", &ruri, &["Event: presence.winfo", "Expires: 600"], "")
        .replace("From: <sip:tester@sip.test>", "From: <sip:gina@127.0.0.1>");
    let r = gina.transact(&req);
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut gina);
    assert_eq!(header(&n, "Content-Type").as_deref(), Some("application/watcherinfo+xml"), "{n}");
    assert!(body(&n).contains("state=\"full\"") && body(&n).contains("resource=\"sip:gina@127.0.0.1\""), "{n}");

    let mut w = Client::udp(h.sip_addr());
    let (_, _) = subscribe_as(&h, &mut w, "henry", "gina");
    let n = next_notify(&mut gina);
    let b = body(&n);
    assert!(b.contains("state=\"partial\""), "{n}");
    assert!(b.contains("status=\"active\">sip:henry@127.0.0.1</watcher>"), "{n}");
}

/// sip_uri_match: with 0 (Kamailio's default) `sip:Fay@...` and `sip:fay@...` are two
/// presentities; with 1 they are one, for requests, the RPC/API and the sender compare.
#[test]
fn sip_uri_match_compares_presentity_uris_case_insensitively() {
    for (mode, same) in [(0, false), (1, true)] {
        let h = Host::start(
            &format!("presence-uri-match-{mode}"),
            &config_on("sqlite://presence.sqlite", &format!("sip_uri_match = {mode}"), "force_active = 1"),
        );
        let mut watcher = Client::udp(h.sip_addr());
        let ruri = format!("sip:fay@127.0.0.1:{}", h.sip);
        let r = watcher.transact(&request(&watcher, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], ""));
        assert_eq!(status(&r), 200, "{r}");
        next_notify(&mut watcher);
        let mut publisher = Client::udp(h.sip_addr());
        let r = publish(&mut publisher, &h, "Fay", &[], &pidf("sip:Fay@127.0.0.1", "t1", "open", "upper case"));
        assert_eq!(status(&r), 200, "{r}");
        if same {
            let n = next_notify(&mut watcher);
            assert!(body(&n).contains("upper case"), "mode {mode}: {n}");
        } else {
            e2e::notify::no_notify(&mut watcher, Duration::from_millis(700));
        }
        let has = h.result("presence.watcher_list", json!(["basic", "sip:FAY@127.0.0.1"]));
        assert_eq!(has.as_array().map(Vec::len), Some(usize::from(same)), "mode {mode}: {has}");
    }
}
