//! Hostile input against the real binary, over UDP and TCP: oversized messages and header
//! lines, thousands of Via headers, deep XML nesting, entity expansion ("billion laughs"),
//! invalid UTF-8 in URIs, a malformed stream, and a SUBSCRIBE flood from one source. Each gets a
//! bounded cost and a clear reply (or a drop), the host keeps answering, and the presence
//! server's stored state is what it was. The limits are `[core] max_message_size`,
//! `max_headers`, `max_requests_per_source` and `tcp_max_message_size` (docs/reliability.md).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use e2e::notify::publications;
use e2e::sip::{Client, header, request, status};
use e2e::{Host, eventually};
use e2e::{OPTIONS_ROUTE, PRESENCE_ROUTES};
use serde_json::json;

const MAX_MESSAGE: usize = 16_384;
const MAX_HEADERS: usize = 100;

fn config(rate: u32) -> String {
    format!(
        r#"loadmodule = ["presence", "presence_xml"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@", "tcp:127.0.0.1:@SIP@"]
max_message_size = {MAX_MESSAGE}
max_headers = {MAX_HEADERS}
max_requests_per_source = {rate}
tcp_max_message_size = 65536
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.presence]
db_url = "sqlite://presence.sqlite"
subs_db_mode = 1
[modparam.presence_xml]
db_url = "sqlite://presence.sqlite"
force_active = 1
{PRESENCE_ROUTES}{OPTIONS_ROUTE}"#
    )
}

fn pidf(note: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@127.0.0.1"><tuple id="t1"><status><basic>open</basic></status><note>{note}</note></tuple></presence>"#
    )
}

fn publish(c: &mut Client, h: &Host, extra: &[&str], body: &str) -> String {
    let ruri = format!("sip:alice@127.0.0.1:{}", h.sip);
    let mut headers = vec!["Event: presence", "Expires: 3600", "Content-Type: application/pidf+xml"];
    headers.extend_from_slice(extra);
    c.transact(&request(c, "PUBLISH", &ruri, &headers, body))
}

/// What the presence server holds: every publication's body.
fn stored(h: &Host) -> String {
    h.result("presence.presentity_list", json!(["full"])).to_string()
}

/// The host answers a plain request and is still running.
fn still_serving(h: &mut Host) {
    for c in [&mut Client::udp(h.sip_addr()), &mut Client::tcp(h.sip_addr())] {
        let r = c.transact(&request(c, "OPTIONS", &format!("sip:127.0.0.1:{}", h.sip), &[], ""));
        assert_eq!(status(&r), 200, "{r}");
    }
    assert!(h.alive(), "the host is still running");
}

/// A counter of the host's /metrics.
fn metric(h: &Host, name: &str) -> u64 {
    let (code, text) = e2e::http_request(h.http.expect("http"), "GET", "/metrics", "");
    assert_eq!(code, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}")) as u64
}

