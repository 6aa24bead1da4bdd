//! A minimal API that the host's conformance tests export and bind; it exists to show
//! binding, layout checking and panic containment across two plugins.

use abi_stable::StableAbi;
use abi_stable::std_types::{RResult, RStr, RString};

use crate::ffi::FfiError;

/// The `echo` API.
pub struct EchoApi;

impl super::Api for EchoApi {
    const NAME: &'static str = "echo";
    const VERSION: u32 = 1;
    type VTable = EchoVTable;
}

/// Its vtable.
#[repr(C)]
#[derive(StableAbi)]
pub struct EchoVTable {
    /// Returns its argument with a prefix the exporter chose; panics if it is `"panic"`.
    pub echo: extern "C" fn(text: RStr<'_>) -> RResult<RString, FfiError>,
}
