//! Prometheus metrics: the host's own and the ones modules register.
//!
//! Names follow one rule: `puahost_<module>_<name>` (`_total` is appended to counters), so an
//! operator can find every counter of a module by its prefix.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The registry. Cells are leaked on purpose: modules hold raw pointers to them for the life of
/// the process.
pub struct Metrics {
    registry: Mutex<Registry>,
    cells: Mutex<HashMap<String, usize>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl Metrics {
    pub fn new() -> Self {
        Self { registry: Mutex::new(Registry::with_prefix("puahost")), cells: Mutex::new(HashMap::new()) }
    }

    fn key(module: &str, name: &str) -> Result<String, String> {
        let name = name.strip_suffix("_total").unwrap_or(name);
        if !valid_name(name) {
            return Err(format!("metric name `{name}` must be lower-case letters, digits and underscores"));
        }
        Ok(if module.is_empty() { name.to_string() } else { format!("{module}_{name}") })
    }

    /// A counter; registering the same name twice returns the same cell.
    pub fn counter(&self, module: &str, name: &str, help: &str) -> Result<&'static AtomicU64, String> {
        let key = Self::key(module, name)?;
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&cell) = cells.get(&key) {
            // SAFETY: the cell was leaked below for the life of the process.
            return Ok(unsafe { &*(cell as *const AtomicU64) });
        }
        let counter: &'static Counter<u64, AtomicU64> = Box::leak(Box::new(Counter::default()));
        self.registry.lock().unwrap_or_else(|e| e.into_inner()).register(key.clone(), help, counter.clone());
        let cell = counter.inner();
        cells.insert(key, cell as *const AtomicU64 as usize);
        Ok(cell)
    }

    /// A gauge; registering the same name twice returns the same cell.
    pub fn gauge(&self, module: &str, name: &str, help: &str) -> Result<&'static AtomicI64, String> {
        let key = Self::key(module, name)?;
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&cell) = cells.get(&key) {
            // SAFETY: the cell was leaked below for the life of the process.
            return Ok(unsafe { &*(cell as *const AtomicI64) });
        }
        let gauge: &'static Gauge<i64, AtomicI64> = Box::leak(Box::new(Gauge::default()));
        self.registry.lock().unwrap_or_else(|e| e.into_inner()).register(key.clone(), help, gauge.clone());
        let cell = gauge.inner();
        cells.insert(key, cell as *const AtomicI64 as usize);
        Ok(cell)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.sample_heap();
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Metrics {
    /// `puahost_heap_allocated_bytes`: heap in use by the whole process (host and modules share
    /// malloc), as glibc counts it — bytes handed out, not what the allocator keeps around, so
    /// it shows what records really cost while RSS also shows fragmentation.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn sample_heap(&self) {
        if let Ok(g) =
            self.gauge("", "heap_allocated_bytes", "heap in use by the process (glibc mallinfo2: uordblks + hblkhd)")
        {
            // SAFETY: mallinfo2 has no preconditions; it only reads the allocator's statistics.
            let info = unsafe { libc::mallinfo2() };
            g.store((info.uordblks + info.hblkhd) as i64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn sample_heap(&self) {}
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn names_and_reuse() {
        let m = Metrics::new();
        let a = m.counter("pua", "publish_sent", "PUBLISH requests sent").unwrap();
        a.fetch_add(3, Ordering::Relaxed);
        let b = m.counter("pua", "publish_sent_total", "again").unwrap();
        assert!(std::ptr::eq(a, b));
        m.gauge("pua", "records", "records in memory").unwrap().store(7, Ordering::Relaxed);
        assert!(m.counter("pua", "Bad-Name", "").is_err());
        let text = m.render();
        assert!(text.contains("puahost_pua_publish_sent_total 3"), "{text}");
        assert!(text.contains("puahost_pua_records 7"), "{text}");
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(text.contains("puahost_heap_allocated_bytes "), "{text}");
    }
}