#[test]
fn hostile_messages_and_bodies_get_bounded_replies_and_change_nothing() {
    let mut h = Host::start("hostile", &config(0));
    let mut c = Client::udp(h.sip_addr());
    let r = publish(&mut c, &h, &[], &pidf("before"));
    assert_eq!(status(&r), 200, "{r}");
    let before = stored(&h);
    assert_eq!(publications(&h), 1);

    for transport in ["UDP", "TCP"] {
        let mut c = if transport == "UDP" { Client::udp(h.sip_addr()) } else { Client::tcp(h.sip_addr()) };
        let ruri = format!("sip:alice@127.0.0.1:{}", h.sip);
        let t = Instant::now();

        // A message over max_message_size: 513, whatever it carries.
        let big = pidf(&"x".repeat(MAX_MESSAGE));
        let r = publish(&mut c, &h, &[], &big);
        assert_eq!((status(&r), r.contains("Message Too Large")), (513, true), "{transport}: {r}");

        // One oversized header line within the size limit: processed normally.
        let long = format!("X-Long: {}", "y".repeat(MAX_MESSAGE / 2));
        let r = c.transact(&request(&c, "OPTIONS", &ruri, &[&long], ""));
        assert_eq!(status(&r), 200, "{transport}: {r}");

        // More header lines than max_headers (here Vias under ours): 400 Too Many Headers.
        let vias: Vec<String> =
            (0..MAX_HEADERS).map(|i| format!("Via: SIP/2.0/UDP 192.0.2.{}:5060;branch=z9hG4bK{i}", i % 250)).collect();
        let vias: Vec<&str> = vias.iter().map(String::as_str).collect();
        let r = publish(&mut c, &h, &vias, &pidf("many vias"));
        assert_eq!((status(&r), r.contains("Too Many Headers")), (400, true), "{transport}: {r}");

        // Thousands of Via headers: over the size limit long before the count matters.
        let vias: Vec<String> = (0..1500).map(|i| format!("v: SIP/2.0/UDP h{i};branch=z9hG4bK{i}")).collect();
        let vias: Vec<&str> = vias.iter().map(String::as_str).collect();
        let r = publish(&mut c, &h, &vias, &pidf("thousands of vias"));
        assert_eq!(status(&r), 513, "{transport}: {r}");

        // Hundreds of Via values on one line are one header line: within both limits, the
        // reply copies them (no amplification: it is no larger than the request).
        let line = format!(
            "Via: {}",
            (0..300).map(|i| format!("SIP/2.0/UDP h{i};branch=z9hG4bK{i}")).collect::<Vec<_>>().join(", ")
        );
        let r = c.transact(&request(&c, "OPTIONS", &ruri, &[&line], ""));
        assert_eq!(status(&r), 200, "{transport}: {r}");

        // Deep nesting and entity expansion in a body: 400 before anything is stored.
        let deep = format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf'>{}{}</presence>",
            "<a>".repeat(2000),
            "</a>".repeat(2000)
        );
        let r = publish(&mut c, &h, &[], &deep);
        assert_eq!(status(&r), 400, "{transport}: {r}");
        let laughs = format!(
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">{}]><presence xmlns="urn:ietf:params:xml:ns:pidf">&lol9;</presence>"#,
            (2..=9)
                .map(|n| format!(
                    r#"<!ENTITY lol{n} "{}">"#,
                    format!("&lol{};", if n == 2 { String::new() } else { (n - 1).to_string() }).repeat(10)
                ))
                .collect::<String>()
        );
        let r = publish(&mut c, &h, &[], &laughs);
        assert_eq!(status(&r), 400, "{transport}: {r}");

        // Invalid UTF-8 in the Request-URI and in the From URI.
        let bad_ruri = request(&c, "PUBLISH", &ruri, &["Event: presence"], "")
            .replacen("sip:alice@", "sip:al\u{fffd}ice@", 1)
            .into_bytes();
        let bad_ruri = replace_bytes(&bad_ruri, "al\u{fffd}ice".as_bytes(), b"al\xff\xfeice");
        c.send(&bad_ruri);
        let r = c.recv(Duration::from_secs(5)).expect("a reply to a non-UTF-8 Request-URI");
        assert_eq!(status(&r), 400, "{transport}: {r}");
        let bad_from = request(&c, "SUBSCRIBE", &ruri, &["Event: presence"], "").into_bytes();
        let bad_from = replace_bytes(&bad_from, b"sip:tester@sip.test", b"sip:te\xc3\x28ster@sip.test");
        c.send(&bad_from);
        let r = c
            .recv(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{transport}: no reply to a non-UTF-8 From URI; log:\n{}", h.log()));
        assert!(matches!(status(&r), 400 | 404 | 489), "{transport}: a clear refusal: {r}");

        assert!(t.elapsed() < Duration::from_secs(5), "{transport}: all refused at once: {:?}", t.elapsed());
        still_serving(&mut h);
        assert_eq!(stored(&h), before, "{transport}: the stored publication is unchanged");
    }

    // A stream that announces a body over tcp_max_message_size: the connection is closed, the
    // next one is served.
    let mut c = Client::tcp(h.sip_addr());
    let huge = request(&c, "OPTIONS", &format!("sip:127.0.0.1:{}", h.sip), &[], "")
        .replace("Content-Length: 0", "Content-Length: 100000000");
    c.send(huge.as_bytes());
    c.send(&vec![b'z'; 70_000]);
    assert_eq!(c.recv(Duration::from_secs(3)), None, "no reply, the connection is closed");
    // Garbage that is not SIP at all, on both transports: dropped.
    Client::udp(h.sip_addr()).send(&[0xff; 1000]);
    Client::tcp(h.sip_addr()).send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not sip\r\n\r\n");

    assert!(metric(&h, "puahost_sip_messages_too_large_total") >= 6, "counted on /metrics");
    still_serving(&mut h);
    assert_eq!(stored(&h), before);
    h.stop();
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay.windows(from.len()).position(|w| w == from).expect("pattern present");
    [&hay[..at], to, &hay[at + from.len()..]].concat()
}

/// SUBSCRIBEs to bob from `c`, each a new dialog; returns how many got a 2xx within `wait`.
fn flood(c: &mut Client, h: &Host, n: usize, wait: Duration) -> usize {
    let ruri = format!("sip:bob@127.0.0.1:{}", h.sip);
    for _ in 0..n {
        c.send(request(c, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], "").as_bytes());
    }
    let deadline = Instant::now() + wait;
    let mut ok = 0;
    while let Some(m) = c.recv(deadline.saturating_duration_since(Instant::now())) {
        if (200..300).contains(&status(&m)) && header(&m, "CSeq").is_some_and(|v| v.ends_with("SUBSCRIBE")) {
            ok += 1;
        }
    }
    ok
}

