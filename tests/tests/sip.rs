//! The SIP core end to end: real sockets, sipp, malformed input, transactions, routes and
//! the module message API.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::sip::{Client, header, headers, request, status};
use e2e::{Host, root, text};
use serde_json::json;

const BASE: &str = r#"loadmodule = ["testmod"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@", "tcp:127.0.0.1:@SIP@"]
t1 = 50
[rpc]
http = "127.0.0.1:@HTTP@"
"#;

fn host(name: &str, routes: &str) -> Host {
    Host::start(name, &format!("{BASE}{routes}"))
}

const STATELESS: &str = r#"
[[route]]
method = ["OPTIONS", "PUBLISH", "SUBSCRIBE"]
reply = "200 OK"
"#;

/// Starts sipp as a callee with scenario `tests/sipp/<name>.xml` on `port`, for one call.
fn spawn_uas(host: &Host, name: &str, port: u16) -> std::process::Child {
    let scenario = root().join(format!("tests/sipp/{name}.xml"));
    let dir = host.dir.path();
    let child = Command::new("sipp")
        .args(["-sf", scenario.to_str().unwrap(), "-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "20s", "-trace_err", "-error_file"])
        .arg(dir.join(format!("{name}-err.log")))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sipp is missing: run scripts/install-test-deps.sh (Debian package sip-tester)");
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn sipp(args: &[&str]) -> std::process::Output {
    Command::new("sipp")
        .args(args)
        .output()
        .expect("sipp is missing: run scripts/install-test-deps.sh (Debian package sip-tester)")
}

/// sipp sends OPTIONS, PUBLISH and SUBSCRIBE over UDP and TCP to a route that replies
/// statelessly, and gets its 200s.
#[test]
fn sipp_gets_stateless_replies_over_udp_and_tcp() {
    let host = host("sip-sipp", STATELESS);
    let template = std::fs::read_to_string(root().join("tests/sipp/uac_request.xml")).unwrap();
    let dir = host.dir.path().to_path_buf();
    for transport in ["u1", "t1"] {
        for method in ["OPTIONS", "PUBLISH", "SUBSCRIBE"] {
            // sipp refuses a keyword for the method (it tracks CSeq by it): one file per method.
            let scenario = dir.join(format!("uac_{method}.xml"));
            std::fs::write(&scenario, template.replace("[method]", method)).unwrap();
            let port = e2e::free_port().to_string();
            let target = format!("127.0.0.1:{}", host.sip);
            let out = sipp(&[
                "-sf",
                scenario.to_str().unwrap(),
                "-t",
                transport,
                "-key",
                "event",
                "presence",
                "-s",
                "alice",
                "-m",
                "20",
                "-r",
                "200",
                "-i",
                "127.0.0.1",
                "-p",
                &port,
                "-nostdin",
                "-timeout",
                "20s",
                "-trace_err",
                "-error_file",
                dir.join("sipp-err.log").to_str().unwrap(),
                "-message_file",
                dir.join("sipp-msg.log").to_str().unwrap(),
                &target,
            ]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "sipp {method} over {transport} failed:\n{}\n{}",
                text(&out),
                host.log()
            );
        }
    }
}

/// A retransmitted request is answered with the same reply, and the route runs once.
#[test]
fn udp_retransmission_is_absorbed() {
    let routes = r#"
[[route]]
method = "SUBSCRIBE"
do = ["test_count()"]
reply = "202 OK"
"#;
    let host = host("sip-retrans", routes);
    let mut c = Client::udp(host.sip_addr());
    let req =
        request(&c, "SUBSCRIBE", &format!("sip:bob@127.0.0.1:{}", host.sip), &["Event: presence", "Expires: 60"], "");
    let first = c.transact(&req);
    c.send(req.as_bytes());
    let second = c.recv(Duration::from_secs(2)).expect("the retransmission must be answered");
    assert_eq!(status(&first), 202);
    assert_eq!(first, second, "the same reply, To-tag included");
    assert!(header(&first, "To").unwrap().contains(";tag="), "{first}");
    assert_eq!(host.result("testmod.count", json!([])), json!(1), "the route ran twice");
}

/// Every RFC 4475 invalid message is answered 400/505 when a reply can be formed, or dropped;
/// the host goes on answering.
#[test]
fn torture_messages_never_crash_the_host() {
    let mut host = host("sip-torture", STATELESS);
    let dir = root().join("lib/sip-message/tests/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("RFC 4475 corpus").map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 40, "the RFC 4475 corpus is incomplete: {}", files.len());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        sock.send_to(&bytes, host.sip_addr()).unwrap();
    }
    // Specific verdicts: a CSeq method that differs from the request's, and an unknown SIP version.
    let mut verdicts = Vec::new();
    for name in ["mismatch01", "badvers"] {
        let c = Client::udp(host.sip_addr());
        // Their Via has no rport, so the reply would go to the sent-by port (5060, RFC 3261
        // §18.2.2); with rport it comes back to this socket.
        let text = String::from_utf8(std::fs::read(dir.join(format!("{name}.dat"))).unwrap()).unwrap();
        let text = text.replace("branch=z9hG4bKkdjuw", "branch=z9hG4bKkdjuw;rport");
        let mut c = c;
        c.send(text.as_bytes());
        verdicts.push(c.recv(Duration::from_secs(2)).map(|r| status(&r)));
    }
    assert_eq!(verdicts, vec![Some(400), Some(505)]);
    // Binary junk and a truncated header: no reply, no crash.
    let mut c = Client::udp(host.sip_addr());
    c.send(&[0xff, 0x00, 0x13, 0x37, b'\n', 0x80]);
    c.send(b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;bra");
    assert!(c.recv(Duration::from_millis(300)).is_none());
    assert!(host.alive());
    let mut c = Client::udp(host.sip_addr());
    let r = c.transact(&request(&c, "OPTIONS", "sip:ping@127.0.0.1", &[], ""));
    assert_eq!(status(&r), 200);
    let log = host.log();
    assert!(log.contains("answered 400") && log.contains("dropped"), "{log}");
}

/// Over TCP: a 2 MB message is refused (its connection closed) while another connection is
/// answered within 100 ms; a Content-Length larger than what arrives just waits.
#[test]
fn huge_tcp_message_does_not_block_others() {
    let mut host = host("sip-huge", STATELESS);
    let mut big = TcpStream::connect(host.sip_addr()).unwrap();
    let head = format!(
        "PUBLISH sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-big\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: big\r\nCSeq: 1 PUBLISH\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    big.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let feeder = std::thread::spawn(move || {
        for _ in 0..32 {
            if big.write_all(&chunk).is_err() {
                return true; // closed by the host
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    std::thread::sleep(Duration::from_millis(50));
    let mut other = Client::tcp(host.sip_addr());
    let req = request(&other, "OPTIONS", "sip:ping@127.0.0.1", &[], "");
    let started = Instant::now();
    other.send(req.as_bytes());
    let reply = other.recv(Duration::from_secs(2)).expect("no reply while a huge message arrives");
    assert_eq!(status(&reply), 200);
    assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
    assert!(feeder.join().unwrap(), "the huge message's connection should have been closed");
    // A body shorter than its Content-Length: no reply, connection kept waiting, host fine.
    let mut short = Client::tcp(host.sip_addr());
    let mut m = request(&short, "OPTIONS", "sip:ping@127.0.0.1", &[], "");
    m = m.replace("Content-Length: 0", "Content-Length: 50");
    short.send(m.as_bytes());
    assert!(short.recv(Duration::from_millis(300)).is_none());
    assert!(host.alive());
    assert!(host.log().contains("TCP stream error"), "{}", host.log());
}

/// A panic in a module's config function is answered 500 and the host goes on.
#[test]
fn a_panicking_function_is_answered_500() {
    let routes = r#"
[[route]]
method = "MESSAGE"
do = ["test_panic()"]
reply = "200 OK"

[[route]]
method = "OPTIONS"
reply = "200 OK"
"#;
    let mut host = host("sip-panic", routes);
    for _ in 0..3 {
        let mut c = Client::udp(host.sip_addr());
        let r = c.transact(&request(&c, "MESSAGE", "sip:bob@127.0.0.1", &[], ""));
        assert_eq!(status(&r), 500, "{r}");
        let r = c.transact(&request(&c, "OPTIONS", "sip:bob@127.0.0.1", &[], ""));
        assert_eq!(status(&r), 200);
    }
    assert!(host.alive());
    assert!(host.log().contains("test_panic() was called"), "{}", host.log());
}

/// Routes: first match wins, header regexes, on_fail, default 501, ACK never answered, flags,
/// AVPs and pseudo-variables reach the module through the ABI.
#[test]
fn routes_and_the_module_message_api() {
    let routes = r#"
[[route]]
method = "SUBSCRIBE"
hdr.Event = "^presence"
do = ["setflag(3)", "set_avp(\"who\", \"$fU\")", "append_to_reply(\"X-Route: first\\r\\n\")", "test_reply_info(\"$rU\", \"$hdr(Event)\", \"$si\")"]

[[route]]
method = "SUBSCRIBE"
do = ["test_fail()"]
on_fail = "489 Bad Event"

[[route]]
method = "OPTIONS"
myself = true
do = ["isflagset(5)"]
on_fail = "404 Not Here"
"#;
    let host = host("sip-routes", routes);
    let mut c = Client::udp(host.sip_addr());
    let ruri = format!("sip:carol@127.0.0.1:{}", host.sip);
    let r = c.transact(&request(&c, "SUBSCRIBE", &ruri, &["Event: presence;id=7", "Expires: 60"], "hello"));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(header(&r, "X-Ruri").as_deref(), Some(ruri.as_str()));
    assert_eq!(header(&r, "X-Event").as_deref(), Some("presence"));
    assert_eq!(header(&r, "X-Args").as_deref(), Some("carol|presence;id=7|127.0.0.1"));
    assert_eq!(header(&r, "X-Src").as_deref(), Some(format!("udp:127.0.0.1:{}", c.local().port()).as_str()));
    assert_eq!(header(&r, "X-Flag3").as_deref(), Some("3"));
    assert_eq!(header(&r, "X-Avp").as_deref(), Some("tester"));
    assert_eq!(header(&r, "X-Route").as_deref(), Some("first"));
    assert!(r.ends_with("\r\n\r\nhello"), "{r}");

    let r = c.transact(&request(&c, "SUBSCRIBE", &ruri, &["Event: dialog"], ""));
    assert_eq!(status(&r), 489);
    assert!(r.starts_with("SIP/2.0 489 Bad Event"));
    let r = c.transact(&request(&c, "OPTIONS", &ruri, &[], ""));
    assert!(r.starts_with("SIP/2.0 404 Not Here"), "{r}");
    // Not myself: no route matches.
    let r = c.transact(&request(&c, "OPTIONS", "sip:x@192.0.2.1", &[], ""));
    assert!(r.starts_with("SIP/2.0 501 Not Implemented"), "{r}");
    let r = c.transact(&request(&c, "NOTIFY", &ruri, &[], ""));
    assert_eq!(status(&r), 501);
    c.send(request(&c, "ACK", &ruri, &[], "").as_bytes());
    assert!(c.recv(Duration::from_millis(300)).is_none(), "an ACK must never be answered");
    // RFC 3581: rport filled in, received added.
    let r = c.transact(&request(&c, "NOTIFY", &ruri, &[], ""));
    let via = header(&r, "Via").unwrap();
    assert!(via.contains(&format!("rport={}", c.local().port())) && via.contains("received=127.0.0.1"), "{via}");
}

/// A module's request whose peer never answers gets a local 408 after 64*T1 (T1 = 50 ms here),
/// after the UDP retransmissions; a refused TCP connection gets a local 503.
#[test]
fn client_transaction_timeout_and_transport_error() {
    let host = host("sip-uac-timeout", "");
    let blackhole = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bh = blackhole.local_addr().unwrap();
    blackhole.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let counter = std::thread::spawn(move || {
        let mut n = 0;
        let mut buf = [0u8; 4096];
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if blackhole.recv_from(&mut buf).is_ok() {
                n += 1;
            }
        }
        n
    });
    let started = Instant::now();
    let r = host.result("testmod.request", json!(["OPTIONS", format!("sip:nobody@{bh}")]));
    let took = started.elapsed();
    assert_eq!(r["code"], 408, "{r}");
    assert_eq!(r["local"], true, "{r}");
    assert!(
        took >= Duration::from_millis(3100) && took < Duration::from_millis(4500),
        "408 after {took:?}, expected 64*T1 = 3.2 s"
    );
    let sent = counter.join().unwrap();
    // E: 50, 100, 200, 400, 800, 1600 (T2 caps at 4 s) ... about 7 sends in 3.2 s.
    assert!((6..=9).contains(&sent), "{sent} transmissions");

    let closed = SocketAddr::from(([127, 0, 0, 1], e2e::free_port()));
    let r = host.result("testmod.request", json!(["OPTIONS", format!("sip:nobody@{closed};transport=tcp")]));
    assert_eq!(r["code"], 503, "{r}");
    assert_eq!(r["local"], true);
}

/// A module's request to a real peer (our own host's OPTIONS route) gets the peer's reply.
#[test]
fn module_request_gets_the_peer_reply() {
    let peer = host("sip-uac-peer", STATELESS);
    let host = host("sip-uac", "");
    for transport in ["udp", "tcp"] {
        let r = host.result(
            "testmod.request",
            json!(["OPTIONS", format!("sip:peer@127.0.0.1:{};transport={transport}", peer.sip)]),
        );
        assert_eq!(r["code"], 200, "{r}");
        assert_eq!(r["local"], false);
        assert!(r["to_tag"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    }
}

/// IPv6 listen addresses work (RFC 5118 hosts in brackets).
#[test]
fn ipv6_listener() {
    let config = BASE.replace(
        r#"listen = ["udp:127.0.0.1:@SIP@", "tcp:127.0.0.1:@SIP@"]"#,
        r#"listen = ["udp:[::1]:@SIP@", "tcp:[::1]:@SIP@"]"#,
    );
    let host = Host::start("sip-v6", &format!("{config}{STATELESS}"));
    let addr: SocketAddr = format!("[::1]:{}", host.sip).parse().unwrap();
    for mut c in [Client::udp(addr), Client::tcp(addr)] {
        let r = c.transact(&request(&c, "OPTIONS", &format!("sip:v6@[::1]:{}", host.sip), &[], ""));
        assert_eq!(status(&r), 200, "{r}");
    }
}

/// Relay: requests are forwarded statefully with our Via on top, Max-Forwards decremented and
/// a Record-Route when asked; responses come back with our Via removed; Max-Forwards 0 → 483.
#[test]
fn stateful_relay_to_sipp() {
    let routes = r#"
[[route]]
method = ["OPTIONS", "MESSAGE"]
do = ["record_route()"]
relay = true
"#;
    let host = host("sip-relay", routes);
    let uas_port = e2e::free_port();
    let uas = spawn_uas(&host, "uas_200", uas_port);
    let mut c = Client::udp(host.sip_addr());
    let r = c.transact(&request(&c, "OPTIONS", &format!("sip:callee@127.0.0.1:{uas_port}"), &[], ""));
    assert_eq!(status(&r), 200, "{r}\n{}", host.log());
    assert_eq!(headers(&r, "Via").len(), 1, "our Via must be removed: {r}");
    assert_eq!(header(&r, "X-Seen-Max-Forwards").as_deref(), Some("69"));
    assert!(header(&r, "Record-Route").is_some_and(|rr| rr.contains(&format!("127.0.0.1:{};lr", host.sip))), "{r}");
    let out = uas.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let r = c.transact(
        &request(&c, "MESSAGE", "sip:callee@127.0.0.1:9", &[], "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    assert!(r.starts_with("SIP/2.0 483 Too Many Hops"), "{r}");
}

/// CANCEL of a relayed INVITE: 200 to the CANCEL, the CANCEL goes downstream, the callee's 487
/// comes back upstream and its ACK is absorbed hop by hop.
#[test]
fn cancel_of_a_relayed_invite() {
    let routes = r#"
[[route]]
method = "INVITE"
relay = true
"#;
    let host = host("sip-cancel", routes);
    let uas_port = e2e::free_port();
    let uas = spawn_uas(&host, "uas_ring_cancel", uas_port);
    let mut c = Client::udp(host.sip_addr());
    let invite = request(&c, "INVITE", &format!("sip:callee@127.0.0.1:{uas_port}"), &[], "");
    c.send(invite.as_bytes());
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !got.contains(&180) && Instant::now() < deadline {
        if let Some(r) = c.recv(Duration::from_secs(1)) {
            got.push(status(&r));
        }
    }
    assert_eq!(got, vec![100, 180], "expected 100 from us and the callee's 180\n{}", host.log());
    let cancel = invite.replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    c.send(cancel.as_bytes());
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let r =
            c.recv(Duration::from_secs(3)).unwrap_or_else(|| panic!("missing replies, got {finals:?}\n{}", host.log()));
        finals.push((status(&r), header(&r, "CSeq").unwrap_or_default()));
    }
    finals.sort();
    assert_eq!(finals, vec![(200, "1 CANCEL".to_string()), (487, "1 INVITE".to_string())]);
    // Our ACK for the 487 (hop by hop), absorbed by our INVITE server transaction.
    let ack = invite.replacen("INVITE sip", "ACK sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    c.send(ack.as_bytes());
    let out = uas.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the callee did not see INVITE, CANCEL and ACK: {}", text(&out));
}

/// RFC 3263: a module's request to `sip:bob@example.test` follows NAPTR → SRV → A on a DNS
/// responder the test runs, to a peer host on a TCP port it only learns from the SRV record.
#[test]
fn next_hop_resolution_with_naptr_and_srv() {
    use sip_resolve::testing::{DnsServer, ZoneRecord};
    let peer = host("sip-dns-peer", STATELESS);
    let dns = DnsServer::start(vec![
        ZoneRecord::naptr("example.test", 10, 10, "SIP+D2T", "_sip._tcp.example.test"),
        ZoneRecord::srv("_sip._tcp.example.test", 10, 10, peer.sip, "sip1.example.test"),
        ZoneRecord::a("sip1.example.test", [127, 0, 0, 1].into()),
    ])
    .expect("dns server");
    let config = BASE.replace("t1 = 50", &format!("t1 = 50\ndns_servers = [\"{}\"]", dns.addr));
    let host = Host::start("sip-dns", &config);
    let r = host.result("testmod.request", json!(["OPTIONS", "sip:bob@example.test"]));
    assert_eq!(r["code"], 200, "{r}\n{}", host.log());
    let queries = dns.queries();
    assert!(queries.iter().any(|q| q.starts_with("NAPTR example.test")), "{queries:?}");
    assert!(queries.iter().any(|q| q.starts_with("SRV _sip._tcp.example.test")), "{queries:?}");
    // An unknown domain: a local 478 for the module, no crash.
    let r = host.result("testmod.request", json!(["OPTIONS", "sip:bob@nowhere.test"]));
    assert_eq!(r["code"], 478, "{r}");
}

/// A request to a peer that has a TCP connection open to us goes over that connection (a
/// phone behind NAT accepts requests only there), and `advertise` shows in what we send.
#[test]
fn requests_reuse_the_peer_connection_and_advertise_the_public_address() {
    let config = BASE.replace(
        r#"listen = ["udp:127.0.0.1:@SIP@", "tcp:127.0.0.1:@SIP@"]"#,
        r#"listen = ["udp:127.0.0.1:@SIP@", "tcp:127.0.0.1:@SIP@ advertise sip.example.com:5099"]"#,
    );
    let host = Host::start("sip-reuse", &format!("{config}{STATELESS}"));
    let mut phone = Client::tcp(host.sip_addr());
    let r = phone.transact(&request(&phone, "OPTIONS", "sip:ping@127.0.0.1", &[], ""));
    assert_eq!(status(&r), 200);
    let phone_addr = phone.local();
    let rpc_port = host.http.unwrap();
    let call = std::thread::spawn(move || {
        e2e::http_post(
            rpc_port,
            "/RPC",
            &json!({"jsonrpc": "2.0", "method": "testmod.request", "params": ["NOTIFY", format!("sip:phone@{phone_addr};transport=tcp")], "id": 1}).to_string(),
        )
    });
    let notify = phone.recv(Duration::from_secs(5)).expect("the NOTIFY must come on the phone's own connection");
    assert!(notify.starts_with("NOTIFY sip:phone@"), "{notify}");
    let via = header(&notify, "Via").unwrap();
    assert!(via.starts_with("SIP/2.0/TCP sip.example.com:5099;branch=z9hG4bK"), "{via}");
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=phone\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&notify, "From").unwrap(),
        header(&notify, "To").unwrap(),
        header(&notify, "Call-ID").unwrap(),
        header(&notify, "CSeq").unwrap()
    );
    phone.send(reply.as_bytes());
    let (status_code, body) = call.join().unwrap();
    assert_eq!(status_code, 200, "{body}");
    assert!(body.contains("\"code\":200"), "{body}");
}

/// `[core] tcp_max_connections`: connections beyond the limit are closed at once; `alias`
/// names count as `myself`.
#[test]
fn connection_limit_and_aliases() {
    let config = BASE.replace(
        "t1 = 50",
        "t1 = 50\ntcp_max_connections = 2\nalias = [\"presence.example.org\"]\ndefault_reply = \"404 Nobody Here\"",
    );
    let routes = r#"
[[route]]
method = "OPTIONS"
myself = true
reply = "200 Mine"
"#;
    let host = Host::start("sip-limits", &format!("{config}{routes}"));
    let mut a = Client::tcp(host.sip_addr());
    let mut b = Client::tcp(host.sip_addr());
    for c in [&mut a, &mut b] {
        let r = c.transact(&request(c, "OPTIONS", "sip:x@presence.example.org", &[], ""));
        assert!(r.starts_with("SIP/2.0 200 Mine"), "{r}");
    }
    let mut third = TcpStream::connect(host.sip_addr()).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = third.write_all(b"OPTIONS sip:x@presence.example.org SIP/2.0\r\n\r\n");
    let mut buf = [0u8; 64];
    use std::io::Read;
    assert!(matches!(third.read(&mut buf), Ok(0) | Err(_)), "the third connection must be closed");
    assert!(host.log().contains("too many connections"), "{}", host.log());
    let mut u = Client::udp(host.sip_addr());
    let r = u.transact(&request(&u, "OPTIONS", "sip:x@elsewhere.example.org", &[], ""));
    assert!(r.starts_with("SIP/2.0 404 Nobody Here"), "not an alias, so no route: the configured default reply\n{r}");
}

/// INVITE relayed with Record-Route; the 200 comes back; the caller's ACK (end to end, no
/// transaction) follows the route set through us and is forwarded statelessly to the callee.
#[test]
fn ack_for_2xx_follows_the_record_route() {
    let routes = r#"
[[route]]
method = ["INVITE", "ACK"]
do = ["record_route()"]
relay = true
"#;
    let host = host("sip-ack2xx", routes);
    let uas_port = e2e::free_port();
    let uas = spawn_uas(&host, "uas_invite_ok", uas_port);
    let mut c = Client::udp(host.sip_addr());
    let invite = request(&c, "INVITE", &format!("sip:callee@127.0.0.1:{uas_port}"), &[], "");
    let ok = c.transact(&invite);
    assert_eq!(status(&ok), 200, "{ok}");
    let rr = header(&ok, "Record-Route").expect("the 200 carries our Record-Route");
    let contact = header(&ok, "Contact").unwrap();
    let target = contact.trim_start_matches('<').split('>').next().unwrap().to_string();
    let to = header(&ok, "To").unwrap();
    let ack = invite
        .replacen(&format!("INVITE sip:callee@127.0.0.1:{uas_port}"), &format!("ACK {target}"), 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-ack-")
        .replacen("To: ", "X-Old-To: ", 1)
        .replacen("Max-Forwards: 70", &format!("Max-Forwards: 70\r\nTo: {to}\r\nRoute: {rr}"), 1);
    c.send(ack.as_bytes());
    let out = uas.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the callee did not get the ACK through us: {}\n{}", text(&out), host.log());
}

/// A module's in-dialog style request with a route set: it goes to the first Route, which
/// carries the rest; the Request-URI stays the remote target.
#[test]
fn module_request_follows_its_route_set() {
    let peer = host(
        "sip-routeset-peer",
        r#"
[[route]]
method = "NOTIFY"
do = ["test_reply_info()"]
"#,
    );
    let host = host("sip-routeset", "");
    let r = host.result(
        "testmod.request",
        json!(["NOTIFY", "sip:phone@192.0.2.55:5060", "", format!("<sip:127.0.0.1:{};lr>", peer.sip)]),
    );
    assert_eq!(r["code"], 200, "{r}\n{}", peer.log());
}
