//! `pua_mi` (Kamailio's pua_mi, and pua_rpc under its 5.x name): PUBLISH and SUBSCRIBE from the
//! management interface, so a script that speaks no SIP can publish any state as the presence
//! of a SIP URI, or watch a SIP user's presence.
//!
//! Commands (positional parameters as Kamailio's, reference §3):
//! - `pua.publish` — waits for the SIP reply: `{"SIP-ETag": ..., "Expires": ...}` on a 2xx, a
//!   fault with the SIP code and reason otherwise. Works over HTTP and the FIFO.
//! - `pua.send_publish` — the same, without waiting.
//! - `pua.subscribe` — SUBSCRIBE (expires 0 ends the subscription it started).
//! - `pua_publish`, `pua_subscribe` — the MI-era forms (Kamailio 4.x pua_mi).
//! - `pua.last_notify PRES_URI [WATCHER_URI]` — the last NOTIFY of subscriptions made here.
//! - Function `pua_mi_notify()` — in a NOTIFY route: answers NOTIFYs of those subscriptions
//!   with 200 and keeps their bodies (returns -1 for any other NOTIFY).

pub mod params;
pub mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use plugin_api::api::pua::{
    ERR_PUBLISH_NO_BODY, ERR_WRONG_ETAG, Pua, PublishInfo, SENT_NOTHING, SubscribeInfo, UaRecord, source,
};
use plugin_api::prelude::*;
use plugin_api::sip::HeaderName;
use serde_json::json;

use params::Form;
use watch::{LastNotifies, Notify};

/// pua.publish calls waiting for their final reply, by the cb_param given to pua.
#[derive(Default)]
struct Pending {
    calls: Mutex<HashMap<u64, (DelayedReply, Form)>>,
    next: AtomicU64,
}

impl Pending {
    fn add(&self, reply: DelayedReply, form: Form) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (reply, form));
        id
    }

    fn take(&self, id: u64) -> Option<(DelayedReply, Form)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).remove(&id)
    }
}

/// The module.
pub struct PuaMi {
    pua: Pua,
    pending: Arc<Pending>,
    notifies: LastNotifies,
    /// Subscription id → (presentity URI, watcher URI) as the caller gave them, so a NOTIFY is
    /// filed under the URI the script asked for (a server may write its From differently).
    subscriptions: Mutex<HashMap<String, (String, String)>>,
    with_ob_proxy: bool,
}

