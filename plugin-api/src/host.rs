//! [`Host`]: the services the host offers a module.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use abi_stable::StableAbi;
use abi_stable::std_types::{RErr, ROk, RStr};

use crate::Error;
use crate::api::Api;
use crate::db::Db;
use crate::ffi::{FfiApi, FfiCallback, HostRef};
use crate::metrics::{Counter, Gauge};

static HOST: OnceLock<Host> = OnceLock::new();

/// A handle on the host, for the module it was given to. Cheap to copy; valid for the whole
/// life of the process.
#[derive(Clone, Copy)]
pub struct Host {
    vt: HostRef,
    module: &'static str,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host").field("module", &self.module).finish()
    }
}

impl Host {
    pub(crate) fn install(vt: HostRef, module: &'static str) -> Result<Self, Error> {
        let host = Self { vt, module };
        HOST.set(host).map_err(|_| Error::new("init called twice"))?;
        Ok(host)
    }

    /// The host handle of this plugin, once `init` has started.
    pub fn current() -> Result<Self, Error> {
        HOST.get().copied().ok_or_else(|| Error::new("the host is not available before init"))
    }

    pub(crate) fn vtable(&self) -> HostRef {
        self.vt
    }

    /// This module's name.
    pub fn module_name(&self) -> &'static str {
        self.module
    }

    /// The host's version.
    pub fn version(&self) -> &'static str {
        self.vt.host_version().as_str()
    }

    /// The directory of the config file; relative paths in modparams are resolved against it.
    pub fn config_dir(&self) -> PathBuf {
        PathBuf::from((self.vt.config_dir())().into_string())
    }

    /// Registers a counter, exported as `puahost_<module>_<name>_total`.
    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, Error> {
        match (self.vt.counter())(self.module.into(), name.into(), help.into()) {
            ROk(m) => Ok(Counter::from_ffi(m)),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// Registers a gauge, exported as `puahost_<module>_<name>`.
    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, Error> {
        match (self.vt.gauge())(self.module.into(), name.into(), help.into()) {
            ROk(m) => Ok(Gauge::from_ffi(m)),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// Runs `f` on a worker every `period`, the first time after one period. Runs of one timer
    /// never overlap. Errors and panics are logged under the module's name; the timer goes on.
    pub fn every(
        &self,
        name: &str,
        period: Duration,
        f: impl Fn() -> Result<(), Error> + Send + Sync + 'static,
    ) -> Result<Timer, Error> {
        let ms = millis(period).max(1);
        self.start_timer(name, ms, ms, f)
    }

    /// Runs `f` once on a worker after `delay`.
    pub fn after(
        &self,
        name: &str,
        delay: Duration,
        f: impl Fn() -> Result<(), Error> + Send + Sync + 'static,
    ) -> Result<Timer, Error> {
        self.start_timer(name, millis(delay), 0, f)
    }

    fn start_timer(
        &self,
        name: &str,
        first_ms: u64,
        interval_ms: u64,
        f: impl Fn() -> Result<(), Error> + Send + Sync + 'static,
    ) -> Result<Timer, Error> {
        let cb = FfiCallback::new(move || f().map_err(|e| e.to_string()));
        match (self.vt.timer_start())(self.module.into(), name.into(), first_ms, interval_ms, cb) {
            ROk(id) => Ok(Timer { host: *self, id }),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// Runs `f` once on a worker thread, after the current work item. Use it to leave a
    /// callback that must not block, or to do work that needs a worker from another thread.
    pub fn run_on_worker(&self, f: impl FnOnce() -> Result<(), Error> + Send + 'static) {
        let cell = std::sync::Mutex::new(Some(f));
        let cb = FfiCallback::new(move || match cell.lock().ok().and_then(|mut f| f.take()) {
            Some(f) => f().map_err(|e| e.to_string()),
            None => Ok(()),
        });
        (self.vt.run_on_worker())(self.module.into(), cb);
    }

    /// Exports `vtable` as API `A` for other modules to [`bind`](Host::bind). Call it from
    /// `init`; the module must declare the export in its [`ModuleInfo`](crate::ModuleInfo).
    pub fn export<A: Api>(&self, vtable: &'static A::VTable) -> Result<(), Error> {
        let api = FfiApi {
            layout: <A::VTable as StableAbi>::LAYOUT as *const _ as *const std::ffi::c_void,
            vtable: vtable as *const A::VTable as *const std::ffi::c_void,
        };
        match (self.vt.api_export())(self.module.into(), A::NAME.into(), A::VERSION, api) {
            ROk(()) => Ok(()),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// Binds API `A` exported by another module (Kamailio's `bind_pua` and friends). Fails when
    /// no loaded module exports it, or when the exporter was built with another layout of it.
    pub fn bind<A: Api>(&self) -> Result<&'static A::VTable, Error> {
        let expected = <A::VTable as StableAbi>::LAYOUT as *const _ as *const std::ffi::c_void;
        match (self.vt.api_bind())(self.module.into(), A::NAME.into(), A::VERSION, expected) {
            // SAFETY: the host returns the pointer an exporter registered for this name and
            // version, after checking that its type layout is compatible with `A::VTable`'s.
            ROk(ptr) => Ok(unsafe { &*(ptr as *const A::VTable) }),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// Opens the database at `url` (`sqlite://file`, `postgres://...`, `mysql://...`). Modules
    /// that name the same URL share one pool (and, for SQLite, one writer connection).
    ///
    /// Database calls block, so make them on worker threads (and in `init`/`child_init`),
    /// never from a callback the host runs on its I/O threads.
    pub fn db(&self, url: &str) -> Result<Db, Error> {
        match (self.vt.db_open())(self.module.into(), RStr::from_str(url)) {
            ROk(id) => Ok(Db::new(*self, id)),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }
}

impl Host {
    /// Sends a request in a new client transaction. `on_reply` gets the final reply, or a
    /// local 408 (no answer within 64*T1) or 503 (could not send), exactly once, on a worker
    /// thread, never before this call returns. Provisional replies are not delivered.
    pub fn send_request(
        &self,
        request: &crate::sip::Request,
        on_reply: impl FnOnce(crate::sip::Reply<'_>) + Send + 'static,
    ) -> Result<crate::sip::SentRequest, Error> {
        let cb = crate::sip::reply_callback(on_reply);
        match (self.vt.sip_send_request())(self.module.into(), &request.to_ffi(), cb) {
            ROk(sent) => Ok(crate::sip::SentRequest {
                call_id: sent.call_id.into_string(),
                from_tag: sent.from_tag.into_string(),
                cseq: sent.cseq,
            }),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// Runs `body` on a thread of the module's own (for I/O the module owns, such as an XMPP
    /// connection: module code must not use the host's runtime). The thread is supervised: when
    /// `body` returns an error or panics, the failure is logged under the module's name and
    /// `body` runs again after a back-off (1 s, doubling up to 30 s, reset after a minute of
    /// good running), so a connection is restarted, never lost silently. Returning `Ok(())`
    /// ends the thread.
    pub fn spawn_supervised(
        &self,
        name: &str,
        body: impl Fn() -> Result<(), Error> + Send + 'static,
    ) -> Result<std::thread::JoinHandle<()>, Error> {
        let (host, thread_name) = (*self, format!("{}:{name}", self.module));
        let name = name.to_string();
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let mut backoff = Duration::from_secs(1);
                loop {
                    let started = std::time::Instant::now();
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&body));
                    let why = match outcome {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => format!("thread {name} failed: {e}"),
                        Err(panic) => format!("thread {name} {}", crate::export::panic_message(&panic)),
                    };
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Duration::from_secs(1);
                    }
                    (host.vt.log())(
                        host.module.into(),
                        0,
                        host.module.into(),
                        format!("{why}; restarting in {backoff:?}").as_str().into(),
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            })
            .map_err(|e| Error::new(format!("cannot start a thread: {e}")))
    }

    /// Whether `uri` points at this host (Kamailio's `uri == myself`).
    pub fn is_myself(&self, uri: &str) -> bool {
        (self.vt.sip_is_myself())(uri.into())
    }

    /// This host's `host:port` for `transport` (the advertised address when set), if it listens
    /// on that transport.
    pub fn local_address(&self, transport: crate::sip::Transport) -> Option<String> {
        let t = match transport {
            crate::sip::Transport::Udp => 1,
            crate::sip::Transport::Tcp => 2,
            crate::sip::Transport::Tls => 3,
        };
        let s = (self.vt.sip_local_address())(t).into_string();
        (!s.is_empty()).then_some(s)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A running timer.
#[derive(Debug)]
pub struct Timer {
    host: Host,
    id: u64,
}

impl Timer {
    /// Stops the timer; a run already under way finishes.
    pub fn cancel(self) {
        (self.host.vt.timer_cancel())(self.id);
    }
}
