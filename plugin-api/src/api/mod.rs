//! APIs that modules export to each other by name, as Kamailio's `bind_pua`, `bind_usrloc`, ...
//!
//! An API's vtable type is defined in this crate, so the exporter and the binder agree on it;
//! the host checks at bind time that the exporter's layout of the vtable is compatible with the
//! binder's (abi_stable's layout checker), so a module built against another version of an API
//! is refused with a message instead of calling through a wrong function pointer.

use abi_stable::StableAbi;

/// An API a module can export and others can bind.
pub trait Api: 'static {
    /// The name it is exported under (`"pua"`).
    const NAME: &'static str;
    /// Its major version: binder and exporter must agree on it.
    const VERSION: u32;
    /// The vtable type handed from exporter to binder.
    type VTable: StableAbi + Sync + 'static;
}

pub mod presence;
pub mod pua;
#[cfg(feature = "test-api")]
pub mod test_api;
