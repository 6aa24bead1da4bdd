//! The `usrloc` API (Kamailio's `bind_usrloc` / `usrloc_api_t`): the location table of
//! registered contacts, kept by the `usrloc` module and written by `registrar` (REGISTER) or
//! anyone else, with callbacks on every contact change (`register_ulcb`), which pua_usrloc and
//! similar modules use to follow registrations.
//!
//! Contacts are keyed by (table, AoR, binding): Kamailio's usrloc "domain" is the table name
//! given to `save("location")`, and a REGISTER's contact is the same binding as a stored one by
//! usrloc's `matching_mode` ([`matching`], [`same_binding`]): the contact URI (0), the URI and
//! the Call-ID (1), or the URI and the Path (2).
//! Callbacks run on the thread that made the change (a worker), after the change is applied,
//! one change at a time in the order the changes were made. A callback may read the table
//! (`get_contacts`) but must not change it (that would wait for itself). A panicking callback
//! is caught.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::StableAbi;
use abi_stable::std_types::{RStr, RString, RVec};

use crate::{Error, Host};

/// Callback types, Kamailio's `UL_CONTACT_*` bits (`ul_callback.h`).
pub mod cb {
    /// A contact was added.
    pub const CONTACT_INSERT: i32 = 1 << 0;
    /// A contact was refreshed or changed.
    pub const CONTACT_UPDATE: i32 = 1 << 1;
    /// A contact was removed (REGISTER with expires 0, `*`, unregister, RPC).
    pub const CONTACT_DELETE: i32 = 1 << 2;
    /// A contact expired (the timer removed it).
    pub const CONTACT_EXPIRE: i32 = 1 << 3;
    /// Every contact callback.
    pub const ALL: i32 = CONTACT_INSERT | CONTACT_UPDATE | CONTACT_DELETE | CONTACT_EXPIRE;
}

/// What [`UsrlocVTable::upsert_contact`] did.
pub mod upsert {
    /// A new contact was inserted.
    pub const INSERTED: i32 = 1;
    /// An existing contact was updated.
    pub const UPDATED: i32 = 2;
    /// Nothing changed: the stored contact has the same Call-ID and a CSeq that is not lower
    /// (a retransmission or an out-of-order REGISTER, RFC 3261 §10.3 step 7).
    pub const STALE: i32 = -2;
    /// The contact is invalid (empty AoR or contact) or the table name is unknown.
    pub const INVALID: i32 = -1;
}

/// usrloc's `matching_mode` values (Kamailio's `CONTACT_ONLY`, `CONTACT_CALLID`,
/// `CONTACT_PATH`).
pub mod matching {
    /// A binding is its contact URI.
    pub const CONTACT_ONLY: i32 = 0;
    /// A binding is its contact URI and Call-ID: the same URI from another Call-ID is another
    /// binding.
    pub const CONTACT_CALLID: i32 = 1;
    /// A binding is its contact URI and Path: the same URI through other proxies is another
    /// binding. A REGISTER without Path (or a registrar without `use_path`) matches by the URI
    /// alone, as Kamailio does.
    pub const CONTACT_PATH: i32 = 2;
}

/// What identifies a binding under [`matching`]: borrowed from a stored contact or a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingKey<'a> {
    /// The contact URI.
    pub contact: &'a str,
    /// The Call-ID.
    pub callid: &'a str,
    /// The Path, comma-separated (empty without one).
    pub path: &'a str,
}

impl<'a> BindingKey<'a> {
    /// The key of an [`FfiContact`].
    pub fn of(c: &'a FfiContact) -> Self {
        BindingKey { contact: c.contact.as_str(), callid: c.callid.as_str(), path: c.path.as_str() }
    }
}

/// Whether `new` (from a REGISTER) is the binding `stored` under matching mode `mode`
/// (Kamailio's `get_ucontact`: `contact_match`, `contact_callid_match`, `contact_path_match`).
/// URIs, Call-IDs and Paths compare byte for byte, as Kamailio's `memcmp`. An unknown mode
/// matches by URI.
pub fn same_binding(mode: i32, stored: BindingKey<'_>, new: BindingKey<'_>) -> bool {
    if stored.contact != new.contact {
        return false;
    }
    match mode {
        matching::CONTACT_CALLID => stored.callid == new.callid,
        matching::CONTACT_PATH => new.path.is_empty() || stored.path == new.path,
        _ => true,
    }
}

