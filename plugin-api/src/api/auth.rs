//! The `auth` API (Kamailio's `bind_auth_s` / `auth_api_s_t`): digest credentials of a request
//! checked against an HA1 a credentials module (auth_db) looked up, with the nonce checks and
//! replay protection of the `auth` module.
//!
//! The `auth` module exports it with [`export`], implementing [`AuthService`]; `auth_db` binds
//! it with [`Auth::bind`]. Two steps, as Kamailio's `pre_auth` / `post_auth`:
//! [`Auth::pre_auth`] finds the credentials for the realm and checks their nonce (integrity,
//! expiry), giving the user name to look up; [`Auth::check`] verifies the response with the HA1
//! and records the nonce use (nonce count, one-time nonce), so a replay is refused.

use abi_stable::StableAbi;
use abi_stable::std_types::{RStr, RString};

use crate::ffi::FfiMsg;
use crate::sip::Message;
use crate::{Error, Host};

/// Which header carries the credentials.
pub mod hf {
    /// `Authorization` (answered by a 401 challenge: `www_*`).
    pub const AUTHORIZATION: i32 = 1;
    /// `Proxy-Authorization` (answered by a 407 challenge: `proxy_*`).
    pub const PROXY_AUTHORIZATION: i32 = 2;
}

/// Kamailio's `auth_cfg_result_t`: what the authorization functions return to the config.
pub mod rc {
    /// Authenticated.
    pub const OK: i32 = 1;
    /// Error (malformed credentials, database failure, ...).
    pub const ERROR: i32 = -1;
    /// The response does not match the stored password.
    pub const INVALID_PASSWORD: i32 = -2;
    /// No such subscriber.
    pub const USER_UNKNOWN: i32 = -3;
    /// The nonce expired (or is unknown to this process): challenge again with `stale=true`.
    pub const STALE_NONCE: i32 = -4;
    /// No credentials for the realm.
    pub const NO_CREDENTIALS: i32 = -5;
    /// The nonce (or its nonce count) was used before.
    pub const NONCE_REUSED: i32 = -6;
    /// `auth_check` flag 1: the authenticated user is not the From (To for REGISTER) user.
    pub const USER_MISMATCH: i32 = -8;
}

/// Hash algorithm of the credentials (RFC 7616 §3.2).
pub mod alg {
    /// MD5 (also: no `algorithm` parameter).
    pub const MD5: i32 = 0;
    /// SHA-256.
    pub const SHA256: i32 = 1;
}

/// What [`Auth::pre_auth`] found.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiPreAuth {
    /// [`rc::OK`] when the credentials may be checked; else the code to return.
    pub code: i32,
    /// The user part of the credentials' username (before an `@`).
    pub user: RString,
    /// The domain part of the username (`alice@example.com`), empty when it has none: Kamailio
    /// then uses the `ha1b` column.
    pub user_domain: RString,
    /// The whole username as the client sent it (what HA1 is computed over).
    pub username: RString,
    /// The realm the credentials are for (the argument, or the From/To host when it was empty).
    pub realm: RString,
    /// One of [`alg`].
    pub algorithm: i32,
}

