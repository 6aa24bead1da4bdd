//! `auth_db` (Kamailio's auth_db): digest credentials checked against the `subscriber` table
//! through the `auth` module's API.
//!
//! Config functions (Kamailio's names, arguments and return codes: 1 authenticated; -1 error
//! (bad credentials, database failure); -2 invalid password; -3 unknown user; -4 nonce
//! expired; -5 no credentials; -6 nonce reused; -8 auth user is not the From/To user):
//! - `www_authorize(realm, table)` — the `Authorization` credentials (REGISTER, 401 challenges).
//! - `proxy_authorize(realm, table)` — the `Proxy-Authorization` credentials (407).
//! - `auth_check(realm, table, flags)` — `www_authorize` for REGISTER, `proxy_authorize`
//!   otherwise; flags 1: the authenticated user must also be the To user (REGISTER) or the
//!   From user (anything else), and the To/From host the realm, so nobody registers, publishes
//!   or subscribes as someone else.
//! - `is_subscriber(uri, table, flags)` — 1 when the URI's user (and domain, with
//!   `use_domain`) has a row, else -1.
//! - `auth_require(realm, table, flags)` (puahost's, for routes that cannot branch on a return
//!   code): `auth_check`, and when it fails, the answer a Kamailio config gives: 403 for a wrong
//!   password, an unknown user or someone else's identity; otherwise a fresh challenge (401
//!   for REGISTER, else 407; `stale=true` for an expired or reused nonce). Returns 1 when
//!   authenticated, 0 (the route stops) when it answered.
//!
//! Empty realm: the To host for REGISTER, else the From host (the auth module decides).
//! `calculate_ha1 = 1`: `password_column` holds plain passwords and HA1 is computed per request
//! (with the credentials' algorithm); otherwise `password_column` holds HA1 and, for a username
//! written `user@domain`, `password_column_2` (Kamailio's `ha1b`).

use std::collections::HashSet;
use std::sync::Mutex;

use plugin_api::api::auth::{Auth, FfiPreAuth, hf, rc};
use plugin_api::prelude::*;

/// `auth_check` flag: the From/To user must be the authenticated user.
pub const CHECK_ID: i64 = 1;

const SUBSCRIBER_VERSION: i64 = 7;

/// The module.
pub struct AuthDb {
    auth: Auth,
    db: Db,
    user_column: String,
    domain_column: String,
    password_column: String,
    password_column_2: String,
    calculate_ha1: bool,
    use_domain: bool,
    version_table: bool,
    /// Tables whose version was checked (names come from route arguments, known per call).
    checked: Mutex<HashSet<String>>,
}

/// What a request's From/To identity must match.
fn identity<'a>(msg: &Message<'a>) -> Option<(String, String)> {
    let register = msg.method().is_some_and(|m| m.as_str() == "REGISTER");
    let na = if register { msg.to() } else { msg.from() }.ok()?;
    let uri = na.uri().ok()?;
    Some((uri.user().unwrap_or("").to_string(), uri.host()?.as_str().to_string()))
}

impl AuthDb {
    fn table_ok(&self, table: &str) -> bool {
        if !self.version_table {
            return true;
        }
        if self.checked.lock().unwrap_or_else(|e| e.into_inner()).contains(table) {
            return true;
        }
        match self.db.check_version(table, SUBSCRIBER_VERSION) {
            Ok(()) => {
                self.checked.lock().unwrap_or_else(|e| e.into_inner()).insert(table.to_string());
                true
            }
            Err(e) => {
                tracing::error!("auth_db: table {table}: {e}");
                false
            }
        }
    }

    /// Kamailio's `digest_authenticate`: credentials of `hftype` for `realm` against `table`.
    fn authenticate(&self, msg: &Message<'_>, realm: &str, table: &str, hftype: i32) -> i32 {
        self.authenticate_as(msg, realm, table, hftype).0
    }

    /// As [`AuthDb::authenticate`], with the authenticated (user, realm) on success.
    fn authenticate_as(
        &self,
        msg: &Message<'_>,
        realm: &str,
        table: &str,
        hftype: i32,
    ) -> (i32, Option<(String, String)>) {
        let pre = self.auth.pre_auth(msg, realm, hftype);
        if pre.code != rc::OK {
            return (pre.code, None);
        }
        let code = self.lookup_and_check(msg, &pre, table, hftype);
        (code, (code == rc::OK).then(|| (pre.user.to_string(), pre.realm.to_string())))
    }

