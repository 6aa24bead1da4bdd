//! `auth` (Kamailio's auth): HTTP digest for SIP (RFC 3261 §22, RFC 2617, RFC 7616).
//!
//! Config functions (Kamailio's names and return codes):
//! - `www_challenge(realm, flags)` / `proxy_challenge(realm, flags)` — reply 401 with
//!   `WWW-Authenticate` / 407 with `Proxy-Authenticate` carrying a fresh nonce; `stale=true`
//!   when the request carried an expired nonce of ours (or flags has 16). flags 1: offer
//!   `qop="auth"` (also when the `qop` modparam is `auth`). Empty realm: the To host for
//!   REGISTER, else the From host, without `realm_prefix`. Return 1 (replied), -1 error.
//! - `auth_challenge(realm, flags)` — `www_challenge` for REGISTER, else `proxy_challenge`.
//! - `consume_credentials()` — the Authorization / Proxy-Authorization values carrying a
//!   nonce of this server are left out when the request is relayed (credentials for other
//!   servers stay): 1, or -1 when there were none.
//! - `has_credentials(realm)` — 1 when an Authorization or Proxy-Authorization for the realm
//!   is present, else -1.
//!
//! The `auth` API ([`plugin_api::api::auth`]) is what `auth_db` checks credentials with.
//!
//! Nonces are signed with `secret` (random at start when unset) and expire after
//! `nonce_expire`; with `nonce_count = 1` each use of a nonce with qop must carry a higher `nc`,
//! with `one_time_nonce = 1` each nonce authenticates one request. Both keep the nonces this
//! process issued in a table bounded by `nc_array_size`; a nonce it forgot is stale.

pub mod digest;
pub mod nonce;

use plugin_api::api::auth::{self as api, AuthService, FfiPreAuth, alg, hf, rc};
use plugin_api::prelude::*;
use plugin_api::sip::HeaderName;

use digest::{Algorithm, Credentials};
use nonce::{NonceError, Nonces, Replay};

/// `www_challenge` flag: offer qop=auth.
pub const FLAG_QOP_AUTH: i32 = 1;
/// `www_challenge` flag: offer qop=auth-int.
pub const FLAG_QOP_AUTH_INT: i32 = 2;
/// `www_challenge` flag: say `stale=true`.
pub const FLAG_STALE: i32 = 16;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Settings and nonce state; exported as the `auth` API.
#[derive(Debug)]
pub struct Service {
    nonces: Nonces,
    /// The `qop` modparam: `""`, `auth` or `auth-int`.
    qop: String,
    algorithm: Algorithm,
    /// Whether the `algorithm` modparam was set (Kamailio then names it in challenges).
    algorithm_named: bool,
    realm_prefix: String,
}

/// The credentials header for `hftype` and the matching HeaderName.
fn header_name(hftype: i32) -> HeaderName {
    if hftype == hf::PROXY_AUTHORIZATION { HeaderName::PROXY_AUTHORIZATION } else { HeaderName::AUTHORIZATION }
}

