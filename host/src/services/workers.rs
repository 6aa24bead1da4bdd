//! The worker pool: `[core] children` OS threads that run routes, module handlers, timer
//! callbacks and reply callbacks, so module code is plain synchronous Rust and a slow database
//! call blocks one worker, never the I/O threads.
//!
//! Nothing that runs on a worker may wait for work that needs a worker: callbacks are always
//! queued, never run inside the call that registers them, so `children = 1` cannot deadlock.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

/// Work for a worker.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

enum Msg {
    Job(Job),
    Stop,
}

/// The pool. Jobs are taken in submission order by whichever worker is free.
pub struct WorkerPool {
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl WorkerPool {
    /// A pool with no threads yet; jobs queue until [`WorkerPool::start`].
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Self { tx, rx, threads: Mutex::new(Vec::new()) }
    }

    /// Starts `children` workers; each runs `child_init(rank)` (rank 1..=children) before it
    /// takes a job.
    pub fn start(
        &self,
        children: usize,
        child_init: impl Fn(u32) + Send + Sync + Clone + 'static,
    ) -> std::io::Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for rank in 1..=children as u32 {
            let rx = self.rx.clone();
            let init = child_init.clone();
            threads.push(std::thread::Builder::new().name(format!("worker-{rank}")).spawn(move || {
                init(rank);
                while let Ok(Msg::Job(job)) = rx.recv() {
                    // Module code catches its own panics; this catches the host's.
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!(worker = rank, "a job panicked in the host; the worker goes on");
                    }
                }
            })?);
        }
        Ok(())
    }

    /// Queues a job.
    pub fn submit(&self, job: Job) {
        // The receiver lives as long as the pool, so this cannot fail.
        let _ = self.tx.send(Msg::Job(job));
    }

    /// Lets every queued job finish, then stops the workers.
    pub fn stop(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for _ in &threads {
            let _ = self.tx.send(Msg::Stop);
        }
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Default for WorkerPool {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_jobs_and_survives_a_panic() {
        let pool = WorkerPool::new();
        let inits = Arc::new(AtomicUsize::new(0));
        let i = inits.clone();
        pool.start(2, move |_| {
            i.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        pool.submit(Box::new(|| panic!("boom")));
        for _ in 0..10 {
            let d = done.clone();
            pool.submit(Box::new(move || {
                d.fetch_add(1, Ordering::SeqCst);
            }));
        }
        pool.stop();
        assert_eq!(done.load(Ordering::SeqCst), 10);
        assert_eq!(inits.load(Ordering::SeqCst), 2);
    }
}
