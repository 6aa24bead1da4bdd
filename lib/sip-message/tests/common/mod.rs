//! Helpers shared by the integration tests.

#![allow(dead_code)]

use sip_message::{Frame, HeaderEntry, HeaderName, Message, StartLine, frame_stream, parse};

/// Names of the RFC 4475 archive files.
pub const RFC4475: [&str; 50] = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
    "badbranch",
    "insuf",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "multi01",
    "mcl01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
    "test",
];

/// Names of the RFC 5118 files.
pub const RFC5118: [&str; 12] = [
    "ipv6-good",
    "ipv6-bad",
    "port-ambiguous",
    "port-unambiguous",
    "via-received-param-with-delim",
    "via-received-param-no-delim",
    "ipv6-in-sdp",
    "mult-ip-in-header",
    "mult-ip-in-sdp",
    "ipv4-mapped-ipv6",
    "ipv6-bug-abnf-3-colons",
    "ipv6-correct-abnf-2-colons",
];

/// Every torture message, as bytes.
pub fn corpus() -> Vec<Vec<u8>> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let a = RFC4475.iter().map(|n| format!("{dir}/tests/rfc4475/{n}.dat"));
    let b = RFC5118.iter().map(|n| format!("{dir}/tests/rfc5118/{n}.dat"));
    a.chain(b).map(|p| std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))).collect()
}

/// Parses (and frames) `buf` and calls every accessor; only a panic can fail this.
pub fn parse_and_exercise(buf: &[u8]) {
    for max in [0, 16, 1 << 16] {
        if let Frame::Complete(n) = frame_stream(buf, max) {
            assert!(n <= buf.len() && n <= max);
        }
    }
    if let Ok(p) = parse(buf) {
        exercise(&Message::new(buf, &p));
    }
}

/// Calls every accessor (results ignored): nothing may panic.
pub fn exercise(m: &Message<'_>) {
    let _ = m.validate();
    let _ = m.check_replyable();
    let _ = (m.method(), m.request_uri(), m.status_code(), m.reason(), m.body());
    for v in m.vias().flatten() {
        let _ = (v.branch(), v.received_ip(), v.rport(), v.host().ip());
    }
    for r in [m.from(), m.to()].into_iter().flatten() {
        let _ = (r.display_name_unescaped(), r.uri().map(|u| u.user_unescaped()), r.tag());
    }
    let _ = (m.call_id(), m.cseq(), m.expires(), m.min_expires(), m.max_forwards());
    for c in m.contacts().flatten() {
        if let Some(a) = c.address() {
            let _ = (a.expires(), a.q(), a.uri());
        }
    }
    let _ = (m.event(), m.subscription_state(), m.sip_etag(), m.sip_if_match());
    let _ = (m.allow_events().count(), m.routes().count(), m.record_routes().count());
    let _ = (m.content_type(), m.content_length(), m.refer_to());
    let mut out = Vec::new();
    let _ = sip_message::write_reply(&mut out, m, 400, "Bad Request", &Default::default());
}

/// Builds a view from a corrupted index (as a buggy or hostile plugin could pass across the
/// ABI) and exercises it.
pub fn exercise_corrupted(buf: &[u8], seed: u64) {
    let r = |k: u64| (seed.rotate_left((k * 7) as u32) % (buf.len() as u64 + 8)) as u32;
    let headers = [
        HeaderEntry { name: HeaderName::VIA, name_start: r(1), name_end: r(2), value_start: r(3), value_end: r(4) },
        HeaderEntry { name: HeaderName::CONTACT, name_start: r(5), name_end: r(6), value_start: r(7), value_end: r(8) },
        HeaderEntry {
            name: HeaderName(r(9) as u16),
            name_start: r(10),
            name_end: r(11),
            value_start: r(12),
            value_end: u32::MAX,
        },
    ];
    let start = StartLine {
        kind: (seed % 3) as u8,
        status_code: (seed % 1000) as u16,
        method_start: r(13),
        method_end: r(14),
        uri_start: r(15),
        uri_end: r(16),
        version_start: r(17),
        version_end: r(18),
        reason_start: r(19),
        reason_end: r(20),
        ..StartLine::default()
    };
    exercise(&Message::from_parts(buf, start, &headers, (r(21), r(22))));
}
