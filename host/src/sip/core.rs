//! The SIP core: every message in and out passes here.
//!
//! On an I/O thread: parse, validate (answering 400 when a reply can be formed, else dropping
//! with one log line), match against the transaction layer (retransmissions are absorbed and
//! answered with the last reply), then run the routes of new requests: right there on a UDP
//! receiver thread, or on a worker for requests read by an I/O task (TCP).
//! Responses go to whoever owns the client transaction: a module's reply callback (exactly once;
//! run by the UDP receiver that read the response, queued to a worker otherwise) or the stateful
//! relay (forwarded upstream). One task drives the
//! transaction timers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RErr, RStr};
use bytes::Bytes;
use plugin_api::ffi::{FfiMsg, FfiReply, FfiReplyCallback};
use sip_message::{Message, Method, ReplyOptions, write_reply};
use sip_transaction::{Event, Reliability, RequestEvent, ResponseEvent, TransactionLayer, TxId};

use super::context::{RequestCtx, SipMsg};
use super::router::Router;
use super::transport::{Dest, Proto, Sink, Source, Transports};
use crate::services::workers::WorkerPool;

/// Settings of the SIP core, from `[core]`.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// `[core] alias`: other names of this host, `host` or `host:port`.
    pub aliases: Vec<String>,
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    pub max_transactions: usize,
    /// DNS servers for next-hop resolution (empty: the system's).
    pub dns_servers: Vec<SocketAddr>,
    /// `[core] max_message_size`: larger requests get 513, larger replies are dropped.
    pub max_message_size: usize,
    /// `[core] max_headers`: requests with more header lines get 400, replies are dropped.
    pub max_headers: usize,
    /// `[core] max_requests_per_source` (0: no limit).
    pub max_requests_per_source: u32,
}

/// What the transaction layer left to do after a call: its events and its next deadline.
pub(crate) struct Pending {
    events: Vec<Event>,
    next: Option<Instant>,
}

/// Who gets the responses of a client transaction.
pub(crate) enum Owner {
    /// A module's request: its callback gets the final reply.
    Uac { module: String, callback: FfiReplyCallback },
    /// A relayed request: responses go upstream through server transaction `server`.
    Proxy { server: TxId },
    /// A CANCEL we sent downstream: its responses are of no interest.
    Cancel,
}

/// The core. Built before the transports (they need it as their sink), so they are set once
/// after binding.
pub struct SipCore {
    pub(crate) transports: OnceLock<Transports>,
    pub(crate) layer: Mutex<TransactionLayer<Dest>>,
    /// Deadline the timer task sleeps until, as nanoseconds since `epoch` (u64::MAX: none).
    timer_deadline: AtomicU64,
    timer_wake: tokio::sync::Notify,
    epoch: Instant,
    pub(crate) owners: Mutex<HashMap<TxId, Owner>>,
    /// Server transactions of relayed requests → what the relay needs to answer them locally
    /// or cancel them.
    pub(crate) relayed: Mutex<HashMap<TxId, super::proxy::RelayState>>,
    pub(crate) router: OnceLock<Router>,
    pub(crate) workers: Arc<WorkerPool>,
    pub(crate) resolver: sip_resolve::Resolver,
    pub(crate) config: SipConfig,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) counters: SipCounters,
    limiter: super::limits::SourceLimiter,
}

/// The SIP core's counters.
pub(crate) struct SipCounters {
    pub received: &'static AtomicU64,
    pub dropped: &'static AtomicU64,
    pub bad_requests: &'static AtomicU64,
    pub retransmissions: &'static AtomicU64,
    pub too_large: &'static AtomicU64,
    pub rate_limited: &'static AtomicU64,
}

impl SipCounters {
    fn register(m: &crate::services::metrics::Metrics) -> Self {
        let c = |name, help| m.counter("sip", name, help).expect("valid built-in metric name");
        Self {
            received: c("messages_received", "SIP messages received"),
            dropped: c("messages_dropped", "SIP messages dropped as unparsable or unanswerable"),
            bad_requests: c("bad_requests", "requests answered 400/505 because they were malformed"),
            retransmissions: c("retransmissions_absorbed", "retransmitted requests answered from the transaction"),
            too_large: c(
                "messages_too_large",
                "messages over [core] max_message_size or max_headers (requests answered 513/400, replies dropped)",
            ),
            rate_limited: c("requests_rate_limited", "requests dropped by [core] max_requests_per_source"),
        }
    }
}

