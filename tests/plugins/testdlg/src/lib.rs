//! `testdlg`: binds the `dialog` API at init, registers for every callback type and records
//! each event as `kind dir state trigger call-id to-tag`; `testdlg.events` returns them and
//! clears the list.

use std::sync::{Arc, Mutex};

use plugin_api::api::dialog::{Dialog, cb};
use plugin_api::prelude::*;

pub struct TestDlg {
    events: Arc<Mutex<Vec<String>>>,
}

impl TestDlg {
    fn rpc_events(&self, _call: &RpcCall) -> RpcResult {
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Value::Array(events.into_iter().map(Value::String).collect()))
    }
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        cb::CREATED => "CREATED",
        cb::EARLY => "EARLY",
        cb::CONFIRMED_NA => "CONFIRMED_NA",
        cb::CONFIRMED => "CONFIRMED",
        cb::REQ_WITHIN => "REQ_WITHIN",
        cb::TERMINATED => "TERMINATED",
        cb::FAILED => "FAILED",
        cb::EXPIRED => "EXPIRED",
        _ => "?",
    }
}

impl Module for TestDlg {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("testdlg", env!("CARGO_PKG_VERSION"))
            .doc("Test module: records the dialog API's callbacks.")
            .requires("dialog")
            .rpc(Rpc::new("testdlg.events", Self::rpc_events).doc("the recorded dialog events, then clears them"))
    }

    fn init(host: &Host, _params: &Params) -> Result<Self, Error> {
        let api = Dialog::bind(host)?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        api.register_callback(cb::ALL, move |e| {
            let trigger = match e.message {
                Some(m) => match m.status_code() {
                    Some(code) => code.to_string(),
                    None => m.method().map_or("?", |m| m.as_str()).to_string(),
                },
                None => "-".to_string(),
            };
            let d = e.dialog;
            let line = format!(
                "{} {} {} {} {} {}",
                kind_name(e.kind),
                e.direction,
                d.state,
                trigger,
                d.call_id,
                if d.to_tag.is_empty() { "-" } else { d.to_tag.as_str() }
            );
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        })?;
        Ok(TestDlg { events })
    }
}

export_module!(TestDlg);
