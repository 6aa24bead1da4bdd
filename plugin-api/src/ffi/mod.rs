//! The raw ABI between the host and a plugin.
//!
//! Everything here is `#[repr(C)]` and derives `StableAbi`, so `abi_stable` compares the layout
//! the host was built with against the one a plugin was built with when the plugin is loaded.
//! This is the only module of the workspace that names `abi_stable` types in signatures; module
//! authors use the safe wrappers of this crate (`Module`, `Host`, `Params`, ...) instead, so that
//! a move away from `abi_stable` would touch this crate only.
//!
//! Rules that keep the ABI evolvable:
//! - the two vtables ([`PluginRoot`], [`HostVTable`]) are prefix types: new function pointers are
//!   appended after the last prefix field and read as `Option` by the other side;
//! - data crosses as `RStr`/`RSlice` borrowed for the call, or `RString`/`RVec` owned by the
//!   receiver (abi_stable's types carry their own deallocator, so nothing is freed with the
//!   wrong allocator);
//! - no Rust panic crosses an `extern "C"` function: the plugin side catches every panic in
//!   [`crate::export`] and returns an [`FfiError`] of kind [`FfiError::PANIC`].

mod callback;
mod db;
mod root;
mod sip;

pub use callback::FfiCallback;
pub use db::{FfiDbCond, FfiDbOp, FfiDbResult, FfiDbValue};
pub use root::*;
pub use sip::*;

pub use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSlice, RSome, RStr, RString, RVec};