/// A registered contact (`ucontact_t`), as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq)]
pub struct FfiContact {
    /// The table (usrloc domain), e.g. `location`.
    pub table: RString,
    /// Address of record: `user` (use_domain=0) or `user@domain`.
    pub aor: RString,
    /// The contact URI.
    pub contact: RString,
    /// Unique record id (`ruid`); empty in a new contact: usrloc assigns one.
    pub ruid: RString,
    /// Source address of the REGISTER as a SIP URI (`sip:203.0.113.5:5060`) when it differs
    /// from the contact's address (NAT); empty otherwise.
    pub received: RString,
    /// Path header values, comma-separated (use_path).
    pub path: RString,
    /// Local socket the REGISTER arrived on (`udp:192.0.2.1:5060`).
    pub socket: RString,
    /// User-Agent header.
    pub user_agent: RString,
    /// Call-ID of the REGISTER.
    pub callid: RString,
    /// CSeq number of the REGISTER.
    pub cseq: i32,
    /// Absolute expiry (seconds since the epoch); 0 for a permanent contact.
    pub expires: i64,
    /// q-value in thousandths (0..=1000), -1 when unspecified.
    pub q: i32,
    /// usrloc flags.
    pub flags: u32,
    /// Branch flags of the REGISTER (`cflags`).
    pub cflags: u32,
    /// Supported methods bit mask (0xFFFFFFFF: all).
    pub methods: u32,
    /// `+sip.instance` (RFC 5626), if given.
    pub instance: RString,
    /// `reg-id` (RFC 5626), 0 if not given.
    pub reg_id: u32,
    /// Last change (seconds since the epoch).
    pub last_modified: i64,
}

