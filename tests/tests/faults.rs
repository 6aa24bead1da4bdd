//! Fault injection: the database goes away under a running presence server. A TCP proxy in the
//! test sits between the host and PostgreSQL (the machine's shared server is never touched);
//! cutting it drops every connection and refuses new ones until it is restored.
//! - database only (publ_cache 0, subs_db_mode 3): requests that need the database get 500 with
//!   Retry-After, nothing is half-stored, the failures are logged and counted on /metrics
//!   (`puahost_db_errors_total`), and the host recovers by itself once the database is back;
//! - memory mode (publ_cache 1, subs_db_mode 2): the host keeps serving PUBLISH and SUBSCRIBE
//!   from memory, logs the failed writes, and writes the subscriptions back once the database
//!   returns.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::PRESENCE_ROUTES;
use e2e::sip::{Client, header, request, status};
use e2e::{Host, eventually};

/// A TCP proxy to `target` that can be cut and restored.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else { continue };
                let mut held = k.lock().unwrap();
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                held.push(client);
                held.push(server);
            }
        });
        Proxy { port, cut, conns }
    }

    /// The database goes away: open connections are dropped, new ones refused.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `db`'s URL with the proxy's port, and `db`'s name.
fn through(db: &e2e::dbs::Database, proxy: &Proxy) -> (String, String, String) {
    let (base, name) = db.url.rsplit_once('/').expect("url/db");
    let (userhost, port) = base.rsplit_once(':').expect("host:port");
    (format!("{userhost}:{}/{name}", proxy.port), name.to_string(), format!("127.0.0.1:{port}"))
}

/// A count straight from PostgreSQL (not through the proxy).
fn count(db: &e2e::dbs::Database, table: &str) -> i64 {
    let (base, name) = db.url.rsplit_once('/').unwrap();
    let port = base.rsplit_once(':').unwrap().1;
    let user = base.split("://").nth(1).and_then(|r| r.split('@').next()).unwrap_or("postgres");
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", port, "-U", user, "-d", name, "-tAc", &format!("select count(*) from {table}")])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(-1)
}

/// `puahost_db_errors_total` from the host's /metrics.
fn db_errors(h: &Host) -> u64 {
    let (_, text) = e2e::http_request(h.http.expect("http"), "GET", "/metrics", "");
    text.lines()
        .find_map(|l| l.strip_prefix("puahost_db_errors_total ").and_then(|v| v.trim().parse::<f64>().ok()))
        .unwrap_or_else(|| panic!("no puahost_db_errors_total:\n{text}")) as u64
}

fn config(db_url: &str, presence: &str) -> String {
    format!(
        r#"loadmodule = ["presence", "presence_xml"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.presence]
db_url = "{db_url}"
{presence}
[modparam.presence_xml]
db_url = "{db_url}"
force_active = 1
{PRESENCE_ROUTES}"#
    )
}

fn pidf(user: &str, note: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:{user}@127.0.0.1"><tuple id="t1"><status><basic>open</basic></status><note>{note}</note></tuple></presence>"#
    )
}

fn publish(c: &mut Client, h: &Host, user: &str) -> (String, Duration) {
    let ruri = format!("sip:{user}@127.0.0.1:{}", h.sip);
    let t = Instant::now();
    let r = c.transact(&request(
        c,
        "PUBLISH",
        &ruri,
        &["Event: presence", "Expires: 3600", "Content-Type: application/pidf+xml"],
        &pidf(user, "x"),
    ));
    (r, t.elapsed())
}