fn watchers(h: &Host) -> usize {
    let list = h.result("presence.watcher_list", json!(["basic", "sip:bob@127.0.0.1"]));
    list.as_array().map_or_else(|| list.get("watchers").and_then(|w| w.as_array()).map_or(0, Vec::len), Vec::len)
}

#[test]
fn subscribe_flood_from_one_source_is_cut_to_the_budget() {
    const BUDGET: u32 = 30;
    let mut h = Host::start("hostile-flood", &config(BUDGET));
    for transport in ["UDP", "TCP"] {
        let before = watchers(&h);
        let mut c = if transport == "UDP" { Client::udp(h.sip_addr()) } else { Client::tcp(h.sip_addr()) };
        let t = Instant::now();
        let ok = flood(&mut c, &h, 400, Duration::from_secs(3));
        let sent_within = t.elapsed();
        // The burst spans at most two one-second windows of the limiter.
        assert!(ok >= 1 && ok <= 2 * BUDGET as usize, "{transport}: {ok} of 400 accepted in {sent_within:?}");
        assert!(
            eventually(Duration::from_secs(5), || watchers(&h) == before + ok),
            "{transport}: one subscription per 2xx: {ok} 2xx, {} watchers before, {} now: {}",
            before,
            watchers(&h),
            h.result("presence.watcher_list", json!(["basic", "sip:bob@127.0.0.1"]))
        );

        // Another source is not limited by this one's flood.
        let other = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let mut other = Client::Udp(other, h.sip_addr());
        let ruri = format!("sip:bob@127.0.0.1:{}", h.sip);
        let r = other.transact(&request(&other, "SUBSCRIBE", &ruri, &["Event: presence", "Expires: 600"], ""));
        assert_eq!(status(&r), 200, "{transport}: {r}");

        // The flooding source is served again in the next second.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(flood(&mut c, &h, 1, Duration::from_secs(2)), 1, "{transport}: served again after the window");
    }
    // At most 2 x 60 of the 800 were accepted; the rest were dropped and counted.
    assert!(metric(&h, "puahost_sip_requests_rate_limited_total") >= 600, "drops counted on /metrics");
    still_serving(&mut h);
    h.stop();
}

/// A raw HTTP/1.1 request to the host's RPC listener with optional extra header lines.
fn http_raw(port: u16, path: &str, headers: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let method = if body.is_empty() { "GET" } else { "POST" };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out)
}

#[test]
fn rpc_listener_on_a_public_address_needs_a_token() {
    const TOKEN: &str = "0123456789abcdef0123";
    let config = |rpc: &str| {
        format!(
            "[core]\nmodules_path = [\"@MODULES@\"]\nlisten = [\"udp:127.0.0.1:@SIP@\"]\n[rpc]\nhttp = \"0.0.0.0:@HTTP@\"\n{rpc}\n"
        )
    };
    // Refused at start-up without a token (and with a weak one).
    let dir = e2e::TempDir::new("rpc-public");
    for (rpc, why) in [("", "has no token"), ("token = \"short\"", "at least 16")] {
        let path = dir.write("open.toml", &e2e::render(&config(rpc), e2e::free_port()).replace("@SIP@", "5999"));
        let out = e2e::cli(&["check", "-c", path.to_str().unwrap()]);
        assert!(!out.status.success() && e2e::text(&out).contains(why), "{}", e2e::text(&out));
        let out = e2e::cli(&["run", "-c", path.to_str().unwrap()]);
        assert!(!out.status.success() && e2e::text(&out).contains(why), "run refuses too: {}", e2e::text(&out));
    }

    // With a token: every request without it (or with another) gets 401, with it the answer.
    let mut h = Host::start("rpc-token", &config(&format!("token = \"{TOKEN}\"")));
    let port = h.http.expect("http");
    let call = r#"{"jsonrpc": "2.0", "method": "core.version", "id": 1}"#;
    for auth in ["", "Authorization: Bearer wrong-token-of-20ch\r\n", "Authorization: Basic eDp5\r\n"] {
        let (code, text) = http_raw(port, "/RPC", auth, call);
        assert_eq!(code, 401, "{auth:?}: {text}");
        assert_eq!(http_raw(port, "/metrics", auth, "").0, 401, "{auth:?}: metrics too");
    }
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let (code, text) = http_raw(port, "/RPC", &auth, call);
    assert!(code == 200 && text.contains("puahost"), "{text}");
    assert_eq!(http_raw(port, "/metrics", &auth, "").0, 200);
    // `puahost rpc` sends PUAHOST_RPC_TOKEN.
    let url = format!("http://127.0.0.1:{port}/RPC");
    let out = std::process::Command::new(e2e::puahost())
        .args(["rpc", "--url", &url, "core.version"])
        .env("PUAHOST_RPC_TOKEN", TOKEN)
        .output()
        .expect("puahost rpc");
    assert!(out.status.success() && e2e::text(&out).contains("puahost"), "{}", e2e::text(&out));
    h.stop();
}
