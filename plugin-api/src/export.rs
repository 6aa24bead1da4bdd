//! The export layer: the `extern "C"` entry points a plugin's root module points at.
//!
//! Each entry point is generic over the plugin's [`Module`] type and is instantiated by
//! [`export_module!`](crate::export_module). Every one of them runs the module's code inside
//! `catch_unwind`: since Rust 1.81 a panic that reaches an `extern "C"` boundary aborts the
//! process, so a module's bug would take the host down with it.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RErr, ROk, RResult, RStr, RVec};

use crate::ffi::{
    FfiCall, FfiError, FfiModuleInfo, FfiParam, FfiRpcCall, FfiStatus, HostRef, PLUGIN_API_VERSION, PluginRoot,
    PluginRootRef,
};
use crate::host::Host;
use crate::module::{FunctionCall, Module, ModuleInfo, RpcHandler};
use crate::params::Params;
use crate::rpc::{DelayedReply, RpcCall};
use crate::{Error, logging};

/// The module instance, set by `init`. One per cdylib: each plugin has its own copy of this crate.
static INSTANCE: OnceLock<Box<dyn Any + Send + Sync>> = OnceLock::new();
/// The module's declaration, built once on first use.
static INFO: OnceLock<Box<dyn Any + Send + Sync>> = OnceLock::new();

thread_local! {
    /// The request context of the config function this plugin is running on this thread (null
    /// outside one), so APIs that call other modules back synchronously from inside a function
    /// (the dialog API's callbacks inside `dlg_manage()`) can hand it on.
    static CURRENT_REQUEST: std::cell::Cell<*const std::ffi::c_void> = const { std::cell::Cell::new(std::ptr::null()) };
    /// Where the last panic on this thread happened, recorded by the panic hook so the error
    /// the host logs says where, without a second log line from the hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Text of a caught panic: the payload, and where it happened when the hook saw it.
pub(crate) fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    };
    match LAST_PANIC.with(|p| p.borrow_mut().take()) {
        Some(location) => format!("panicked at {location}: {text}"),
        None => format!("panicked: {text}"),
    }
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if let Some(location) = info.location() {
            let location = format!("{}:{}", location.file(), location.line());
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(location));
        }
    }));
}

/// Runs `f`, turning an error or a panic into an [`FfiError`].
fn guard<T>(f: impl FnOnce() -> Result<T, Error>) -> RResult<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(FfiError { kind: FfiError::ERROR, message: e.to_string().into() }),
        Err(panic) => RErr(FfiError { kind: FfiError::PANIC, message: panic_message(&panic).into() }),
    }
}

fn info<M: Module>() -> &'static ModuleInfo<M> {
    INFO.get_or_init(|| Box::new(M::info())).downcast_ref::<ModuleInfo<M>>().expect("one module type per plugin")
}

fn instance<M: Module>() -> Result<&'static M, Error> {
    INSTANCE.get().and_then(|m| m.downcast_ref::<M>()).ok_or_else(|| Error::new("module called before init"))
}

extern "C" fn info_shim<M: Module>() -> RResult<FfiModuleInfo, FfiError> {
    guard(|| Ok(info::<M>().to_ffi()))
}

extern "C" fn init_shim<M: Module>(host: HostRef, params: RVec<FfiParam>) -> FfiStatus {
    guard(|| {
        let name: &'static str = info::<M>().name;
        let host = Host::install(host, name)?;
        install_panic_hook();
        logging::install(host);
        let params = Params::from_ffi(params);
        let module = M::init(&host, &params)?;
        INSTANCE.set(Box::new(module)).map_err(|_| Error::new("init called twice"))?;
        Ok(())
    })
}

extern "C" fn child_init_shim<M: Module>(rank: u32) -> FfiStatus {
    guard(|| instance::<M>()?.child_init(&Host::current()?, rank))
}

extern "C" fn destroy_shim<M: Module>() -> FfiStatus {
    guard(|| {
        // A module whose init failed has no instance and nothing to flush.
        if let Ok(m) = instance::<M>() {
            m.destroy(&Host::current()?);
        }
        Ok(())
    })
}

extern "C" fn call_function_shim<M: Module>(index: u32, call: &FfiCall<'_>) -> RResult<i32, FfiError> {
    guard(|| {
        let decl = info::<M>()
            .functions
            .get(index as usize)
            .ok_or_else(|| Error::new(format!("no function number {index}")))?;
        let ctx = call.ctx;
        let mut call = FunctionCall::from_ffi(call);
        /// Puts the previous request back, a panic included.
        struct Restore(*const std::ffi::c_void);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT_REQUEST.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT_REQUEST.with(|c| c.replace(ctx)));
        (decl.handler)(instance::<M>()?, &mut call)
    })
}

