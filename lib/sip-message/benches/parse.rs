//! Parse + typical lookups for the three messages a presence server sees most.
//!
//! Run with `cargo bench -p sip-message` (release profile). The target is at most 1 µs per
//! message for parse + Call-ID, CSeq, Event, Expires and SIP-If-Match.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sip_message::{Message, parse};

fn publish() -> Vec<u8> {
    let mut pidf = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\r\n\
 xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\"\r\n\
 xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"\r\n\
 entity=\"sip:alice@example.com\">\r\n",
    );
    for i in 0..4 {
        pidf.push_str(&format!(
            " <tuple id=\"t{i}a8b2c\">\r\n  <status><basic>open</basic></status>\r\n  \
<contact priority=\"0.8\">sip:alice@192.0.2.{i}:5060</contact>\r\n  \
<timestamp>2026-11-22T10:00:0{i}Z</timestamp>\r\n </tuple>\r\n"
        ));
    }
    pidf.push_str(
        " <dm:person id=\"p1\"><rpid:activities><rpid:busy/></rpid:activities></dm:person>\r\n</presence>\r\n",
    );
    let head = format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9a1;rport\r\n\
Via: SIP/2.0/TCP edge.example.com;branch=z9hG4bK00a1.1;received=198.51.100.4\r\n\
Max-Forwards: 69\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 4 PUBLISH\r\n\
Event: presence\r\n\
Expires: 3600\r\n\
SIP-If-Match: dx200xyz\r\n\
User-Agent: Example UA/1.0\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: {}\r\n\r\n",
        pidf.len()
    );
    let mut m = head.into_bytes();
    m.extend_from_slice(pidf.as_bytes());
    m
}

const SUBSCRIBE: &[u8] = b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.20:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=ffd2\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: 12345601@192.0.2.20\r\n\
CSeq: 17 SUBSCRIBE\r\n\
Contact: <sip:alice@192.0.2.20:5060;transport=tcp>\r\n\
Event: presence\r\n\
Accept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n\
Supported: eventlist\r\n\
Allow-Events: presence, dialog\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n";

const NOTIFY: &[u8] = b"NOTIFY sip:alice@192.0.2.20:5060;transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/TCP 203.0.113.5:5060;branch=z9hG4bKna998sl\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@example.com>;tag=xfg9\r\n\
To: <sip:alice@example.com>;tag=ffd2\r\n\
Call-ID: 12345601@192.0.2.20\r\n\
CSeq: 8 NOTIFY\r\n\
Contact: <sip:presence@203.0.113.5:5060;transport=tcp>\r\n\
Event: presence\r\n\
Subscription-State: active;expires=599\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: 150\r\n\r\n\
<?xml version=\"1.0\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:bob@example.com\">\r\n\
<tuple id=\"b1\"><status><basic>open</basic></status></tuple></presence>";

/// Parse plus the lookups the presence modules do on every message.
fn parse_and_lookup(buf: &[u8]) -> usize {
    let parsed = parse(buf).expect("benchmark message parses");
    let m = Message::new(buf, &parsed);
    let mut acc = 0usize;
    acc += m.call_id().map_or(0, str::len);
    acc += m.cseq().map_or(0, |c| c.number as usize);
    acc += m.event().ok().flatten().map_or(0, |e| e.package().len());
    acc += m.expires().ok().flatten().unwrap_or(0) as usize;
    acc += m.sip_if_match().ok().flatten().map_or(0, str::len);
    acc
}

fn bench(c: &mut Criterion) {
    let publish = publish();
    let cases: [(&str, &[u8]); 3] = [("publish_1k_pidf", &publish), ("subscribe", SUBSCRIBE), ("notify", NOTIFY)];
    let mut g = c.benchmark_group("parse+lookups");
    for (name, buf) in cases {
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_and_lookup(black_box(buf))));
    }
    g.finish();

    let mut g = c.benchmark_group("parse_only");
    for (name, buf) in cases {
        g.bench_function(name, |b| b.iter(|| parse(black_box(buf)).map(|p| p.headers.len())));
    }
    g.finish();

    let mut g = c.benchmark_group("parse+validate");
    for (name, buf) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let buf = black_box(buf);
                let p = parse(buf).expect("parses");
                Message::new(buf, &p).validate().is_ok()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
