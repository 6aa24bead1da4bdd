//! What a record costs: heap bytes per publication and per subscription held in memory
//! (db_mode 0, the store and its indexes, after the 2xx), and CPU per request built and per
//! reply applied. A counting allocator measures the heap exactly; transport and transaction
//! memory is not included (bench/pua.sh measures the whole process).
//!
//! `cargo bench -p pua-core --bench records [-- N]` (default 100000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use plugin_api::api::pua::{PublishInfo, SubscribeInfo, event, source};
use pua::config::Config;
use pua::engine::{Effect, Engine, ReplyInfo};
use pua::events::Events;
use pua::store::{MemoryStore, Records};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to System unchanged; only the live byte count is recorded.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: as for dealloc and alloc.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BODY: &str = r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:x@y"><tuple><status><basic>open</basic></status></tuple></presence>"#;

fn sends(effects: Vec<Effect>) -> Vec<u64> {
    effects.into_iter().filter_map(|e| if let Effect::Send { key, .. } = e { Some(key) } else { None }).collect()
}

fn main() {
    let n: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let mut seq = 0u64;
    let token = move || {
        seq += 1;
        format!("{:016x}", seq.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    };
    let mut e = Engine::new(Config::defaults(), Events::with_defaults(false, false), MemoryStore::new(), token);
    let now = 1_800_000_000;

    // Publications: send, then the 2xx.
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut keys = Vec::with_capacity(n as usize);
    for i in 0..n {
        let info = PublishInfo {
            pres_uri: format!("sip:pub{i}@127.0.0.1"),
            id: format!("LOAD.{i}"),
            expires: -1,
            event: event::PRESENCE,
            body: Some(BODY.to_string()),
            source_flag: source::UL_PUBLISH,
            ..Default::default()
        };
        keys.extend(sends(e.send_publish(info, now).expect("publish")));
    }
    let built = t.elapsed();
    let t = Instant::now();
    for (i, k) in keys.drain(..).enumerate() {
        let ok = ReplyInfo { code: 200, etag: Some(format!("e0x{i}")), expires: Some(60), ..Default::default() };
        e.on_reply(k, &ok, now);
    }
    let replied = t.elapsed();
    let pubs = LIVE.load(Ordering::Relaxed) - before;
    let stored_body =
        e.records.all().first().and_then(|r| r.publ().and_then(|p| p.body.as_ref().map(String::len))).unwrap_or(0);
    println!(
        "publications: {n}: {:.0} bytes each ({:.0} without the {stored_body}-byte body); {:.2} us per PUBLISH built, {:.2} us per 2xx applied",
        pubs as f64 / n as f64,
        pubs as f64 / n as f64 - stored_body as f64,
        built.as_secs_f64() * 1e6 / n as f64,
        replied.as_secs_f64() * 1e6 / n as f64,
    );

    // Subscriptions: send, then the 2xx with a tag, a Contact and a Record-Route.
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..n {
        let info = SubscribeInfo {
            pres_uri: format!("sip:sub{i}@127.0.0.1"),
            watcher_uri: format!("sip:watcher{i}@127.0.0.1"),
            id: format!("LOADSUB.{i}"),
            event: event::PRESENCE,
            expires: -1,
            contact: "sip:w@127.0.0.1:5060".into(),
            source_flag: source::RPC_SUBSCRIBE,
            ..Default::default()
        };
        keys.extend(sends(e.send_subscribe(info, now).expect("subscribe")));
    }
    let built = t.elapsed();
    let t = Instant::now();
    for (i, k) in keys.drain(..).enumerate() {
        let ok = ReplyInfo {
            code: 200,
            expires: Some(60),
            to_tag: Some(format!("srv0x{i}")),
            contact: Some("sip:srv@127.0.0.1:5070".into()),
            record_route: vec!["<sip:127.0.0.1:5070;lr>".into()],
            ..Default::default()
        };
        e.on_reply(k, &ok, now);
    }
    let replied = t.elapsed();
    let subs = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "subscriptions: {n}: {:.0} bytes each; {:.2} us per SUBSCRIBE built, {:.2} us per 2xx applied",
        subs as f64 / n as f64,
        built.as_secs_f64() * 1e6 / n as f64,
        replied.as_secs_f64() * 1e6 / n as f64,
    );

    // One refresh pass over everything (all due), and the replies.
    let t = Instant::now();
    let due = e.due(now + 55);
    let (effects, _) = e.refresh(&due, now + 55);
    let ticked = t.elapsed();
    let keys = sends(effects);
    println!(
        "refresh pass: {} refreshes built in {:.0} ms ({:.2} us each; the module holds the engine for 256 at a time)",
        keys.len(),
        ticked.as_secs_f64() * 1e3,
        ticked.as_secs_f64() * 1e6 / keys.len().max(1) as f64
    );
}
