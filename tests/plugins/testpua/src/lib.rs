//! `testpua`: binds the `pua` API (as pua_mi or pua_usrloc do) and exposes it to the tests.
//!
//! - `testpua.publish PRES_URI EXPIRES EVENT BODY ID ETAG CB_PARAM [SOURCE_FLAG]` → send_publish's code
//!   (BODY "" = none, ETAG "" = none).
//! - `testpua.subscribe PRES_URI WATCHER EVENT EXPIRES CONTACT [REMOTE_TARGET [OUTBOUND_PROXY]]` → send_subscribe's code.
//! - `testpua.callbacks` → every callback call so far: {cb_param, code, local, etag, pres_uri, flag}.
//! - `testpua.is_dialog CALL_ID LOCAL_TAG REMOTE_TAG FLAG` → is_dialog's code.
//! - `testpua.load COUNT PREFIX DOMAIN` → publishes COUNT presentities PREFIX<n>@DOMAIN at once,
//!   returns immediately; `testpua.load_subscribe COUNT PREFIX DOMAIN CONTACT [PROXY]` the same
//!   with "forever" SUBSCRIBEs to PREFIX<n>@DOMAIN; `testpua.loaded` → how many of them got a 2xx (for the benchmark).
//! - Event `x-testpua` (flag 1<<20), added with `add_event` and a body processor.
//! - Function `testpua_notify()`: for a NOTIFY, replies 200 when it matches a pua dialog
//!   (established or temporary), 481 otherwise, and keeps its body.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use plugin_api::api::pua::{Pua, PublishInfo, SubscribeInfo, UaRecord, event, source};
use plugin_api::prelude::*;

static CALLS: Mutex<Vec<Value>> = Mutex::new(Vec::new());
static LOAD_OK: AtomicU64 = AtomicU64::new(0);
static LOAD_FAILED: AtomicU64 = AtomicU64::new(0);
static NOTIFIES: Mutex<Vec<Value>> = Mutex::new(Vec::new());

/// cb_param values at or above this belong to `testpua.load` (counted, not recorded).
const LOAD_BASE: u64 = 1 << 40;

pub struct TestPua {
    pua: Pua,
}

/// An event this module adds with `add_event`, with a body processor: the body goes out as
/// `[v<version>] <body>` and the tuple id as `tp-<version>`; a body containing "panic" makes
/// the processor panic (the host must survive it and the PUBLISH fail cleanly).
const TEST_EVENT: (&str, i32) = ("x-testpua", 1 << 20);

fn event_flag(name: &str) -> Result<i32, RpcFault> {
    if name == TEST_EVENT.0 {
        return Ok(TEST_EVENT.1);
    }
    event::flag_by_name(name).ok_or_else(|| RpcFault::new(400, format!("unknown event {name}")))
}

impl TestPua {
    fn publish(&self, call: &RpcCall) -> RpcResult {
        let s = |i| call.str(i).unwrap_or_default();
        let info = PublishInfo {
            pres_uri: s(0),
            expires: call.int(1).unwrap_or(-1) as i32,
            event: event_flag(&s(2))?,
            body: Some(s(3)).filter(|b| !b.is_empty()),
            id: s(4),
            etag: Some(s(5)).filter(|e| !e.is_empty()),
            cb_param: call.int(6).unwrap_or(0) as u64,
            source_flag: call.int(7).map_or(source::UL_PUBLISH, |f| f as i32),
            ..Default::default()
        };
        Ok(Value::from(self.pua.send_publish(&info)))
    }

    fn subscribe(&self, call: &RpcCall) -> RpcResult {
        let s = |i| call.str(i).unwrap_or_default();
        let info = SubscribeInfo {
            pres_uri: s(0),
            watcher_uri: s(1),
            event: event_flag(&s(2))?,
            expires: call.int(3).unwrap_or(-1) as i32,
            contact: s(4),
            remote_target: Some(s(5)).filter(|r| !r.is_empty()),
            outbound_proxy: Some(s(6)).filter(|r| !r.is_empty()),
            source_flag: source::RPC_SUBSCRIBE,
            cb_param: 1,
            ..Default::default()
        };
        Ok(Value::from(self.pua.send_subscribe(&info)))
    }

    fn callbacks(&self, _: &RpcCall) -> RpcResult {
        Ok(Value::Array(CALLS.lock().map_err(|_| RpcFault::new(500, "poisoned"))?.clone()))
    }

    fn notifies(&self, _: &RpcCall) -> RpcResult {
        Ok(Value::Array(NOTIFIES.lock().map_err(|_| RpcFault::new(500, "poisoned"))?.clone()))
    }

    fn is_dialog(&self, call: &RpcCall) -> RpcResult {
        let s = |i| call.str(i).unwrap_or_default();
        let d = UaRecord {
            call_id: s(0),
            from_tag: s(1),
            to_tag: s(2),
            flag: call.int(3).unwrap_or(0) as i32,
            ..Default::default()
        };
        Ok(Value::from(self.pua.is_dialog(&d)))
    }

