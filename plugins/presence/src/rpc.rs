//! RPC commands (Kamailio 5.6 names, reference §10.2; faults 500 with its texts).

use std::sync::Arc;

use plugin_api::prelude::*;
use serde_json::json;

use crate::PresenceModule;
use crate::server::{Server, now};
use crate::storage::split_identity;
use crate::store::{Publication, Subscription};

fn fault(msg: &str) -> RpcFault {
    RpcFault::new(500, msg)
}

fn publication_json(uri: &str, event: &str, p: &Publication, full: bool) -> Value {
    let (user, domain) = split_identity(uri);
    let mut v = json!({
        "user": user, "domain": domain, "event": event, "etag": p.etag,
        "sender": p.sender, "expires": p.expires,
    });
    if full {
        v["received_time"] = json!(p.received_time);
        v["priority"] = json!(p.priority);
        v["body"] = json!(String::from_utf8_lossy(&p.body));
    }
    v
}

fn watcher_json(s: &Subscription, full: bool) -> Value {
    let mut v = json!({
        "pres_uri": s.pres_uri, "to_user": s.to_user, "to_domain": s.to_domain,
        "from_user": s.from_user, "from_domain": s.from_domain,
        "watcher_user": s.watcher_user, "watcher_domain": s.watcher_domain,
        "contact": s.contact, "event_id": s.event_id, "callid": s.key.call_id,
        "user_agent": s.user_agent, "expires": s.expires, "status": s.status,
        "version": s.version, "flags": s.flags, "event": s.event,
    });
    if full {
        v["reason"] = json!(s.reason);
        v["to_tag"] = json!(s.key.to_tag);
        v["from_tag"] = json!(s.key.from_tag);
        v["socket"] = json!(s.socket_info);
        v["local_contact"] = json!(s.local_contact);
        v["record_route"] = json!(s.record_route.join(","));
        v["remote_cseq"] = json!(s.remote_cseq);
        v["local_cseq"] = json!(s.local_cseq);
        v["queued_notifies"] = json!(s.queue.len());
    }
    v
}

fn mode(call: &RpcCall, i: usize) -> Result<bool, RpcFault> {
    match call.str(i).as_deref() {
        None | Some("basic") => Ok(false),
        Some("full") => Ok(true),
        Some(_) => Err(fault("Unknown output mode")),
    }
}

impl PresenceModule {
    fn server(&self) -> &Arc<Server> {
        &self.server
    }

    fn rpc_cleanup(&self, _call: &RpcCall) -> RpcResult {
        self.server().clean();
        Ok(json!("Reload OK"))
    }

    /// Reloads the in-memory publications from the presentity table (rows another server or a
    /// script wrote); with publ_cache 0 the table is read per request and there is nothing to
    /// reload. The number of publications loaded.
    fn rpc_publish_cache_sync(&self, _call: &RpcCall) -> RpcResult {
        let server = self.server();
        let Some(db) = &server.storage else { return Err(fault("Processing error")) };
        if server.shared_pubs().is_some() {
            return Ok(json!(0));
        }
        let only_live = server.cfg.startup_mode == 1;
        let rows = db.load_publications(server.cfg.fetch_rows, now(), only_live).map_err(|e| {
            tracing::error!("presence: publish_cache_sync: {e}");
            fault("Processing error")
        })?;
        let mut fresh = crate::store::Presentities::default();
        fresh.reserve(rows.len());
        for (uri, event, p) in rows {
            fresh.insert(&uri, &event, p);
        }
        let n = fresh.len();
        server.state().presentities = fresh;
        Ok(json!(n))
    }

    fn rpc_refresh(&self, call: &RpcCall) -> RpcResult {
        let uri = call.str(0).ok_or_else(|| fault("Not enough parameters"))?;
        let event = call.str(1).ok_or_else(|| fault("Not enough parameters"))?;
        let kind = call.int(2).ok_or_else(|| fault("Not enough parameters"))?;
        if uri.is_empty() {
            return Err(fault("Empty presentity URI"));
        }
        if event.is_empty() {
            return Err(fault("Empty event parameter"));
        }
        match self.server().refresh_watchers(&uri, &event, i32::try_from(kind).unwrap_or(-1)) {
            1 => Ok(Value::Null),
            _ => Err(fault("Execution failed")),
        }
    }

