//! The JSON-RPC 2.0 envelope, shared by every transport, with Kamailio jsonrpcs's conventions:
//! positional parameters (a by-name object is taken in key order), faults as
//! `{"code": c, "message": m}` with code 0 mapped to -32000, and over HTTP a status equal to the
//! fault code when it is above 100 (500 otherwise).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Fault, Rpc};
use crate::services::HostState;

/// A response and the HTTP status that goes with it.
pub struct Response {
    pub status: u16,
    pub body: Value,
}

fn error(code: i32, message: &str, id: Value) -> Response {
    let code = if code == 0 { -32000 } else { code };
    let status = if code > 100 && code < 1000 { code as u16 } else { 500 };
    Response { status, body: json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}) }
}

/// Handles one parsed request object.
pub async fn handle_request(state: &Arc<HostState>, request: Map<String, Value>) -> Response {
    state.counters.rpc_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let response = dispatch(state, &request, id).await;
    if response.body.get("error").is_some() {
        state.counters.rpc_faults.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    response
}

async fn dispatch(state: &Arc<HostState>, request: &Map<String, Value>, id: Value) -> Response {
    let (method, params) = match super::envelope::decode_call(request) {
        Ok(call) => (call.method, call.params),
        Err((code, message)) => return error(code, message, id),
    };
    match Rpc::call(state, method, params).await {
        Ok(result) => Response { status: 200, body: json!({"jsonrpc": "2.0", "result": result, "id": id}) },
        Err(Fault { code, message }) => error(code, &message, id),
    }
}

/// Handles a whole document: one request or a batch. `Err` holds the parse-error response.
pub async fn handle_value(state: &Arc<HostState>, doc: Value) -> Response {
    match doc {
        Value::Object(o) => handle_request(state, o).await,
        Value::Array(items) if !items.is_empty() => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(match item {
                    Value::Object(o) => handle_request(state, o).await.body,
                    _ => error(-32600, "Invalid Request", Value::Null).body,
                });
            }
            Response { status: 200, body: Value::Array(out) }
        }
        _ => error(-32600, "Invalid Request", Value::Null),
    }
}

/// Handles raw bytes (HTTP body).
pub async fn handle_bytes(state: &Arc<HostState>, body: &[u8]) -> Response {
    match serde_json::from_slice::<Value>(body) {
        Ok(doc) => handle_value(state, doc).await,
        Err(_) => error(-32700, "Parse error", Value::Null),
    }
}