/// A callback registered with [`UsrlocVTable::register_callback`].
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiUlCallback {
    data: *mut c_void,
    call: unsafe extern "C" fn(data: *mut c_void, kind: i32, contact: &FfiContact),
    drop: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: built only from `Send + Sync` closures.
unsafe impl Send for FfiUlCallback {}
// SAFETY: as above.
unsafe impl Sync for FfiUlCallback {}

impl Drop for FfiUlCallback {
    fn drop(&mut self) {
        // SAFETY: `drop` belongs to the plugin that built `data`; runs once.
        unsafe { (self.drop)(self.data) }
    }
}

impl FfiUlCallback {
    /// Runs the callback for a change of `kind` ([`cb`]).
    pub fn call(&self, kind: i32, contact: &FfiContact) {
        // SAFETY: `data` belongs to `call`, both from the registering plugin, live until drop.
        unsafe { (self.call)(self.data, kind, contact) }
    }
}

/// The vtable.
#[repr(C)]
#[derive(StableAbi)]
pub struct UsrlocVTable {
    /// Whether AoRs carry the domain (`use_domain` modparam).
    pub use_domain: extern "C" fn() -> bool,
    /// The unexpired contacts of `aor` in `table`.
    pub get_contacts: extern "C" fn(table: RStr<'_>, aor: RStr<'_>) -> RVec<FfiContact>,
    /// Inserts or updates the contact that is the same binding ([`same_binding`]) in (table,
    /// aor); returns an [`upsert`] code. The stored contact (with its ruid) goes to the callbacks.
    pub upsert_contact: extern "C" fn(contact: &FfiContact) -> i32,
    /// Removes one contact; 1 when it existed, 0 when not.
    pub delete_contact: extern "C" fn(table: RStr<'_>, aor: RStr<'_>, contact: RStr<'_>) -> i32,
    /// Removes every contact of `aor` (or only the one with `ruid` when it is not empty);
    /// returns how many were removed.
    pub delete_aor: extern "C" fn(table: RStr<'_>, aor: RStr<'_>, ruid: RStr<'_>) -> i32,
    /// `register_ulcb(types, callback)`: 1, or -1 for an empty set of types.
    pub register_callback: extern "C" fn(types: i32, callback: FfiUlCallback) -> i32,
    /// The `matching_mode` modparam ([`matching`]): how a REGISTER's contact finds its stored
    /// binding, so registrar's CSeq and max_contacts checks count bindings as usrloc does.
    pub matching_mode: extern "C" fn() -> i32,
}

/// The `usrloc` API.
pub struct UsrlocApi;

impl crate::Api for UsrlocApi {
    const NAME: &'static str = "usrloc";
    const VERSION: u32 = 1;
    type VTable = UsrlocVTable;
}

type CallbackFn = Box<dyn Fn(i32, &FfiContact) + Send + Sync>;

unsafe extern "C" fn call_callback(data: *mut c_void, kind: i32, contact: &FfiContact) {
    // SAFETY: `data` is the leaked `CallbackFn` of `callback`, live until drop.
    let f = unsafe { &*(data as *const CallbackFn) };
    let _ = catch_unwind(AssertUnwindSafe(|| f(kind, contact)));
}

unsafe extern "C" fn drop_callback(data: *mut c_void) {
    // SAFETY: runs once, on the pointer leaked by `callback`.
    let b = unsafe { Box::from_raw(data as *mut CallbackFn) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

/// Wraps a closure as an [`FfiUlCallback`] (built on the registering side, so the allocator
/// that frees it is the one that allocated it).
pub fn callback(f: impl Fn(i32, &FfiContact) + Send + Sync + 'static) -> FfiUlCallback {
    let b: Box<CallbackFn> = Box::new(Box::new(f));
    FfiUlCallback { data: Box::into_raw(b) as *mut c_void, call: call_callback, drop: drop_callback }
}

/// The bound `usrloc` API, for registrar, pua_usrloc and others.
#[derive(Clone, Copy)]
pub struct Usrloc {
    vt: &'static UsrlocVTable,
}

impl std::fmt::Debug for Usrloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Usrloc")
    }
}

impl Usrloc {
    /// Binds the API exported by the `usrloc` module (Kamailio's `bind_usrloc`).
    pub fn bind(host: &Host) -> Result<Usrloc, Error> {
        Ok(Usrloc { vt: host.bind::<UsrlocApi>()? })
    }

    /// Whether AoRs carry the domain.
    pub fn use_domain(&self) -> bool {
        (self.vt.use_domain)()
    }

    /// The unexpired contacts of `aor`.
    pub fn contacts(&self, table: &str, aor: &str) -> Vec<FfiContact> {
        (self.vt.get_contacts)(table.into(), aor.into()).into_vec()
    }

    /// Inserts or updates a contact; an [`upsert`] code.
    pub fn upsert_contact(&self, contact: &FfiContact) -> i32 {
        (self.vt.upsert_contact)(contact)
    }

    /// Removes one contact; whether it existed.
    pub fn delete_contact(&self, table: &str, aor: &str, contact: &str) -> bool {
        (self.vt.delete_contact)(table.into(), aor.into(), contact.into()) > 0
    }

    /// Removes the contacts of `aor` (only the one with `ruid` when given); how many.
    pub fn delete_aor(&self, table: &str, aor: &str, ruid: Option<&str>) -> usize {
        usize::try_from((self.vt.delete_aor)(table.into(), aor.into(), ruid.unwrap_or("").into())).unwrap_or(0)
    }

    /// Registers `f` for the change kinds in `types` ([`cb`] bits).
    pub fn register_callback(&self, types: i32, f: impl Fn(i32, &FfiContact) + Send + Sync + 'static) -> i32 {
        (self.vt.register_callback)(types, callback(f))
    }

    /// usrloc's `matching_mode` ([`matching`]).
    pub fn matching_mode(&self) -> i32 {
        (self.vt.matching_mode)()
    }
}

/// What the `usrloc` module implements to export the API.
pub trait UsrlocService: Send + Sync + 'static {
    /// `use_domain`.
    fn use_domain(&self) -> bool;
    /// The unexpired contacts of an AoR.
    fn contacts(&self, table: &str, aor: &str) -> Vec<FfiContact>;
    /// Insert or update; an [`upsert`] code.
    fn upsert_contact(&self, contact: &FfiContact) -> i32;
    /// Remove one contact; 1 or 0.
    fn delete_contact(&self, table: &str, aor: &str, contact: &str) -> i32;
    /// Remove an AoR's contacts (or one by ruid); how many.
    fn delete_aor(&self, table: &str, aor: &str, ruid: &str) -> i32;
    /// Register a callback.
    fn register_callback(&self, types: i32, callback: FfiUlCallback) -> i32;
    /// The `matching_mode` modparam.
    fn matching_mode(&self) -> i32;
}

static SERVICE: super::ServiceSlot = super::ServiceSlot::new();

fn guarded<T: UsrlocService, R>(fail: R, f: impl FnOnce(&'static T) -> R) -> R {
    SERVICE.guarded(fail, f)
}

extern "C" fn use_domain_shim<T: UsrlocService>() -> bool {
    guarded::<T, _>(false, |s| s.use_domain())
}
extern "C" fn get_contacts_shim<T: UsrlocService>(table: RStr<'_>, aor: RStr<'_>) -> RVec<FfiContact> {
    guarded::<T, _>(RVec::new(), |s| s.contacts(table.as_str(), aor.as_str()).into())
}
extern "C" fn upsert_contact_shim<T: UsrlocService>(contact: &FfiContact) -> i32 {
    guarded::<T, _>(upsert::INVALID, |s| s.upsert_contact(contact))
}
extern "C" fn delete_contact_shim<T: UsrlocService>(table: RStr<'_>, aor: RStr<'_>, contact: RStr<'_>) -> i32 {
    guarded::<T, _>(0, |s| s.delete_contact(table.as_str(), aor.as_str(), contact.as_str()))
}
extern "C" fn delete_aor_shim<T: UsrlocService>(table: RStr<'_>, aor: RStr<'_>, ruid: RStr<'_>) -> i32 {
    guarded::<T, _>(0, |s| s.delete_aor(table.as_str(), aor.as_str(), ruid.as_str()))
}
extern "C" fn register_callback_shim<T: UsrlocService>(types: i32, callback: FfiUlCallback) -> i32 {
    guarded::<T, _>(-1, move |s| s.register_callback(types, callback))
}

extern "C" fn matching_mode_shim<T: UsrlocService>() -> i32 {
    guarded::<T, _>(matching::CONTACT_ONLY, |s| s.matching_mode())
}

/// Exports `service` as the `usrloc` API (from the `usrloc` module's init; the module must
/// declare `.exports("usrloc")`).
pub fn export<T: UsrlocService>(host: &Host, service: &'static T) -> Result<(), Error> {
    SERVICE.set(service, "usrloc")?;
    let vt: &'static UsrlocVTable = Box::leak(Box::new(UsrlocVTable {
        use_domain: use_domain_shim::<T>,
        get_contacts: get_contacts_shim::<T>,
        upsert_contact: upsert_contact_shim::<T>,
        delete_contact: delete_contact_shim::<T>,
        delete_aor: delete_aor_shim::<T>,
        register_callback: register_callback_shim::<T>,
        matching_mode: matching_mode_shim::<T>,
    }));
    host.export::<UsrlocApi>(vt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI32, Ordering};

    #[test]
    fn callbacks_cross_the_boundary_and_panics_stay_inside() {
        let seen = Arc::new(AtomicI32::new(0));
        let s = seen.clone();
        let c = callback(move |kind, contact| {
            assert_eq!(contact.aor.as_str(), "alice");
            s.fetch_or(kind, Ordering::SeqCst);
        });
        let contact = FfiContact { aor: "alice".into(), ..Default::default() };
        c.call(cb::CONTACT_INSERT, &contact);
        c.call(cb::CONTACT_EXPIRE, &contact);
        assert_eq!(seen.load(Ordering::SeqCst), cb::CONTACT_INSERT | cb::CONTACT_EXPIRE);

        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        callback(|_, _| panic!("boom")).call(cb::CONTACT_DELETE, &contact);
        std::panic::set_hook(prev);
    }

    #[test]
    fn bindings_match_by_mode() {
        let k = |contact, callid, path| BindingKey { contact, callid, path };
        let stored = k("sip:a@192.0.2.1", "call-1", "<sip:edge1;lr>");
        // Mode 0: the URI alone.
        assert!(same_binding(matching::CONTACT_ONLY, stored, k("sip:a@192.0.2.1", "call-2", "<sip:edge2;lr>")));
        assert!(!same_binding(matching::CONTACT_ONLY, stored, k("sip:a@192.0.2.2", "call-1", "<sip:edge1;lr>")));
        // Mode 1: another Call-ID is another binding.
        assert!(same_binding(matching::CONTACT_CALLID, stored, k("sip:a@192.0.2.1", "call-1", "")));
        assert!(!same_binding(matching::CONTACT_CALLID, stored, k("sip:a@192.0.2.1", "call-2", "<sip:edge1;lr>")));
        // Mode 2: another Path is another binding; no Path matches by URI.
        assert!(same_binding(matching::CONTACT_PATH, stored, k("sip:a@192.0.2.1", "call-9", "<sip:edge1;lr>")));
        assert!(!same_binding(matching::CONTACT_PATH, stored, k("sip:a@192.0.2.1", "call-1", "<sip:edge2;lr>")));
        assert!(same_binding(matching::CONTACT_PATH, stored, k("sip:a@192.0.2.1", "call-1", "")));
        assert!(!same_binding(matching::CONTACT_PATH, stored, k("sip:a@192.0.2.2", "call-1", "<sip:edge1;lr>")));
    }
}
