//! `pua`: the presence user agent client (Kamailio's pua module).
//!
//! It sends PUBLISH and SUBSCRIBE for other modules (through the `pua` API: Kamailio's
//! `bind_pua`), keeps their state (ETags, dialogs, expiry), refreshes it on a timer, and stores
//! it in Kamailio's `pua` table. The behaviour is in [`engine`] (no I/O, tested with a fake
//! clock); this file connects it to the host: requests, replies, timers, database, RPC.

pub mod body;
pub mod config;
pub mod engine;
pub mod events;
pub mod record;
pub mod storage;
pub mod store;

use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugin_api::api::pua::{self as api, PuaCallback, PuaService, PublishInfo, SubscribeInfo, UaRecord};
use plugin_api::metrics::{Counter, Gauge};
use plugin_api::prelude::*;
use plugin_api::sip::HeaderName;
use serde_json::json;

use config::{Config, DbMode};
use engine::{Effect, Engine, ReplyInfo};
use events::{Events, Processor};
use store::{MemoryStore, Records};

/// Seconds since the epoch.
fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A unique token for tags, Call-IDs and tuple ids.
fn token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        t ^ (u64::from(std::process::id()) << 40)
    });
    let mut z = seed.wrapping_add(N.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:x}", z ^ (z >> 31))
}

struct Metrics {
    publish_sent: Counter,
    subscribe_sent: Counter,
    replies_ok: Counter,
    replies_failed: Counter,
    refreshes: Counter,
    refreshes_late: Counter,
    expired: Counter,
    publications: Gauge,
    subscriptions: Gauge,
}

/// Everything the module shares between its API, its callbacks and its timers.
pub struct Inner {
    host: Host,
    engine: Mutex<Engine<Box<dyn Records>>>,
    callbacks: RwLock<Vec<(i32, PuaCallback)>>,
    db: Option<Db>,
    metrics: Metrics,
}

/// The parts of a reply the engine needs.
fn reply_info(reply: &Reply<'_>) -> ReplyInfo {
    let mut info = ReplyInfo { code: reply.code, local: reply.local, ..Default::default() };
    if let Some(m) = &reply.message {
        info.etag = m.sip_etag().ok().flatten().map(str::to_string);
        info.expires = m.expires().ok().flatten().map(i64::from);
        info.min_expires = m.min_expires().ok().flatten().map(i64::from);
        info.to_tag = m.to().ok().and_then(|t| t.tag().map(str::to_string));
        info.contact = m.contacts().flatten().find_map(|c| match c {
            plugin_api::sip::sip_message::headers::Contact::Address(a) => Some(a.uri_str().to_string()),
            plugin_api::sip::sip_message::headers::Contact::Star => None,
        });
        info.record_route =
            m.list(HeaderName::RECORD_ROUTE).map(|(_, v)| String::from_utf8_lossy(v).trim().to_string()).collect();
    }
    info
}

impl Inner {
    /// Runs one engine operation (inside a transaction in db_mode 2), then, with the lock
    /// released, its effects.
    fn run<T>(
        &'static self,
        op: impl FnOnce(&mut Engine<Box<dyn Records>>) -> (T, Vec<Effect>),
        reply: Option<&Reply<'_>>,
    ) -> T {
        let (result, effects) = {
            let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
            e.records.begin();
            let r = op(&mut e);
            e.records.commit();
            r
        };
        self.execute(effects, reply);
        result
    }

    fn execute(&'static self, effects: Vec<Effect>, reply: Option<&Reply<'_>>) {
        for effect in effects {
            match effect {
                Effect::Send { key, request } => self.send(key, request),
                Effect::Notify { record, source_flag } => {
                    if let Some(reply) = reply {
                        let cbs = self.callbacks.read().unwrap_or_else(|p| p.into_inner());
                        for (types, cb) in cbs.iter() {
                            if types & source_flag != 0 {
                                cb.call(&record, reply);
                            }
                        }
                    }
                }
            }
        }
    }

    fn send(&'static self, key: u64, request: plugin_api::sip::Request) {
        match request.method.as_str() {
            "PUBLISH" => self.metrics.publish_sent.inc(),
            _ => self.metrics.subscribe_sent.inc(),
        }
        let sent = self.host.send_request(&request, move |reply| self.on_reply(key, &reply));
        if let Err(e) = sent {
            tracing::warn!(ruri = %request.ruri, "cannot send {}: {e}", request.method);
            // As if no reply came; not from inside the call that failed, so the lock is free.
            let reply = Reply { code: 503, reason: "Service Unavailable", local: true, message: None };
            self.on_reply(key, &reply);
        }
    }

