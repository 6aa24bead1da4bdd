//! The `dialog` module (Kamailio's dialog): `dlg_manage()` on an initial INVITE creates a
//! dialog; the replies of the transaction the relay creates for it (the host's
//! `on_relay_reply`) make it early, confirmed or failed; `dlg_manage()` on in-dialog requests
//! (ACK, BYE, re-INVITE, ... from either side, matched by Call-ID and tags) confirms or ends
//! it; a timer expires confirmed dialogs after `default_timeout`. Other modules follow dialogs
//! through the `dialog` API (`plugin_api::api::dialog`); operators through `dlg.*` RPCs.
//!
//! With `db_mode` 1 to 3 confirmed dialogs are kept in Kamailio's `dialog` table
//! ([`persist`]) and read back at start-up; modules rebuild their per-dialog state from the
//! API's `LOADED` callback.

pub mod persist;
pub mod store;

use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugin_api::api::dialog::{self as api, DialogService, FfiDialog, FfiDlgCallback, cb};
use plugin_api::metrics::{Counter, Gauge};
use plugin_api::prelude::*;
use serde_json::json;

use persist::{Storage, db_mode};
use store::{Dialog, Dialogs, Event, Id, NewDialog};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byes_go_both_ways_with_the_route_sets() {
        let d = Dialog {
            h_entry: 1,
            h_id: 1,
            call_id: "c1".into(),
            from_uri: "sip:alice@a.test".into(),
            from_tag: "ft".into(),
            to_uri: "sip:bob@b.test".into(),
            to_tag: "tt".into(),
            req_uri: "sip:bob@b.test".into(),
            caller_contact: "sip:alice@192.0.2.1".into(),
            callee_contact: "sip:bob@192.0.2.2".into(),
            caller_cseq: 10,
            callee_cseq: 0,
            caller_route_set: "<sip:up1;lr>,<sip:up2;lr>".into(),
            callee_route_set: "<sip:down2;lr>,<sip:down1;lr>,<sip:me;lr>,<sip:up1;lr>,<sip:up2;lr>".into(),
            caller_socket: String::new(),
            state: 4,
            init_ts: 0,
            start_ts: 0,
            lifetime: 60,
            timeout: 60,
        };
        let [callee, caller] = byes(&d, |u| u == "sip:me;lr");
        assert_eq!((callee.ruri.as_str(), callee.cseq), ("sip:bob@192.0.2.2", 11));
        assert_eq!((callee.from_tag.as_str(), callee.to_tag.as_str()), ("ft", "tt"));
        assert_eq!(callee.route_set, ["<sip:down1;lr>", "<sip:down2;lr>"]);
        assert_eq!((caller.ruri.as_str(), caller.cseq), ("sip:alice@192.0.2.1", 1));
        assert_eq!((caller.from.as_str(), caller.from_tag.as_str()), ("<sip:bob@b.test>", "tt"));
        assert_eq!((caller.to.as_str(), caller.to_tag.as_str()), ("<sip:alice@a.test>", "ft"));
        assert_eq!(caller.route_set, ["<sip:up1;lr>", "<sip:up2;lr>"]);
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Kamailio's dialog statistics (`enable_stats`).
struct Stats {
    processed: Counter,
    expired: Counter,
    failed: Counter,
    active: Gauge,
    early: Gauge,
}

/// The module's state, shared by the route functions, the relay callbacks, the timer, the
/// RPCs and the API.
pub struct State {
    dialogs: Mutex<Dialogs>,
    callbacks: RwLock<Vec<(i32, FfiDlgCallback)>>,
    default_timeout: u32,
    stats: Option<Stats>,
    /// The `dialog` table, with db_mode 1 to 3.
    storage: Option<Storage>,
    db_mode: i64,
    /// Held from taking changes until they are written, so writes reach the database in the
    /// order the changes happened (an ACK's rewrite never lands after its BYE's delete).
    writer: Mutex<()>,
}

impl State {
    fn new(default_timeout: u32) -> Self {
        Self {
            dialogs: Mutex::new(Dialogs::new()),
            callbacks: RwLock::new(Vec::new()),
            default_timeout,
            stats: None,
            storage: None,
            db_mode: db_mode::NONE,
            writer: Mutex::new(()),
        }
    }

    /// Runs `f` on the table under the lock and refreshes the gauges; in db_mode 1 writes what
    /// changed before returning.
    fn apply<T>(&self, f: impl FnOnce(&mut Dialogs) -> T) -> T {
        let mut t = self.dialogs.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut t);
        if let Some(s) = &self.stats {
            let c = t.counts();
            s.active.set(i64::try_from(c.confirmed + c.confirmed_na).unwrap_or(i64::MAX));
            s.early.set(i64::try_from(c.early).unwrap_or(i64::MAX));
        }
        let dirty = self.db_mode == db_mode::REALTIME && t.has_changes();
        drop(t);
        if dirty {
            self.flush();
        }
        out
    }

    /// Writes the changes since the last flush (db_mode 1 and 2). A failed write is logged;
    /// the dialogs stay in memory (Kamailio does the same).
    fn flush(&self) {
        let Some(storage) = &self.storage else { return };
        let _order = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let changes = self.dialogs.lock().unwrap_or_else(|p| p.into_inner()).take_changes();
        if !changes.is_empty()
            && let Err(e) = storage.write(&changes)
        {
            tracing::error!("dialog: writing {} dialogs: {e}", changes.writes.len() + changes.deletes.len());
        }
    }

    /// At shutdown: db_mode 2 writes what is pending, db_mode 3 replaces the table with every
    /// confirmed dialog.
    fn shutdown(&self) {
        let Some(storage) = &self.storage else { return };
        match self.db_mode {
            db_mode::DELAYED => self.flush(),
            db_mode::SHUTDOWN => {
                let _order = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                let all = self.dialogs.lock().unwrap_or_else(|p| p.into_inner()).confirmed();
                match storage.replace_all(&all) {
                    Ok(()) => tracing::info!("dialog: {} dialogs written to the database", all.len()),
                    Err(e) => tracing::error!("dialog: writing {} dialogs at shutdown: {e}", all.len()),
                }
            }
            _ => {}
        }
    }

    /// Counts and runs the callbacks of `events` (with the lock released).
    fn run(&self, events: Vec<Event>, msg: Option<&Message<'_>>) {
        for e in events {
            if let Some(s) = &self.stats {
                match e.kind {
                    cb::CREATED => s.processed.inc(),
                    cb::FAILED => s.failed.inc(),
                    cb::EXPIRED => s.expired.inc(),
                    _ => {}
                }
            }
            tracing::debug!(call_id = %e.dialog.call_id, state = e.dialog.state, "dialog event {:#x}", e.kind);
            let callbacks = self.callbacks.read().unwrap_or_else(|p| p.into_inner());
            for (types, callback) in callbacks.iter() {
                if types & e.kind != 0 {
                    callback.call_with(e.kind, e.direction, &e.dialog, msg);
                }
            }
        }
    }

    fn expire(&self) {
        let events = self.apply(|t| t.expire(now()));
        self.run(events, None);
    }
}