/// The record id of the subscription of `watcher_uri` to `pres_uri`: the same for every call
/// with that pair (across restarts too), so a later pua.subscribe refreshes or ends the same
/// dialog. FNV-1a, because the id is stored in the `pua` table and must not change between
/// builds.
fn subscription_id(pres_uri: &str, watcher_uri: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pres_uri.bytes().chain(std::iter::once(b'\n')).chain(watcher_uri.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("pua_mi.{h:016x}")
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// No events beyond pua's own: Kamailio's pua_rpc knows those names only.
fn no_extra_events(_: &str) -> Option<i32> {
    None
}

fn publish_info(p: params::Publish, source_flag: i32, cb_param: u64) -> PublishInfo {
    PublishInfo {
        pres_uri: p.pres_uri,
        expires: p.expires,
        event: p.event,
        content_type: p.content_type,
        id: p.id,
        etag: p.etag,
        outbound_proxy: p.outbound_proxy,
        extra_headers: p.extra_headers,
        body: p.body,
        source_flag,
        cb_param,
        ..Default::default()
    }
}

/// The fault for a `send_publish` return code (None: sent).
fn publish_fault(code: i32, form: Form) -> Option<RpcFault> {
    let mi = matches!(form, Form::Mi { .. });
    match code {
        0 | SENT_NOTHING => None,
        ERR_WRONG_ETAG if mi => Some(RpcFault::new(418, "Wrong ETag")),
        ERR_WRONG_ETAG => Some(RpcFault::new(500, "Wrong ETag")),
        ERR_PUBLISH_NO_BODY => Some(RpcFault::new(400, "Body is missing")),
        _ if mi => Some(RpcFault::new(500, "MI/PUBLISH failed")),
        _ => Some(RpcFault::new(500, "I'm terribly sorry, server error occurred (1/RPC/PUBLISH)")),
    }
}

/// What a waiting `pua.publish` answers for a final reply.
fn publish_answer(reply: &Reply<'_>, form: Form) -> RpcResult {
    if !(200..300).contains(&reply.code) || reply.local {
        // Kamailio answers an empty result here; a script needs to know the publish failed.
        return Err(RpcFault::new(i32::from(reply.code), reply.reason.to_string()));
    }
    let etag = reply.message.as_ref().and_then(|m| m.sip_etag().ok().flatten()).map(str::to_string);
    let expires = reply.message.as_ref().and_then(|m| m.expires().ok().flatten());
    Ok(match form {
        Form::Rpc => json!({"SIP-ETag": etag, "Expires": expires}),
        Form::Mi { .. } => {
            json!({"status": format!("{} {}", reply.code, reply.reason), "ETag": etag, "Expires": expires})
        }
    })
}

impl PuaMi {
    fn publish_waiting(&self, call: &RpcCall, reply: DelayedReply, form: Form) {
        let p = match params::publish(call, form, no_extra_events) {
            Ok(p) => p,
            Err(f) => return reply.send(Err(f)),
        };
        let id = self.pending.add(reply, form);
        let code = self.pua.send_publish(&publish_info(p, source::RPC_ASYN_PUBLISH, id));
        if code == 0 {
            return; // the callback answers
        }
        // Nothing was sent, or it failed: no callback will come.
        if let Some((reply, form)) = self.pending.take(id) {
            reply.send(match publish_fault(code, form) {
                Some(f) => Err(f),
                None => Ok(Value::Null), // nothing to remove
            });
        }
    }

    fn rpc_publish(&self, call: &RpcCall, reply: DelayedReply) {
        self.publish_waiting(call, reply, Form::Rpc);
    }

    fn mi_publish(&self, call: &RpcCall, reply: DelayedReply) {
        self.publish_waiting(call, reply, Form::Mi { with_ob_proxy: self.with_ob_proxy });
    }

    fn rpc_send_publish(&self, call: &RpcCall) -> RpcResult {
        let p = params::publish(call, Form::Rpc, no_extra_events)?;
        let code = self.pua.send_publish(&publish_info(p, source::RPC_PUBLISH, 0));
        publish_fault(code, Form::Rpc).map_or(Ok(Value::Null), Err)
    }

    fn subscribe(&self, call: &RpcCall, form: Form) -> Result<(), RpcFault> {
        let s = params::subscribe(call, form, no_extra_events)?;
        let id = subscription_id(&s.pres_uri, &s.watcher_uri);
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), (s.pres_uri.clone(), s.watcher_uri.clone()));
        let info = SubscribeInfo {
            id,
            pres_uri: s.pres_uri,
            contact: s.watcher_uri.clone(),
            watcher_uri: s.watcher_uri,
            event: s.event,
            expires: s.expires,
            source_flag: source::RPC_SUBSCRIBE,
            ..Default::default()
        };
        match self.pua.send_subscribe(&info) {
            0 | SENT_NOTHING => Ok(()),
            _ => Err(RpcFault::new(500, "Execution failure")),
        }
    }

    fn rpc_subscribe(&self, call: &RpcCall) -> RpcResult {
        self.subscribe(call, Form::Rpc).map(|()| Value::Null)
    }

    fn mi_subscribe(&self, call: &RpcCall) -> RpcResult {
        self.subscribe(call, Form::Mi { with_ob_proxy: self.with_ob_proxy }).map(|()| json!({"status": "202 accepted"}))
    }

    fn rpc_last_notify(&self, call: &RpcCall) -> RpcResult {
        let pres = call.str(0).ok_or_else(|| RpcFault::new(400, "presentity_uri is required"))?;
        let watcher = call.str(1).filter(|w| !w.is_empty() && w != ".");
        let found = self.notifies.lookup(&pres, watcher.as_deref());
        if found.is_empty() {
            return Err(RpcFault::new(404, format!("No NOTIFY received for {pres}")));
        }
        Ok(Value::Array(found))
    }

    /// `pua_mi_notify()`: a NOTIFY of a subscription made here is answered 200 and kept.
    fn notify(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(-1) };
        let (Ok(call_id), Ok(from), Ok(to)) = (msg.call_id(), msg.from(), msg.to()) else { return Ok(-1) };
        let d = UaRecord {
            call_id: call_id.to_string(),
            from_tag: to.tag().unwrap_or_default().to_string(),
            to_tag: from.tag().unwrap_or_default().to_string(),
            flag: source::RPC_SUBSCRIBE,
            ..Default::default()
        };
        if self.pua.is_dialog(&d) < 0 {
            return Ok(-1);
        }
        let n = Notify {
            body: String::from_utf8_lossy(msg.body()).into_owned(),
            content_type: msg.header_str(HeaderName::CONTENT_TYPE).unwrap_or_default().to_string(),
            event: msg.header_str(HeaderName::EVENT).unwrap_or_default().to_string(),
            subscription_state: msg.header_str(HeaderName::SUBSCRIPTION_STATE).unwrap_or_default().to_string(),
            call_id: call_id.to_string(),
            received: now(),
        };
        let by_id = self
            .pua
            .get_record_id(&d)
            .and_then(|id| self.subscriptions.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned());
        match by_id {
            Some((pres, watcher)) => self.notifies.record(&pres, &watcher, n),
            None => self.notifies.record(from.uri_str(), to.uri_str(), n),
        }
        call.request().reply(200, "OK")?;
        Ok(1)
    }
}

