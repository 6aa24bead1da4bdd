//! RPC: one registry of commands (the host's built-ins and every module's), reached over
//! JSON-RPC 2.0 by HTTP (`POST /RPC`) and by FIFO (Kamailio jsonrpcs's `reply_name` protocol,
//! so `kamctl rpc` works unchanged).
//!
//! A module's command runs on a worker and answers through a token, now or later (a delayed
//! reply, e.g. when a SIP reply arrives). Every transport waits for that answer the same way,
//! so delayed replies work over the FIFO too, not only over HTTP as in Kamailio.

mod builtin;
pub mod client;
pub mod envelope;
mod fifo;
pub mod framing;
mod http;
pub mod jsonrpc;
pub mod shortcuts;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::std_types::{RErr, ROk};
use plugin_api::ffi::{FfiRpcCall, FfiRpcResult, PluginRootRef};
use serde_json::Value;
use tokio::sync::oneshot;

pub use builtin::mark_started as builtin_mark_started;
pub use fifo::serve_fifo;
pub use http::serve_http;

use crate::services::HostState;

/// How long a delayed reply may take before the caller gets a fault. A module's SIP
/// transaction ends (408) after 32 s, so a reply still missing after this is a bug.
const DELAYED_REPLY_TIMEOUT: Duration = Duration::from_secs(90);

/// An RPC fault: code and text, as Kamailio's `rpc->fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: i32,
    pub message: String,
}

impl Fault {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

type BuiltinFn = fn(&HostState, &[Value]) -> Result<Value, Fault>;

enum Handler {
    Builtin(BuiltinFn),
    Module { module: String, root: PluginRootRef, index: u32 },
}

struct Method {
    doc: String,
    handler: Handler,
}

/// The command registry and the calls waiting for their answer.
pub struct Rpc {
    methods: BTreeMap<String, Method>,
    pending: Mutex<HashMap<u64, oneshot::Sender<FfiRpcResult>>>,
    next_token: AtomicU64,
    modules: Vec<String>,
}

impl Rpc {
    /// The built-in commands plus every module's.
    pub fn new(modules: &[crate::loader::LoadedModule]) -> Result<Self, String> {
        let mut methods = BTreeMap::new();
        for (name, doc, f) in builtin::COMMANDS {
            methods.insert(name.to_string(), Method { doc: doc.to_string(), handler: Handler::Builtin(*f) });
        }
        for m in modules {
            for (index, spec) in m.info.rpcs.iter().enumerate() {
                let name = spec.name.to_string();
                if let Some(existing) = methods.get(&name) {
                    let owner = match &existing.handler {
                        Handler::Builtin(_) => "the host".to_string(),
                        Handler::Module { module, .. } => format!("module {module}"),
                    };
                    return Err(format!("module {} declares RPC command {name}, which {owner} already has", m.name));
                }
                methods.insert(
                    name,
                    Method {
                        doc: spec.doc.to_string(),
                        handler: Handler::Module { module: m.name.clone(), root: m.root, index: index as u32 },
                    },
                );
            }
        }
        Ok(Self {
            methods,
            pending: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            modules: modules.iter().map(|m| m.name.clone()).collect(),
        })
    }

    /// Every command name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// A command's documentation.
    pub fn doc(&self, name: &str) -> Option<&str> {
        self.methods.get(name).map(|m| m.doc.as_str())
    }

    /// The loaded modules, in load order.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// Delivers the answer for `token`; later answers for the same token are ignored.
    pub fn complete(&self, token: u64, result: FfiRpcResult) {
        if let Some(tx) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&token) {
            let _ = tx.send(result);
        }
    }

    /// Runs `method`.
    pub async fn call(state: &Arc<HostState>, method: &str, params: Vec<Value>) -> Result<Value, Fault> {
        let rpc = &state.rpc;
        let Some(m) = rpc.methods.get(method) else {
            return Err(Fault::new(500, "Method Not Found"));
        };
        match &m.handler {
            Handler::Builtin(f) => f(state, &params),
            Handler::Module { module, root, index } => {
                let token = rpc.next_token.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                rpc.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(token, tx);
                let (module, root, index, name) = (module.clone(), *root, *index, method.to_string());
                let params_json = Value::Array(params).to_string();
                let st = state.clone();
                state.workers.submit(Box::new(move || {
                    let call = FfiRpcCall { token, params_json: params_json.as_str().into() };
                    if let RErr(e) = (root.call_rpc())(index, call) {
                        tracing::error!(%module, command = %name, "RPC handler failed: {}", e.message);
                        crate::services::plugin_error();
                        // Answers only if the module did not (its reply handle answers on drop).
                        st.rpc.complete(
                            token,
                            RErr(plugin_api::ffi::FfiRpcFault {
                                code: 500,
                                message: format!("Internal error in module {module}").into(),
                            }),
                        );
                    }
                }));
                let answer = tokio::time::timeout(DELAYED_REPLY_TIMEOUT, rx).await;
                match answer {
                    Ok(Ok(ROk(json))) => serde_json::from_str(json.as_str())
                        .map_err(|e| Fault::new(500, format!("Internal error: module reply is not JSON: {e}"))),
                    Ok(Ok(RErr(f))) => Err(Fault::new(f.code, f.message.into_string())),
                    Ok(Err(_)) => Err(Fault::new(500, "Internal error: the command gave no reply")),
                    Err(_) => {
                        rpc.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
                        Err(Fault::new(500, "Timeout waiting for the reply"))
                    }
                }
            }
        }
    }
}
