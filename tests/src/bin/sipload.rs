//! `sipload`: a SIP load generator over UDP, and a null responder to measure its own ceiling.
//!
//! ```text
//! sipload send TARGET [--seconds N] [--sockets N] [--window N] [--method M] [--rate R]
//! sipload serve PORT [--expires N]   # answers every request 200 OK, minimal work (the
//!                                    # ceiling); PUBLISH/SUBSCRIBE get ETag/tag/Contact/Expires
//! ```
//! `send` keeps `window` requests in flight per socket (closed loop) or paces them at `rate`
//! requests/s in total, each with a fresh branch and Call-ID, and prints sent, answered,
//! failures, requests/s and latency percentiles as one JSON line.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Stats {
    sent: u64,
    ok: u64,
    failed: u64,
    latencies_us: Vec<u32>,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(
            args.get(2).and_then(|p| p.parse().ok()).unwrap_or(5099),
            args.iter().position(|a| a == "--expires").map(|_| arg(&args, "--expires", 3600)),
        ),
        Some("send") => {
            let target: SocketAddr = args.get(2).and_then(|t| t.parse().ok()).expect("sipload send HOST:PORT");
            send(
                target,
                Duration::from_secs(arg(&args, "--seconds", 10)),
                arg(&args, "--sockets", 4),
                arg(&args, "--window", 32),
                &arg(&args, "--method", "OPTIONS".to_string()),
                arg(&args, "--rate", 0u64),
            )
        }
        _ => {
            eprintln!(
                "usage: sipload send HOST:PORT [--seconds N] [--sockets N] [--window N] [--method M] [--rate R]\n       sipload serve PORT [--expires N]"
            );
            std::process::exit(2);
        }
    }
}