/// The request context of the config function this plugin runs on this thread, null outside
/// one (valid only until that function returns).
pub(crate) fn current_request() -> *const std::ffi::c_void {
    CURRENT_REQUEST.with(std::cell::Cell::get)
}

extern "C" fn call_rpc_shim<M: Module>(index: u32, call: FfiRpcCall<'_>) -> FfiStatus {
    let token = call.token;
    guard(|| {
        let host = Host::current()?;
        // The reply handle exists before anything can fail, so a bad call, a missing
        // declaration or a panic in the handler still answers the caller (through its Drop).
        let reply = DelayedReply::new(host, token);
        let params = match RpcCall::parse_params(call.params_json.as_str()) {
            Ok(params) => params,
            Err(e) => {
                reply.fault(400, e);
                return Ok(());
            }
        };
        let decl = info::<M>().rpcs.get(index as usize).ok_or_else(|| Error::new(format!("no RPC number {index}")))?;
        let module = instance::<M>()?;
        let call = RpcCall::new(params);
        match decl.handler {
            RpcHandler::Now(handler) => reply.send(handler(module, &call)),
            RpcHandler::Delayed(handler) => handler(module, &call, reply),
        }
        Ok(())
    })
}

extern "C" fn set_log_level_shim(level: u8) {
    // Cannot panic in practice; guarded anyway because this is an extern "C" boundary.
    let _ = catch_unwind(|| logging::set_level(level));
}

/// Builds the root module for `M`. Called by [`export_module!`](crate::export_module).
#[doc(hidden)]
pub fn root_module<M: Module>() -> PluginRootRef {
    PluginRoot {
        plugin_api_version: RStr::from_str(PLUGIN_API_VERSION),
        info: info_shim::<M>,
        init: init_shim::<M>,
        child_init: child_init_shim::<M>,
        destroy: destroy_shim::<M>,
        call_function: call_function_shim::<M>,
        call_rpc: call_rpc_shim::<M>,
        set_log_level: set_log_level_shim,
    }
    .leak_into_prefix()
}

/// Items the [`export_module!`](crate::export_module) macro expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use super::root_module;
    use abi_stable::library::{__call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult};

    /// The symbol abi_stable looks up in a library (checked against abi_stable by a unit test).
    pub const ROOT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

    /// The header the exported static holds.
    pub const fn lib_header(constructor: extern "C" fn() -> RootModuleResult) -> LibHeader {
        // SAFETY: `constructor` is `root_constructor`, which returns a `PluginRootRef`, the
        // root module type named here; layout checking stays on.
        unsafe { LibHeader::from_constructor::<crate::ffi::PluginRootRef>(constructor, CheckTypeLayout::Yes) }
    }

    /// Runs the module's root constructor with abi_stable's panic guard.
    pub fn call_root(f: fn() -> crate::ffi::PluginRootRef) -> RootModuleResult {
        __call_root_module_loader(f)
    }

    pub use abi_stable::library::{LibHeader as Header, RootModuleResult as RootResult};

    /// Name of the symbol that carries the plugin-api version a plugin was built against, as a
    /// NUL-padded byte array whose layout cannot change; the host reads it to name both versions
    /// when it refuses a plugin whose root module it cannot read.
    pub const VERSION_SYMBOL: &str = "puahost_plugin_api_version";

    /// The plugin-api version as a NUL-padded 32-byte array.
    pub const VERSION_BYTES: [u8; 32] = {
        let v = crate::ffi::PLUGIN_API_VERSION.as_bytes();
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < v.len() && i < 31 {
            out[i] = v[i];
            i += 1;
        }
        out
    };
}

/// Exports a [`Module`] type as this cdylib's plugin. Use it once, at the crate root:
///
/// ```ignore
/// plugin_api::export_module!(MyModule);
/// ```
///
/// It expands to the one symbol the host looks up; the module author writes no `extern "C"`
/// and no `unsafe`.
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static PUAHOST_MODULE_HEADER: $crate::__private::Header = {
            extern "C" fn constructor() -> $crate::__private::RootResult {
                $crate::__private::call_root($crate::__private::root_module::<$module>)
            }
            $crate::__private::lib_header(constructor)
        };

        #[doc(hidden)]
        #[unsafe(export_name = "puahost_plugin_api_version")]
        pub static PUAHOST_PLUGIN_API_VERSION: [u8; 32] = $crate::__private::VERSION_BYTES;
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(super::__private::ROOT_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