    fn lookup_and_check(&self, msg: &Message<'_>, pre: &FfiPreAuth, table: &str, hftype: i32) -> i32 {
        if !self.table_ok(table) {
            return rc::ERROR;
        }
        let column = if self.calculate_ha1 {
            self.password_column.as_str()
        } else if !pre.user_domain.is_empty() {
            self.password_column_2.as_str()
        } else {
            self.password_column.as_str()
        };
        let mut select =
            self.db.select(table).columns(&[column]).filter(Cond::eq(&self.user_column, pre.user.as_str()));
        if self.use_domain {
            select = select.filter(Cond::eq(&self.domain_column, pre.realm.as_str()));
        }
        let rows = match select.limit(1).run() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("auth_db: {table}: {e}");
                return rc::ERROR;
            }
        };
        let Some(row) = rows.row(0) else {
            tracing::info!("auth_db: {}@{}: no such subscriber in {table}", pre.user, pre.realm);
            return rc::USER_UNKNOWN;
        };
        let secret = row.str(column);
        let ha1 = if self.calculate_ha1 {
            self.auth.calc_ha1(pre.algorithm, pre.username.as_str(), pre.realm.as_str(), secret)
        } else {
            secret.to_string()
        };
        let code = self.auth.check(msg, pre.realm.as_str(), hftype, &ha1);
        if code != rc::OK {
            tracing::info!("auth_db: {}@{}: refused ({code})", pre.username, pre.realm);
        }
        code
    }

    fn args<'a>(call: &FunctionCall<'a>) -> Result<(&'a str, &'a str), Error> {
        let table = call
            .arg(1)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::new("the table name is missing"))?;
        Ok((call.arg(0).unwrap_or(""), table))
    }

    fn www_authorize(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let (realm, table) = Self::args(call)?;
        let Some(msg) = call.message() else { return Ok(rc::ERROR) };
        Ok(self.authenticate(&msg, realm, table, hf::AUTHORIZATION))
    }

    fn proxy_authorize(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let (realm, table) = Self::args(call)?;
        let Some(msg) = call.message() else { return Ok(rc::ERROR) };
        Ok(self.authenticate(&msg, realm, table, hf::PROXY_AUTHORIZATION))
    }

    fn flags(call: &FunctionCall<'_>) -> Result<i64, Error> {
        match call.arg(2).map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(0),
            Some(_) => call.int_arg(2),
        }
    }

    /// auth_check: the result and the header type used.
    fn check(&self, call: &FunctionCall<'_>) -> Result<(i32, i32), Error> {
        let (realm, table) = Self::args(call)?;
        let flags = Self::flags(call)?;
        let Some(msg) = call.message() else { return Ok((rc::ERROR, hf::AUTHORIZATION)) };
        let register = msg.method().is_some_and(|m| m.as_str() == "REGISTER");
        let hftype = if register { hf::AUTHORIZATION } else { hf::PROXY_AUTHORIZATION };
        let (code, who) = self.authenticate_as(&msg, realm, table, hftype);
        if code != rc::OK || flags & CHECK_ID == 0 {
            return Ok((code, hftype));
        }
        let Some((user, host)) = identity(&msg) else { return Ok((rc::ERROR, hftype)) };
        let same =
            who.is_some_and(|(auth_user, auth_realm)| auth_user == user && auth_realm.eq_ignore_ascii_case(&host));
        if !same {
            tracing::info!("auth_db: {user}@{host} is not the authenticated user");
            return Ok((rc::USER_MISMATCH, hftype));
        }
        Ok((rc::OK, hftype))
    }

    fn auth_check(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        Ok(self.check(call)?.0)
    }

    fn auth_require(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let (code, hftype) = self.check(call)?;
        let request = call.request();
        let answer = match code {
            rc::OK => return Ok(1),
            rc::INVALID_PASSWORD | rc::USER_UNKNOWN => request.reply(403, "Forbidden"),
            rc::USER_MISMATCH => request.reply(403, "Forbidden auth ID"),
            _ => {
                let Some(msg) = call.message() else { return Ok(0) };
                let realm = self.auth.pre_auth(&msg, call.arg(0).unwrap_or(""), hftype).realm;
                let stale = code == rc::STALE_NONCE || code == rc::NONCE_REUSED;
                let value = self.auth.challenge(realm.as_str(), 0, stale);
                if hftype == hf::PROXY_AUTHORIZATION {
                    request.reply_with(407, "Proxy Authentication Required", &[("Proxy-Authenticate", &value)], None)
                } else {
                    request.reply_with(401, "Unauthorized", &[("WWW-Authenticate", &value)], None)
                }
            }
        };
        if let Err(e) = answer {
            tracing::warn!("auth_db: auth_require: reply not sent: {e}");
        }
        Ok(0)
    }

    fn is_subscriber(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let uri = call.arg(0).map(str::trim).unwrap_or("");
        let table = call
            .arg(1)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::new("the table name is missing"))?;
        let Ok(parsed) = plugin_api::sip::SipUri::parse(uri) else {
            tracing::info!("auth_db: is_subscriber: {uri:?} is not a SIP URI");
            return Ok(-1);
        };
        let (Some(user), Some(host)) = (parsed.user(), parsed.host()) else { return Ok(-1) };
        if !self.table_ok(table) {
            return Ok(-1);
        }
        let mut select =
            self.db.select(table).columns(&[self.user_column.as_str()]).filter(Cond::eq(&self.user_column, user));
        if self.use_domain {
            select = select.filter(Cond::eq(&self.domain_column, host.as_str()));
        }
        match select.limit(1).run() {
            Ok(rows) if !rows.is_empty() => Ok(1),
            Ok(_) => Ok(-1),
            Err(e) => {
                tracing::error!("auth_db: is_subscriber: {table}: {e}");
                Ok(-1)
            }
        }
    }
}