/// Follows the relayed INVITE of dialog `id`. Dropped without a final reply (the INVITE was
/// not relayed), the dialog fails.
struct Watch {
    state: &'static State,
    id: Id,
    done: bool,
}

impl Watch {
    fn on_reply(&mut self, reply: Reply<'_>) {
        if self.done {
            return;
        }
        if reply.code >= 200 {
            self.done = true;
        }
        let m = reply.message;
        let to_tag = m.as_ref().and_then(|m| m.to().ok()).and_then(|t| t.tag());
        if reply.code < 200 && to_tag.is_none_or(str::is_empty) {
            return; // a 100 Trying (or a 1xx without To-tag) changes nothing: no copies made
        }
        let contact = m.as_ref().and_then(first_contact);
        let route_set = m.as_ref().map(record_route_set).filter(|r| !r.is_empty());
        let events =
            self.state.apply(|t| t.reply(now(), self.id, reply.code, to_tag, contact.as_deref(), route_set.as_deref()));
        self.state.run(events, m.as_ref());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            let events = self.state.apply(|t| t.not_relayed(self.id));
            self.state.run(events, None);
        }
    }
}

fn first_contact(m: &Message<'_>) -> Option<String> {
    m.contacts().find_map(|c| match c {
        Ok(plugin_api::sip::sip_message::headers::Contact::Address(a)) => Some(a.uri_str().to_string()),
        _ => None,
    })
}