impl Service {
    /// The realm to use: `realm`, or the To host (REGISTER) / From host without
    /// `realm_prefix` (Kamailio's `get_realm`).
    pub fn realm<'m>(&self, msg: &Message<'m>, realm: &str) -> Option<String> {
        let realm = realm.trim();
        if !realm.is_empty() {
            return Some(realm.to_string());
        }
        let na = if msg.method().is_some_and(|m| m.as_str() == "REGISTER") { msg.to() } else { msg.from() };
        let uri = na.ok()?.uri().ok()?;
        let host = uri.host()?.as_str().to_string();
        Some(match host.strip_prefix(self.realm_prefix.as_str()) {
            Some(rest) if !self.realm_prefix.is_empty() && !rest.is_empty() => rest.to_string(),
            _ => host,
        })
    }

    /// The first credentials in header `hftype` whose realm is `realm`: `None` when there are
    /// none, `Some(Err)` when they do not parse.
    fn find<'m>(msg: &Message<'m>, realm: &str, hftype: i32) -> Option<Result<Credentials<'m>, digest::CredError>> {
        let mut bad = None;
        for v in msg.headers(header_name(hftype)) {
            let Ok(v) = std::str::from_utf8(v) else { continue };
            match Credentials::parse(v) {
                Ok(c) if c.realm.eq_ignore_ascii_case(realm) => return Some(Ok(c)),
                Ok(_) => {}
                // A malformed value counts only if nothing else matches the realm.
                Err(e) => bad = Some(e),
            }
        }
        bad.map(Err)
    }

    fn algorithm_of(c: &Credentials<'_>) -> Option<Algorithm> {
        Algorithm::from_param(c.algorithm)
    }

    /// The challenge header value.
    pub fn challenge_value(&self, realm: &str, flags: i32, stale: bool) -> String {
        let nonce = self.nonces.issue(now());
        let mut v = format!("Digest realm=\"{realm}\", nonce=\"{nonce}\"");
        let qop = if flags & FLAG_QOP_AUTH != 0 || flags & FLAG_QOP_AUTH_INT != 0 {
            match (flags & FLAG_QOP_AUTH != 0, flags & FLAG_QOP_AUTH_INT != 0) {
                (true, true) => "auth,auth-int",
                (false, true) => "auth-int",
                _ => "auth",
            }
        } else {
            self.qop.as_str()
        };
        if !qop.is_empty() {
            v.push_str(&format!(", qop=\"{qop}\""));
        }
        if stale || flags & FLAG_STALE != 0 {
            v.push_str(", stale=true");
        }
        if self.algorithm_named {
            v.push_str(&format!(", algorithm={}", self.algorithm.name()));
        }
        v
    }

    fn pre_auth_inner(&self, msg: &Message<'_>, realm: &str, hftype: i32) -> FfiPreAuth {
        let mut out = FfiPreAuth {
            code: rc::ERROR,
            user: Default::default(),
            user_domain: Default::default(),
            username: Default::default(),
            realm: Default::default(),
            algorithm: alg::MD5,
        };
        let Some(realm) = self.realm(msg, realm) else { return out };
        out.realm = realm.as_str().into();
        let c = match Self::find(msg, &realm, hftype) {
            None => {
                out.code = rc::NO_CREDENTIALS;
                return out;
            }
            Some(Err(e)) => {
                tracing::info!("auth: bad credentials: {e}");
                return out;
            }
            Some(Ok(c)) => c,
        };
        // Only the algorithm the challenges offer: accepting MD5 answers on a SHA-256 server
        // would let a man in the middle downgrade the exchange.
        let Some(algorithm) = Self::algorithm_of(&c).filter(|a| *a == self.algorithm) else {
            tracing::info!("auth: {}: algorithm {:?} is not the one offered", c.username, c.algorithm);
            return out;
        };
        if let Err(e) = c.qop() {
            tracing::info!("auth: bad credentials: {e}");
            return out;
        }
        out.algorithm = if algorithm == Algorithm::Sha256 { alg::SHA256 } else { alg::MD5 };
        out.username = c.username.into();
        let (user, domain) = c.username.split_once('@').unwrap_or((c.username, ""));
        out.user = user.into();
        out.user_domain = domain.into();
        out.code = match self.nonces.check(c.nonce, c.nc_value().filter(|_| c.qop.is_some()), now()) {
            Ok(_) => rc::OK,
            Err(NonceError::Stale) => rc::STALE_NONCE,
            Err(NonceError::Reused) => rc::NONCE_REUSED,
            Err(NonceError::Invalid) => {
                tracing::info!("auth: {}: a nonce this server did not issue", c.username);
                rc::ERROR
            }
        };
        out
    }

    fn check_inner(&self, msg: &Message<'_>, realm: &str, hftype: i32, ha1: &str) -> i32 {
        let Some(realm) = self.realm(msg, realm) else { return rc::ERROR };
        let Some(Ok(c)) = Self::find(msg, &realm, hftype) else { return rc::ERROR };
        let (Some(algorithm), Ok(qop)) = (Self::algorithm_of(&c).filter(|a| *a == self.algorithm), c.qop()) else {
            return rc::ERROR;
        };
        let nc = c.nc_value().filter(|_| c.qop.is_some());
        let index = match self.nonces.check(c.nonce, nc, now()) {
            Ok(i) => i,
            Err(NonceError::Stale) => return rc::STALE_NONCE,
            Err(NonceError::Reused) => return rc::NONCE_REUSED,
            Err(NonceError::Invalid) => return rc::ERROR,
        };
        let ha1 = ha1.trim().to_ascii_lowercase();
        if ha1.len() != algorithm.hex_len() {
            tracing::warn!("auth: {}: the stored HA1 is not a {} hash", c.username, algorithm.name());
            return rc::INVALID_PASSWORD;
        }
        let method = msg.method().map_or("", |m| m.as_str());
        let want = digest::response(algorithm, &ha1, c.nonce, c.nc, c.cnonce, qop, method, c.uri, msg.body());
        if !digest::hex_eq(&want, c.response) {
            return rc::INVALID_PASSWORD;
        }
        match self.nonces.record(index, nc) {
            Ok(()) => rc::OK,
            Err(NonceError::Reused) => rc::NONCE_REUSED,
            Err(_) => rc::STALE_NONCE,
        }
    }

    /// Whether the request's credentials for `realm` carry a nonce of ours that expired.
    fn request_is_stale(&self, msg: &Message<'_>, realm: &str, hftype: i32) -> bool {
        matches!(Self::find(msg, realm, hftype), Some(Ok(c)) if self.nonces.is_stale(c.nonce, now()))
    }
}