/// Answers every request with a 200 that copies Via, From, To, Call-ID and CSeq. A PUBLISH also
/// gets a fresh SIP-ETag and an Expires; a SUBSCRIBE gets a To-tag (when it has none), a Contact
/// and an Expires: enough for a presence UAC to keep its state (the `pua` benchmark). Expires
/// is `expires` when given, else the request's.
fn serve(port: u16, expires: Option<u32>) {
    let sock = UdpSocket::bind(("127.0.0.1", port)).expect("bind");
    let threads: Vec<_> = (0..2u64)
        .map(|thread| {
            let sock = sock.try_clone().expect("clone");
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buf = vec![0u8; 65535];
                let mut out = Vec::with_capacity(1024);
                let mut n_reply = 0u64;
                loop {
                    let Ok((n, src)) = sock.recv_from(&mut buf) else { continue };
                    let text = &buf[..n];
                    if text.starts_with(b"SIP/2.0") {
                        continue;
                    }
                    n_reply += 1;
                    let method = text.split(|&b| b == b' ').next().unwrap_or(b"");
                    let (publish, subscribe) = (method == b"PUBLISH", method == b"SUBSCRIBE");
                    let mut req_expires: &[u8] = b"3600";
                    out.clear();
                    out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
                    for line in text.split(|&b| b == b'\n').skip(1) {
                        let l = line.strip_suffix(b"\r").unwrap_or(line);
                        if l.is_empty() {
                            break;
                        }
                        let lower = l.get(..4).map(|p| p.to_ascii_lowercase());
                        match lower.as_deref() {
                            Some(b"via:") | Some(b"from") | Some(b"call") | Some(b"cseq") => {
                                out.extend_from_slice(l);
                                out.extend_from_slice(b"\r\n");
                            }
                            Some(b"to: ") => {
                                out.extend_from_slice(l);
                                if subscribe && !l.windows(5).any(|w| w == b";tag=") {
                                    let _ = write!(out, ";tag=srv{thread}x{n_reply}");
                                }
                                out.extend_from_slice(b"\r\n");
                            }
                            Some(b"expi") => {
                                req_expires = l.splitn(2, |&b| b == b':').nth(1).unwrap_or(b"3600").trim_ascii();
                            }
                            _ => {}
                        }
                    }
                    if publish || subscribe {
                        out.extend_from_slice(b"Expires: ");
                        match expires {
                            Some(e) => {
                                let _ = write!(out, "{e}");
                            }
                            None => out.extend_from_slice(req_expires),
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                    if publish {
                        let _ = write!(out, "SIP-ETag: e{thread}x{n_reply}\r\n");
                    }
                    if subscribe {
                        let _ = write!(out, "Contact: <sip:srv@127.0.0.1:{port}>\r\n");
                    }
                    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                    let _ = sock.send_to(&out, src);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn send(target: SocketAddr, duration: Duration, sockets: usize, window: usize, method: &str, rate: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let per_socket_rate = rate / sockets.max(1) as u64;
    let threads: Vec<_> = (0..sockets)
        .map(|i| {
            let (stop, method) = (stop.clone(), method.to_string());
            std::thread::spawn(move || run_socket(i, target, &stop, window, &method, per_socket_rate))
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut total = Stats { sent: 0, ok: 0, failed: 0, latencies_us: Vec::new() };
    for t in threads {
        let s = t.join().expect("socket thread");
        total.sent += s.sent;
        total.ok += s.ok;
        total.failed += s.failed;
        total.latencies_us.extend(s.latencies_us);
    }
    let secs = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let pct =
        |p: f64| total.latencies_us.get(((total.latencies_us.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
    println!(
        "{{\"sent\":{},\"ok\":{},\"failed\":{},\"lost\":{},\"seconds\":{:.2},\"rps\":{:.0},\"p50_us\":{},\"p99_us\":{}}}",
        total.sent,
        total.ok,
        total.failed,
        total.sent - total.ok - total.failed,
        secs,
        total.ok as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
}

fn run_socket(index: usize, target: SocketAddr, stop: &AtomicBool, window: usize, method: &str, rate: u64) -> Stats {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(2))).ok();
    let local = sock.local_addr().expect("addr");
    let mut stats = Stats { sent: 0, ok: 0, failed: 0, latencies_us: Vec::with_capacity(1 << 20) };
    let mut inflight: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
    let mut seq: u64 = 0;
    let mut buf = vec![0u8; 65535];
    let pace = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let mut next_send = Instant::now();
    let mut draining_since: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            // Stop sending; wait up to 1 s for the replies still in flight before counting.
            let since = *draining_since.get_or_insert_with(Instant::now);
            if inflight.is_empty() || since.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        // Send while the window allows (closed loop) or when the pace says so.
        while draining_since.is_none() && inflight.len() < window && pace.is_none_or(|_| Instant::now() >= next_send) {
            seq += 1;
            let id = (index as u64) << 40 | seq;
            let msg = format!(
                "{method} sip:load@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{id:x};rport\r\nMax-Forwards: 70\r\nFrom: <sip:gen@{local}>;tag={id:x}\r\nTo: <sip:load@{target}>\r\nCall-ID: L{id}\r\nCSeq: 1 {method}\r\nEvent: presence\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
            );
            if sock.send_to(msg.as_bytes(), target).is_ok() {
                stats.sent += 1;
                inflight.insert(id, Instant::now());
            }
            if let Some(p) = pace {
                next_send += p;
                if inflight.len() >= window * 64 {
                    break;
                }
            }
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let text = &buf[..n];
                let id = find_call_id(text);
                if let Some(sent) = id.and_then(|id| inflight.remove(&id)) {
                    if text.starts_with(b"SIP/2.0 2") {
                        stats.ok += 1;
                        stats.latencies_us.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else if !text.starts_with(b"SIP/2.0 1") {
                        stats.failed += 1;
                    } else {
                        inflight.insert(id.unwrap_or(0), sent);
                    }
                }
            }
            Err(_) => {
                // Requests unanswered for 2 s count as lost; free their window slots.
                let now = Instant::now();
                inflight.retain(|_, t| now.duration_since(*t) < Duration::from_secs(2));
            }
        }
    }
    stats
}

fn find_call_id(msg: &[u8]) -> Option<u64> {
    let pos = msg.windows(10).position(|w| w == b"Call-ID: L")? + 10;
    let digits = msg[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&msg[pos..pos + digits]).ok()?.parse().ok()
}