fn record_route_set(m: &Message<'_>) -> String {
    m.headers(plugin_api::sip::HeaderName::RECORD_ROUTE)
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One dialog as Kamailio's `internal_rpc_print_dlg` writes it.
pub fn dialog_json(d: &Dialog) -> Value {
    json!({
        "h_entry": d.h_entry,
        "h_id": d.h_id,
        "call-id": d.call_id,
        "from_uri": d.from_uri,
        "to_uri": d.to_uri,
        "state": d.state,
        "start_ts": d.start_ts,
        "init_ts": d.init_ts,
        "timeout": d.timeout,
        "lifetime": d.lifetime,
        "dflags": 0,
        "sflags": 0,
        "iflags": 0,
        "caller": {
            "tag": d.from_tag,
            "contact": d.caller_contact,
            "cseq": d.caller_cseq.to_string(),
            "route_set": d.caller_route_set,
            "socket": d.caller_socket,
        },
        "callee": {
            "tag": d.to_tag,
            "contact": d.callee_contact,
            "cseq": if d.callee_cseq == 0 { String::new() } else { d.callee_cseq.to_string() },
            "route_set": d.callee_route_set,
            "socket": "",
        },
        "profiles": [],
        "variables": [],
    })
}

/// The module.
pub struct DialogModule {
    state: &'static State,
    host: Host,
}

/// A route set as Route values: the comma-separated Record-Route values, in order.
fn routes(set: &str) -> Vec<String> {
    set.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_string).collect()
}

/// The URI inside a `<...>` name-addr (or the value itself).
fn addr_uri(v: &str) -> &str {
    v.split_once('<').and_then(|(_, r)| r.split_once('>')).map_or(v, |(u, _)| u)
}

/// The BYEs that end `d` from this proxy (Kamailio's `dlg_bye_all`): to the callee as if from
/// the caller, and to the caller as if from the callee, each with the next CSeq of its side.
/// Towards the caller the route set is the INVITE's Record-Route (the proxies before us);
/// towards the callee the 2xx's Record-Route values above ours (the proxies after us), nearest
/// first.
pub fn byes(d: &Dialog, is_myself: impl Fn(&str) -> bool) -> [Request; 2] {
    let callee_side: Vec<String> = {
        let all = routes(&d.callee_route_set);
        let ours = all.iter().position(|r| is_myself(addr_uri(r))).unwrap_or(all.len());
        all[..ours].iter().rev().cloned().collect()
    };
    let to_callee = Request {
        method: "BYE".into(),
        ruri: d.callee_contact.clone(),
        from: format!("<{}>", d.from_uri),
        from_tag: d.from_tag.clone(),
        to: format!("<{}>", d.to_uri),
        to_tag: d.to_tag.clone(),
        call_id: d.call_id.clone(),
        cseq: d.caller_cseq.saturating_add(1),
        route_set: callee_side,
        ..Default::default()
    };
    let to_caller = Request {
        method: "BYE".into(),
        ruri: d.caller_contact.clone(),
        from: format!("<{}>", d.to_uri),
        from_tag: d.to_tag.clone(),
        to: format!("<{}>", d.from_uri),
        to_tag: d.from_tag.clone(),
        call_id: d.call_id.clone(),
        cseq: d.callee_cseq.saturating_add(1),
        route_set: routes(&d.caller_route_set),
        ..Default::default()
    };
    [to_callee, to_caller]
}

