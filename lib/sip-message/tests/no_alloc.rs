//! Parsing a typical message and reading its usual headers must not touch the heap: the index
//! is inline (up to 32 header lines) and every accessor borrows from the buffer.
//!
//! This test binary installs a counting global allocator, so it holds a single test (tests run
//! on several threads and would count each other's allocations).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sip_message::{HeaderName, Message, frame_stream, parse};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PUBLISH: &[u8] = b"PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK00a1;received=198.51.100.4\r\n\
Max-Forwards: 69\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 4 PUBLISH\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600\r\n\
Route: <sip:proxy.example.com;lr>\r\n\
Event: presence;id=1\r\n\
Expires: 3600\r\n\
SIP-If-Match: dx200xyz\r\n\
Allow-Events: presence, dialog\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: 11\r\n\r\n<presence/>";

#[test]
fn typical_message_parses_without_allocating() {
    // Warm up anything lazily initialised outside the crate.
    let _ = parse(PUBLISH);
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);

    let framed = frame_stream(PUBLISH, 65536);
    let parsed = parse(PUBLISH).expect("parses");
    let msg = Message::new(PUBLISH, &parsed);
    let ok = msg.validate().is_ok()
        && msg.call_id().is_ok()
        && msg.cseq().is_ok()
        && msg.event().ok().flatten().and_then(|e| e.id()) == Some("1")
        && msg.expires() == Ok(Some(3600))
        && msg.sip_if_match() == Ok(Some("dx200xyz"))
        && msg.vias().filter(Result::is_ok).count() == 2
        && msg.top_via().ok().and_then(|v| v.rport()) == Some(None)
        && msg.from().ok().and_then(|f| f.tag()) == Some("9fxced76sl")
        && msg.to().is_ok()
        && msg.contacts().flatten().filter_map(|c| c.address().and_then(|a| a.expires())).sum::<u32>() == 3600
        && msg.routes().flatten().all(|r| r.uri().is_ok_and(|u| u.lr()))
        && msg.allow_events().count() == 2
        && msg.content_type().ok().flatten().is_some_and(|c| c.is("application", "pidf+xml"))
        && msg.request_uri().is_some()
        && msg.header(HeaderName::MAX_FORWARDS).is_some()
        && msg.body() == b"<presence/>";

    COUNTING.store(false, Ordering::SeqCst);
    let allocs = ALLOCS.load(Ordering::SeqCst);
    assert!(ok, "accessors returned unexpected values");
    assert!(matches!(framed, sip_message::Frame::Complete(n) if n == PUBLISH.len()));
    assert_eq!(allocs, 0, "parse + accessors allocated {allocs} times");
}
