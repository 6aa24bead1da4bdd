//! The plugin API of puahost: what a module is built against.
//!
//! A module is a `cdylib` crate that depends on this crate only. It implements [`Module`] and
//! exports it with [`export_module!`]:
//!
//! ```ignore
//! use plugin_api::{Error, Host, Module, ModuleInfo, Param, Params, Rpc};
//!
//! pub struct Hello { greeting: String }
//!
//! impl Module for Hello {
//!     fn info() -> ModuleInfo<Self> {
//!         ModuleInfo::new("hello", env!("CARGO_PKG_VERSION"))
//!             .param(Param::str("greeting", "hello").doc("what hello.say answers"))
//!             .rpc(Rpc::new("hello.say", |m: &Hello, _| Ok(m.greeting.clone().into())))
//!     }
//!     fn init(_host: &Host, params: &Params) -> Result<Self, Error> {
//!         Ok(Hello { greeting: params.str("greeting").to_string() })
//!     }
//! }
//!
//! plugin_api::export_module!(Hello);
//! ```
//!
//! The module writes no `unsafe` and no `extern "C"`: the export layer ([`export_module!`])
//! generates the entry points, catches every panic at the boundary (the host logs it under the
//! module's name and keeps running), and forwards the module's `tracing` events to the host's
//! log. Host services (timers, metrics, the database, other modules' APIs, delayed RPC replies)
//! are methods of [`Host`].
//!
//! The ABI itself is in [`ffi`]; it is built on `abi_stable`, whose load-time layout checks
//! refuse a plugin built against an incompatible version of this crate.

#![warn(missing_docs)]

pub mod api;
pub mod db;
mod error;
mod export;
pub mod ffi;
mod host;
mod logging;
pub mod metrics;
mod module;
mod params;
pub mod rpc;
pub mod sip;

pub use api::Api;
pub use error::Error;
#[doc(hidden)]
pub use export::__private;
pub use host::{Host, Timer};
pub use module::{Function, FunctionCall, FunctionHandler, Module, ModuleInfo, Param, RouteKinds, Rpc};
pub use params::Params;
pub use rpc::{DelayedReply, RpcCall, RpcFault, RpcResult};

/// What most modules import.
pub mod prelude {
    pub use crate::db::{Batch, Cond, Db, Op, Value as DbValue};
    pub use crate::rpc::Value;
    pub use crate::sip::{Message, Reply, Request};
    pub use crate::{
        DelayedReply, Error, Function, FunctionCall, Host, Module, ModuleInfo, Param, Params, RouteKinds, Rpc, RpcCall,
        RpcFault, RpcResult, export_module,
    };
}
