//! ETags as Kamailio's presence makes them: `a.<startup>.<pid>.<counter>.<n>`, where the
//! counter counts ETags made by this process and `n` counts the publications of one series (a
//! refresh of `...<n>` gets `n + 1`). Operators grep logs and tables for this shape.

use std::sync::atomic::{AtomicU64, Ordering};

/// Makes ETags for one process.
#[derive(Debug)]
pub struct EtagMaker {
    startup: i64,
    pid: u32,
    counter: AtomicU64,
}

impl EtagMaker {
    /// A maker for a process started at `startup` (epoch seconds).
    pub fn new(startup: i64, pid: u32) -> Self {
        Self { startup, pid, counter: AtomicU64::new(0) }
    }

    /// A new ETag; `previous` is the ETag this one replaces (its last component + 1 becomes
    /// `n`), or `None` for a new publication (`n` = 0).
    pub fn make(&self, previous: Option<&str>) -> String {
        let c = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let n = previous
            .and_then(|p| p.rsplit('.').next())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |n| n.wrapping_add(1));
        format!("a.{}.{}.{c}.{n}", self.startup, self.pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamailio_shape_and_series_number() {
        let m = EtagMaker::new(1_594_729_867, 26_073);
        let first = m.make(None);
        assert_eq!(first, "a.1594729867.26073.1.0");
        assert_eq!(m.make(Some(&first)), "a.1594729867.26073.2.1");
        assert_eq!(m.make(Some("foreign-etag")), "a.1594729867.26073.3.0");
    }
}
