//! Counters and gauges that the host exports in Prometheus format at `GET /metrics`.
//!
//! The host owns the storage; a module updates it directly with an atomic operation, so
//! counting on the per-message path costs no call across the plugin boundary.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::ffi::FfiMetric;

/// A monotonically increasing counter (`puahost_<module>_<name>_total`).
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    cell: &'static AtomicU64,
}

impl Counter {
    pub(crate) fn from_ffi(m: FfiMetric) -> Self {
        // SAFETY: the host hands out a pointer to an `AtomicU64` it never frees.
        Self { cell: unsafe { &*(m.cell as *const AtomicU64) } }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.cell.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.cell.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (`puahost_<module>_<name>`).
#[derive(Debug, Clone, Copy)]
pub struct Gauge {
    cell: &'static AtomicI64,
}

impl Gauge {
    pub(crate) fn from_ffi(m: FfiMetric) -> Self {
        // SAFETY: the host hands out a pointer to an `AtomicI64` it never frees.
        Self { cell: unsafe { &*(m.cell as *const AtomicI64) } }
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.cell.store(v, Ordering::Relaxed);
    }

    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.cell.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.cell.load(Ordering::Relaxed)
    }
}