    fn on_reply(&'static self, key: u64, reply: &Reply<'_>) {
        if (200..300).contains(&reply.code) && !reply.local {
            self.metrics.replies_ok.inc();
        } else {
            self.metrics.replies_failed.inc();
        }
        let info = reply_info(reply);
        let t = now();
        self.run(|e| ((), e.on_reply(key, &info, t)), Some(reply));
    }

    fn tick(&'static self) {
        let t = now();
        let due = self.engine.lock().unwrap_or_else(|p| p.into_inner()).due(t);
        // A few hundred at a time: the API and the replies get the engine between batches,
        // and each batch's requests are on their way before the next is built.
        let mut stats = engine::TickStats::default();
        for batch in due.chunks(REFRESH_BATCH) {
            let s = self.run(
                |e| {
                    let (effects, s) = e.refresh(batch, t);
                    (s, effects)
                },
                None,
            );
            stats.refreshed += s.refreshed;
            stats.late += s.late;
            stats.expired += s.expired;
        }
        self.metrics.refreshes.add(stats.refreshed);
        self.metrics.refreshes_late.add(stats.late);
        self.metrics.expired.add(stats.expired);
        if stats.late > 0 {
            tracing::warn!(late = stats.late, "refreshes sent after their records had expired");
        }
        let (p, s) = self.engine.lock().unwrap_or_else(|p| p.into_inner()).records.counts();
        self.metrics.publications.set(p as i64);
        self.metrics.subscriptions.set(s as i64);
    }

    /// db_mode 0: writes the changes since the last write-back, a batch of records at a time
    /// (each batch copied under the lock, written without it, in a transaction of its own).
    /// Whatever could not be written goes into the next write-back.
    fn write_back(&'static self) -> Result<(), Error> {
        let Some(db) = &self.db else { return Ok(()) };
        let (table, changes) = {
            let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
            (e.cfg.db_table.clone(), e.records.take_changes())
        };
        let Some(changes) = changes else { return Ok(()) };
        if changes.records.is_empty() && changes.deleted.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut batches = changes.records.chunks(WRITE_BACK_BATCH).enumerate();
        let mut deleted = changes.deleted.as_slice();
        loop {
            let (index, keys) = match batches.next() {
                Some((i, keys)) => (i, keys),
                None if !deleted.is_empty() => (usize::MAX, &[][..]),
                None => break,
            };
            let records: Vec<(record::Record, bool)> = {
                let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
                keys.iter().filter_map(|&(k, body)| e.records.get(k).map(|r| (r, body))).collect()
            };
            // Deletions go with the first batch.
            let now_deleted = std::mem::take(&mut deleted);
            match storage::write_back(db, &table, &records, now_deleted) {
                Ok(inserted) => {
                    let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
                    for (key, id) in inserted {
                        e.records.set_db_id(key, id);
                    }
                }
                Err(err) => {
                    let done = if index == usize::MAX { changes.records.len() } else { index * WRITE_BACK_BATCH };
                    let rest =
                        store::Changes { records: changes.records[done..].to_vec(), deleted: now_deleted.to_vec() };
                    self.engine.lock().unwrap_or_else(|p| p.into_inner()).records.requeue(rest);
                    return Err(err.context("writing pua records back"));
                }
            }
        }
        tracing::debug!(
            changed = changes.records.len(),
            deleted = changes.deleted.len(),
            ms = started.elapsed().as_millis() as u64,
            "pua records written back"
        );
        Ok(())
    }
}

/// The engine's answer to an API call: the return code, and the effects to run.
fn code_and_effects(r: Result<Vec<Effect>, i32>) -> (i32, Vec<Effect>) {
    match r {
        Ok(effects) => (0, effects),
        Err(code) => (code, Vec::new()),
    }
}

impl PuaService for Inner {
    fn send_publish(&self, info: PublishInfo) -> i32 {
        let Some(this) = INNER.get() else { return -1 };
        let t = now();
        this.run(|e| code_and_effects(e.send_publish(info, t)), None)
    }

    fn send_subscribe(&self, info: SubscribeInfo) -> i32 {
        let Some(this) = INNER.get() else { return -1 };
        let t = now();
        this.run(|e| code_and_effects(e.send_subscribe(info, t)), None)
    }

    fn register_callback(&self, types: i32, callback: PuaCallback) -> i32 {
        // Kamailio refuses types above 512 (so nobody can register for DIALOG_PUBLISH and up);
        // any positive set of flags is accepted here.
        if types <= 0 {
            return -1;
        }
        self.callbacks.write().unwrap_or_else(|p| p.into_inner()).insert(0, (types, callback));
        0
    }

