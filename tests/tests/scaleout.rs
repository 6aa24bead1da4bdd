//! Scale-out: two presence servers sharing one PostgreSQL or MariaDB database in database-only mode
//! (subs_db_mode 3, publ_cache 0) behind Kamailio's dispatcher (Debian's package) as the load
//! balancer, with Record-Route. Whichever server a request lands on, it sees every
//! subscription and publication; when one server stops, the other goes on answering and
//! notifying every watcher, including those the stopped one took; each watcher's NOTIFY CSeqs
//! strictly increase whichever server sends them.

use e2e::kamailio::Kamailio;
use e2e::notify::{body, cseq_of, next_notify};
use e2e::sip::{Client, header, request, status};
use e2e::{Host, free_port};
use e2e::{OPTIONS_ROUTE, PRESENCE_ROUTES};

/// A presence server on `port` whose Contact (server_address) is the balancer.
fn server(name: &str, port: u16, db_url: &str, balancer: u16) -> Host {
    Host::start(
        name,
        &format!(
            r#"loadmodule = ["presence", "presence_xml"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:{port}"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.presence]
db_url = "{db_url}"
subs_db_mode = 3
publ_cache = 0
clean_period = 1
server_address = "sip:127.0.0.1:{balancer}"
[modparam.presence_xml]
db_url = "{db_url}"
force_active = 1
{PRESENCE_ROUTES}{OPTIONS_ROUTE}"#
        ),
    )
}

fn pidf(note: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:erin@127.0.0.1\">\
         <tuple id=\"t1\"><status><basic>open</basic></status><note>{note}</note></tuple></presence>"
    )
}

/// The port of the server that sent `notify`: its Via below the balancer's.
fn sender_port(notify: &str) -> u16 {
    let vias = e2e::sip::headers(notify, "Via");
    let server_via = vias.iter().flat_map(|v| v.split(',')).nth(1).unwrap_or_else(|| panic!("two Vias:\n{notify}"));
    let hostport = server_via.split_whitespace().nth(1).expect("sent-by").split(';').next().unwrap();
    hostport.rsplit(':').next().unwrap().parse().expect("a port")
}

/// Publishes through the balancer (a new publication each time, so no ETag to carry).
fn publish(c: &mut Client, balancer: u16, note: &str) -> String {
    let ruri = format!("sip:erin@127.0.0.1:{balancer}");
    let headers = ["Event: presence", "Expires: 600", "Content-Type: application/pidf+xml"];
    c.transact(&request(c, "PUBLISH", &ruri, &headers, &pidf(note)))
}

/// Subscribes through the balancer; the 200 and the first NOTIFY.
fn subscribe(c: &mut Client, balancer: u16) -> (String, String) {
    let ruri = format!("sip:erin@127.0.0.1:{balancer}");
    let sub = request(c, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], "");
    let r = c.transact(&sub);
    assert_eq!(status(&r), 200, "{r}");
    (sub, r)
}

/// An in-dialog refresh of `sub` (answered with `ok`): to the Contact the 200 gave, through
/// the route set it gave.
fn refresh(c: &mut Client, sub: &str, ok: &str, cseq: u32) -> String {
    let contact = header(ok, "Contact").expect("Contact");
    let target = contact.trim_start_matches('<').split('>').next().unwrap().to_string();
    let to = header(ok, "To").unwrap();
    let routes = e2e::sip::headers(ok, "Record-Route");
    let mut msg = String::new();
    for line in sub.split("\r\n") {
        if line.starts_with("SUBSCRIBE ") {
            msg += &format!("SUBSCRIBE {target} SIP/2.0\r\n");
            for r in &routes {
                msg += &format!("Route: {r}\r\n");
            }
        } else if line.starts_with("To:") {
            msg += &format!("To: {to}\r\n");
        } else if line.starts_with("CSeq:") {
            msg += &format!("CSeq: {cseq} SUBSCRIBE\r\n");
        } else if line.starts_with("Via:") {
            msg += &line.replace("branch=z9hG4bK-", &format!("branch=z9hG4bK-{cseq}-"));
            msg += "\r\n";
        } else {
            msg += line;
            msg += "\r\n";
        }
    }
    msg.truncate(msg.len() - 2);
    c.transact(&msg)
}

e2e::database_tests! {
    two_servers_behind_kamailios_dispatcher_postgres: "postgres", two_servers_behind_kamailios_dispatcher;
    two_servers_behind_kamailios_dispatcher_mariadb: "mariadb", two_servers_behind_kamailios_dispatcher;
}

