//! `testbind`: binds the `echo` API of testmod at init, as pua_mi binds pua.

use plugin_api::api::test_api::{EchoApi, EchoVTable};
use plugin_api::ffi::{RErr, ROk};
use plugin_api::prelude::*;

pub struct TestBind {
    echo: &'static EchoVTable,
}

impl TestBind {
    fn rpc_echo(&self, call: &RpcCall) -> RpcResult {
        let text = call.str(0).unwrap_or_default();
        match (self.echo.echo)(text.as_str().into()) {
            ROk(s) => Ok(Value::String(s.into_string())),
            RErr(e) => Err(RpcFault::new(500, format!("echo failed: {}", e.message))),
        }
    }
}

impl Module for TestBind {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("testbind", env!("CARGO_PKG_VERSION"))
            .doc("Conformance-test module: binds testmod's echo API.")
            .requires("testmod")
            .rpc(Rpc::new("testbind.echo", Self::rpc_echo).doc("calls testmod's echo through the bound API"))
    }

    fn init(host: &Host, _params: &Params) -> Result<Self, Error> {
        Ok(TestBind { echo: host.bind::<EchoApi>()? })
    }
}

export_module!(TestBind);
