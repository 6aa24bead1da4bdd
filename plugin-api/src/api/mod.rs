//! APIs that modules export to each other by name, as Kamailio's `bind_pua`, `bind_usrloc`, ...
//!
//! An API's vtable type is defined in this crate, so the exporter and the binder agree on it;
//! the host checks at bind time that the exporter's layout of the vtable is compatible with the
//! binder's (abi_stable's layout checker), so a module built against another version of an API
//! is refused with a message instead of calling through a wrong function pointer.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use abi_stable::StableAbi;

use crate::Error;

/// An API a module can export and others can bind.
pub trait Api: 'static {
    /// The name it is exported under (`"pua"`).
    const NAME: &'static str;
    /// Its major version: binder and exporter must agree on it.
    const VERSION: u32;
    /// The vtable type handed from exporter to binder.
    type VTable: StableAbi + Sync + 'static;
}

/// The service a module exported for one API, reached by that API's `extern "C"` shims.
pub(crate) struct ServiceSlot(OnceLock<&'static (dyn Any + Send + Sync)>);

impl ServiceSlot {
    pub(crate) const fn new() -> Self {
        Self(OnceLock::new())
    }

    /// Registers the service; an API is exported once per process.
    pub(crate) fn set(&self, service: &'static (dyn Any + Send + Sync), api: &str) -> Result<(), Error> {
        self.0.set(service).map_err(|_| Error::new(format!("the {api} API is already exported")))
    }

    /// Runs `f` on the service, turning a panic (or a missing service) into `fail`.
    pub(crate) fn guarded<T: Any, R>(&self, fail: R, f: impl FnOnce(&'static T) -> R) -> R {
        match self.0.get().and_then(|s| s.downcast_ref::<T>()) {
            Some(s) => catch_unwind(AssertUnwindSafe(|| f(s))).unwrap_or(fail),
            None => fail,
        }
    }
}

pub mod auth;
pub mod dialog;
pub mod presence;
pub mod pua;
#[cfg(feature = "test-api")]
pub mod test_api;
pub mod usrloc;
pub mod xmpp;