fn two_servers_behind_kamailios_dispatcher(db: &e2e::dbs::Database) {
    let (port_a, port_b) = (free_port(), free_port());
    let lists = e2e::TempDir::new("dispatcher-list");
    let list = lists.write("dispatcher.list", &format!("1 sip:127.0.0.1:{port_a}\n1 sip:127.0.0.1:{port_b}\n"));
    let template = std::fs::read_to_string(e2e::root().join("tests/kamailio/dispatcher.cfg")).unwrap();
    let lb = Kamailio::start_config(
        "dispatcher",
        &template,
        &format!("modparam(\"dispatcher\", \"list_file\", \"{}\")", list.display()),
    );
    let balancer = lb.sip_port;
    let mut a = server(&format!("scaleout-a-{}", db.kind), port_a, &db.url, balancer);
    let b = server(&format!("scaleout-b-{}", db.kind), port_b, &db.url, balancer);

    // Round robin: the two watchers' SUBSCRIBEs land on different servers, each of which
    // sends the first NOTIFY through the balancer.
    let mut w1 = Client::udp(lb.addr());
    let mut w2 = Client::udp(lb.addr());
    let (sub1, ok1) = subscribe(&mut w1, balancer);
    let n1 = next_notify(&mut w1);
    let (sub2, ok2) = subscribe(&mut w2, balancer);
    let n2 = next_notify(&mut w2);
    let (took1, took2) = (sender_port(&n1), sender_port(&n2));
    assert_ne!(took1, took2, "round robin spreads the SUBSCRIBEs:\n{n1}\n{n2}");
    assert!([port_a, port_b].contains(&took1) && [port_a, port_b].contains(&took2));
    assert_eq!(header(&ok1, "Contact").as_deref(), Some(format!("<sip:127.0.0.1:{balancer}>").as_str()), "{ok1}");
    let (mut last1, mut last2) = (cseq_of(&n1), cseq_of(&n2));

    // A PUBLISH lands on one server; that server notifies both watchers, including the one
    // the other server took.
    let mut publisher = Client::udp(lb.addr());
    let mut senders = std::collections::HashSet::new();
    for k in 0..4 {
        let r = publish(&mut publisher, balancer, &format!("round {k}"));
        assert_eq!(status(&r), 200, "{r}");
        for (w, last) in [(&mut w1, &mut last1), (&mut w2, &mut last2)] {
            let n = next_notify(w);
            assert!(body(&n).contains(&format!("round {k}")), "{n}");
            assert!(cseq_of(&n) > *last, "CSeq increases: {} after {last}", cseq_of(&n));
            *last = cseq_of(&n);
            senders.insert(sender_port(&n));
        }
    }
    assert_eq!(senders.len(), 2, "both servers notified watchers they did not take");

    // Refreshes go to the cluster (the balancer is the Contact) and work wherever they land.
    let r = refresh(&mut w1, &sub1, &ok1, 2);
    assert_eq!(status(&r), 200, "{r}");
    let n = next_notify(&mut w1);
    assert!(cseq_of(&n) > last1);
    last1 = cseq_of(&n);

    // Server A stops: B answers everything (the balancer skips A after its timeout, then its
    // probes mark A inactive) and notifies both watchers.
    a.stop();
    for k in 0..3 {
        let r = publish(&mut publisher, balancer, &format!("after {k}"));
        assert_eq!(status(&r), 200, "{r}");
        for (w, last) in [(&mut w1, &mut last1), (&mut w2, &mut last2)] {
            let n = next_notify(w);
            assert!(body(&n).contains(&format!("after {k}")), "{n}");
            assert_eq!(sender_port(&n), port_b, "only B is left:\n{n}");
            assert!(cseq_of(&n) > *last, "CSeq increases across servers: {} after {last}", cseq_of(&n));
            *last = cseq_of(&n);
        }
    }
    for (w, sub, ok, last) in [(&mut w1, &sub1, &ok1, &mut last1), (&mut w2, &sub2, &ok2, &mut last2)] {
        let r = refresh(w, sub, ok, 3);
        assert_eq!(status(&r), 200, "refresh with A gone: {r}");
        let n = next_notify(w);
        assert_eq!(sender_port(&n), port_b);
        assert!(cseq_of(&n) > *last);
    }
    let watchers = b.result("presence.watcher_list", serde_json::json!(["basic", "sip:erin@127.0.0.1"]));
    assert_eq!(watchers.as_array().map(Vec::len), Some(2), "{watchers}");
}
