//! Deterministic fuzzing: random byte strings, SIP-shaped random messages and mutations of the
//! torture messages go through `parse`, `frame_stream`, `validate`, every accessor and the
//! writer. The only possible failure is a panic. The generator is seeded, so a failure
//! reproduces; set `SIP_FUZZ_ITERS` to run longer.

mod common;

use common::{corpus, exercise_corrupted, parse_and_exercise};

/// xorshift64*: small, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn iterations(default: usize) -> usize {
    std::env::var("SIP_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Bytes that matter to the grammar, so that random choices hit interesting paths.
const SPECIAL: &[u8] = b"\r\n\t :;,=\"\\<>[]%@?&/.*0123456789\0\x7f\xff\xc3";

const FRAGMENTS: &[&[u8]] = &[
    b"INVITE sip:a@b SIP/2.0\r\n",
    b"SIP/2.0 200 OK\r\n",
    b"Via: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK;rport;received=",
    b"v: SIP/2.0/TCP h , SIP/2.0/UDP",
    b"From: \"a\\\"b\" <sip:x@y>;tag=",
    b"t: sip:x@[2001:db8:::1];tag=1\r\n",
    b"Contact: *, <sip:%00@h;lr>;expires=99999999999;q=0.5\r\n",
    b"CSeq: 4294967296 INVITE\r\n",
    b"Call-ID: x@y\r\n",
    b"Content-Length: 5\r\n",
    b"l: 99999999999999\r\n",
    b"o: presence;id=\r\n",
    b"Subscription-State: terminated;retry-after=x\r\n",
    b"Date: Fri, 01 Jan 2010 16:00:00 GMT\r\n",
    b"\r\n ",
    b"\r\n\r\n",
    b"\n",
];

fn random_message(rng: &mut Rng) -> Vec<u8> {
    let mut m = Vec::new();
    for _ in 0..rng.below(12) {
        match rng.below(3) {
            0 => m.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]),
            1 => m.push(SPECIAL[rng.below(SPECIAL.len())]),
            _ => m.extend((0..rng.below(8)).map(|_| rng.next() as u8)),
        }
    }
    m
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..=rng.below(4) {
        let len = m.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                m[i] = SPECIAL[rng.below(SPECIAL.len())];
            }
            1 => {
                let i = rng.below(len + 1);
                m.insert(i, SPECIAL[rng.below(SPECIAL.len())]);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i + 1).min(64);
                m.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i + 1).min(64);
                let chunk = m[i..i + n].to_vec();
                let at = rng.below(m.len() + 1);
                m.splice(at..at, chunk);
            }
            4 => m.truncate(rng.below(len + 1)),
            5 => {
                let f = FRAGMENTS[rng.below(FRAGMENTS.len())];
                let at = rng.below(len + 1);
                m.splice(at..at, f.iter().copied());
            }
            _ if len > 0 => {
                let i = rng.below(len);
                m[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
    m
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..iterations(50_000) {
        let len = rng.below(300);
        let buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        parse_and_exercise(&buf);
        let shaped = random_message(&mut rng);
        parse_and_exercise(&shaped);
    }
}

#[test]
fn mutated_torture_messages_never_panic() {
    let corpus = corpus();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for i in 0..iterations(100_000) {
        let base = &corpus[i % corpus.len()];
        let m = mutate(&mut rng, base);
        parse_and_exercise(&m);
        if i % 8 == 0 {
            exercise_corrupted(&m, rng.next());
        }
    }
}

#[test]
fn corrupted_indexes_never_panic() {
    let corpus = corpus();
    let mut rng = Rng(42);
    for i in 0..iterations(5_000) {
        exercise_corrupted(&corpus[i % corpus.len()], rng.next());
    }
}
