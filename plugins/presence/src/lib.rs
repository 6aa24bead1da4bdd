//! `presence` (Kamailio's presence module): a SIP event server. It takes PUBLISH (RFC 3903) and
//! SUBSCRIBE (RFC 6665) from the routes that call `handle_publish()` / `handle_subscribe()`,
//! keeps presentities, subscriptions and watcher authorizations (in memory and in Kamailio's
//! `presentity`, `active_watchers` and `watchers` tables), and NOTIFYs watchers when state
//! changes. Event packages come from other modules through the `presence` API (presence_xml
//! adds `presence`, `presence.winfo` and `dialog;sla`).
//!
//! Config functions: `handle_publish([sender_uri])`, `handle_subscribe([watcher_uri])`,
//! `pres_auth_status(watcher_uri, presentity_uri)`, `pres_has_subscribers(uri, event)`,
//! `pres_refresh_watchers(uri, event, type)`, `pres_update_watchers(uri, event)`.
//! RPC: `presence.cleanup`, `presence.publish_cache_sync`, `presence.refreshWatchers`, `presence.updateWatchers`,
//! `presence.presentity_list`, `presence.presentity_show`, `presence.watcher_list`.

pub mod config;
mod dialog_event;
pub mod etag;
pub mod events;
mod rpc;
pub mod server;
pub mod storage;
pub mod store;
pub mod winfo;

use std::sync::Arc;
use std::time::Duration;

use plugin_api::api::presence::{self as api, FfiEventSpec, Hooks, PresenceService};
use plugin_api::prelude::*;

use config::Config;
use events::Package;
use server::{Server, State, now};
use storage::Storage;

/// The module.
pub struct PresenceModule {
    server: Arc<Server>,
}

/// The API other modules bind (a thin handle on the server).
struct Service(Arc<Server>);

impl PresenceService for Service {
    fn add_event(&self, spec: FfiEventSpec, hooks: Option<Hooks>) -> i32 {
        let name = spec.name.to_string();
        if name.is_empty() || name.contains([' ', ',']) {
            return -1;
        }
        let p = Package {
            name: name.clone(),
            content_type: spec.content_type.to_string(),
            kind: spec.kind,
            req_auth: spec.req_auth,
            etag_not_new: spec.etag_not_new,
            default_expires: if spec.default_expires == 0 { 3600 } else { spec.default_expires },
            hooks,
        };
        let added = self.0.events.write().unwrap_or_else(|p| p.into_inner()).add(p);
        if added {
            tracing::info!("presence: event package {name} added");
            0
        } else {
            -1
        }
    }

    fn refresh_watchers(&self, pres_uri: &str, event: &str, kind: i32) -> i32 {
        self.0.refresh_watchers(pres_uri, event, kind)
    }

    fn has_subscribers(&self, pres_uri: &str, event: &str) -> i32 {
        if self.0.has_subscribers(pres_uri, event) { 1 } else { -1 }
    }

    fn presentity_body(&self, pres_uri: &str, event: &str) -> Option<Vec<u8>> {
        let pkg = self.0.package(event)?;
        self.0.presentity_body(&self.0.api_uri(pres_uri), &pkg, None)
    }
}

impl PresenceModule {
    fn handle_publish(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let sender = call.arg(0).filter(|s| !s.is_empty());
        Ok(self.server.handle_publish(call.request(), sender))
    }

    fn handle_subscribe(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let watcher = call.arg(0).filter(|s| !s.is_empty());
        Ok(self.server.handle_subscribe(call.request(), watcher))
    }

    fn pres_auth_status(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let (Some(w), Some(p)) = (call.arg(0), call.arg(1)) else { return Ok(-1) };
        Ok(self.server.auth_status(w, p))
    }

    fn pres_has_subscribers(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let (Some(u), Some(e)) = (call.arg(0), call.arg(1)) else { return Ok(-1) };
        Ok(if self.server.has_subscribers(u, e) { 1 } else { -1 })
    }

    fn pres_refresh_watchers(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let (Some(u), Some(e)) = (call.arg(0), call.arg(1)) else { return Ok(-1) };
        let kind = call.int_arg(2)?;
        Ok(self.server.refresh_watchers(u, e, i32::try_from(kind).unwrap_or(-1)))
    }

    fn pres_update_watchers(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let (Some(u), Some(e)) = (call.arg(0), call.arg(1)) else { return Ok(-1) };
        Ok(self.server.refresh_watchers(u, e, 0))
    }
}

