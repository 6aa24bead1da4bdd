//! The per-message path of the transaction layer, with pre-parsed messages (parsing is
//! sip-message's bench).
//!
//! Run with `cargo bench -p sip-transaction`.
//!
//! * `server/new_non_invite_tcp`: `receive_request` of a new PUBLISH + `send_response` 200;
//!   over a reliable transport the transaction ends right there.
//! * `server/new_non_invite_udp`: the same over UDP at steady state: the clock moves 1 ms per
//!   request and `handle_timeout` runs, so ~32 000 transactions stay in Completed (Timer J)
//!   and one expires per request.
//! * `server/retransmission`: a retransmitted request answered from a completed transaction.
//! * `client/non_invite_round_trip`: `send_request` (which parses the request) + the 200.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sip_message::{Message, ParsedMessage, ReplyOptions, parse, write_reply};
use sip_transaction::{Config, Reliability, RequestEvent, TransactionLayer};

fn publish(i: usize) -> Vec<u8> {
    format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9a{i};rport\r\n\
Via: SIP/2.0/TCP edge.example.com;branch=z9hG4bK00a1.1;received=198.51.100.4\r\n\
Max-Forwards: 69\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 4 PUBLISH\r\n\
Event: presence\r\n\
Expires: 3600\r\n\
SIP-If-Match: dx200xyz\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

struct Corpus {
    requests: Vec<(Vec<u8>, ParsedMessage)>,
    reply: Bytes,
}

fn corpus(n: usize) -> Corpus {
    let requests: Vec<_> = (0..n)
        .map(|i| {
            let raw = publish(i);
            let p = parse(&raw).unwrap();
            (raw, p)
        })
        .collect();
    let (raw, p) = &requests[0];
    let mut out = Vec::new();
    let opts = ReplyOptions { to_tag: Some("srv1"), ..ReplyOptions::default() };
    write_reply(&mut out, &Message::new(raw, p), 200, "OK", &opts).unwrap();
    Corpus { requests, reply: Bytes::from(out) }
}

fn server(c: &mut Criterion) {
    let corpus = corpus(1 << 16);
    let mut group = c.benchmark_group("server");

    let mut layer = TransactionLayer::<u32>::new(Config::default());
    let t0 = Instant::now();
    let mut i = 0usize;
    group.bench_function("new_non_invite_tcp", |b| {
        b.iter(|| {
            let (raw, p) = &corpus.requests[i % corpus.requests.len()];
            i += 1;
            let msg = Message::new(raw, p);
            if let RequestEvent::New(id) = layer.receive_request(t0, &msg, 7, Reliability::Reliable) {
                black_box(layer.send_response(t0, id, 200, corpus.reply.clone()));
            }
            while layer.poll_event().is_some() {}
        })
    });

    let mut layer = TransactionLayer::<u32>::new(Config::default());
    let mut now = Instant::now();
    let mut i = 0usize;
    group.bench_function("new_non_invite_udp", |b| {
        b.iter(|| {
            let (raw, p) = &corpus.requests[i % corpus.requests.len()];
            i += 1;
            now += Duration::from_millis(1);
            let msg = Message::new(raw, p);
            if let RequestEvent::New(id) = layer.receive_request(now, &msg, 7, Reliability::Unreliable) {
                black_box(layer.send_response(now, id, 200, corpus.reply.clone()));
            }
            layer.handle_timeout(now);
            while layer.poll_event().is_some() {}
        })
    });
    eprintln!("steady state: {:?}", layer);

    let mut layer = TransactionLayer::<u32>::new(Config::default());
    let (raw, p) = &corpus.requests[0];
    let msg = Message::new(raw, p);
    let t0 = Instant::now();
    if let RequestEvent::New(id) = layer.receive_request(t0, &msg, 7, Reliability::Unreliable) {
        layer.send_response(t0, id, 200, corpus.reply.clone());
    }
    group.bench_function("retransmission", |b| {
        b.iter(|| black_box(layer.receive_request(t0, black_box(&msg), 7, Reliability::Unreliable)))
    });
    group.finish();
}

fn client(c: &mut Criterion) {
    let corpus = corpus(1 << 12);
    let replies: Vec<(Bytes, Bytes, ParsedMessage)> = corpus
        .requests
        .iter()
        .map(|(raw, p)| {
            let mut out = Vec::new();
            let opts = ReplyOptions { to_tag: Some("srv1"), ..ReplyOptions::default() };
            write_reply(&mut out, &Message::new(raw, p), 200, "OK", &opts).unwrap();
            let parsed = parse(&out).unwrap();
            (Bytes::from(raw.clone()), Bytes::from(out), parsed)
        })
        .collect();
    let mut layer = TransactionLayer::<u32>::new(Config::default());
    let t0 = Instant::now();
    let mut i = 0usize;
    c.bench_function("client/non_invite_round_trip", |b| {
        b.iter(|| {
            let (request, reply, parsed) = &replies[i % replies.len()];
            i += 1;
            let sent = layer.send_request(t0, request.clone(), 7, Reliability::Reliable);
            black_box(&sent);
            black_box(layer.receive_response(t0, &Message::new(reply, parsed)));
            while layer.poll_event().is_some() {}
        })
    });
}

criterion_group!(benches, server, client);
criterion_main!(benches);
