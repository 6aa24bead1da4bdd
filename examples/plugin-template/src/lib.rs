//! `hello`: a minimal third-party module for puahost.
//!
//! It has one modparam (`greeting`), one config function (`hello_log(text)`), one RPC command
//! (`hello.say [name]`) and a counter (`puahost_hello_said_total`). Build it with
//! `cargo build --release`, put `target/release/libhello.so` on the host's modules_path (or
//! set `[core] modules_path`), and add `loadmodule = ["hello"]` to the config.

use plugin_api::metrics::Counter;
use plugin_api::prelude::*;

/// The module's state, built once by `init`.
pub struct Hello {
    greeting: String,
    said: Counter,
}

impl Hello {
    /// RPC `hello.say [name]`: answers with the configured greeting.
    fn say(&self, call: &RpcCall) -> RpcResult {
        self.said.inc();
        let name = call.str(0).unwrap_or_else(|| "world".to_string());
        Ok(Value::String(format!("{}, {name}!", self.greeting)))
    }

    /// Config function `hello_log(text)`: logs its argument; returns 1 (true).
    fn log(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        tracing::info!("{}: {}", self.greeting, call.arg(0).unwrap_or(""));
        Ok(1)
    }
}

impl Module for Hello {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("hello", env!("CARGO_PKG_VERSION"))
            .doc("Example third-party module: greets over RPC.")
            .param(Param::str("greeting", "Hello").doc("what hello.say starts its answer with"))
            .function(Function::new("hello_log", 1..=1, Self::log).doc("logs its argument"))
            .rpc(Rpc::new("hello.say", Self::say).doc("answers with the greeting: hello.say [name]"))
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let greeting = params.str("greeting").to_string();
        if greeting.is_empty() {
            return Err(Error::new("greeting must not be empty"));
        }
        tracing::info!(%greeting, "hello module ready");
        Ok(Hello { greeting, said: host.counter("said", "hello.say calls")? })
    }
}

export_module!(Hello);