struct Service(&'static State);

impl DialogService for Service {
    fn register_callback(&self, types: i32, callback: FfiDlgCallback) -> i32 {
        if types & cb::ALL == 0 {
            return -1;
        }
        if types & cb::LOADED != 0 {
            // Kamailio runs a DLGCB_LOADED callback on the spot for every dialog in memory.
            for d in self.0.apply(|t| t.all().into_iter().map(Dialog::to_ffi).collect::<Vec<_>>()) {
                callback.call_with(cb::LOADED, api::dir::NONE, &d, None);
            }
        }
        self.0.callbacks.write().unwrap_or_else(|p| p.into_inner()).push((types, callback));
        1
    }

    fn get(&self, call_id: &str, from_tag: &str) -> Option<FfiDialog> {
        self.0.apply(|t| t.find(call_id, from_tag).map(Dialog::to_ffi))
    }

    fn list(&self) -> Vec<FfiDialog> {
        self.0.apply(|t| t.all().into_iter().map(Dialog::to_ffi).collect())
    }
}

impl DialogModule {
    /// `dlg_manage()`: an initial INVITE creates a dialog and follows its relayed transaction;
    /// a request with a To-tag is matched to its dialog (either direction) and advances it.
    fn dlg_manage(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(-1) };
        let (Ok(call_id), Ok(from), Ok(to), Some(method)) = (msg.call_id(), msg.from(), msg.to(), msg.method()) else {
            return Ok(-1);
        };
        let from_tag = from.tag().unwrap_or("");
        let cseq = msg.cseq().map_or(0, |c| c.number);
        if let Some(to_tag) = to.tag() {
            let events = self.state.apply(|t| t.request(method.as_str(), call_id, from_tag, to_tag, cseq));
            if let Some(events) = events {
                self.state.run(events, Some(&msg));
            }
            return Ok(1);
        }
        if method != plugin_api::sip::Method::Invite || from_tag.is_empty() {
            return Ok(-1);
        }
        let new = NewDialog {
            call_id: call_id.to_string(),
            from_uri: from.uri_str().to_string(),
            from_tag: from_tag.to_string(),
            to_uri: to.uri_str().to_string(),
            req_uri: msg.request_uri_str().unwrap_or("").to_string(),
            contact: first_contact(&msg).unwrap_or_default(),
            cseq,
            route_set: record_route_set(&msg),
            socket: call.request().received_socket().unwrap_or_default(),
            lifetime: self.state.default_timeout,
        };
        let (id, events) = self.state.apply(|t| t.create(now(), new));
        let fresh = !events.is_empty();
        self.state.run(events, Some(&msg));
        if fresh {
            let mut watch = Watch { state: self.state, id, done: false };
            call.request().on_relay_reply(move |reply| watch.on_reply(reply))?;
        }
        Ok(1)
    }

    fn list(&self, _call: &RpcCall) -> RpcResult {
        Ok(Value::Array(self.state.apply(|t| t.all().into_iter().map(dialog_json).collect())))
    }

    fn dlg_list(&self, call: &RpcCall) -> RpcResult {
        let Some(call_id) = call.str(0) else {
            return Err(RpcFault::new(500, "Invalid parameters (Call-ID and optionally From tag)"));
        };
        let from_tag = call.str(1);
        self.state
            .apply(|t| match &from_tag {
                Some(tag) => t.find(&call_id, tag).map(dialog_json),
                None => t.find_call(&call_id).map(dialog_json),
            })
            .ok_or_else(|| RpcFault::new(404, "Dialog not found"))
    }

    /// Ends dialog `id` with BYEs both ways; it is terminated at once (callbacks with direction
    /// NONE), whatever the BYEs' replies.
    fn end(&self, id: Option<Id>) -> RpcResult {
        let ended = id.and_then(|id| self.state.apply(|t| t.terminate(id)));
        let Some((d, events)) = ended else { return Err(RpcFault::new(404, "Dialog not found")) };
        self.state.run(events, None);
        for bye in byes(&d, |u| self.host.is_myself(u)) {
            if bye.ruri.is_empty() {
                continue;
            }
            let call_id = d.call_id.clone();
            if let Err(e) = self.host.send_request(&bye, move |r| {
                tracing::debug!(%call_id, "BYE answered {}", r.code);
            }) {
                tracing::warn!(call_id = %d.call_id, "BYE not sent to {}: {e}", bye.ruri);
            }
        }
        Ok(Value::Null)
    }

    /// `dlg.end_dlg h_entry h_id`.
    fn end_dlg(&self, call: &RpcCall) -> RpcResult {
        let (Some(e), Some(i)) = (call.int(0), call.int(1)) else {
            return Err(RpcFault::new(500, "Invalid parameters"));
        };
        self.end(u32::try_from(e).ok().zip(u32::try_from(i).ok()))
    }

    /// `dlg.terminate_dlg callid from_tag to_tag`.
    fn terminate_dlg(&self, call: &RpcCall) -> RpcResult {
        let (Some(call_id), Some(from_tag), Some(to_tag)) = (call.str(0), call.str(1), call.str(2)) else {
            return Err(RpcFault::new(500, "Invalid parameters (Call-ID, From tag, To tag)"));
        };
        let id = self.state.apply(|t| t.find(&call_id, &from_tag).filter(|d| d.to_tag == to_tag).map(Dialog::id));
        self.end(id)
    }

    fn stats_active(&self, _call: &RpcCall) -> RpcResult {
        let c = self.state.apply(|t| t.counts());
        Ok(json!({"active": {
            "starting": c.unconfirmed,
            "connecting": c.early,
            "answering": c.confirmed_na,
            "ongoing": c.confirmed,
            "all": c.unconfirmed + c.early + c.confirmed_na + c.confirmed,
        }}))
    }
}