/// Loads what the database holds into memory.
fn load(storage: &Storage, cfg: &Config) -> Result<State, Error> {
    let mut state = State::sized(cfg);
    let now = now();
    // publ_cache 0 and subs_db_mode 3 keep their rows in the database only.
    if cfg.publ_cache == 1 {
        for (uri, event, p) in storage.load_publications(cfg.fetch_rows, now, cfg.startup_mode == 1)? {
            state.presentities.insert(&uri, &event, p);
        }
    }
    if matches!(cfg.subs_db_mode, 1 | 2) {
        for s in storage.load_subscriptions(cfg.fetch_rows, now, cfg.cseq_restore_margin)? {
            state.subscriptions.insert(s);
        }
        for (k, a) in storage.load_watchers(cfg.fetch_rows)? {
            state.watchers.insert(k, a);
        }
    }
    tracing::info!(
        "presence: loaded {} publications, {} subscriptions, {} watcher authorizations",
        state.presentities.len(),
        state.subscriptions.len(),
        state.watchers.len()
    );
    Ok(state)
}

impl Module for PresenceModule {
    fn info() -> ModuleInfo<Self> {
        let mut info = ModuleInfo::new("presence", env!("CARGO_PKG_VERSION"))
            .doc("SIP event server: PUBLISH, SUBSCRIBE and NOTIFY for the event packages other modules add (Kamailio's presence).")
            .exports("presence")
            .function(
                Function::new("handle_publish", 0..=1, Self::handle_publish)
                    .doc("PUBLISH: store the state and notify the watchers; always replies (1 or -1)"),
            )
            .function(
                Function::new("handle_subscribe", 0..=1, Self::handle_subscribe)
                    .doc("SUBSCRIBE: create, refresh or end a subscription and NOTIFY; always replies (1 or -1)"),
            )
            .function(
                Function::new("pres_auth_status", 2..=2, Self::pres_auth_status)
                    .doc("watcher_uri presentity_uri: the watcher's status (1 active .. 5 polite-block) or -1"),
            )
            .function(
                Function::new("pres_has_subscribers", 2..=2, Self::pres_has_subscribers)
                    .doc("uri event: 1 when the presentity has watchers of event, else -1"),
            )
            .function(
                Function::new("pres_refresh_watchers", 3..=3, Self::pres_refresh_watchers)
                    .doc("uri event type: 0 re-authorizes the watchers, 1 re-sends the state"),
            )
            .function(
                Function::new("pres_update_watchers", 2..=2, Self::pres_update_watchers)
                    .doc("uri event: re-authorizes the watchers and notifies the changed ones"),
            );
        for p in config::params() {
            info = info.param(p);
        }
        rpc::declare(info)
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let cfg = Config::from_params(params).map_err(Error::new)?;
        if cfg.db_url.is_none() && (cfg.subs_db_mode == 3 || cfg.publ_cache == 0) {
            return Err(Error::new(
                "presence: subs_db_mode 3 and publ_cache 0 keep state in the database only: set db_url",
            ));
        }
        let (storage, state) = match &cfg.db_url {
            Some(url) => {
                let s = Storage::open(host, &cfg, url)?;
                let state = load(&s, &cfg)?;
                (Some(s), state)
            }
            None => (None, State::sized(&cfg)),
        };
        let server = Arc::new(Server::new(*host, cfg.clone(), storage, state));
        let service: &'static Service = Box::leak(Box::new(Service(server.clone())));
        api::export(host, service)?;
        if cfg.clean_period > 0 {
            let s = server.clone();
            host.every("clean", Duration::from_secs(u64::from(cfg.clean_period)), move || {
                s.clean();
                Ok(())
            })?;
        }
        if cfg.publ_cache == 1 && server.storage.is_some() {
            // Publication writes a database outage held back (nothing to do otherwise).
            let s = server.clone();
            host.every("publication-sync", Duration::from_secs(5), move || {
                s.sync_publications();
                Ok(())
            })?;
        }
        if cfg.subs_db_mode == 3 {
            let s = server.clone();
            host.every("idle-copies", Duration::from_secs(5), move || {
                s.evict_idle();
                Ok(())
            })?;
        }
        if cfg.subs_db_mode == 2 && server.storage.is_some() {
            let s = server.clone();
            host.every("write-back", Duration::from_secs(u64::from(cfg.db_update_period)), move || {
                s.write_back();
                Ok(())
            })?;
        }
        Ok(PresenceModule { server })
    }

    fn destroy(&self, _host: &Host) {
        self.server.write_back();
    }
}

export_module!(PresenceModule);