/// RFC 3261 §18.2.2 and RFC 3581: where responses to a request go.
pub fn reply_dest(msg: &Message<'_>, src: &Source) -> Dest {
    if src.proto.reliable() {
        return Dest { proto: src.proto, addr: src.addr, conn: src.conn };
    }
    let Ok(via) = msg.top_via() else {
        return Dest { proto: src.proto, addr: src.addr, conn: None };
    };
    if let Some(rport) = via.rport() {
        // rport asked: the source address and port, which is what gets through NAT.
        let _ = rport;
        return Dest { proto: src.proto, addr: src.addr, conn: None };
    }
    // Otherwise the received address (the source IP) and the sent-by port.
    let port = via.port().unwrap_or(5060);
    Dest { proto: src.proto, addr: SocketAddr::new(src.addr.ip(), port), conn: None }
}

fn reliability(proto: Proto) -> Reliability {
    if proto.reliable() { Reliability::Reliable } else { Reliability::Unreliable }
}

impl SipCore {
    pub fn new(
        config: SipConfig,
        workers: Arc<WorkerPool>,
        runtime: tokio::runtime::Handle,
        metrics: &crate::services::metrics::Metrics,
    ) -> anyhow::Result<Arc<Self>> {
        let resolver = if config.dns_servers.is_empty() {
            sip_resolve::Resolver::from_system_conf().map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?
        } else {
            sip_resolve::Resolver::with_nameservers(&config.dns_servers)
                .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?
        };
        let layer = TransactionLayer::new(sip_transaction::Config {
            t1: config.t1,
            t2: config.t2,
            t4: config.t4,
            max_completed: config.max_transactions,
            // The relay sends its own 100 Trying, with received/rport filled in.
            auto_100_trying: false,
            ..Default::default()
        });
        Ok(Arc::new(Self {
            transports: OnceLock::new(),
            layer: Mutex::new(layer),
            timer_deadline: AtomicU64::new(u64::MAX),
            timer_wake: tokio::sync::Notify::new(),
            epoch: Instant::now(),
            owners: Mutex::new(HashMap::new()),
            relayed: Mutex::new(HashMap::new()),
            router: OnceLock::new(),
            workers,
            resolver,
            runtime,
            counters: SipCounters::register(metrics),
            limiter: super::limits::SourceLimiter::new(config.max_requests_per_source),
            config,
        }))
    }

    pub(crate) fn transports(&self) -> Option<&Transports> {
        self.transports.get()
    }

    /// Sends `bytes` to `dest`.
    pub(crate) fn send(&self, dest: &Dest, bytes: Bytes, on_error: Option<Box<dyn FnOnce() + Send>>) {
        match self.transports() {
            Some(t) => t.send(dest, bytes, on_error),
            None => {
                if let Some(f) = on_error {
                    f();
                }
            }
        }
    }