fn subscribe(c: &mut Client, h: &Host, user: &str) -> String {
    let ruri = format!("sip:{user}@127.0.0.1:{}", h.sip);
    c.send(request(c, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 3600"], "").as_bytes());
    loop {
        let m = c.recv(Duration::from_secs(10)).expect("a reply to SUBSCRIBE");
        if status(&m) >= 200 && header(&m, "CSeq").is_some_and(|v| v.ends_with("SUBSCRIBE")) {
            return m;
        }
    }
}

#[test]
fn database_only_answers_500_with_retry_after_while_the_database_is_away_and_recovers() {
    let Some(db) = e2e::dbs::postgres() else { return };
    let (_, _, target) = through(&db, &Proxy { port: 0, cut: Arc::default(), conns: Arc::default() });
    let proxy = Proxy::start(target);
    let (url, _, _) = through(&db, &proxy);
    let mut h = Host::start("faults-dbonly", &config(&url, "publ_cache = 0\nsubs_db_mode = 3"));
    let mut c = Client::udp(h.sip_addr());
    assert_eq!(status(&publish(&mut c, &h, "before").0), 200);
    assert_eq!(count(&db, "presentity"), 1);
    assert_eq!(db_errors(&h), 0);

    proxy.cut();
    let (r, took) = publish(&mut c, &h, "during");
    assert_eq!((status(&r), header(&r, "Retry-After").as_deref()), (500, Some("5")), "{r}");
    assert!(took < Duration::from_secs(5), "the failure is quick: {took:?}");
    let r = subscribe(&mut c, &h, "before");
    assert_eq!((status(&r), header(&r, "Retry-After").as_deref()), (500, Some("5")), "{r}");
    assert!(h.log().contains("presence: storing the publication of sip:during@127.0.0.1"), "logged");
    assert!(db_errors(&h) >= 2, "counted on /metrics");

    proxy.restore();
    let back = eventually(Duration::from_secs(15), || status(&publish(&mut c, &h, "after").0) == 200);
    assert!(back, "the host recovers by itself:\n{}", h.log());
    assert_eq!(count(&db, "presentity"), 2, "before and after stored, nothing of the outage");
    assert!(h.alive());
    h.stop();
}

#[test]
fn memory_mode_keeps_serving_while_the_database_is_away_and_writes_back() {
    let Some(db) = e2e::dbs::postgres() else { return };
    let (_, _, target) = through(&db, &Proxy { port: 0, cut: Arc::default(), conns: Arc::default() });
    let proxy = Proxy::start(target);
    let (url, _, _) = through(&db, &proxy);
    let mut h = Host::start("faults-memory", &config(&url, "publ_cache = 1\nsubs_db_mode = 2\ndb_update_period = 1"));
    let mut c = Client::udp(h.sip_addr());
    assert_eq!(status(&publish(&mut c, &h, "before").0), 200);

    proxy.cut();
    for user in ["during1", "during2"] {
        let (r, took) = publish(&mut c, &h, user);
        assert_eq!(status(&r), 200, "served from memory: {r}");
        eprintln!("PUBLISH during the outage answered in {took:?}");
        let r = subscribe(&mut c, &h, user);
        assert_eq!(status(&r), 200, "{r}");
    }
    assert_eq!(e2e::notify::publications(&h), 3, "all in memory");
    assert!(db_errors(&h) >= 2, "the failed writes are counted on /metrics");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&db, "active_watchers"), 0, "nothing reached the database yet");

    proxy.restore();
    assert!(
        eventually(Duration::from_secs(20), || count(&db, "active_watchers") == 2),
        "the subscriptions are written back when the database returns: {} rows\n{}",
        count(&db, "active_watchers"),
        h.log()
    );
    assert!(
        eventually(Duration::from_secs(20), || count(&db, "presentity") == 3),
        "the publications made during the outage are written back too: {} rows of 3\n{}",
        count(&db, "presentity"),
        h.log()
    );
    assert!(h.alive());
    h.stop();

    // What a restart reads back: every publication, also those of the outage.
    let again = Host::start("faults-memory-again", &config(&db.url, "publ_cache = 1\nsubs_db_mode = 2"));
    assert_eq!(e2e::notify::publications(&again), 3, "{}", again.log());
}