    fn is_dialog(&self, dialog: UaRecord) -> i32 {
        let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        e.is_dialog(&dialog)
    }

    fn get_record_id(&self, dialog: UaRecord) -> Option<String> {
        let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        e.record_id(&dialog)
    }

    fn add_event(&self, flag: i32, name: &str, content_type: &str, processor: Option<api::BodyProcessor>) -> i32 {
        let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        let p = processor.map_or(Processor::Passthrough, Processor::External);
        e.events.add(flag, name, content_type, p);
        0
    }

    fn get_subs_list(&self, did: &str) -> Vec<String> {
        let mut e = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        e.subs_list(did)
    }
}

/// Records copied and written per transaction in a write-back.
const WRITE_BACK_BATCH: usize = 1000;

/// Records refreshed per hold of the engine lock in a refresh pass.
const REFRESH_BATCH: usize = 256;

/// The module's state, created once in `init` and kept for the life of the process (modules
/// are never unloaded); reply callbacks and timers hold it as `&'static`.
static INNER: std::sync::OnceLock<&'static Inner> = std::sync::OnceLock::new();

/// The module.
pub struct PuaModule {
    inner: &'static Inner,
}

impl PuaModule {
    /// `pua_update_contact()`: on a NOTIFY, the dialog's remote target becomes its Contact.
    fn update_contact(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(-1) };
        let (Ok(call_id), Ok(to), Ok(from)) = (msg.call_id(), msg.to(), msg.from()) else { return Ok(-1) };
        let contact = msg.contacts().flatten().find_map(|c| match c {
            plugin_api::sip::sip_message::headers::Contact::Address(a) => Some(a.uri_str().to_string()),
            plugin_api::sip::sip_message::headers::Contact::Star => None,
        });
        let (Some(local), Some(remote), Some(contact)) = (to.tag(), from.tag(), contact) else {
            tracing::debug!("pua_update_contact: the NOTIFY lacks tags or a Contact");
            return Ok(-1);
        };
        let mut e = self.inner.engine.lock().unwrap_or_else(|p| p.into_inner());
        e.records.begin();
        let found = e.update_contact(call_id, local, remote, &contact);
        e.records.commit();
        if !found {
            tracing::debug!(call_id, "pua_update_contact: no record for the dialog");
        }
        Ok(if found { 1 } else { -1 })
    }

    fn rpc_cleanup(&self, _: &RpcCall) -> RpcResult {
        self.inner.tick();
        Ok(Value::Null)
    }

    /// `pua.list`: the stored records, so an operator can see why a lamp is dark.
    fn rpc_list(&self, call: &RpcCall) -> RpcResult {
        let filter = call.str(0).unwrap_or_default();
        let (records, names) = {
            let mut e = self.inner.engine.lock().unwrap_or_else(|p| p.into_inner());
            let records = e.records.all();
            // Event names from the registry, so events added with add_event show theirs.
            let names: std::collections::HashMap<i32, String> = records
                .iter()
                .map(|r| {
                    (
                        r.event,
                        e.events.by_flag(r.event).map_or_else(|| r.event_name().to_string(), |ev| ev.name.clone()),
                    )
                })
                .collect();
            (records, names)
        };
        let t = now();
        let list: Vec<Value> = records
            .iter()
            .filter(|r| filter.is_empty() || r.pres_uri.contains(&filter))
            .map(|r| {
                let mut v = json!({
                    "kind": if r.publ().is_some() { "publish" } else { "subscribe" },
                    "pres_uri": r.pres_uri,
                    "pres_id": r.id,
                    "event": names.get(&r.event),
                    "event_flag": r.event,
                    "flag": r.flag,
                    "expires": r.expires,
                    "expires_in": r.expires - t,
                    "desired_expires": r.desired_expires,
                    "version": r.version,
                });
                match &r.kind {
                    record::Kind::Publish(p) => {
                        v["etag"] = json!(p.etag);
                        v["tuple_id"] = json!(p.tuple_id);
                        v["content_type"] = json!(p.content_type);
                        v["body_bytes"] = json!(p.body.as_ref().map_or(0, String::len));
                    }
                    record::Kind::Subscribe(s) => {
                        v["watcher_uri"] = json!(s.watcher_uri);
                        v["call_id"] = json!(s.call_id);
                        v["to_tag"] = json!(s.to_tag);
                        v["from_tag"] = json!(s.from_tag);
                        v["cseq"] = json!(s.cseq);
                        v["remote_contact"] = json!(s.remote_contact);
                        v["contact"] = json!(s.contact);
                        v["record_route"] = json!(s.record_route);
                        v["state"] = json!(if s.to_tag.is_empty() { "pending" } else { "established" });
                    }
                }
                v
            })
            .collect();
        Ok(Value::Array(list))
    }
}