impl AuthService for Service {
    fn pre_auth(&self, msg: &Message<'_>, realm: &str, hftype: i32) -> FfiPreAuth {
        self.pre_auth_inner(msg, realm, hftype)
    }
    fn check(&self, msg: &Message<'_>, realm: &str, hftype: i32, ha1: &str) -> i32 {
        self.check_inner(msg, realm, hftype, ha1)
    }
    fn calc_ha1(&self, alg: i32, username: &str, realm: &str, password: &str) -> String {
        let a = if alg == api::alg::SHA256 { Algorithm::Sha256 } else { Algorithm::Md5 };
        digest::ha1(a, username, realm, password)
    }
    fn challenge(&self, realm: &str, flags: i32, stale: bool) -> String {
        self.challenge_value(realm, flags, stale)
    }
}

/// The module.
pub struct AuthModule {
    service: &'static Service,
}

fn random_secret() -> Result<Vec<u8>, Error> {
    use std::io::Read as _;
    let mut buf = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::new(format!("no random secret: /dev/urandom: {e}")))?;
    Ok(buf)
}

impl AuthModule {
    fn challenge(&self, call: &mut FunctionCall<'_>, hftype: i32) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(-1) };
        let flags = match call.arg(1).map(str::trim).filter(|s| !s.is_empty()) {
            None => 0,
            Some(f) => i32::try_from(call.int_arg(1)?).map_err(|_| Error::new(format!("bad flags {f:?}")))?,
        };
        let Some(realm) = self.service.realm(&msg, call.arg(0).unwrap_or("")) else {
            tracing::info!("auth: no realm: the request has no usable From/To URI");
            return Ok(-1);
        };
        let stale = self.service.request_is_stale(&msg, &realm, hftype);
        let value = self.service.challenge_value(&realm, flags, stale);
        let (code, reason, name) = if hftype == hf::PROXY_AUTHORIZATION {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        } else {
            (401, "Unauthorized", "WWW-Authenticate")
        };
        match call.request().reply_with(code, reason, &[(name, &value)], None) {
            Ok(()) => Ok(1),
            Err(e) => {
                tracing::warn!("auth: challenge not sent: {e}");
                Ok(-1)
            }
        }
    }

    fn www_challenge(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        self.challenge(call, hf::AUTHORIZATION)
    }

    fn proxy_challenge(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        self.challenge(call, hf::PROXY_AUTHORIZATION)
    }

    fn auth_challenge(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let register = call.message().and_then(|m| m.method()).is_some_and(|m| m.as_str() == "REGISTER");
        self.challenge(call, if register { hf::AUTHORIZATION } else { hf::PROXY_AUTHORIZATION })
    }

    /// Kamailio's `consume_credentials`: the credentials meant for this server (those carrying
    /// a nonce it signed, expired or not) are left out when the request is relayed, so they do
    /// not travel to the next hop; credentials for other servers stay. 1 when some were
    /// removed, -1 when there were none.
    fn consume_credentials(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(-1) };
        let now = now();
        let mut removed = 0;
        for (i, e) in msg.header_entries().iter().enumerate() {
            if e.name != HeaderName::AUTHORIZATION && e.name != HeaderName::PROXY_AUTHORIZATION {
                continue;
            }
            let ours = std::str::from_utf8(msg.entry_value(e))
                .ok()
                .and_then(|v| Credentials::parse(v).ok())
                .is_some_and(|c| self.service.nonces.check(c.nonce, None, now) != Err(NonceError::Invalid));
            if !ours {
                continue;
            }
            match call.request().remove_header(i) {
                Ok(()) => removed += 1,
                Err(err) => {
                    tracing::warn!("auth: consume_credentials: {err}");
                    return Ok(-1);
                }
            }
        }
        Ok(if removed > 0 { 1 } else { -1 })
    }

    fn has_credentials(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let Some(msg) = call.message() else { return Ok(-1) };
        let Some(realm) = self.service.realm(&msg, call.arg(0).unwrap_or("")) else { return Ok(-1) };
        let found = [hf::AUTHORIZATION, hf::PROXY_AUTHORIZATION]
            .into_iter()
            .any(|h| matches!(Service::find(&msg, &realm, h), Some(Ok(_))));
        Ok(if found { 1 } else { -1 })
    }
}