    fn load(&self, call: &RpcCall) -> RpcResult {
        let n = call.int(0).unwrap_or(1000).max(0) as u64;
        let prefix = call.str(1).unwrap_or_else(|| "load".into());
        let domain = call.str(2).unwrap_or_else(|| "127.0.0.1".into());
        let body = r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:x@y"><tuple><status><basic>open</basic></status></tuple></presence>"#;
        let mut failed = 0;
        for i in 0..n {
            let info = PublishInfo {
                pres_uri: format!("sip:{prefix}{i}@{domain}"),
                id: format!("LOAD.{i}"),
                expires: -1,
                event: event::PRESENCE,
                body: Some(body.to_string()),
                source_flag: source::UL_PUBLISH,
                cb_param: LOAD_BASE + i,
                ..Default::default()
            };
            if self.pua.send_publish(&info) != 0 {
                failed += 1;
            }
        }
        Ok(serde_json::json!({"queued": n - failed, "failed": failed}))
    }

    fn load_subscribe(&self, call: &RpcCall) -> RpcResult {
        let n = call.int(0).unwrap_or(1000).max(0) as u64;
        let prefix = call.str(1).unwrap_or_else(|| "load".into());
        let domain = call.str(2).unwrap_or_else(|| "127.0.0.1".into());
        let contact = call.str(3).ok_or_else(|| RpcFault::new(400, "CONTACT is required"))?;
        let proxy = call.str(4).filter(|p| !p.is_empty());
        let mut failed = 0;
        for i in 0..n {
            let info = SubscribeInfo {
                pres_uri: format!("sip:{prefix}{i}@{domain}"),
                watcher_uri: format!("sip:watcher{i}@{domain}"),
                id: format!("LOADSUB.{i}"),
                event: event::PRESENCE,
                expires: -1,
                contact: contact.clone(),
                outbound_proxy: proxy.clone(),
                source_flag: source::RPC_SUBSCRIBE,
                cb_param: LOAD_BASE + i,
                ..Default::default()
            };
            if self.pua.send_subscribe(&info) != 0 {
                failed += 1;
            }
        }
        Ok(serde_json::json!({"queued": n - failed, "failed": failed}))
    }

    fn loaded(&self, _: &RpcCall) -> RpcResult {
        Ok(serde_json::json!({"ok": LOAD_OK.load(Ordering::Relaxed), "failed": LOAD_FAILED.load(Ordering::Relaxed)}))
    }

    fn notify(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let msg = call.message().ok_or_else(|| Error::new("no message"))?;
        let (call_id, to, from) = (msg.call_id().map_err(|e| Error::new(e.to_string()))?, msg.to(), msg.from());
        let d = UaRecord {
            call_id: call_id.to_string(),
            from_tag: to.ok().and_then(|t| t.tag().map(str::to_string)).unwrap_or_default(),
            to_tag: from.ok().and_then(|f| f.tag().map(str::to_string)).unwrap_or_default(),
            ..Default::default()
        };
        let found = self.pua.is_dialog(&d);
        if let Ok(mut n) = NOTIFIES.lock() {
            n.push(serde_json::json!({
                "is_dialog": found,
                "subscription_state": msg.header_str(plugin_api::sip::HeaderName::SUBSCRIPTION_STATE),
                "body": String::from_utf8_lossy(msg.body()),
            }));
        }
        if found >= 0 {
            call.request().reply(200, "OK")?;
        } else {
            call.request().reply(481, "Subscription does not exist")?;
        }
        Ok(1)
    }
}

impl Module for TestPua {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("testpua", env!("CARGO_PKG_VERSION"))
            .doc("Test module: drives the pua API and records its callbacks.")
            .requires("pua")
            .function(Function::new("testpua_notify", 0..=0, Self::notify).doc("answers a NOTIFY of a pua dialog"))
            .rpc(Rpc::new("testpua.publish", Self::publish).doc("send_publish"))
            .rpc(Rpc::new("testpua.subscribe", Self::subscribe).doc("send_subscribe"))
            .rpc(Rpc::new("testpua.callbacks", Self::callbacks).doc("callback calls so far"))
            .rpc(Rpc::new("testpua.notifies", Self::notifies).doc("NOTIFYs seen by testpua_notify()"))
            .rpc(Rpc::new("testpua.is_dialog", Self::is_dialog).doc("is_dialog"))
            .rpc(Rpc::new("testpua.load", Self::load).doc("publishes N presentities at once"))
            .rpc(Rpc::new("testpua.load_subscribe", Self::load_subscribe).doc("subscribes to N presentities at once"))
            .rpc(Rpc::new("testpua.loaded", Self::loaded).doc("2xx and failures of testpua.load"))
    }

    fn init(host: &Host, _params: &Params) -> Result<Self, Error> {
        let pua = Pua::bind(host)?;
        let processor = |body: &str, version: i32, _tuple_id: &str| {
            assert!(!body.contains("panic"), "asked to panic");
            Ok((format!("[v{version}] {body}"), format!("tp-{version}")))
        };
        if pua.add_event(TEST_EVENT.1, TEST_EVENT.0, "text/plain", Some(processor)) != 0 {
            return Err(Error::new("add_event failed"));
        }
        pua.register_callback(i32::MAX, |record, reply| {
            if record.cb_param >= LOAD_BASE {
                let counter = if (200..300).contains(&reply.code) && !reply.local { &LOAD_OK } else { &LOAD_FAILED };
                counter.fetch_add(1, Ordering::Relaxed);
                return 0;
            }
            if let Ok(mut calls) = CALLS.lock() {
                calls.push(serde_json::json!({
                    "cb_param": record.cb_param,
                    "code": reply.code,
                    "local": reply.local,
                    "etag": record.etag,
                    "pres_uri": record.pres_uri,
                    "flag": record.flag,
                    "to_tag": record.to_tag,
                }));
            }
            0
        });
        Ok(TestPua { pua })
    }
}

export_module!(TestPua);