    /// Runs `f` on the transaction layer and `then` on its result; sends what the layer queued,
    /// handles its events and wakes the timer task if it now has an earlier deadline.
    ///
    /// Events come after `then` on purpose: over a reliable transport a final response and the
    /// transaction's termination arrive in the same call, and the final must reach its owner
    /// before the termination clears the owner away.
    pub(crate) fn with_layer<T, R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut TransactionLayer<Dest>) -> T,
        then: impl FnOnce(T) -> R,
    ) -> R {
        let (result, pending) = self.layer_call(f);
        let r = then(result);
        self.after(pending);
        r
    }

    /// The first half of [`SipCore::with_layer`]: runs `f` and sends what the layer queued; the
    /// caller handles the result, then calls [`SipCore::after`].
    pub(crate) fn layer_call<T>(self: &Arc<Self>, f: impl FnOnce(&mut TransactionLayer<Dest>) -> T) -> (T, Pending) {
        let (result, transmits, pending) = {
            let mut layer = self.layer.lock().unwrap_or_else(|e| e.into_inner());
            let result = f(&mut layer);
            let mut transmits = Vec::new();
            while let Some(t) = layer.poll_transmit() {
                transmits.push(t);
            }
            let mut events = Vec::new();
            while let Some(e) = layer.poll_event() {
                events.push(e);
            }
            (result, transmits, Pending { events, next: layer.poll_timeout() })
        };
        for (dest, bytes) in transmits {
            self.send(&dest, bytes, None);
        }
        (result, pending)
    }

    /// The second half: the layer's events, and an earlier wake-up for the timer task.
    pub(crate) fn after(self: &Arc<Self>, pending: Pending) {
        for e in pending.events {
            self.on_event(e);
        }
        if let Some(next) = pending.next {
            let at = next.saturating_duration_since(self.epoch).as_nanos().min(u128::from(u64::MAX - 1)) as u64;
            if at < self.timer_deadline.load(Ordering::Acquire) {
                self.timer_wake.notify_one();
            }
        }
    }

    /// The task that fires transaction timers.
    pub(crate) fn start_timers(self: &Arc<Self>) {
        let core = self.clone();
        self.runtime.spawn(async move {
            loop {
                let next = core.layer.lock().unwrap_or_else(|e| e.into_inner()).poll_timeout();
                let at = next.map_or(u64::MAX, |n| n.saturating_duration_since(core.epoch).as_nanos() as u64);
                core.timer_deadline.store(at, Ordering::Release);
                let sleep = match next {
                    Some(n) => tokio::time::sleep_until(n.into()),
                    None => tokio::time::sleep(Duration::from_secs(3600)),
                };
                tokio::select! {
                    _ = sleep => {
                        let now = Instant::now();
                        core.with_layer(|l| l.handle_timeout(now), |()| ());
                    }
                    _ = core.timer_wake.notified() => {}
                }
            }
        });
    }

    fn on_event(self: &Arc<Self>, event: Event) {
        match event {
            Event::Timeout(tx) => self.local_final(tx, 408, "Request Timeout"),
            Event::TransportError(tx) => self.local_final(tx, 503, "Service Unavailable"),
            Event::AckTimeout(tx) => tracing::debug!(?tx, "no ACK for a final reply to an INVITE"),
            Event::Terminated(tx) => {
                // An INVITE client transaction keeps its owner through Accepted (further 2xx).
                self.owners.lock().unwrap_or_else(|e| e.into_inner()).remove(&tx);
                self.relayed.lock().unwrap_or_else(|e| e.into_inner()).remove(&tx);
            }
        }
    }

    /// A client transaction ended without a reply: give its owner a local final reply.
    pub(crate) fn local_final(self: &Arc<Self>, tx: TxId, code: u16, reason: &'static str) {
        let owner = self.owners.lock().unwrap_or_else(|e| e.into_inner()).remove(&tx);
        match owner {
            Some(Owner::Uac { module, callback }) => {
                self.deliver(module, callback, code, reason, None, Dispatch::Worker)
            }
            Some(Owner::Proxy { server }) => {
                super::proxy::reply_upstream(self, server, code, reason);
            }
            Some(Owner::Cancel) | None => {}
        }
    }

    /// Runs a module's reply callback: on a worker, or right here on a UDP receiver that read
    /// the reply (`Dispatch::Inline`; it holds no lock then). Never inside the module's own
    /// call that sent the request.
    pub(crate) fn deliver(
        &self,
        module: String,
        callback: FfiReplyCallback,
        code: u16,
        reason: &'static str,
        msg: Option<SipMsg>,
        dispatch: Dispatch,
    ) {
        let run = move || {
            let reason_text: String;
            let (ffi_msg, reason) = match &msg {
                Some(m) => {
                    reason_text =
                        m.view().reason().map(|r| String::from_utf8_lossy(r).into_owned()).unwrap_or_default();
                    (m.ffi(), reason_text.as_str())
                }
                None => (FfiMsg::EMPTY, reason),
            };
            let status = msg.as_ref().and_then(|m| m.view().status_code()).unwrap_or(code);
            let reply = FfiReply { status, reason: RStr::from_str(reason), local: msg.is_none(), msg: ffi_msg };
            if let RErr(e) = callback.call(&reply) {
                tracing::error!(%module, "reply callback failed: {}", e.message);
                crate::services::plugin_error();
            }
        };
        match dispatch {
            Dispatch::Inline => run(),
            Dispatch::Worker => self.workers.submit(Box::new(run)),
        }
    }

    fn on_request(self: &Arc<Self>, msg: SipMsg, src: Source, dispatch: Dispatch) {
        let view = msg.view();
        if let Err(e) = view.validate() {
            self.refuse(&msg, &src, e.status_code(), e.reason_phrase(), &e.to_string());
            return;
        }
        let dest = reply_dest(&view, &src);
        let now = Instant::now();
        let (event, pending) = self.layer_call(|l| l.receive_request(now, &view, dest, reliability(src.proto)));
        // Before the route: an inline route may take a while, and the timer task may need an
        // earlier wake-up.
        self.after(pending);
        match event {
            RequestEvent::New(tx) => self.dispatch(RequestCtx::new(msg, src, Some(tx)), dispatch),
            RequestEvent::Retransmission(resend) => {
                self.counters.retransmissions.fetch_add(1, Ordering::Relaxed);
                if let Some((dest, bytes)) = resend {
                    self.send(&dest, bytes, None);
                }
            }
            RequestEvent::AckAbsorbed => {}
            RequestEvent::AckToTu => self.dispatch(RequestCtx::new(msg, src, None), dispatch),
            RequestEvent::Cancel { cancel, invite } => super::proxy::on_cancel(self, msg, src, cancel, invite),
            RequestEvent::Unmatchable(why) => self.refuse(&msg, &src, 400, "Bad Request", why),
        }
    }

    /// Answers a request that cannot be processed, statelessly, when a reply can be formed;
    /// otherwise drops it. Either way, one log line.
    fn refuse(&self, msg: &SipMsg, src: &Source, code: u16, reason: &str, why: &str) {
        let view = msg.view();
        let is_ack = matches!(view.method(), Some(Method::Ack));
        if !is_ack && view.check_replyable().is_ok() {
            self.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            tracing::info!(src = %src.addr, "answered {code} to a malformed request: {why}");
            let mut out = Vec::with_capacity(512);
            let opts = ReplyOptions {
                to_tag: None,
                received: Some(&src.addr.ip().to_string()),
                rport: Some(src.addr.port()),
                headers: &[],
                body: None,
            };
            let reason_owned = reason.to_string();
            if write_reply(&mut out, &view, code, &reason_owned, &opts).is_ok() {
                self.send(&reply_dest(&view, src), out.into(), None);
            }
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(src = %src.addr, "dropped a malformed message: {why}");
        }
    }

    fn dispatch(self: &Arc<Self>, ctx: RequestCtx, dispatch: Dispatch) {
        if dispatch == Dispatch::Inline {
            if let Some(router) = self.router.get() {
                router.run(self, ctx);
            }
            return;
        }
        let core = self.clone();
        self.workers.submit(Box::new(move || {
            if let Some(router) = core.router.get() {
                router.run(&core, ctx);
            }
        }));
    }

    fn on_response(self: &Arc<Self>, msg: SipMsg, dispatch: Dispatch) {
        let view = msg.view();
        let now = Instant::now();
        self.with_layer(|l| l.receive_response(now, &view), |event| self.on_response_event(event, &msg, dispatch));
    }

    fn on_response_event(self: &Arc<Self>, event: ResponseEvent, msg: &SipMsg, dispatch: Dispatch) {
        let view = msg.view();
        match event {
            ResponseEvent::Provisional(tx) | ResponseEvent::Additional2xx(tx) => {
                let server = match self.owners.lock().unwrap_or_else(|e| e.into_inner()).get(&tx) {
                    Some(Owner::Proxy { server }) => Some(*server),
                    _ => None,
                };
                let first = matches!(event, ResponseEvent::Provisional(_));
                if let Some(server) = server {
                    super::proxy::forward_response(self, server, msg, first, dispatch);
                }
            }
            ResponseEvent::Final(tx) => {
                let code = view.status_code().unwrap_or(0);
                let invite_2xx = (200..300).contains(&code) && view.cseq().is_ok_and(|c| c.method == Method::Invite);
                let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
                let owner = owners.remove(&tx);
                match owner {
                    Some(Owner::Uac { module, callback }) => {
                        drop(owners);
                        self.deliver(
                            module,
                            callback,
                            0,
                            "",
                            Some(SipMsg { buf: msg.buf.clone(), parsed: msg.parsed.clone() }),
                            dispatch,
                        );
                    }
                    Some(Owner::Proxy { server }) => {
                        if invite_2xx {
                            // Forked and retransmitted 2xx follow while the transaction is Accepted.
                            owners.insert(tx, Owner::Proxy { server });
                        }
                        drop(owners);
                        super::proxy::forward_response(self, server, msg, true, dispatch);
                    }
                    Some(Owner::Cancel) | None => {}
                }
            }
            ResponseEvent::Absorbed => {}
            ResponseEvent::Stray => super::proxy::forward_stray(self, msg),
        }
    }

    /// Whether `uri` names this host: a listen or advertised address, or an alias.
    pub fn is_myself(&self, uri: &str) -> bool {
        let Ok(u) = sip_message::SipUri::parse(uri) else { return false };
        let Some(host) = u.host() else { return false };
        let port = u.port();
        self.is_myself_host(host.as_str(), port)
    }

    /// Whether `host[:port]` is this host (`port` None: the default port).
    pub fn is_myself_host(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port_ok = |p: u16| port.is_none_or(|want| want == p) || (port.is_none() && p == 5060);
        if let Some(t) = self.transports() {
            for l in &t.listeners {
                let bound_ip = l.bound.ip().to_string();
                let adv = l.advertised.0.trim_start_matches('[').trim_end_matches(']');
                if (host.eq_ignore_ascii_case(&bound_ip) && port_ok(l.bound.port()))
                    || (host.eq_ignore_ascii_case(adv) && port_ok(l.advertised.1))
                {
                    return true;
                }
                // An any-address listener answers for every local address.
                if l.bound.ip().is_unspecified()
                    && host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
                    && port_ok(l.bound.port())
                {
                    return true;
                }
            }
        }
        self.config.aliases.iter().any(|a| {
            let (ah, ap) = match a.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, p.parse::<u16>().ok()),
                _ => (a.as_str(), None),
            };
            let ah = ah.trim_start_matches('[').trim_end_matches(']');
            ah.eq_ignore_ascii_case(host) && (ap.is_none() || port.is_none_or(|p| Some(p) == ap))
        })
    }

    /// `host:port` to advertise for `proto` (first listener of that transport).
    pub fn local_address(&self, proto: Proto) -> Option<String> {
        let t = self.transports()?;
        let l = t.listeners.iter().find(|l| l.proto == proto)?;
        Some(format!("{}:{}", l.advertised.0, l.advertised.1))
    }
}

