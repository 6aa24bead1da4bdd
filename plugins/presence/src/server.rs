//! The event server: PUBLISH (RFC 3903), SUBSCRIBE and NOTIFY (RFC 6665), as Kamailio's
//! `handle_publish` / `handle_subscribe` / `notify.c` behave (reference §10.3–10.5).
//!
//! State lives in [`State`] under one mutex, held only to read or change it: package hooks
//! (aggregation, authorization, filtering), database statements of the write-back and sends
//! run outside it. NOTIFYs of one subscription leave one at a time, in order, each with the
//! next CSeq: the next one is sent when the previous one is answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use plugin_api::api::presence::{HookRequest, status};
use plugin_api::prelude::*;
use plugin_api::sip::{Peer, RequestContext, Transport, sip_message::headers::Contact};

use crate::config::Config;
use crate::etag::EtagMaker;
use crate::events::{Package, Registry};
use crate::storage::Storage;
use crate::store::{
    Authorization, DialogKey, Presentities, Publication, QueuedNotify, Subscription, Subscriptions, Watchers,
};
use crate::winfo;

/// Everything held in memory.
#[derive(Debug, Default)]
pub struct State {
    pub presentities: Presentities,
    pub subscriptions: Subscriptions,
    pub watchers: Watchers,
    /// Subscriptions changed since the last write-back (subs_db_mode 2).
    pub dirty: std::collections::HashSet<DialogKey>,
    /// Subscriptions removed since the last write-back (subs_db_mode 2).
    pub removed: Vec<DialogKey>,
    /// subs_db_mode 3: ended rows seen by the previous expiry pass; deleted by the next one
    /// if still there (a clean_period is longer than any NOTIFY transaction).
    pub ended_seen: Vec<DialogKey>,
}

/// The presentity of subscription `key` (empty when it is gone).
fn pres_uri_of(st: &State, key: &DialogKey) -> String {
    st.subscriptions.get(key).map(|s| s.pres_uri.clone()).unwrap_or_default()
}

impl State {
    /// Empty, with the tables sized by pres_htable_size / subs_htable_size.
    pub fn sized(cfg: &Config) -> Self {
        let mut s = Self::default();
        s.presentities.reserve(1 << cfg.pres_htable_size.min(20));
        s.subscriptions.reserve(1 << cfg.subs_htable_size.min(20));
        s
    }
}

/// A reply decided by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason, headers: Vec::new() }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The server.
pub struct Server {
    pub host: Host,
    pub cfg: Config,
    pub events: RwLock<Registry>,
    state: Mutex<State>,
    pub etags: EtagMaker,
    pub storage: Option<Storage>,
    /// Publication writes that failed while memory is the truth (publ_cache 1: the database
    /// was away), by (presentity, event, ETag); the clean pass replays them until they land,
    /// so an outage loses nothing a restart would read back.
    unsynced: Mutex<HashMap<(String, String, String), Unsynced>>,
}

