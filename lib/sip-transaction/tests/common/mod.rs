//! Shared helpers: a fake clock, message builders and a driver that runs timers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_message::{Message, ReplyOptions, parse, write_reply};
use sip_transaction::{Config, Event, TransactionLayer};

/// The destination type of the tests: a peer name.
pub type Peer = &'static str;

/// A fixed origin; tests add durations to it.
pub struct Clock(pub Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }

    pub fn at(&self, secs: f64) -> Instant {
        self.0 + Duration::from_secs_f64(secs)
    }

    pub fn secs(&self, t: Instant) -> f64 {
        (t - self.0).as_secs_f64()
    }
}

pub fn layer() -> TransactionLayer<Peer> {
    TransactionLayer::new(Config::default())
}

/// A request with a fixed dialog; `via` is the whole top Via value.
pub fn request_via(method: &str, via: &str, to_tag: Option<&str>, cseq: u32) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
Via: {via}\r\n\
Via: SIP/2.0/UDP below.example.com;branch=z9hG4bKbelow\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Route: <sip:p2.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>{to_tag}\r\n\
Call-ID: call-1@192.0.2.1\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A request whose top Via is `SIP/2.0/UDP 192.0.2.1:5060;branch=<branch>`.
pub fn request(method: &str, branch: &str) -> Vec<u8> {
    request_via(method, &format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"), None, 1)
}

/// A response to `req` with a To-tag.
pub fn response(req: &[u8], code: u16, to_tag: Option<&str>) -> Vec<u8> {
    let p = parse(req).unwrap();
    let m = Message::new(req, &p);
    let mut out = Vec::new();
    let opts = ReplyOptions { to_tag, ..ReplyOptions::default() };
    write_reply(&mut out, &m, code, "Reason", &opts).unwrap();
    out
}

/// Calls `f` with the parsed view of `raw`.
pub fn with_msg<R>(raw: &[u8], f: impl FnOnce(&Message<'_>) -> R) -> R {
    let p = parse(raw).unwrap();
    f(&Message::new(raw, &p))
}

/// Everything queued for sending.
pub fn transmits(layer: &mut TransactionLayer<Peer>) -> Vec<(Peer, Bytes)> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

/// Everything queued for the TU.
pub fn events(layer: &mut TransactionLayer<Peer>) -> Vec<Event> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

/// What happened while running timers, with the time (seconds since the clock origin).
#[derive(Debug, Default)]
pub struct Trace {
    pub sent: Vec<(f64, Bytes)>,
    pub events: Vec<(f64, Event)>,
}

/// Runs every timer up to `until` (seconds), polling output after each step, as a host would.
pub fn run_until(layer: &mut TransactionLayer<Peer>, clock: &Clock, until: f64) -> Trace {
    let mut trace = Trace::default();
    let end = clock.at(until);
    while let Some(t) = layer.poll_timeout() {
        if t > end {
            break;
        }
        layer.handle_timeout(t);
        let secs = (clock.secs(t) * 1000.0).round() / 1000.0;
        trace.sent.extend(transmits(layer).into_iter().map(|(_, b)| (secs, b)));
        trace.events.extend(events(layer).into_iter().map(|e| (secs, e)));
    }
    trace
}

pub fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}