impl Module for PuaMi {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("pua_mi", env!("CARGO_PKG_VERSION"))
            .doc("PUBLISH and SUBSCRIBE from the management interface (Kamailio's pua_mi / pua_rpc).")
            .requires("pua")
            .param(
                Param::int("publish_with_ob_proxy", 0)
                    .range(0..=1)
                    .doc("1: the MI command pua_publish takes an outbound_proxy parameter after ETag"),
            )
            .function(
                Function::new("pua_mi_notify", 0..=0, Self::notify)
                    .doc("on a NOTIFY of a pua.subscribe subscription: answer 200 and keep it for pua.last_notify (-1 otherwise)"),
            )
            .rpc(Rpc::delayed("pua.publish", Self::rpc_publish).doc(
                "presentity_uri expires event content_type id etag outbound_proxy extra_headers [body]; waits for the reply",
            ))
            .rpc(Rpc::new("pua.send_publish", Self::rpc_send_publish).doc("as pua.publish, without waiting for the reply"))
            .rpc(Rpc::new("pua.subscribe", Self::rpc_subscribe).doc("presentity_uri watcher_uri event expires"))
            .rpc(
                Rpc::delayed("pua_publish", Self::mi_publish)
                    .doc("MI form: presentity_uri expires event content_type id ETag [outbound_proxy] extra_headers [body]"),
            )
            .rpc(Rpc::new("pua_subscribe", Self::mi_subscribe).doc("MI form: presentity_uri watcher_uri event expires"))
            .rpc(
                Rpc::new("pua.last_notify", Self::rpc_last_notify)
                    .doc("presentity_uri [watcher_uri]: the last NOTIFY of subscriptions made with pua.subscribe"),
            )
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let pua = Pua::bind(host)?;
        let pending = Arc::new(Pending::default());
        let waiting = pending.clone();
        let code = pua.register_callback(source::RPC_ASYN_PUBLISH, move |record, reply| {
            if let Some((delayed, form)) = waiting.take(record.cb_param) {
                delayed.send(publish_answer(reply, form));
            }
            0
        });
        if code != 0 {
            return Err(Error::new("pua refused the callback for RPC_ASYN_PUBLISH"));
        }
        Ok(PuaMi {
            pua,
            pending,
            notifies: LastNotifies::default(),
            subscriptions: Mutex::new(HashMap::new()),
            with_ob_proxy: params.int("publish_with_ob_proxy") == 1,
        })
    }
}

export_module!(PuaMi);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_ids_are_stable() {
        let a = subscription_id("sip:a@x", "sip:w@y");
        assert_eq!(a, subscription_id("sip:a@x", "sip:w@y"));
        assert_ne!(a, subscription_id("sip:a@x", "sip:w2@y"));
        assert_eq!(a.len(), "pua_mi.".len() + 16);
    }
}