impl Module for PuaModule {
    fn info() -> ModuleInfo<Self> {
        let mut info = ModuleInfo::new("pua", env!("CARGO_PKG_VERSION"))
            .doc("Presence user agent client: sends PUBLISH and SUBSCRIBE for other modules and keeps their state (Kamailio's pua).");
        for p in config::declare() {
            info = info.param(p);
        }
        info.function(
            Function::new("pua_update_contact", 0..=0, Self::update_contact)
                .doc("on a NOTIFY: the matching dialog's remote target becomes the NOTIFY's Contact"),
        )
        .rpc(Rpc::new("pua.cleanup", Self::rpc_cleanup).doc("runs the refresh and cleanup pass now"))
        .rpc(Rpc::new("pua.list", Self::rpc_list).doc("lists the stored records: pua.list [pres_uri substring]"))
        .exports("pua")
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let cfg = Config::from_params(params)?;
        let events = Events::with_defaults(cfg.dlginfo_increase_version, cfg.reginfo_increase_version);
        let db = if cfg.db_url.is_empty() { None } else { Some(host.db(&cfg.db_url)?) };
        let records: Box<dyn Records> = match (&db, cfg.db_mode) {
            (Some(db), DbMode::DbOnly) => {
                storage::prepare(db, &cfg.db_table)?;
                Box::new(storage::DbStore::new(host.db(&cfg.db_url)?, &cfg.db_table, cfg.db_table_lock_write))
            }
            (Some(db), DbMode::WriteBack) => {
                storage::prepare(db, &cfg.db_table)?;
                let mut store = MemoryStore::with_capacity(cfg.table_capacity());
                let loaded = storage::load_all(db, &cfg.db_table, cfg.fetch_rows as u64)?;
                tracing::info!(records = loaded.len(), "pua records loaded");
                for r in loaded {
                    store.load(r);
                }
                Box::new(store)
            }
            (None, DbMode::DbOnly) => return Err(Error::new("db_mode 2 needs a db_url")),
            (None, DbMode::WriteBack) => Box::new(MemoryStore::with_capacity(cfg.table_capacity())),
        };
        let update_period = cfg.update_period;
        let metrics = Metrics {
            publish_sent: host.counter("publish_sent", "PUBLISH requests sent")?,
            subscribe_sent: host.counter("subscribe_sent", "SUBSCRIBE requests sent")?,
            replies_ok: host.counter("replies_ok", "2xx final replies to pua's requests")?,
            replies_failed: host.counter("replies_failed", "other final replies, timeouts included")?,
            refreshes: host.counter("refreshes", "refreshes sent by the timer")?,
            refreshes_late: host.counter("refreshes_late", "timer refreshes sent after the record had expired")?,
            expired: host.counter("expired", "records removed after they expired")?,
            publications: host.gauge("publications", "publications held")?,
            subscriptions: host.gauge("subscriptions", "subscriptions held")?,
        };
        let inner: &'static Inner = Box::leak(Box::new(Inner {
            host: *host,
            engine: Mutex::new(Engine::new(cfg, events, records, token)),
            callbacks: RwLock::new(Vec::new()),
            db,
            metrics,
        }));
        INNER.set(inner).map_err(|_| Error::new("pua initialised twice"))?;
        api::export(host, inner)?;
        if update_period > 0 {
            host.every("refresh", Duration::from_secs((update_period - 5) as u64), move || {
                inner.tick();
                Ok(())
            })?;
            if inner.db.is_some()
                && inner.engine.lock().unwrap_or_else(|p| p.into_inner()).cfg.db_mode == DbMode::WriteBack
            {
                // Expired records are removed by the refresh pass and their rows deleted here;
                // Kamailio's extra `DELETE ... WHERE expires < now-10` would also hit rows of
                // records still in memory, so it is not done.
                host.every("write-back", Duration::from_secs(update_period as u64), move || inner.write_back())?;
            }
        }
        Ok(PuaModule { inner })
    }

    fn destroy(&self, _host: &Host) {
        // db_mode 0: everything still in memory goes to the database before the host stops.
        if let Err(e) = self.inner.write_back() {
            tracing::error!("{e}");
        }
    }
}

export_module!(PuaModule);