impl Module for DialogModule {
    fn info() -> ModuleInfo<Self> {
        let info = ModuleInfo::new("dialog", env!("CARGO_PKG_VERSION"))
            .doc("Call dialogs tracked from dlg_manage() on an initial INVITE to its BYE, failure or expiry, with the dialog API and optional persistence in Kamailio's dialog table (Kamailio's dialog).")
            .exports("dialog")
            .param(Param::int("default_timeout", 43200).min(1).doc(
                "lifetime of a dialog in seconds, counted from its 2xx; an expired dialog is removed (no BYE is sent)",
            ))
            .param(Param::str("db_url", "sqlite://dialog.sqlite").doc(
                "database of the dialog table (db_mode 1 to 3); relative SQLite paths are next to the config",
            ))
            .param(Param::int("db_mode", 0).range(0..=3).doc(
                "0: memory only; 1: each change of a confirmed dialog written at once; 2: written every db_update_period; 3: written at shutdown. Dialogs are read back at start-up",
            ))
            .param(Param::int("db_update_period", 60).min(1).doc("seconds between writes with db_mode 2"))
            .param(Param::int("db_fetch_rows", 200).min(1).doc("rows per page when loading at start-up"))
            .param(Param::int("db_skip_load", 0).range(0..=1).doc("1: do not read the dialogs back at start-up"))
            .param(Param::str("table_name", "dialog").doc("the table of dialogs (Kamailio's dialog, version 7)"))
            .param(Param::int("enable_stats", 1).range(0..=1).doc(
                "1: processed, expired and failed dialogs counted and active and early dialogs gauged on /metrics",
            ))
            .function(
                Function::new("dlg_manage", 0..=0, Self::dlg_manage)
                    .routes(RouteKinds::REQUEST)
                    .doc("tracks the dialog of an initial INVITE (before t_relay), or advances it with an in-dialog request"),
            )
            .rpc(Rpc::new("dlg.list", Self::list).doc("every dialog"))
            .rpc(Rpc::new("dlg.list_ctx", Self::list).doc("every dialog (no module adds context)"))
            .rpc(Rpc::new("dlg.dlg_list", Self::dlg_list).doc("the dialog of a Call-ID (and From tag)"))
            .rpc(Rpc::new("dlg.dlg_list_ctx", Self::dlg_list).doc("the dialog of a Call-ID (and From tag)"))
            .rpc(Rpc::new("dlg.end_dlg", Self::end_dlg).doc("ends a confirmed dialog with BYEs both ways: h_entry h_id"))
            .rpc(
                Rpc::new("dlg.terminate_dlg", Self::terminate_dlg)
                    .doc("ends a confirmed dialog with BYEs both ways: Call-ID, From tag, To tag"),
            )
            .rpc(Rpc::new("dlg.stats_active", Self::stats_active).doc("dialogs by state"));
        persist::Columns::PARAMS.iter().fold(info, |info, (name, default)| {
            info.param(Param::str(name, default).doc("name of this column of the dialog table"))
        })
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let timeout = u32::try_from(params.int("default_timeout")).unwrap_or(u32::MAX);
        let mut state = State::new(timeout);
        if params.int("enable_stats") == 1 {
            state.stats = Some(Stats {
                processed: host.counter("processed_dialogs", "dialogs created by dlg_manage()")?,
                expired: host.counter("expired_dialogs", "dialogs whose lifetime ran out")?,
                failed: host.counter("failed_dialogs", "dialogs whose INVITE failed")?,
                active: host.gauge("active_dialogs", "confirmed dialogs")?,
                early: host.gauge("early_dialogs", "early dialogs")?,
            });
        }
        state.db_mode = params.int("db_mode");
        if state.db_mode != db_mode::NONE {
            let fetch = u64::try_from(params.int("db_fetch_rows")).unwrap_or(200);
            let columns = persist::Columns::from_params(|name| params.str(name).to_string());
            let storage = Storage::open(host, params.str("db_url"), params.str("table_name"), fetch, columns)?;
            let mut t = if state.db_mode == db_mode::SHUTDOWN { Dialogs::new() } else { Dialogs::persistent() };
            if params.int("db_skip_load") == 0 {
                let rows = storage.load()?;
                let n = rows.len();
                let mut loaded = 0;
                for d in rows {
                    loaded += usize::from(t.load(d));
                }
                tracing::info!("dialog: {loaded} dialogs loaded from the database ({} rows skipped)", n - loaded);
            }
            state.dialogs = Mutex::new(t);
            state.storage = Some(storage);
        }
        let state: &'static State = Box::leak(Box::new(state));
        api::export(host, Box::leak(Box::new(Service(state))))?;
        host.every("timer", Duration::from_secs(1), move || {
            state.expire();
            Ok(())
        })?;
        if state.db_mode == db_mode::DELAYED {
            let period = Duration::from_secs(u64::try_from(params.int("db_update_period")).unwrap_or(60));
            host.every("db_update", period, move || {
                state.flush();
                Ok(())
            })?;
        }
        Ok(DialogModule { state, host: *host })
    }

    fn destroy(&self, _host: &Host) {
        self.state.shutdown();
    }
}

export_module!(DialogModule);