/// The vtable.
#[repr(C)]
#[derive(StableAbi)]
pub struct AuthVTable {
    /// Finds the credentials for `realm` (empty: From host, To host for REGISTER) in header
    /// `hftype` ([`hf`]) and checks their nonce.
    pub pre_auth: extern "C" fn(msg: &FfiMsg<'_>, realm: RStr<'_>, hftype: i32) -> FfiPreAuth,
    /// Checks the response of those credentials against `ha1` and records the nonce use:
    /// [`rc::OK`], [`rc::INVALID_PASSWORD`], [`rc::NONCE_REUSED`], [`rc::STALE_NONCE`] or
    /// [`rc::ERROR`].
    pub check: extern "C" fn(msg: &FfiMsg<'_>, realm: RStr<'_>, hftype: i32, ha1: RStr<'_>) -> i32,
    /// HA1 = H(username:realm:password) in lower-case hex for algorithm `alg` ([`alg`]).
    pub calc_ha1: extern "C" fn(alg: i32, username: RStr<'_>, realm: RStr<'_>, password: RStr<'_>) -> RString,
    /// The value of a `WWW-Authenticate` / `Proxy-Authenticate` header for `realm` with a fresh
    /// nonce; `stale` adds `stale=true`; `flags` are `www_challenge`'s (1: qop=auth).
    pub challenge: extern "C" fn(realm: RStr<'_>, flags: i32, stale: bool) -> RString,
}

/// The `auth` API.
pub struct AuthApi;

impl crate::Api for AuthApi {
    const NAME: &'static str = "auth";
    const VERSION: u32 = 1;
    type VTable = AuthVTable;
}

/// The bound `auth` API.
#[derive(Clone, Copy)]
pub struct Auth {
    vt: &'static AuthVTable,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth")
    }
}

impl Auth {
    /// Binds the API exported by the `auth` module.
    pub fn bind(host: &Host) -> Result<Auth, Error> {
        Ok(Auth { vt: host.bind::<AuthApi>()? })
    }

    /// See [`AuthVTable::pre_auth`].
    pub fn pre_auth(&self, msg: &Message<'_>, realm: &str, hftype: i32) -> FfiPreAuth {
        (self.vt.pre_auth)(&crate::sip::ffi_msg(msg), realm.into(), hftype)
    }

    /// See [`AuthVTable::check`].
    pub fn check(&self, msg: &Message<'_>, realm: &str, hftype: i32, ha1: &str) -> i32 {
        (self.vt.check)(&crate::sip::ffi_msg(msg), realm.into(), hftype, ha1.into())
    }

    /// See [`AuthVTable::calc_ha1`].
    pub fn calc_ha1(&self, alg: i32, username: &str, realm: &str, password: &str) -> String {
        (self.vt.calc_ha1)(alg, username.into(), realm.into(), password.into()).into_string()
    }

    /// See [`AuthVTable::challenge`].
    pub fn challenge(&self, realm: &str, flags: i32, stale: bool) -> String {
        (self.vt.challenge)(realm.into(), flags, stale).into_string()
    }
}

/// What the `auth` module implements to export the API.
pub trait AuthService: Send + Sync + 'static {
    /// `pre_auth`.
    fn pre_auth(&self, msg: &Message<'_>, realm: &str, hftype: i32) -> FfiPreAuth;
    /// `check`.
    fn check(&self, msg: &Message<'_>, realm: &str, hftype: i32, ha1: &str) -> i32;
    /// `calc_ha1`.
    fn calc_ha1(&self, alg: i32, username: &str, realm: &str, password: &str) -> String;
    /// `challenge`.
    fn challenge(&self, realm: &str, flags: i32, stale: bool) -> String;
}

static SERVICE: super::ServiceSlot = super::ServiceSlot::new();

fn error_pre_auth() -> FfiPreAuth {
    FfiPreAuth {
        code: rc::ERROR,
        user: RString::new(),
        user_domain: RString::new(),
        username: RString::new(),
        realm: RString::new(),
        algorithm: alg::MD5,
    }
}

extern "C" fn pre_auth_shim<T: AuthService>(msg: &FfiMsg<'_>, realm: RStr<'_>, hftype: i32) -> FfiPreAuth {
    let Some(m) = crate::sip::message(msg) else { return error_pre_auth() };
    SERVICE.guarded::<T, _>(error_pre_auth(), |s| s.pre_auth(&m, realm.as_str(), hftype))
}
extern "C" fn check_shim<T: AuthService>(msg: &FfiMsg<'_>, realm: RStr<'_>, hftype: i32, ha1: RStr<'_>) -> i32 {
    let Some(m) = crate::sip::message(msg) else { return rc::ERROR };
    SERVICE.guarded::<T, _>(rc::ERROR, |s| s.check(&m, realm.as_str(), hftype, ha1.as_str()))
}
extern "C" fn calc_ha1_shim<T: AuthService>(alg: i32, user: RStr<'_>, realm: RStr<'_>, pw: RStr<'_>) -> RString {
    SERVICE.guarded::<T, _>(RString::new(), |s| s.calc_ha1(alg, user.as_str(), realm.as_str(), pw.as_str()).into())
}
extern "C" fn challenge_shim<T: AuthService>(realm: RStr<'_>, flags: i32, stale: bool) -> RString {
    SERVICE.guarded::<T, _>(RString::new(), |s| s.challenge(realm.as_str(), flags, stale).into())
}

/// Exports `service` as the `auth` API (from the `auth` module's init; the module must declare
/// `.exports("auth")`).
pub fn export<T: AuthService>(host: &Host, service: &'static T) -> Result<(), Error> {
    SERVICE.set(service, "auth")?;
    let vt: &'static AuthVTable = Box::leak(Box::new(AuthVTable {
        pre_auth: pre_auth_shim::<T>,
        check: check_shim::<T>,
        calc_ha1: calc_ha1_shim::<T>,
        challenge: challenge_shim::<T>,
    }));
    host.export::<AuthApi>(vt)
}
