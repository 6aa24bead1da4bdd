//! The `dialog` module (Kamailio's dialog): `dlg_manage()` on an initial INVITE creates a
//! dialog; the replies of the transaction the relay creates for it (the host's
//! `on_relay_reply`) make it early, confirmed or failed; `dlg_manage()` on in-dialog requests
//! (ACK, BYE, re-INVITE, ... from either side, matched by Call-ID and tags) confirms or ends
//! it; a timer expires confirmed dialogs after `default_timeout`. Other modules follow dialogs
//! through the `dialog` API (`plugin_api::api::dialog`); operators through `dlg.*` RPCs.
//!
//! Dialogs live in memory only: Kamailio's `dialog` table (db_mode) is not written.

pub mod store;

use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugin_api::api::dialog::{self as api, DialogService, FfiDialog, FfiDlgCallback, cb};
use plugin_api::metrics::{Counter, Gauge};
use plugin_api::prelude::*;
use serde_json::json;

use store::{Dialog, Dialogs, Event, Id, NewDialog};

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
}

impl State {
    fn new(default_timeout: u32) -> Self {
        Self { dialogs: Mutex::new(Dialogs::new()), callbacks: RwLock::new(Vec::new()), default_timeout, stats: None }
    }

    /// Runs `f` on the table under the lock and refreshes the gauges.
    fn apply<T>(&self, f: impl FnOnce(&mut Dialogs) -> T) -> T {
        let mut t = self.dialogs.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut t);
        if let Some(s) = &self.stats {
            let c = t.counts();
            s.active.set(i64::try_from(c.confirmed + c.confirmed_na).unwrap_or(i64::MAX));
            s.early.set(i64::try_from(c.early).unwrap_or(i64::MAX));
        }
        out
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
}

struct Service(&'static State);

impl DialogService for Service {
    fn register_callback(&self, types: i32, callback: FfiDlgCallback) -> i32 {
        if types & cb::ALL == 0 {
            return -1;
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
        let (Some(call_id), Some(from_tag)) = (call.str(0), call.str(1)) else {
            return Err(RpcFault::new(500, "Invalid parameters (Call-ID and From tag)"));
        };
        self.state
            .apply(|t| t.find(&call_id, &from_tag).map(dialog_json))
            .ok_or_else(|| RpcFault::new(404, "Dialog not found"))
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
        ModuleInfo::new("dialog", env!("CARGO_PKG_VERSION"))
            .doc("Call dialogs tracked from dlg_manage() on an initial INVITE to its BYE, failure or expiry, with the dialog API (Kamailio's dialog, in memory).")
            .exports("dialog")
            .param(Param::int("default_timeout", 43200).min(1).doc(
                "lifetime of a dialog in seconds, counted from its 2xx; an expired dialog is removed (no BYE is sent)",
            ))
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
            .rpc(Rpc::new("dlg.dlg_list", Self::dlg_list).doc("the dialog of a Call-ID and From tag"))
            .rpc(Rpc::new("dlg.dlg_list_ctx", Self::dlg_list).doc("the dialog of a Call-ID and From tag"))
            .rpc(Rpc::new("dlg.stats_active", Self::stats_active).doc("dialogs by state"))
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
        let state: &'static State = Box::leak(Box::new(state));
        api::export(host, Box::leak(Box::new(Service(state))))?;
        host.every("timer", Duration::from_secs(1), move || {
            state.expire();
            Ok(())
        })?;
        Ok(DialogModule { state })
    }
}

export_module!(DialogModule);
