//! What the presence tests do with NOTIFYs and the presence server's state: wait for the next
//! NOTIFY (answering it 200 to the server that sent it), make sure none comes, read bodies and
//! CSeqs, count stored publications.

use std::time::{Duration, Instant};

use crate::Host;
use crate::kamailio::reply;
use crate::sip::{Client, header};

/// The next NOTIFY on `c` within `within`, answered 200 (to its top Via, so NOTIFYs from
/// several servers are answered to the right one); None when none came.
pub fn next_notify_within(c: &mut Client, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(m) = c.recv(left.min(Duration::from_millis(200)))
            && m.starts_with("NOTIFY ")
        {
            c.answer(&m, &reply(&m, 200, "OK"));
            return Some(m);
        }
    }
    None
}

/// The next NOTIFY on `c` (within 5 s, else the test fails), answered 200.
pub fn next_notify(c: &mut Client) -> String {
    next_notify_within(c, Duration::from_secs(5)).expect("no NOTIFY within 5 s")
}

/// Fails the test if a NOTIFY arrives on `c` within `wait`.
pub fn no_notify(c: &mut Client, wait: Duration) {
    if let Some(m) = next_notify_within(c, wait) {
        panic!("unexpected NOTIFY:\n{m}");
    }
}

/// The body of a SIP message.
pub fn body(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The CSeq number of a SIP message.
pub fn cseq_of(m: &str) -> u32 {
    header(m, "CSeq").and_then(|v| v.split(' ').next().and_then(|n| n.parse().ok())).expect("a CSeq number")
}

/// Publications the presence server holds (`presence.presentity_list`).
pub fn publications(h: &Host) -> usize {
    h.result("presence.presentity_list", serde_json::json!([])).as_array().map_or(0, Vec::len)
}
