//! A Rust closure that crosses the boundary: data pointer, call and drop functions.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::StableAbi;
use abi_stable::std_types::{RErr, ROk};

use super::{FfiError, FfiStatus};
use crate::export::panic_message;

/// A callback owned by whoever holds it: the holder calls `call` any number of times, then
/// `drop` exactly once. Built only by [`FfiCallback::new`], so `call` and `drop` always belong to
/// the plugin that allocated `data` (the boundary never frees with the other side's allocator).
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiCallback {
    data: *mut c_void,
    call: unsafe extern "C" fn(data: *mut c_void) -> FfiStatus,
    drop: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: `new` only accepts `Send + Sync` closures.
unsafe impl Send for FfiCallback {}
// SAFETY: as above; `call` takes the closure by shared reference.
unsafe impl Sync for FfiCallback {}

type BoxedFn = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

unsafe extern "C" fn call_boxed(data: *mut c_void) -> FfiStatus {
    // SAFETY: `data` came from `Box::into_raw` in `new` and is not freed before `drop`.
    let f = unsafe { &*(data as *const BoxedFn) };
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ROk(()),
        Ok(Err(message)) => RErr(FfiError { kind: FfiError::ERROR, message: message.into() }),
        Err(panic) => RErr(FfiError { kind: FfiError::PANIC, message: panic_message(&panic).into() }),
    }
}

unsafe extern "C" fn drop_boxed(data: *mut c_void) {
    // SAFETY: called once, by `Drop`, on the pointer `new` leaked.
    let boxed = unsafe { Box::from_raw(data as *mut BoxedFn) };
    // A panicking destructor must not unwind through `extern "C"`.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
}

impl FfiCallback {
    /// Wraps a closure. Panics inside it are caught and reported as [`FfiError::PANIC`].
    pub fn new(f: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        let boxed: Box<BoxedFn> = Box::new(Box::new(f));
        Self { data: Box::into_raw(boxed) as *mut c_void, call: call_boxed, drop: drop_boxed }
    }

    /// Runs the closure.
    pub fn call(&self) -> FfiStatus {
        // SAFETY: `data` is live until `drop` runs, which only `Drop` does.
        unsafe { (self.call)(self.data) }
    }
}

impl Drop for FfiCallback {
    fn drop(&mut self) {
        // SAFETY: runs once; `drop` matches the allocator that built `data`.
        unsafe { (self.drop)(self.data) }
    }
}
