//! `[core] max_requests_per_source`: a per-source-address request budget per second, so one
//! peer flooding SUBSCRIBEs (or anything else) cannot grow the server's state faster than the
//! operator allows. Kamailio leaves this to the pike module; here it is one counter per source
//! address, reset every second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most source addresses tracked within one second: a flood from spoofed addresses cannot
/// grow the table beyond this; addresses past it are not limited (fail open) until the next
/// second clears the table.
const MAX_SOURCES: usize = 65_536;

/// What [`SourceLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the budget.
    Allow,
    /// Over the budget: the first request dropped this second from this source (worth a log
    /// line).
    FirstDrop,
    /// Over the budget, already reported this second.
    Drop,
}

/// Requests per second per source IP address.
pub struct SourceLimiter {
    limit: u32,
    /// (the second the counts are for, count per source).
    state: Mutex<(u64, HashMap<IpAddr, u32>)>,
}

impl SourceLimiter {
    /// A limiter allowing `limit` requests per second per source; 0 allows everything without
    /// taking a lock.
    pub fn new(limit: u32) -> Self {
        Self { limit, state: Mutex::new((0, HashMap::new())) }
    }

    /// Counts a request from `ip` in second `now_secs`.
    pub fn check(&self, ip: IpAddr, now_secs: u64) -> Verdict {
        if self.limit == 0 {
            return Verdict::Allow;
        }
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (second, counts) = &mut *guard;
        if *second != now_secs {
            *second = now_secs;
            counts.clear();
        }
        let len = counts.len();
        let count = match counts.get_mut(&ip) {
            Some(c) => c,
            None if len >= MAX_SOURCES => return Verdict::Allow,
            None => counts.entry(ip).or_insert(0),
        };
        *count = count.saturating_add(1);
        match (*count).cmp(&(self.limit + 1)) {
            std::cmp::Ordering::Less => Verdict::Allow,
            std::cmp::Ordering::Equal => Verdict::FirstDrop,
            std::cmp::Ordering::Greater => Verdict::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_per_source_per_second() {
        let l = SourceLimiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let got: Vec<_> = (0..5).map(|_| l.check(a, 10)).collect();
        assert_eq!(got, [Verdict::Allow, Verdict::Allow, Verdict::Allow, Verdict::FirstDrop, Verdict::Drop]);
        assert_eq!(l.check(b, 10), Verdict::Allow, "another source has its own budget");
        assert_eq!(l.check(a, 11), Verdict::Allow, "a new second starts afresh");
    }

    #[test]
    fn zero_is_no_limit() {
        let l = SourceLimiter::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..10_000).all(|_| l.check(a, 1) == Verdict::Allow));
    }
}