impl Module for AuthModule {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("auth", env!("CARGO_PKG_VERSION"))
            .doc("HTTP digest authentication (RFC 3261 §22, RFC 2617, RFC 7616: MD5 and SHA-256): challenges with signed, expiring nonces and replay protection; the auth API used by auth_db")
            .param(Param::opt_str("secret").doc("key that signs nonces (unset: 32 random bytes at start; set the same value on servers that share clients)"))
            .param(Param::int("nonce_expire", 300).min(1).doc("seconds a nonce stays valid; a later use is answered with a stale challenge"))
            .param(Param::int("nonce_auth_max_drift", 3).min(0).doc("seconds a nonce's time may lie in the future (clock steps)"))
            .param(Param::int("nonce_count", 0).range(0..=1).doc("1: with qop, each use of a nonce must carry a higher nc (replays refused)"))
            .param(Param::int("one_time_nonce", 0).range(0..=1).doc("1: each nonce authenticates one request"))
            .param(Param::int("nc_array_size", 1_048_576).min(1).doc("how many issued nonces the replay table keeps (nonce_count / one_time_nonce); the oldest are forgotten and become stale"))
            .param(Param::str("qop", "").doc("qop offered in challenges: empty (none), auth or auth-int"))
            .param(Param::str("algorithm", "").doc("digest algorithm of challenges: MD5 (empty: MD5, not named) or SHA-256"))
            .param(Param::str("realm_prefix", "").doc("prefix removed from the From/To host when the realm is taken from it"))
            .function(Function::new("www_challenge", 1..=2, Self::www_challenge).doc("(realm, flags): reply 401 with WWW-Authenticate; flags 1 qop=auth, 2 qop=auth-int, 16 stale; 1 sent, -1 error"))
            .function(Function::new("proxy_challenge", 1..=2, Self::proxy_challenge).doc("(realm, flags): reply 407 with Proxy-Authenticate; flags as www_challenge"))
            .function(Function::new("auth_challenge", 1..=2, Self::auth_challenge).doc("(realm, flags): www_challenge for REGISTER, proxy_challenge otherwise"))
            .function(Function::new("consume_credentials", 0..=0, Self::consume_credentials).doc("(): the credentials carrying this server's nonces are left out when the request is relayed; 1 removed, -1 none"))
            .function(Function::new("has_credentials", 1..=1, Self::has_credentials).doc("(realm): 1 when the request carries credentials for the realm, else -1"))
            .exports("auth")
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let secret = match params.opt_str("secret").filter(|s| !s.is_empty()) {
            Some(s) => s.as_bytes().to_vec(),
            None => random_secret()?,
        };
        let qop = params.str("qop").trim().to_ascii_lowercase();
        if !matches!(qop.as_str(), "" | "auth" | "auth-int" | "auth,auth-int") {
            return Err(Error::new(format!("qop must be empty, auth or auth-int, not {qop:?}")));
        }
        let alg_param = params.str("algorithm").trim();
        let algorithm = if alg_param.is_empty() {
            Algorithm::Md5
        } else {
            Algorithm::from_param(Some(alg_param))
                .ok_or_else(|| Error::new(format!("algorithm must be MD5 or SHA-256, not {alg_param:?}")))?
        };
        let replay =
            Replay { nonce_count: params.int("nonce_count") == 1, one_time: params.int("one_time_nonce") == 1 };
        let nonces = Nonces::new(
            secret,
            params.int("nonce_expire").max(1) as u64,
            params.int("nonce_auth_max_drift").max(0) as u64,
            replay,
            usize::try_from(params.int("nc_array_size")).unwrap_or(1 << 20),
        );
        let service: &'static Service = Box::leak(Box::new(Service {
            nonces,
            qop,
            algorithm,
            algorithm_named: !alg_param.is_empty(),
            realm_prefix: params.str("realm_prefix").to_string(),
        }));
        api::export(host, service)?;
        Ok(AuthModule { service })
    }
}

plugin_api::export_module!(AuthModule);
