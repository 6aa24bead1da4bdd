//! RPC commands: the call a handler gets, its answer, and replies that come later.

use abi_stable::std_types::{RErr, ROk};
pub use serde_json::Value;

use crate::ffi::FfiRpcFault;
use crate::host::Host;

/// An RPC fault: Kamailio's `rpc->fault(ctx, code, text)`. Over JSON-RPC it becomes
/// `{"error": {"code": code, "message": text}}` and, over HTTP, status `code` when it is > 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFault {
    /// Fault code (400 bad parameters, 404 not found, 500 failure, ...).
    pub code: i32,
    /// Fault text.
    pub message: String,
}

impl RpcFault {
    /// A fault with this code and text.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// What an RPC handler answers: a JSON value (`Value::Null` for an empty reply) or a fault.
pub type RpcResult = Result<Value, RpcFault>;

/// The positional parameters of one RPC call.
///
/// Kamailio ignores parameter names and keeps only their order; so does this type (a by-name
/// object is taken in its key order).
#[derive(Debug, Clone)]
pub struct RpcCall {
    params: Vec<Value>,
}

impl RpcCall {
    pub(crate) fn parse_params(json: &str) -> Result<Vec<Value>, String> {
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Array(v)) => Ok(v),
            Ok(Value::Object(m)) => Ok(m.into_iter().map(|(_, v)| v).collect()),
            Ok(Value::Null) => Ok(Vec::new()),
            Ok(other) => Ok(vec![other]),
            Err(e) => Err(format!("parameters are not valid JSON: {e}")),
        }
    }

    /// A call with these parameters (for tests of handlers).
    pub fn new(params: Vec<Value>) -> Self {
        Self { params }
    }

    /// All parameters.
    pub fn params(&self) -> &[Value] {
        &self.params
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// No parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Parameter `i` as a string, as Kamailio's `"S"`/`"s"` scan: a JSON string, or the text of
    /// a number (kamctl sends numeric-looking arguments as numbers).
    pub fn str(&self, i: usize) -> Option<String> {
        match self.params.get(i)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Parameter `i` as an integer, as Kamailio's `"d"` scan: a JSON number; a string that is
    /// not a number reads as `None`.
    pub fn int(&self, i: usize) -> Option<i64> {
        match self.params.get(i)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// The answer to an RPC call that a handler gives later (Kamailio's delayed reply context).
///
/// It is `Send`: move it into a SIP reply callback and call [`DelayedReply::send`] there.
/// Dropping it unanswered answers with fault 500, so the RPC client never waits forever.
#[derive(Debug)]
pub struct DelayedReply {
    host: Host,
    token: u64,
    answered: bool,
}

impl DelayedReply {
    pub(crate) fn new(host: Host, token: u64) -> Self {
        Self { host, token, answered: false }
    }

    /// Answers the call.
    pub fn send(mut self, result: RpcResult) {
        self.answer(result);
    }

    /// Answers with a value.
    pub fn value(self, value: Value) {
        self.send(Ok(value));
    }

    /// Answers with a fault.
    pub fn fault(self, code: i32, message: impl Into<String>) {
        self.send(Err(RpcFault::new(code, message)));
    }

    fn answer(&mut self, result: RpcResult) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        let ffi = match result {
            Ok(v) => ROk(v.to_string().into()),
            Err(f) => RErr(FfiRpcFault { code: f.code, message: f.message.into() }),
        };
        (self.host.vtable().rpc_reply())(self.token, ffi);
    }
}

impl Drop for DelayedReply {
    fn drop(&mut self) {
        if !self.answered {
            let why = if std::thread::panicking() {
                format!("Internal error: module {} failed while handling the command", self.host.module_name())
            } else {
                format!("Internal error: module {} did not answer the command", self.host.module_name())
            };
            self.answer(Err(RpcFault::new(500, why)));
        }
    }
}
