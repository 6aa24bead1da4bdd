//! Module timers: a tokio task per timer ticks, and each tick queues the callback on a worker.
//!
//! Runs of one timer never overlap: a tick that finds the previous run still under way is
//! skipped (and logged at debug), as Kamailio's timer process does not stack runs either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::std_types::RErr;
use plugin_api::ffi::{FfiCallback, FfiError};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use super::workers::WorkerPool;

pub struct Timers {
    runtime: Handle,
    workers: Arc<WorkerPool>,
    next_id: AtomicU64,
    running: Mutex<HashMap<u64, AbortHandle>>,
}

impl Timers {
    pub fn new(runtime: Handle, workers: Arc<WorkerPool>) -> Self {
        Self { runtime, workers, next_id: AtomicU64::new(1), running: Mutex::new(HashMap::new()) }
    }

    pub fn start(
        &self,
        module: String,
        name: String,
        first: Duration,
        interval: Option<Duration>,
        cb: FfiCallback,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cb = Arc::new(cb);
        let busy = Arc::new(AtomicBool::new(false));
        let workers = self.workers.clone();
        let task = self.runtime.spawn(async move {
            tokio::time::sleep(first).await;
            let mut ticker = interval.map(|i| {
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + i, i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            });
            loop {
                if busy.swap(true, Ordering::AcqRel) {
                    tracing::debug!(%module, timer = %name, "previous run still under way; tick skipped");
                } else {
                    let (cb, busy, module, name) = (cb.clone(), busy.clone(), module.clone(), name.clone());
                    workers.submit(Box::new(move || {
                        if let RErr(FfiError { kind, message }) = cb.call() {
                            let what = if kind == FfiError::PANIC { "panicked" } else { "failed" };
                            tracing::error!(%module, timer = %name, "timer callback {what}: {message}");
                            crate::services::plugin_error();
                        }
                        busy.store(false, Ordering::Release);
                    }));
                }
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => break,
                }
            }
        });
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(id, task.abort_handle());
        id
    }

    pub fn cancel(&self, id: u64) {
        if let Some(task) = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
            task.abort();
        }
    }

    pub fn cancel_all(&self) {
        for (_, task) in self.running.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            task.abort();
        }
    }
}
