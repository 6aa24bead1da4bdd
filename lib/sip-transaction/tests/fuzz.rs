//! Random and mutated messages never panic the layer, and its bookkeeping stays consistent.
//!
//! Deterministic (a fixed-seed xorshift generator), so a failure reproduces; raise `ROUNDS`
//! locally for a longer run.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use sip_message::{Message, parse};
use sip_transaction::{
    ClientState, Config, Reliability, RequestEvent, ResponseEvent, ServerState, TransactionLayer, TxId,
};

const ROUNDS: usize = 40_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Seeds: well-formed requests and responses of every kind the layer treats specially.
fn seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for method in ["INVITE", "ACK", "CANCEL", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE"] {
        for branch in ["z9hG4bKf1", "z9hG4bKf2", "f3"] {
            let req = request(method, branch);
            for code in [100, 180, 200, 202, 404, 486] {
                if method != "ACK" {
                    v.push(response(&req, code, Some("t")));
                }
            }
            v.push(req);
        }
        v.push(request_via(method, "SIP/2.0/UDP 192.0.2.7", Some("t"), 3));
    }
    v
}

const TOKENS: &[&[u8]] = &[
    b"z9hG4bK",
    b";branch=",
    b"\r\n",
    b"\r\n ",
    b",",
    b";",
    b"INVITE",
    b"ACK",
    b"CANCEL",
    b"SIP/2.0",
    b"Via: ",
    b"CSeq: 1 ",
    b"To: <sip:a@b>;tag=",
    b"\x00",
    b"\xff",
    b"99999999999",
    b":",
    b"[",
    b"]",
    b"\"",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let pos = if m.is_empty() { 0 } else { rng.below(m.len() + 1) };
        match rng.below(5) {
            0 if !m.is_empty() => {
                let end = (pos + rng.below(16)).min(m.len());
                m.drain(pos.min(end)..end);
            }
            1 if pos < m.len() => m[pos] = rng.next() as u8,
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                m.splice(pos..pos, t.iter().copied());
            }
            3 if pos < m.len() => m.truncate(pos),
            _ => {
                let dup = m.get(pos..(pos + rng.below(32)).min(m.len())).unwrap_or_default().to_vec();
                m.splice(pos..pos, dup);
            }
        }
    }
    m
}

#[test]
fn random_and_mutated_messages_never_panic() {
    let clock = Clock::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = seeds();
    let mut layer = TransactionLayer::<Peer>::new(Config { max_completed: 8, ..Config::default() });
    let mut ids: Vec<TxId> = Vec::new();
    let mut now = clock.at(0.0);
    let mut parsed_ok = 0;
    for round in 0..ROUNDS {
        let raw = if rng.below(10) == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else if rng.below(3) == 0 {
            // Unchanged seeds: retransmissions, matching responses, ACKs and CANCELs.
            seeds[rng.below(seeds.len())].clone()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        let rel = if rng.below(3) == 0 { Reliability::Reliable } else { Reliability::Unreliable };
        if let Ok(p) = parse(&raw) {
            parsed_ok += 1;
            let m = Message::new(&raw, &p);
            match layer.receive_request(now, &m, "peer", rel) {
                RequestEvent::New(id) | RequestEvent::Cancel { cancel: id, .. } => ids.push(id),
                _ => {}
            }
            if let ResponseEvent::Provisional(id) | ResponseEvent::Final(id) = layer.receive_response(now, &m) {
                ids.push(id);
            }
        }
        // The TU side, with arbitrary bytes and status codes.
        if !ids.is_empty() {
            // Mostly recent transactions, which are likely still alive.
            let id = if rng.below(4) == 0 {
                ids[rng.below(ids.len())]
            } else {
                ids[ids.len() - 1 - rng.below(ids.len().min(8))]
            };
            match rng.below(12) {
                0 => layer.transport_error(now, id),
                1 => drop(layer.cancel_request(id)),
                _ => {
                    let status = [0, 100, 180, 200, 302, 404, 486, 699, 1000][rng.below(9)];
                    layer.send_response(now, id, status, Bytes::from(raw.clone()));
                }
            }
        }
        if round % 3 == 0
            && let Ok((id, _)) = layer.send_request(now, Bytes::from(raw.clone()), "peer", rel)
        {
            ids.push(id);
        }
        now += Duration::from_millis(rng.below(400) as u64);
        layer.handle_timeout(now);
        while layer.poll_transmit().is_some() {}
        while layer.poll_event().is_some() {}
        if ids.len() > 4096 {
            ids.drain(..2048);
        }
    }
    eprintln!("parsed {parsed_ok}, {:?}, {:?}", layer.stats(), layer.len());
    assert!(parsed_ok > ROUNDS / 3, "the mutations should mostly stay parseable ({parsed_ok})");
    // Once time moves on far enough every timer has run, and only the transactions that wait
    // for the TU are left: unanswered server transactions and INVITE client transactions in
    // Proceeding (the TU owns Timer C).
    for _ in 0..200 {
        now += Duration::from_secs(60);
        layer.handle_timeout(now);
    }
    assert_eq!(layer.poll_timeout(), None);
    for id in ids {
        if let Some(s) = layer.client_state(id) {
            assert_eq!(s, ClientState::Proceeding);
        }
        if let Some(s) = layer.server_state(id) {
            assert!(matches!(s, ServerState::Trying | ServerState::Proceeding), "{s:?}");
        }
    }
}