/// The core as the transports' sink.
pub struct CoreSink(pub Arc<SipCore>);

impl Sink for CoreSink {
    fn on_message(&self, bytes: Bytes, src: Source) {
        self.0.receive(bytes, src, Dispatch::Worker);
    }

    fn on_datagram(&self, bytes: Bytes, src: Source) {
        self.0.receive(bytes, src, Dispatch::Inline);
    }
}

/// Where a new request's routes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dispatch {
    /// On this thread (a UDP receiver): no hand-off.
    Inline,
    /// On a worker (the caller is an I/O task that must not block).
    Worker,
}

impl SipCore {
    /// Starts the UDP receivers, `per_socket` threads on each UDP listener.
    pub fn start_receivers(self: &Arc<Self>, per_socket: usize) -> anyhow::Result<()> {
        if let Some(t) = self.transports() {
            t.start_receivers(per_socket, Arc::new(CoreSink(self.clone())))
                .map_err(|e| anyhow::anyhow!("cannot start UDP receivers: {e}"))?;
        }
        Ok(())
    }

    /// Stops the UDP receivers (each finishes its current message).
    pub fn stop_receivers(&self) {
        if let Some(t) = self.transports() {
            t.stop();
        }
    }

    /// A message arrived; new requests' routes run as `dispatch` says.
    pub(crate) fn receive(self: &Arc<Self>, bytes: Bytes, src: Source, dispatch: Dispatch) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let parsed = match sip_message::parse(&bytes) {
            Ok(p) => p,
            Err(e) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(src = %src.addr, proto = src.proto.param(), "dropped an unparsable message: {e}");
                return;
            }
        };
        let msg = SipMsg { buf: bytes, parsed };
        let is_request = msg.view().is_request();
        if is_request {
            match self.limiter.check(src.addr.ip(), self.epoch.elapsed().as_secs()) {
                super::limits::Verdict::Allow => {}
                verdict => {
                    self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                    if verdict == super::limits::Verdict::FirstDrop {
                        tracing::warn!(
                            src = %src.addr.ip(),
                            limit = self.config.max_requests_per_source,
                            "requests over [core] max_requests_per_source; dropping this source's requests for the rest of the second"
                        );
                    }
                    return;
                }
            }
        }
        // Cost is bounded before this point: parsing is linear in the message, and a stream
        // transport never buffers more than tcp_max_message_size.
        let over = if msg.buf.len() > self.config.max_message_size {
            Some((513, "Message Too Large", "message larger than [core] max_message_size"))
        } else if msg.parsed.headers.len() > self.config.max_headers {
            Some((400, "Too Many Headers", "more header lines than [core] max_headers"))
        } else {
            None
        };
        if let Some((code, reason, why)) = over {
            self.counters.too_large.fetch_add(1, Ordering::Relaxed);
            if is_request {
                self.refuse(&msg, &src, code, reason, why);
            } else {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(src = %src.addr, "dropped a reply: {why}");
            }
            return;
        }
        if is_request { self.on_request(msg, src, dispatch) } else { self.on_response(msg, dispatch) }
    }
}