    fn rpc_update(&self, call: &RpcCall) -> RpcResult {
        let uri = call.str(0).ok_or_else(|| fault("Not enough parameters"))?;
        let event = call.str(1).ok_or_else(|| fault("Not enough parameters"))?;
        match self.server().refresh_watchers(&uri, &event, 0) {
            1 => Ok(Value::Null),
            _ => Err(fault("Execution failed")),
        }
    }

    fn rpc_presentity_list(&self, call: &RpcCall) -> RpcResult {
        let full = mode(call, 0)?;
        if let Some(db) = self.server().shared_pubs() {
            let all =
                db.load_publications(self.server().cfg.fetch_rows, 0, false).map_err(|_| fault("Processing error"))?;
            return Ok(Value::Array(all.iter().map(|(u, e, p)| publication_json(u, e, p, full)).collect()));
        }
        let st = self.server().state();
        Ok(Value::Array(st.presentities.iter().map(|(u, e, p)| publication_json(u, e, &p, full)).collect()))
    }

    fn rpc_presentity_show(&self, call: &RpcCall) -> RpcResult {
        let full = mode(call, 0)?;
        let user = call.str(1).ok_or_else(|| fault("Not enough parameters"))?;
        let domain = call.str(2).ok_or_else(|| fault("Not enough parameters"))?;
        let matches = |uri: &str| {
            let (u, d) = split_identity(uri);
            (user == "*" || u == user) && (domain == "*" || d == domain)
        };
        if let Some(db) = self.server().shared_pubs() {
            let all =
                db.load_publications(self.server().cfg.fetch_rows, 0, false).map_err(|_| fault("Processing error"))?;
            return Ok(Value::Array(
                all.iter().filter(|(u, _, _)| matches(u)).map(|(u, e, p)| publication_json(u, e, p, full)).collect(),
            ));
        }
        let st = self.server().state();
        Ok(Value::Array(
            st.presentities
                .iter()
                .filter(|(u, _, _)| matches(u))
                .map(|(u, e, p)| publication_json(u, e, &p, full))
                .collect(),
        ))
    }

    fn rpc_watcher_list(&self, call: &RpcCall) -> RpcResult {
        let full = mode(call, 0)?;
        let uri = call.str(1).ok_or_else(|| fault("Not enough parameters"))?;
        if uri.is_empty() {
            return Err(fault("Empty presentity URI"));
        }
        let uri = self.server().api_uri(&uri).into_owned();
        let now = now();
        if let Some(db) = self.server().shared_subs() {
            let live = db.live_subscriptions(&uri, None, now).map_err(|_| fault("Processing error"))?;
            return Ok(Value::Array(live.iter().filter(|s| !s.ended).map(|s| watcher_json(s, full)).collect()));
        }
        let st = self.server().state();
        Ok(Value::Array(
            st.subscriptions
                .iter()
                .filter(|s| s.pres_uri == uri && !s.ended && s.expires > now)
                .map(|s| watcher_json(s, full))
                .collect(),
        ))
    }
}

/// Adds the commands to the module's declaration.
pub fn declare(info: ModuleInfo<PresenceModule>) -> ModuleInfo<PresenceModule> {
    info.rpc(Rpc::new("presence.cleanup", PresenceModule::rpc_cleanup).doc("runs the expiry pass now"))
        .rpc(
            Rpc::new("presence.publish_cache_sync", PresenceModule::rpc_publish_cache_sync)
                .doc("reloads the in-memory publications from the presentity table; the number loaded"),
        )
        .rpc(
            Rpc::new("presence.refreshWatchers", PresenceModule::rpc_refresh)
                .doc("uri event type: 0 re-authorizes the watchers, 1 re-sends the state"),
        )
        .rpc(
            Rpc::new("presence.updateWatchers", PresenceModule::rpc_update)
                .doc("uri event: re-authorizes the watchers and notifies the changed ones"),
        )
        .rpc(
            Rpc::new("presence.presentity_list", PresenceModule::rpc_presentity_list)
                .doc("[basic|full]: every publication"),
        )
        .rpc(
            Rpc::new("presence.presentity_show", PresenceModule::rpc_presentity_show)
                .doc("basic|full user|* domain|*: the matching publications"),
        )
        .rpc(
            Rpc::new("presence.watcher_list", PresenceModule::rpc_watcher_list)
                .doc("basic|full presentity_uri: its live subscriptions"),
        )
}