/// A publication write that has not reached the database yet.
enum Unsynced {
    /// Write this publication (insert, or update of the row with its ETag).
    Save(Publication),
    /// Delete the row with this ETag.
    Delete,
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `sip:user@host` of a URI (the presentity or watcher identity Kamailio uses).
fn user_host(uri: &str) -> Option<(String, String)> {
    let u = plugin_api::sip::SipUri::parse(uri).ok()?;
    Some((u.user().unwrap_or("").to_string(), u.host()?.as_str().to_string()))
}

/// The presentity URI as the server keys it: with `sip_uri_match = 1` in lower case, so URIs
/// that differ only in case name one presentity (Kamailio compares them with strncasecmp).
fn pres_key(cfg: &crate::config::Config, user: &str, domain: &str) -> String {
    let uri = format!("sip:{user}@{domain}");
    if cfg.uri_case_insensitive { uri.to_ascii_lowercase() } else { uri }
}

fn subscription_state(s: &Subscription, now: i64) -> String {
    let left = (s.expires - now).max(0);
    match s.status {
        _ if s.ended || left == 0 => {
            let reason = if s.reason.is_empty() || s.status != status::TERMINATED { "timeout" } else { &s.reason };
            format!("terminated;reason={reason}")
        }
        status::ACTIVE => format!("active;expires={left}"),
        status::PENDING => format!("pending;expires={left}"),
        status::WAITING => format!("waiting;expires={left}"),
        _ => format!("terminated;reason={}", if s.reason.is_empty() { "rejected" } else { &s.reason }),
    }
}

impl Server {
    pub fn new(host: Host, cfg: Config, storage: Option<Storage>, state: State) -> Self {
        Self {
            host,
            cfg,
            events: RwLock::new(Registry::default()),
            state: Mutex::new(state),
            etags: EtagMaker::new(now(), std::process::id()),
            storage,
            unsynced: Mutex::new(HashMap::new()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The database when subscriptions live there only (subs_db_mode 3): servers sharing it
    /// see each other's subscriptions, and memory holds a copy only while NOTIFYs are queued.
    pub fn shared_subs(&self) -> Option<&Storage> {
        self.storage.as_ref().filter(|_| self.cfg.subs_db_mode == 3)
    }

    /// The database when publications live there only (publ_cache 0).
    pub fn shared_pubs(&self) -> Option<&Storage> {
        self.storage.as_ref().filter(|_| self.cfg.publ_cache == 0)
    }

    /// A failed database statement where the database is the only copy: 500, nothing changed.
    /// Retry-After (RFC 3261 §20.33) tells the client the failure is temporary: the database
    /// pool reconnects by itself.
    fn db_failed(&self, what: &str, e: Error) -> Answer {
        tracing::error!("presence: {what}: {e}");
        Answer::new(500, "Server Internal Error").with("Retry-After", "5")
    }

    /// Live subscriptions to (pres_uri, event): from the database in subs_db_mode 3.
    pub fn live_subscriptions(&self, pres_uri: &str, event: &str, now: i64) -> Vec<Subscription> {
        match self.shared_subs() {
            Some(db) => db
                .live_subscriptions(pres_uri, Some(event), now)
                .map(|v| v.into_iter().filter(|s| !s.ended).collect())
                .unwrap_or_else(|e| {
                    tracing::error!("presence: reading the watchers of {pres_uri}: {e}");
                    Vec::new()
                }),
            None => self.state().subscriptions.live_for(pres_uri, event, now).cloned().collect(),
        }
    }

    /// Unexpired publications of (uri, event), oldest first: from the database with publ_cache 0.
    fn current_publications(&self, uri: &str, event: &str, now: i64) -> Vec<Publication> {
        let mut pubs = self.current_publications_received(uri, event, now);
        self.cfg.retrieve_order.sort(&mut pubs);
        pubs
    }

    fn current_publications_received(&self, uri: &str, event: &str, now: i64) -> Vec<Publication> {
        match self.shared_pubs() {
            Some(db) => db.current_publications(uri, event, now).unwrap_or_else(|e| {
                tracing::error!("presence: reading the publications of {uri}: {e}");
                Vec::new()
            }),
            None => self.state().presentities.current(uri, event, now),
        }
    }

    pub fn package(&self, name: &str) -> Option<Arc<Package>> {
        self.events.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    fn allow_events(&self) -> String {
        self.events.read().unwrap_or_else(|p| p.into_inner()).allow_events()
    }

    fn lookup_event(&self, msg: &Message<'_>) -> Result<Arc<Package>, Answer> {
        let bad = || Answer::new(489, "Bad Event").with("Allow-Events", self.allow_events());
        let ev = match msg.event() {
            Ok(Some(ev)) => ev,
            Ok(None) => return Err(bad()),
            Err(_) => return Err(Answer::new(400, "Bad request")),
        };
        self.events.read().unwrap_or_else(|p| p.into_inner()).lookup(&ev).cloned().ok_or_else(bad)
    }

    fn expires(&self, msg: &Message<'_>, pkg: &Package) -> Result<u32, Answer> {
        let e = msg.expires().map_err(|_| Answer::new(400, "Bad request"))?.unwrap_or(pkg.default_expires);
        Ok(e.min(self.cfg.max_expires))
    }

    // ---------------------------------------------------------------------------------------
    // PUBLISH

    /// A presentity URI given by another module or a route, keyed as requests key it.
    pub fn api_uri<'a>(&self, uri: &'a str) -> std::borrow::Cow<'a, str> {
        if self.cfg.uri_case_insensitive && uri.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(uri.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(uri)
        }
    }

    /// Whether two URIs are the same under sip_uri_match (a watcher's Contact and a sender).
    fn same_uri(&self, a: &str, b: &str) -> bool {
        if self.cfg.uri_case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b }
    }

    /// `handle_publish([sender])`: replies and notifies the watchers. Returns 1 or -1.
    pub fn handle_publish(self: &Arc<Self>, ctx: &RequestContext<'_>, sender: Option<&str>) -> i32 {
        let Some(msg) = ctx.message() else { return -1 };
        let (answer, change) = match self.publish(&msg, sender.unwrap_or("")) {
            Ok(r) => r,
            Err(a) => (a, None),
        };
        self.send_answer(ctx, &answer);
        let ok = answer.code < 300;
        if let Some((pres_uri, pkg, removed)) = change {
            self.notify_presentity(&pres_uri, &pkg, removed, sender);
        }
        if ok { 1 } else { -1 }
    }

    fn send_answer(&self, ctx: &RequestContext<'_>, a: &Answer) {
        let headers: Vec<(&str, &str)> = a.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Err(e) = ctx.reply_with(a.code, a.reason, &headers, None) {
            tracing::warn!("presence: cannot reply {} {}: {e}", a.code, a.reason);
        }
    }

    /// Decides the reply to a PUBLISH and applies it; on success also what changed: the
    /// presentity, its package and the publication removed (for its offline version).
    #[allow(clippy::type_complexity)]
    pub fn publish(
        &self,
        msg: &Message<'_>,
        sender: &str,
    ) -> Result<(Answer, Option<(String, Arc<Package>, Option<Publication>)>), Answer> {
        let pkg = self.lookup_event(msg)?;
        if pkg.is_winfo() {
            return Err(Answer::new(489, "Bad Event").with("Allow-Events", self.allow_events()));
        }
        let if_match = msg.sip_if_match().map_err(|_| Answer::new(400, "Bad request"))?;
        let expires = self.expires(msg, &pkg)?;
        let (user, domain) =
            msg.request_uri_str().and_then(user_host).ok_or_else(|| Answer::new(400, "Bad request"))?;
        let pres_uri = pres_key(&self.cfg, &user, &domain);
        if msg.content_length().ok().flatten().is_none() && !msg.body().is_empty() {
            return Err(Answer::new(400, "Bad request"));
        }
        let body = msg.body();
        if body.is_empty() && if_match.is_none() {
            return Err(Answer::new(400, "Invalid request"));
        }
        if body.len() > self.cfg.max_body {
            return Err(Answer::new(413, "Request Entity Too Large"));
        }
        if !body.is_empty()
            && let Some(hooks) = &pkg.hooks
            && let Err((code, reason)) = hooks.check_body(body)
        {
            tracing::info!("presence: PUBLISH for {pres_uri} refused ({code}): {reason}");
            return Err(match code {
                415 => Answer::new(415, "Unsupported media type"),
                413 => Answer::new(413, "Request Entity Too Large"),
                _ => Answer::new(400, "Bad request"),
            });
        }
        let now = now();
        let shown_expires = |e: u32| if e == 0 { 0 } else { e.saturating_sub(self.cfg.expires_offset) };
        let Some(etag) = if_match else {
            let etag = self.etags.make(None);
            let p = Publication {
                etag: etag.clone(),
                expires: now + i64::from(expires),
                received_time: now,
                body: body.to_vec(),
                sender: sender.to_string(),
                priority: 0,
            };
            if expires == 0 {
                // A new publication that expires at once: nothing to keep.
                return Ok((Answer::new(200, "OK").with("Expires", "0").with("SIP-ETag", etag), None));
            }
            if pkg.name == "dialog" {
                self.drop_same_dialog(&pres_uri, body, now);
            }
            // The database write outside the state lock, so writes of several receivers can
            // share a commit (group commit in the host). No other request can refer to this
            // publication before our reply: its ETag is new.
            if let Some(db) = self.shared_pubs() {
                db.save_publication(&pres_uri, &pkg.name, None, &p)
                    .map_err(|e| self.db_failed(&format!("storing the publication of {pres_uri}"), e))?;
            } else {
                self.store_publication(&pres_uri, &pkg.name, None, &p);
                self.state().presentities.insert(&pres_uri, &pkg.name, p);
            }
            let a = Answer::new(200, "OK").with("Expires", shown_expires(expires).to_string()).with("SIP-ETag", etag);
            return Ok((a, Some((pres_uri, pkg, None))));
        };
        let unknown = || Answer::new(412, "Conditional request failed");
        let old = match self.shared_pubs() {
            Some(db) => db
                .find_publication(&pres_uri, &pkg.name, etag)
                .map_err(|e| self.db_failed(&format!("reading the publication of {pres_uri}"), e))?,
            None => self.state().presentities.find(&pres_uri, &pkg.name, etag),
        };
        let Some(old) = old else { return Err(unknown()) };
        if pkg.name == "dialog"
            && expires != 0
            && crate::dialog_event::first_dialog(&old.body)
                .and_then(|(_, state)| state)
                .is_some_and(|s| s.eq_ignore_ascii_case("terminated"))
        {
            // Kamailio: a dialog that ended stays ended; a late update is acknowledged and ignored.
            tracing::info!("presence: update of a terminated dialog of {pres_uri} skipped");
            let a = Answer::new(200, "OK").with("Expires", shown_expires(expires).to_string()).with("SIP-ETag", etag);
            return Ok((a, None));
        }
        // Each change below is conditional on the old ETag still being there: of two requests
        // naming it (here or on another server sharing the table), one wins, the other gets 412.
        if expires == 0 {
            let removed = match self.shared_pubs() {
                Some(db) => {
                    db.delete_publication(&pres_uri, &pkg.name, etag)
                        .map_err(|e| self.db_failed(&format!("deleting the publication of {pres_uri}"), e))?
                        > 0
                }
                None => {
                    let removed = self.state().presentities.remove(&pres_uri, &pkg.name, etag).is_some();
                    if removed {
                        self.delete_publication(&pres_uri, &pkg.name, etag);
                    }
                    removed
                }
            };
            if !removed {
                return Err(unknown());
            }
            let a = Answer::new(200, "OK").with("Expires", "0").with("SIP-ETag", etag);
            return Ok((a, Some((pres_uri, pkg, Some(old)))));
        }
        let new_etag = if pkg.etag_not_new { etag.to_string() } else { self.etags.make(Some(etag)) };
        let p = Publication {
            etag: new_etag.clone(),
            expires: now + i64::from(expires),
            received_time: now,
            body: if body.is_empty() { old.body.clone() } else { body.to_vec() },
            sender: sender.to_string(),
            priority: old.priority,
        };
        let replaced = match self.shared_pubs() {
            Some(db) => {
                db.save_publication(&pres_uri, &pkg.name, Some(etag), &p)
                    .map_err(|e| self.db_failed(&format!("storing the publication of {pres_uri}"), e))?
                    > 0
            }
            None => {
                // The database write after the lock: the old ETag is gone from memory now, so a
                // request naming it gets 412 whether or not the write has finished, and the new
                // one is known only from our reply, sent after the write.
                let stored = self.stores_publications().then(|| p.clone());
                let replaced = self.state().presentities.replace(&pres_uri, &pkg.name, etag, p);
                if replaced && let Some(p) = stored {
                    self.store_publication(&pres_uri, &pkg.name, Some(etag), &p);
                }
                replaced
            }
        };
        if !replaced {
            return Err(unknown());
        }
        let a = Answer::new(200, "OK").with("Expires", shown_expires(expires).to_string()).with("SIP-ETag", new_etag);
        Ok((a, Some((pres_uri, pkg, None))))
    }

    /// `dialog` event: a new publication about a dialog replaces the stored ones about the same
    /// dialog id (one call's states come from successive new publications, e.g. after a
    /// publisher restart); no NOTIFY of their own, the new publication's follows.
    fn drop_same_dialog(&self, pres_uri: &str, body: &[u8], now: i64) {
        let Some((id, _)) = crate::dialog_event::first_dialog(body) else { return };
        let stale: Vec<String> = self
            .current_publications_received(pres_uri, "dialog", now)
            .into_iter()
            .filter(|p| crate::dialog_event::first_dialog(&p.body).is_some_and(|(other, _)| other == id))
            .map(|p| p.etag)
            .collect();
        for etag in stale {
            match self.shared_pubs() {
                Some(db) => {
                    if let Err(e) = db.delete_publication(pres_uri, "dialog", &etag) {
                        tracing::error!("presence: deleting an older publication of dialog {id}: {e}");
                    }
                }
                None => {
                    if self.state().presentities.remove(pres_uri, "dialog", &etag).is_some() {
                        self.delete_publication(pres_uri, "dialog", &etag);
                    }
                }
            }
        }
    }

    /// Whether publications are written to the database as they change (publ_cache 0 and 1).
    fn stores_publications(&self) -> bool {
        self.storage.is_some() && self.cfg.publ_cache != 2
    }

    fn unsynced(&self) -> MutexGuard<'_, HashMap<(String, String, String), Unsynced>> {
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the unsynced write of (pres_uri, event, etag) off the list: the write at hand
    /// supersedes it.
    fn take_unsynced(&self, pres_uri: &str, event: &str, etag: &str) -> Option<Unsynced> {
        let mut u = self.unsynced();
        if u.is_empty() {
            return None;
        }
        u.remove(&(pres_uri.to_string(), event.to_string(), etag.to_string()))
    }

    fn store_publication(&self, pres_uri: &str, event: &str, old_etag: Option<&str>, p: &Publication) {
        let Some(s) = self.storage.as_ref().filter(|_| self.cfg.publ_cache != 2) else { return };
        // An old version that never reached the database has no row to update.
        let old_in_db = old_etag.filter(|o| !matches!(self.take_unsynced(pres_uri, event, o), Some(Unsynced::Save(_))));
        self.take_unsynced(pres_uri, event, &p.etag);
        let written = s.save_publication(pres_uri, event, old_in_db, p).and_then(|rows| match (rows, old_in_db) {
            // The row to update is not there (gone in the outage): memory is the truth.
            (0, Some(_)) => s.save_publication(pres_uri, event, None, p),
            _ => Ok(rows),
        });
        if let Err(e) = written {
            tracing::error!("presence: storing the publication of {pres_uri}: {e} (written again later)");
            let mut u = self.unsynced();
            if let Some(old) = old_in_db {
                u.insert((pres_uri.to_string(), event.to_string(), old.to_string()), Unsynced::Delete);
            }
            u.insert((pres_uri.to_string(), event.to_string(), p.etag.clone()), Unsynced::Save(p.clone()));
        }
    }

    fn delete_publication(&self, pres_uri: &str, event: &str, etag: &str) {
        let Some(s) = self.storage.as_ref().filter(|_| self.cfg.publ_cache != 2) else { return };
        if let Some(Unsynced::Save(_)) = self.take_unsynced(pres_uri, event, etag) {
            return; // never written: nothing to delete
        }
        if let Err(e) = s.delete_publication(pres_uri, event, etag) {
            tracing::error!("presence: deleting the publication of {pres_uri}: {e} (done again later)");
            self.unsynced().insert((pres_uri.to_string(), event.to_string(), etag.to_string()), Unsynced::Delete);
        }
    }

    /// Replays the publication writes an outage left undone (every 5 s); the ones that fail
    /// again wait for the next pass. Returns how many landed.
    pub fn sync_publications(&self) -> usize {
        let Some(s) = self.storage.as_ref().filter(|_| self.cfg.publ_cache != 2) else { return 0 };
        let todo: Vec<_> = std::mem::take(&mut *self.unsynced()).into_iter().collect();
        if todo.is_empty() {
            return 0;
        }
        let mut landed = 0;
        for ((uri, event, etag), w) in todo {
            let done = match &w {
                Unsynced::Save(p) => s
                    .save_publication(&uri, &event, Some(&etag), p)
                    .and_then(|rows| if rows == 0 { s.save_publication(&uri, &event, None, p) } else { Ok(rows) }),
                Unsynced::Delete => s.delete_publication(&uri, &event, &etag),
            };
            match done {
                Ok(_) => landed += 1,
                Err(e) => {
                    tracing::debug!("presence: publication of {uri} still not written: {e}");
                    // A newer write for the key, made meanwhile, wins over this one.
                    self.unsynced().entry((uri, event, etag)).or_insert(w);
                }
            }
        }
        if landed > 0 {
            tracing::info!("presence: {landed} publication writes held during a database outage are written");
        }
        landed
    }

    // ---------------------------------------------------------------------------------------
    // Bodies

    /// The aggregated document of `pres_uri` (with `removed` in its offline form), or None
    /// when there is no state.
    pub fn presentity_body(&self, pres_uri: &str, pkg: &Package, removed: Option<&Publication>) -> Option<Vec<u8>> {
        let mut pubs = self.current_publications(pres_uri, &pkg.name, now());
        let mut removed_index = None;
        if let Some(r) = removed {
            removed_index = Some(pubs.len());
            pubs.push(r.clone());
        }
        let bodies: Vec<&[u8]> = pubs.iter().map(|p| p.body.as_slice()).collect();
        match &pkg.hooks {
            Some(h) => h.aggregate(pres_uri, &bodies, removed_index).unwrap_or_else(|e| {
                tracing::error!("presence: aggregating {pres_uri} ({}): {e}", pkg.name);
                None
            }),
            None => {
                let last = bodies.len().checked_sub(1)?;
                (removed_index != Some(last)).then(|| bodies[last].to_vec())
            }
        }
    }

    /// What `s` is sent: the package's document for an active watcher, filtered for it.
    fn body_for(&self, s: &Subscription, pkg: &Package, doc: Option<&[u8]>) -> Option<(String, Vec<u8>)> {
        if s.status != status::ACTIVE || s.ended {
            return None;
        }
        if pkg.is_winfo() {
            return Some(("application/watcherinfo+xml".into(), self.winfo_document(s, true)));
        }
        let doc = doc?;
        let body = match (&pkg.hooks, pkg.req_auth) {
            (Some(h), true) => {
                let q = HookRequest {
                    pres_uri: &s.pres_uri,
                    watcher_uri: &s.watcher_uri(),
                    from_domain: &s.from_domain,
                    previous: s.status,
                };
                match h.transform(&q, doc) {
                    Ok(b) => b,
                    Err(e) => {
                        // Showing the unfiltered document could leak what the rules hide.
                        tracing::error!("presence: filtering {} for {}: {e}", s.pres_uri, q.watcher_uri);
                        return None;
                    }
                }
            }
            _ => doc.to_vec(),
        };
        Some((pkg.content_type.clone(), body))
    }

    /// The watcher-info document for winfo subscription `s` (full), bumping its version.
    fn winfo_document(&self, s: &Subscription, full: bool) -> Vec<u8> {
        let base = s.event.strip_suffix(".winfo").unwrap_or("presence").to_string();
        let now = now();
        let mut entries: Vec<winfo::WatcherEntry> = self
            .live_subscriptions(&s.pres_uri, &base, now)
            .iter()
            .map(|w| winfo::WatcherEntry {
                uri: w.watcher_uri(),
                id: w.key.call_id.clone(),
                status: winfo::status_name(w.status),
            })
            .collect();
        for watcher in self.pending_watchers(&s.pres_uri, &base) {
            if !entries.iter().any(|e| e.uri == watcher) {
                entries.push(winfo::WatcherEntry { id: winfo::waiting_id(&watcher), uri: watcher, status: "waiting" });
            }
        }
        let version = self.next_version(s);
        winfo::document(version, full, &s.pres_uri, &base, &entries).into_bytes()
    }

    /// Watchers of (pres_uri, event) whose authorization record says pending.
    fn pending_watchers(&self, pres_uri: &str, event: &str) -> Vec<String> {
        if let Some(db) = self.shared_subs() {
            return db.pending_watchers(pres_uri, event).unwrap_or_else(|e| {
                tracing::error!("presence: reading the watchers of {pres_uri}: {e}");
                Vec::new()
            });
        }
        self.state()
            .watchers
            .iter()
            .filter(|((pres, _, e), a)| pres == pres_uri && e == event && a.status == status::PENDING)
            .map(|((_, w, _), _)| w.clone())
            .collect()
    }

    /// The next watcher-info version of winfo subscription `s` (atomic in the database in
    /// subs_db_mode 3, so servers sharing it never send one version twice).
    fn next_version(&self, s: &Subscription) -> u32 {
        let stored = self.shared_subs().and_then(|db| {
            db.next_version(&s.key).unwrap_or_else(|e| {
                tracing::error!("presence: winfo version of {}: {e}", s.pres_uri);
                None
            })
        });
        let mut st = self.state();
        match st.subscriptions.get_mut(&s.key) {
            Some(sub) => {
                sub.version = stored.unwrap_or(sub.version + 1);
                sub.version
            }
            None => stored.unwrap_or(s.version + 1),
        }
    }

    // ---------------------------------------------------------------------------------------
    // NOTIFY

    /// NOTIFYs the watchers of `pres_uri` after a change (Kamailio's `publ_notify`): active
    /// watchers without a reason whose Contact is not the publisher.
    pub fn notify_presentity(
        self: &Arc<Self>,
        pres_uri: &str,
        pkg: &Arc<Package>,
        removed: Option<Publication>,
        sender: Option<&str>,
    ) {
        let now = now();
        let targets: Vec<Subscription> = self
            .live_subscriptions(pres_uri, &pkg.name, now)
            .into_iter()
            .filter(|s| s.status == status::ACTIVE && s.reason.is_empty())
            .filter(|s| sender.is_none_or(|x| x.is_empty() || !self.same_uri(&s.contact, x)))
            .collect();
        if targets.is_empty() {
            return;
        }
        let doc = self.presentity_body(pres_uri, pkg, removed.as_ref());
        for s in targets {
            let body = self.body_for(&s, pkg, doc.as_deref());
            self.queue(&s, |sub| QueuedNotify { state: subscription_state(sub, now), body, last: false });
        }
    }

    /// Queues a NOTIFY for subscription `sub` (built from it under the lock) and sends the
    /// next one if none is out. In subs_db_mode 3, `sub` is what the database said: it is
    /// taken into memory, where its NOTIFYs wait their turn.
    pub fn queue(self: &Arc<Self>, sub: &Subscription, make: impl FnOnce(&mut Subscription) -> QueuedNotify) {
        {
            let mut st = self.state();
            if self.shared_subs().is_some() {
                st.subscriptions.adopt(sub, now());
            }
            let Some(s) = st.subscriptions.get_mut(&sub.key) else { return };
            let n = make(s);
            s.push(n);
        }
        self.pump(&sub.key);
    }

    /// Sends the next queued NOTIFY of `key` unless one is out.
    fn pump(self: &Arc<Self>, key: &DialogKey) {
        let (mut request, last) = {
            let mut st = self.state();
            let Some(s) = st.subscriptions.get_mut(key) else { return };
            if s.in_flight {
                return;
            }
            let Some(n) = s.queue.pop_front() else { return };
            s.in_flight = true;
            s.local_cseq += 1;
            let mut event = s.event.clone();
            if !s.event_id.is_empty() {
                event = format!("{event};id={}", s.event_id);
            }
            let (content_type, body) = n.body.unwrap_or_default();
            let request = Request {
                method: "NOTIFY".into(),
                ruri: s.contact.clone(),
                from: format!("<{}>", s.to_uri),
                from_tag: s.key.to_tag.clone(),
                to: format!("<{}>", s.from_uri),
                to_tag: s.key.from_tag.clone(),
                call_id: s.key.call_id.clone(),
                cseq: s.local_cseq,
                route_set: s.record_route.clone(),
                contact: s.local_contact.clone(),
                extra_headers: format!("Event: {event}\r\nSubscription-State: {}\r\n", n.state),
                content_type,
                body,
                outbound_proxy: String::new(),
            };
            if self.cfg.subs_db_mode == 2 {
                st.dirty.insert(key.clone());
            }
            (request, n.last)
        };
        if let Some(db) = self.shared_subs() {
            // The CSeq from the shared row: another server may have notified this dialog too.
            // A row already gone (a purge of ended rows) leaves the local count.
            match db.next_cseq(key) {
                Ok(Some(cseq)) => {
                    request.cseq = cseq;
                    if let Some(s) = self.state().subscriptions.get_mut(key) {
                        s.local_cseq = cseq;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!("presence: NOTIFY CSeq of {}: {e}", request.ruri),
            }
        }
        let me = self.clone();
        let k = key.clone();
        let sent = self.host.send_request(&request, move |reply| me.on_notify_reply(&k, reply.code, last));
        if let Err(e) = sent {
            tracing::warn!("presence: NOTIFY to {} not sent: {e}", request.ruri);
            self.on_notify_reply(key, 503, last);
        }
    }

    fn on_notify_reply(self: &Arc<Self>, key: &DialogKey, code: u16, last: bool) {
        // The stored NOTIFY CSeq only has to stay within cseq_restore_margin of the real one
        // (a restart adds the margin), so it is written every margin/2 NOTIFYs, not each time.
        let every = (self.cfg.cseq_restore_margin / 2).max(1);
        let (remove, persist) = {
            let mut st = self.state();
            let Some(s) = st.subscriptions.get_mut(key) else { return };
            s.in_flight = false;
            let gone = code == 481 || code == 404 || (code == 408 && self.cfg.timeout_rm_subs && !last);
            if gone {
                tracing::info!("presence: NOTIFY to {} answered {code}: subscription removed", s.contact);
                s.ended = true;
                s.queue.clear();
            }
            // subs_db_mode 3 counts CSeqs in the database already.
            ((gone || last) && s.queue.is_empty(), self.cfg.subs_db_mode != 3 && s.local_cseq % every == 0)
        };
        if remove {
            self.remove_subscription(key);
        } else {
            if persist {
                self.save_subscription(key);
            }
            self.pump(key);
        }
    }

    // ---------------------------------------------------------------------------------------
    // SUBSCRIBE

    /// `handle_subscribe([watcher_uri])`: replies, stores and notifies. Returns 1 or -1.
    pub fn handle_subscribe(self: &Arc<Self>, ctx: &RequestContext<'_>, watcher: Option<&str>) -> i32 {
        let Some(msg) = ctx.message() else { return -1 };
        match self.subscribe(ctx, &msg, watcher) {
            Ok((answer, key, pkg, changed)) => {
                self.send_answer(ctx, &answer);
                if self.cfg.send_fast_notify {
                    self.notify_subscriber(&key, &pkg);
                }
                if changed && !pkg.is_winfo() {
                    self.notify_winfo(&key, &pkg);
                }
                1
            }
            Err(answer) => {
                self.send_answer(ctx, &answer);
                -1
            }
        }
    }

    fn local_contact(&self, peer: &Peer) -> String {
        if let Some(a) = &self.cfg.server_address {
            return a.clone();
        }
        let (t, suffix) = match peer.transport {
            Transport::Tcp => (Transport::Tcp, ";transport=tcp"),
            _ => (Transport::Udp, ""),
        };
        match self.host.local_address(t) {
            Some(a) => format!("sip:{a}{suffix}"),
            None => format!("sip:{}:{}", peer.ip, peer.port),
        }
    }

    /// Decides the reply to a SUBSCRIBE and stores the subscription. On success: the reply,
    /// the dialog, the package, and whether the watcher's status is new or changed.
    fn subscribe(
        &self,
        ctx: &RequestContext<'_>,
        msg: &Message<'_>,
        watcher: Option<&str>,
    ) -> Result<(Answer, DialogKey, Arc<Package>, bool), Answer> {
        let pkg = self.lookup_event(msg)?;
        let mut expires = self.expires(msg, &pkg)?;
        if expires > 0 && expires < self.cfg.min_expires {
            if self.cfg.min_expires_action == 1 {
                return Err(
                    Answer::new(423, "Interval Too Brief").with("Min-Expires", self.cfg.min_expires.to_string())
                );
            }
            expires = self.cfg.min_expires;
        }
        let bad = || Answer::new(400, "Bad request");
        let (Ok(from), Ok(to), Ok(call_id), Ok(cseq)) = (msg.from(), msg.to(), msg.call_id(), msg.cseq()) else {
            return Err(bad());
        };
        let from_tag = from.tag().ok_or_else(bad)?.to_string();
        let contact = match msg.contacts().next() {
            Some(Ok(Contact::Address(a))) => Some(a.uri_str().to_string()),
            Some(Ok(Contact::Star)) | Some(Err(_)) => return Err(bad()),
            None => None,
        };
        let now = now();
        let ok = |expires: u32, local_contact: &str| {
            let code = if self.cfg.subs_respond_200 || pkg.is_winfo() { 200 } else { 202 };
            Answer::new(code, "OK").with("Expires", expires.to_string()).with("Contact", format!("<{local_contact}>"))
        };

        if let Some(tag) = to.tag() {
            // In-dialog: refresh or unsubscribe.
            let key = DialogKey { call_id: call_id.to_string(), to_tag: tag.to_string(), from_tag };
            if let Some(db) = self.shared_subs() {
                let row = db.subscription(&key).map_err(|e| self.db_failed("reading a subscription", e))?;
                let row = row.ok_or_else(|| Answer::new(481, "Subscription does not exist"))?;
                self.state().subscriptions.adopt(&row, now);
            }
            let mut st = self.state();
            let Some(s) = st.subscriptions.get_mut(&key).filter(|s| !s.ended) else {
                return Err(Answer::new(481, "Subscription does not exist"));
            };
            if cseq.number <= s.remote_cseq {
                return Err(Answer::new(500, "Server Internal Error"));
            }
            s.remote_cseq = cseq.number;
            s.expires = now + i64::from(expires);
            if let Some(c) = contact {
                s.contact = c;
            }
            if expires == 0 {
                s.ended = true;
            }
            let answer = ok(expires, &s.local_contact.clone());
            drop(st);
            self.save_subscription(&key);
            return Ok((answer, key, pkg, expires == 0));
        }

        // A new subscription.
        let contact = contact.ok_or_else(|| Answer::new(400, "Missing Contact"))?;
        let to_tag = ctx.to_tag().ok_or_else(bad)?;
        let (to_user, to_domain) = user_host(to.uri_str()).ok_or_else(bad)?;
        let (from_user, from_domain) = user_host(from.uri_str()).ok_or_else(bad)?;
        let pres = if pkg.name == "dialog;sla" {
            user_host(&contact).map(|(u, _)| (u, from_domain.clone()))
        } else {
            msg.request_uri_str().and_then(user_host)
        };
        let (pres_user, pres_domain) = pres.ok_or_else(bad)?;
        let pres_uri = pres_key(&self.cfg, &pres_user, &pres_domain);
        let (watcher_user, watcher_domain) = match watcher {
            Some(w) => user_host(w).ok_or_else(bad)?,
            None => (from_user.clone(), from_domain.clone()),
        };
        let watcher_uri = format!("sip:{watcher_user}@{watcher_domain}");
        if pkg.is_winfo() && watcher_uri != pres_uri {
            // Watcher-info tells who watches: only the presentity itself may see it.
            return Err(Answer::new(403, "Forbidden"));
        }
        let (status, reason, decision) = if pkg.req_auth {
            self.authorize(&pkg, &pres_uri, &watcher_uri, &from_domain)
        } else {
            (status::ACTIVE, String::new(), None)
        };
        let local_contact = self.local_contact(&ctx.peer());
        let s = Subscription {
            key: DialogKey { call_id: call_id.to_string(), to_tag, from_tag },
            pres_uri,
            event: pkg.name.clone(),
            event_id: msg.event().ok().flatten().and_then(|e| e.id()).unwrap_or("").to_string(),
            to_uri: to.uri_str().to_string(),
            from_uri: from.uri_str().to_string(),
            to_user,
            to_domain,
            from_user,
            from_domain,
            watcher_user,
            watcher_domain,
            local_cseq: 0,
            remote_cseq: cseq.number,
            contact,
            record_route: msg
                .record_routes()
                .filter_map(|r| r.ok())
                .map(|r| r.uri_str().to_string())
                .map(|u| format!("<{u}>"))
                .collect(),
            expires: now + i64::from(expires),
            status,
            reason,
            version: 0,
            socket_info: format!("{}:{}:{}", ctx.peer().transport.as_str(), ctx.peer().ip, ctx.peer().port),
            local_contact: local_contact.clone(),
            user_agent: msg
                .headers_named("User-Agent")
                .next()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
            flags: 0,
            queue: Default::default(),
            in_flight: false,
            ended: expires == 0 || status == status::TERMINATED,
            touched: now,
        };
        let key = s.key.clone();
        let decided = decision.as_ref().map(|a| (watcher_uri.as_str(), a));
        if let Some(a) = &decision {
            self.remember(&s.pres_uri, &watcher_uri, &pkg.name, a);
        }
        match (self.cfg.subs_db_mode, &self.storage) {
            // The watcher's decision and the subscription in one commit.
            (1 | 3, Some(db)) => {
                let stored = db.save_new_subscription(&s, decided);
                if self.cfg.subs_db_mode == 3 {
                    stored.map_err(|e| self.db_failed("storing a subscription", e))?;
                } else if let Err(e) = stored {
                    tracing::error!("presence: storing the subscription of {watcher_uri}: {e}");
                }
                self.state().subscriptions.insert(s);
            }
            _ => {
                if let Some((w, a)) = decided {
                    self.store_decision(&s.pres_uri, w, &pkg.name, a);
                }
                self.state().subscriptions.insert(s);
                self.save_subscription(&key);
            }
        }
        if self.cfg.delete_same_subs {
            let pres_uri = pres_uri_of(&self.state(), &key);
            self.delete_same_subs(&key, &pres_uri, &pkg.name);
        }
        Ok((ok(expires, &local_contact), key, pkg, true))
    }

    /// delete_same_subs: the other subscriptions of (pres_uri, event) with `key`'s Call-ID go,
    /// without a NOTIFY (a phone that re-subscribed in a new dialog has left the old one).
    fn delete_same_subs(&self, key: &DialogKey, pres_uri: &str, event: &str) {
        if let Some(db) = self.shared_subs()
            && let Err(e) = db.delete_same_call_id(key, pres_uri, event)
        {
            tracing::error!("presence: deleting older subscriptions of {pres_uri}: {e}");
        }
        let old: Vec<DialogKey> = self
            .state()
            .subscriptions
            .keys_for(pres_uri, event)
            .into_iter()
            .filter(|k| k.call_id == key.call_id && k != key)
            .collect();
        for k in old {
            tracing::info!(
                "presence: subscription {}/{} replaced by a new dialog with its Call-ID",
                k.call_id,
                k.to_tag
            );
            self.remove_subscription(&k);
        }
    }

    /// The status of a new watcher: its stored authorization, else the package's hook. A new
    /// decision is returned too, for the caller to store (Kamailio's `watchers` table) with
    /// the subscription.
    fn authorize(
        &self,
        pkg: &Package,
        pres_uri: &str,
        watcher_uri: &str,
        from_domain: &str,
    ) -> (i32, String, Option<Authorization>) {
        let stored = self.stored_authorization(pres_uri, watcher_uri, &pkg.name);
        match stored {
            Some(a) if a.status != status::PENDING => (a.status, a.reason, None),
            _ => {
                let a = self.judge(pkg, pres_uri, watcher_uri, from_domain, stored.map_or(0, |a| a.status));
                (a.status, a.reason.clone(), Some(a))
            }
        }
    }

    /// The stored decision about a watcher: the `watchers` table in subs_db_mode 3 (shared
    /// with other servers), memory otherwise.
    fn stored_authorization(&self, pres_uri: &str, watcher_uri: &str, event: &str) -> Option<Authorization> {
        match self.shared_subs() {
            Some(db) => db.watcher(pres_uri, watcher_uri, event).unwrap_or_else(|e| {
                tracing::error!("presence: reading the watcher {watcher_uri}: {e}");
                None
            }),
            None => {
                self.state().watchers.get(&(pres_uri.to_string(), watcher_uri.to_string(), event.to_string())).cloned()
            }
        }
    }

    /// Asks the package's AUTHORIZE hook about a watcher and stores the answer (Kamailio's
    /// `watchers` row). Polite-block is kept as Kamailio keeps it: active, reason
    /// `polite-block`. A failing hook leaves the watcher pending.
    fn decide(
        &self,
        pkg: &Package,
        pres_uri: &str,
        watcher_uri: &str,
        from_domain: &str,
        previous: i32,
    ) -> (i32, String) {
        let a = self.judge(pkg, pres_uri, watcher_uri, from_domain, previous);
        self.store_decision(pres_uri, watcher_uri, &pkg.name, &a);
        self.remember(pres_uri, watcher_uri, &pkg.name, &a);
        (a.status, a.reason)
    }

    /// Writes a decision to the `watchers` table (every subs_db_mode but 0).
    fn store_decision(&self, pres_uri: &str, watcher_uri: &str, event: &str, a: &Authorization) {
        if let Some(s) = &self.storage
            && self.cfg.subs_db_mode != 0
            && let Err(e) = s.save_watcher(pres_uri, watcher_uri, event, a)
        {
            tracing::error!("presence: storing the watcher {watcher_uri}: {e}");
        }
    }

    /// Keeps a decision in memory (not in subs_db_mode 3, where the table is read).
    fn remember(&self, pres_uri: &str, watcher_uri: &str, event: &str, a: &Authorization) {
        if self.shared_subs().is_none() {
            self.state().watchers.insert((pres_uri.to_string(), watcher_uri.to_string(), event.to_string()), a.clone());
        }
    }

    /// The package's decision about a watcher, not stored.
    fn judge(
        &self,
        pkg: &Package,
        pres_uri: &str,
        watcher_uri: &str,
        from_domain: &str,
        previous: i32,
    ) -> Authorization {
        let q = HookRequest { pres_uri, watcher_uri, from_domain, previous };
        let (st, reason) = match &pkg.hooks {
            Some(h) => h.authorize(&q).unwrap_or_else(|e| {
                tracing::error!("presence: authorizing {watcher_uri} for {pres_uri}: {e}");
                (status::PENDING, String::new())
            }),
            None => (status::ACTIVE, String::new()),
        };
        let (st, reason) =
            if st == status::POLITE_BLOCK { (status::ACTIVE, "polite-block".to_string()) } else { (st, reason) };
        Authorization { status: st, reason, inserted_time: now() }
    }

    /// Queues the NOTIFY with the current state for subscription `key`.
    pub fn notify_subscriber(self: &Arc<Self>, key: &DialogKey, pkg: &Arc<Package>) {
        let Some(s) = self.state().subscriptions.get(key).cloned() else { return };
        let now = now();
        let body = if s.status == status::ACTIVE && !s.ended {
            if pkg.is_winfo() {
                self.body_for(&s, pkg, None)
            } else {
                let doc = self.presentity_body(&s.pres_uri, pkg, None);
                self.body_for(&s, pkg, doc.as_deref())
            }
        } else {
            None
        };
        let last = s.ended || s.status == status::TERMINATED;
        self.queue(&s, |sub| QueuedNotify { state: subscription_state(sub, now), body, last });
    }

    /// A partial watcher-info NOTIFY about subscription `key` to the winfo watchers of its
    /// presentity.
    fn notify_winfo(self: &Arc<Self>, key: &DialogKey, pkg: &Package) {
        let Some(winfo_pkg) = self.package(&pkg.peer_name()).filter(|p| p.is_winfo()) else { return };
        let now = now();
        let (watcher, pres_uri) = {
            let st = self.state();
            let Some(s) = st.subscriptions.get(key) else { return };
            let w = winfo::WatcherEntry {
                uri: s.watcher_uri(),
                id: s.key.call_id.clone(),
                status: if s.ended { "terminated" } else { winfo::status_name(s.status) },
            };
            (w, s.pres_uri.clone())
        };
        let targets: Vec<Subscription> = self
            .live_subscriptions(&pres_uri, &winfo_pkg.name, now)
            .into_iter()
            .filter(|w| w.status == status::ACTIVE)
            .collect();
        for t in targets {
            let watcher = watcher.clone();
            let ctype = winfo_pkg.content_type.clone();
            // subs_db_mode 3 takes the version from the shared row, outside the lock.
            let stored = self.shared_subs().and_then(|db| db.next_version(&t.key).ok().flatten());
            self.queue(&t, move |sub| {
                sub.version = stored.unwrap_or(sub.version + 1);
                let doc = winfo::document(sub.version, false, &sub.pres_uri, &pkg.name, &[watcher]);
                QueuedNotify { state: subscription_state(sub, now), body: Some((ctype, doc.into_bytes())), last: false }
            });
        }
    }

    // ---------------------------------------------------------------------------------------
    // Authorization changes, expiry

    /// `pres_refresh_watchers` type 0: re-authorizes every watcher of (pres_uri, event) and
    /// notifies the ones whose status changed; type 1: re-sends the current state to all.
    pub fn refresh_watchers(self: &Arc<Self>, pres_uri: &str, event: &str, kind_: i32) -> i32 {
        let Some(pkg) = self.package(event) else { return -1 };
        let pres_uri = &*self.api_uri(pres_uri);
        let now = now();
        let subs = self.live_subscriptions(pres_uri, &pkg.name, now);
        if self.shared_subs().is_some() {
            // The copies the steps below read and change (they go when idle).
            let mut st = self.state();
            for s in &subs {
                st.subscriptions.adopt(s, now);
            }
        }
        let keys: Vec<DialogKey> = subs.into_iter().map(|s| s.key).collect();
        if kind_ == 0 && pkg.req_auth {
            // Forget stored decisions, so the rules decide again.
            match self.shared_subs() {
                Some(db) => {
                    if let Err(e) = db.delete_watchers_of(pres_uri, &pkg.name) {
                        tracing::error!("presence: forgetting the watchers of {pres_uri}: {e}");
                    }
                }
                None => self.state().watchers.retain(|(p, _, e), _| !(p == pres_uri && e == &pkg.name)),
            }
            for k in &keys {
                let Some(s) = self.state().subscriptions.get(k).cloned() else { continue };
                let previous = if s.reason == "polite-block" { status::POLITE_BLOCK } else { s.status };
                let (st, reason) = self.decide(&pkg, pres_uri, &s.watcher_uri(), &s.from_domain, previous);
                let changed = {
                    let mut g = self.state();
                    let Some(sub) = g.subscriptions.get_mut(k) else { continue };
                    let changed = sub.status != st || sub.reason != reason;
                    sub.status = st;
                    sub.reason = reason;
                    if st == status::TERMINATED {
                        sub.ended = true;
                    }
                    changed
                };
                if changed {
                    self.save_subscription(k);
                    self.notify_subscriber(k, &pkg);
                    self.notify_winfo(k, &pkg);
                }
            }
            return 1;
        }
        for k in &keys {
            self.notify_subscriber(k, &pkg);
        }
        1
    }

    /// The clean_period pass: expired publications go (their watchers are told, unless
    /// force_delete), expired subscriptions get their final NOTIFY, pending authorization
    /// records older than a day go.
    pub fn clean(self: &Arc<Self>) {
        let now = now();
        for (uri, event, p) in self.take_expired_publications(now) {
            if !self.cfg.force_delete
                && let Some(pkg) = self.package(&event)
            {
                self.notify_presentity(&uri, &pkg, Some(p), None);
            }
        }
        for k in self.take_expired_subscriptions(now) {
            let pkg = {
                let mut st = self.state();
                let Some(s) = st.subscriptions.get_mut(&k) else { continue };
                s.ended = true;
                s.event.clone()
            };
            match self.package(&pkg) {
                Some(p) => {
                    self.notify_subscriber(&k, &p);
                    self.notify_winfo(&k, &p);
                }
                None => self.remove_subscription(&k),
            }
        }
        let day_ago = now - 86_400;
        if let Some(db) = self.shared_subs()
            && let Err(e) = db.purge_pending_watchers(day_ago)
        {
            tracing::error!("presence: purging pending watchers: {e}");
        }
        let old: Vec<(String, String, String)> = self
            .state()
            .watchers
            .iter()
            .filter(|(_, a)| a.status == status::PENDING && a.inserted_time < day_ago)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.state().watchers.remove(&k);
            if let Some(s) = &self.storage
                && let Err(e) = s.delete_watcher(&k.0, &k.1, &k.2)
            {
                tracing::error!("presence: purging the watcher {}: {e}", k.1);
            }
        }
    }

    /// Removes the publications expired at `now` and returns them. With publ_cache 0 each is
    /// taken by deleting its row: of the servers sharing the table, the one whose delete
    /// removed it notifies.
    fn take_expired_publications(&self, now: i64) -> Vec<(String, String, Publication)> {
        let Some(db) = self.shared_pubs() else {
            let expired = self.state().presentities.expired(now);
            let mut out = Vec::with_capacity(expired.len());
            for (uri, event, etag) in expired {
                let removed = self.state().presentities.remove(&uri, &event, &etag);
                self.delete_publication(&uri, &event, &etag);
                if let Some(p) = removed {
                    out.push((uri, event, p));
                }
            }
            return out;
        };
        let expired = db.expired_publications(now).unwrap_or_else(|e| {
            tracing::error!("presence: reading expired publications: {e}");
            Vec::new()
        });
        expired
            .into_iter()
            .filter(|(uri, event, p)| db.delete_publication(uri, event, &p.etag).is_ok_and(|n| n > 0))
            .collect()
    }

    /// Dialogs of the subscriptions expired at `now`, in memory for their last NOTIFY. In
    /// subs_db_mode 3 each is claimed in the shared table (one server sends the NOTIFY), and
    /// ended rows a stopped server left behind at the previous pass are deleted.
    fn take_expired_subscriptions(&self, now: i64) -> Vec<DialogKey> {
        let Some(db) = self.shared_subs() else { return self.state().subscriptions.expired(now) };
        let seen = std::mem::take(&mut self.state().ended_seen);
        for k in &seen {
            if let Err(e) = db.delete_ended(k) {
                tracing::error!("presence: deleting an ended subscription: {e}");
            }
        }
        match db.ended_subscriptions() {
            Ok(ended) => self.state().ended_seen = ended,
            Err(e) => tracing::error!("presence: reading ended subscriptions: {e}"),
        }
        let expired = db.expired_subscriptions(now).unwrap_or_else(|e| {
            tracing::error!("presence: reading expired subscriptions: {e}");
            Vec::new()
        });
        let mut out = Vec::new();
        for k in expired {
            if !db.claim_expired(&k, now).unwrap_or(false) {
                continue;
            }
            if let Ok(Some(s)) = db.subscription(&k) {
                self.state().subscriptions.adopt(&s, now);
                out.push(k);
            }
        }
        out
    }

    /// subs_db_mode 3: drops in-memory copies of subscriptions with nothing to send that
    /// were not read for two seconds (the database holds them).
    pub fn evict_idle(&self) {
        let gone = self.state().subscriptions.evict_idle(now() - 2);
        if gone > 0 {
            tracing::trace!("presence: {gone} idle subscription copies dropped");
        }
    }

    // ---------------------------------------------------------------------------------------
    // Subscription storage

    fn save_subscription(&self, key: &DialogKey) {
        match self.cfg.subs_db_mode {
            1 => {
                let Some(s) = self.state().subscriptions.get(key).cloned() else { return };
                if let Some(db) = &self.storage
                    && let Err(e) = db.save_subscription(&s)
                {
                    tracing::error!("presence: storing the subscription of {}: {e}", s.watcher_uri());
                }
            }
            2 => {
                self.state().dirty.insert(key.clone());
            }
            3 => {
                let Some(s) = self.state().subscriptions.get(key).cloned() else { return };
                if let Some(db) = &self.storage
                    && let Err(e) = db.update_subscription(&s)
                {
                    tracing::error!("presence: storing the subscription of {}: {e}", s.watcher_uri());
                }
            }
            _ => {}
        }
    }

    fn remove_subscription(&self, key: &DialogKey) {
        let Some(s) = self.state().subscriptions.remove(key) else { return };
        match self.cfg.subs_db_mode {
            1 | 3 => {
                if let Some(db) = &self.storage
                    && let Err(e) = db.delete_subscription(&s.key)
                {
                    tracing::error!("presence: deleting the subscription of {}: {e}", s.watcher_uri());
                }
            }
            2 => {
                let mut st = self.state();
                st.dirty.remove(key);
                st.removed.push(key.clone());
            }
            _ => {}
        }
    }

    /// subs_db_mode 2: writes the changed subscriptions and deletes the removed ones.
    pub fn write_back(&self) {
        let Some(db) = &self.storage else { return };
        let (changed, removed) = {
            let mut st = self.state();
            let dirty: Vec<DialogKey> = st.dirty.drain().collect();
            let changed: Vec<Subscription> =
                dirty.iter().filter_map(|k| st.subscriptions.get(k)).filter(|s| !s.ended).cloned().collect();
            (changed, std::mem::take(&mut st.removed))
        };
        if changed.is_empty() && removed.is_empty() {
            return;
        }
        if let Err(e) = db.write_back(&changed, &removed) {
            tracing::error!("presence: write-back of {} subscriptions: {e}", changed.len());
            let mut st = self.state();
            st.dirty.extend(changed.into_iter().map(|s| s.key));
            st.removed.extend(removed);
        }
    }

    /// True when `pres_uri` has live watchers of `event`.
    pub fn has_subscribers(&self, pres_uri: &str, event: &str) -> bool {
        let pres_uri = &*self.api_uri(pres_uri);
        match self.shared_subs() {
            Some(db) => db.has_subscriptions(pres_uri, event, now()).unwrap_or_else(|e| {
                tracing::error!("presence: reading the watchers of {pres_uri}: {e}");
                false
            }),
            None => self.state().subscriptions.live_for(pres_uri, event, now()).next().is_some(),
        }
    }

    /// The status `watcher_uri` has for `pres_uri` (`pres_auth_status`): from the stored
    /// decision, else the `presence` package's rules.
    pub fn auth_status(&self, watcher_uri: &str, pres_uri: &str) -> i32 {
        let Some(pkg) = self.package("presence") else { return -1 };
        let pres_uri = &*self.api_uri(pres_uri);
        if let Some(a) = self.stored_authorization(pres_uri, watcher_uri, &pkg.name) {
            return if a.reason == "polite-block" { status::POLITE_BLOCK } else { a.status };
        }
        let from_domain = user_host(watcher_uri).map(|(_, d)| d).unwrap_or_default();
        let q = HookRequest { pres_uri, watcher_uri, from_domain: &from_domain, previous: 0 };
        match &pkg.hooks {
            Some(h) if pkg.req_auth => h.authorize(&q).map_or(-1, |(s, _)| s),
            _ => status::ACTIVE,
        }
    }
}