impl Module for AuthDb {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("auth_db", env!("CARGO_PKG_VERSION"))
            .doc("digest credentials from the subscriber table (Kamailio's auth_db), checked through the auth module")
            .requires("auth")
            .param(Param::required_str("db_url").doc("database holding the subscriber table"))
            .param(Param::str("user_column", "username").doc("column of the user name"))
            .param(Param::str("domain_column", "domain").doc("column of the domain (compared with the realm when use_domain = 1)"))
            .param(Param::str("password_column", "ha1").doc("column of HA1 (or of the plain password with calculate_ha1 = 1)"))
            .param(Param::str("password_column_2", "ha1b").doc("column of HA1 for usernames written user@domain"))
            .param(Param::int("calculate_ha1", 0).range(0..=1).doc("1: password_column holds plain passwords; HA1 is computed per request"))
            .param(Param::int("use_domain", 0).range(0..=1).doc("1: the subscriber's domain must be the realm"))
            .param(Param::int("version_table", 1).range(0..=1).doc("1: check the table's version (7) in the version table before use"))
            .function(Function::new("www_authorize", 2..=2, Self::www_authorize).doc("(realm, table): check the Authorization credentials: 1 ok; -1 error, -2 invalid password, -3 unknown user, -4 nonce expired, -5 no credentials, -6 nonce reused"))
            .function(Function::new("proxy_authorize", 2..=2, Self::proxy_authorize).doc("(realm, table): check the Proxy-Authorization credentials; codes as www_authorize"))
            .function(Function::new("auth_check", 2..=3, Self::auth_check).doc("(realm, table, flags): www_authorize for REGISTER, else proxy_authorize; flags 1: the To (REGISTER) / From user must be the authenticated user (-8 otherwise)"))
            .function(Function::new("auth_require", 2..=3, Self::auth_require).doc("(realm, table, flags): auth_check, answering a failure (403 wrong password, unknown user or foreign identity; else a 401/407 challenge): 1 authenticated, 0 answered (the route stops)"))
            .function(Function::new("is_subscriber", 2..=3, Self::is_subscriber).doc("(uri, table, flags): 1 when the URI's user (and domain with use_domain) is in the table, else -1"))
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let db = host.db(params.str("db_url"))?;
        // The default table, as the other modules create theirs; other tables named in routes
        // must exist (and are version-checked on first use).
        if db.ensure_table("subscriber")? {
            tracing::info!("auth_db: created table subscriber");
        }
        let auth = Auth::bind(host)?;
        let column = |name: &str| params.str(name).trim().to_string();
        Ok(AuthDb {
            auth,
            db,
            user_column: column("user_column"),
            domain_column: column("domain_column"),
            password_column: column("password_column"),
            password_column_2: column("password_column_2"),
            calculate_ha1: params.int("calculate_ha1") == 1,
            use_domain: params.int("use_domain") == 1,
            version_table: params.int("version_table") == 1,
            checked: Mutex::new(HashSet::new()),
        })
    }
}

plugin_api::export_module!(AuthDb);
