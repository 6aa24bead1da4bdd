//! `xcap_server` (Kamailio's xcap_server): an XCAP server (RFC 4825) for pres-rules documents,
//! so operators need no separate XCAP server. Users PUT, GET and DELETE their own documents at
//! `<url_match>pres-rules/users/<sip:user@domain>/<document>` on a listener of the module's own
//! (`http`, not the RPC listener). Documents are stored in the `xcap` table (doc_type 2), where
//! presence_xml reads them; after every change the presentity's watchers are re-authorized
//! through the `presence` API, so a pending watcher turns active when a rule allows it.
//!
//! Authentication: HTTP Basic against the `subscriber` table (Kamailio's auth_db credentials,
//! `password` column); a user reads and writes only the documents under their own XUI.
//! Whole documents only: node selectors (`~~`) are answered 501.

mod request;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use plugin_api::api::presence::Presence;
use plugin_api::prelude::*;
use tiny_http::{Header, Response, Server};

use request::{Target, basic_credentials, parse_target};

/// `doc_type` of pres-rules documents (Kamailio's `PRES_RULES`).
const PRES_RULES: i64 = 2;
const CONTENT_TYPE: &str = "application/auth-policy+xml";

/// The module.
pub struct XcapServer {
    server: Arc<Server>,
}

/// What requests are served with.
struct Store {
    db: Db,
    table: String,
    auth_table: String,
    url_match: String,
    max_body: usize,
    presence: Option<Presence>,
    etags: AtomicU64,
}

/// A reply: status, extra headers, body.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }

    fn error(status: u16, text: &str) -> Self {
        Self { status, headers: vec![("Content-Type", "text/plain".into())], body: format!("{text}\n").into_bytes() }
    }

    /// RFC 4825 §11: a 409 with an `xcap-error` document.
    fn conflict(element: &str, phrase: &str) -> Self {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-error xmlns=\"urn:ietf:params:xml:ns:xcap-error\"><{element} phrase=\"{phrase}\"/></xcap-error>\n"
        );
        Self {
            status: 409,
            headers: vec![("Content-Type", "application/xcap-error+xml".into())],
            body: body.into_bytes(),
        }
    }
}

fn header<'a>(req: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    req.headers().iter().find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

impl Store {
    fn new_etag(&self) -> String {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        format!("{t:x}-{:x}", self.etags.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The stored document at `t`: (doc, etag).
    fn find(&self, t: &Target) -> Result<Option<(Vec<u8>, String)>, Error> {
        let rows = self
            .db
            .select(&self.table)
            .columns(&["doc", "etag"])
            .filter(Cond::eq("username", t.user.as_str()))
            .filter(Cond::eq("domain", t.domain.as_str()))
            .filter(Cond::eq("doc_type", PRES_RULES))
            .filter(Cond::eq("doc_uri", t.doc_uri.as_str()))
            .limit(1)
            .run()?;
        Ok(rows.row(0).map(|r| {
            let doc = match r.get("doc") {
                Some(DbValue::Blob(b)) => b.clone(),
                Some(DbValue::Str(s)) => s.as_bytes().to_vec(),
                _ => Vec::new(),
            };
            (doc, r.str("etag").to_string())
        }))
    }

    /// Checks Basic credentials against the subscriber table; the user must own `t`.
    fn authenticate(&self, req: &tiny_http::Request, t: &Target) -> Result<(), Answer> {
        let challenge = || {
            let mut a = Answer::error(401, "authentication required");
            a.headers.push(("WWW-Authenticate", format!("Basic realm=\"{}\"", t.domain)));
            a
        };
        let (user, password) = header(req, "Authorization").and_then(basic_credentials).ok_or_else(challenge)?;
        let (user, domain) = match user.split_once('@') {
            Some((u, d)) => (u.to_string(), d.to_string()),
            None => (user, t.domain.clone()),
        };
        let rows = self
            .db
            .select(&self.auth_table)
            .columns(&["password"])
            .filter(Cond::eq("username", user.as_str()))
            .filter(Cond::eq("domain", domain.as_str()))
            .limit(1)
            .run()
            .map_err(|e| Answer::error(500, &e.to_string()))?;
        match rows.row(0) {
            Some(r) if !password.is_empty() && r.str("password") == password => {}
            _ => return Err(challenge()),
        }
        if user != t.user || domain != t.domain {
            return Err(Answer::error(403, "a user may only use their own documents"));
        }
        Ok(())
    }

    /// RFC 4825 §7.11 / RFC 7232: If-Match and If-None-Match against the stored ETag.
    fn preconditions(req: &tiny_http::Request, current: Option<&str>) -> Result<(), Answer> {
        let matches = |v: &str, etag: Option<&str>| {
            v.split(',').map(|t| t.trim().trim_matches('"')).any(|t| t == "*" && etag.is_some() || Some(t) == etag)
        };
        if let Some(v) = header(req, "If-Match")
            && !matches(v, current)
        {
            return Err(Answer::error(412, "If-Match does not hold"));
        }
        if let Some(v) = header(req, "If-None-Match")
            && matches(v, current)
        {
            return Err(Answer::error(
                if req.method() == &tiny_http::Method::Get { 304 } else { 412 },
                "If-None-Match",
            ));
        }
        Ok(())
    }

    fn refresh(&self, t: &Target) {
        if let Some(p) = self.presence
            && p.refresh_watchers(&format!("sip:{}@{}", t.user, t.domain), "presence", 0) < 0
        {
            tracing::warn!("xcap_server: the watchers of sip:{}@{} were not refreshed", t.user, t.domain);
        }
    }

    fn handle(&self, req: &mut tiny_http::Request) -> Answer {
        let t = match parse_target(req.url(), &self.url_match) {
            Ok(t) => t,
            Err((status, text)) => return Answer::error(status, text),
        };
        if let Err(a) = self.authenticate(req, &t) {
            return a;
        }
        let result = match req.method() {
            tiny_http::Method::Get => self.get(req, &t),
            tiny_http::Method::Put => self.put(req, &t),
            tiny_http::Method::Delete => self.delete(req, &t),
            _ => {
                let mut a = Answer::error(405, "GET, PUT or DELETE");
                a.headers.push(("Allow", "GET, PUT, DELETE".into()));
                Ok(a)
            }
        };
        result.unwrap_or_else(|e| {
            tracing::error!("xcap_server: {} {}: {e}", req.method(), req.url());
            Answer::error(500, "database error")
        })
    }

    fn get(&self, req: &tiny_http::Request, t: &Target) -> Result<Answer, Error> {
        let Some((doc, etag)) = self.find(t)? else { return Ok(Answer::error(404, "no such document")) };
        if let Err(a) = Self::preconditions(req, Some(&etag)) {
            return Ok(a);
        }
        Ok(Answer {
            status: 200,
            headers: vec![("Content-Type", CONTENT_TYPE.into()), ("ETag", format!("\"{etag}\""))],
            body: doc,
        })
    }

    fn put(&self, req: &mut tiny_http::Request, t: &Target) -> Result<Answer, Error> {
        if req.body_length().is_some_and(|n| n > self.max_body) {
            return Ok(Answer::error(413, "document too large"));
        }
        let mut body = Vec::new();
        let read = req.as_reader().take(self.max_body as u64 + 1).read_to_end(&mut body);
        if read.is_err() {
            return Ok(Answer::error(400, "unreadable body"));
        }
        if body.len() > self.max_body {
            return Ok(Answer::error(413, "document too large"));
        }
        let Ok(text) = std::str::from_utf8(&body) else { return Ok(Answer::conflict("not-utf-8", "not UTF-8")) };
        match pres_rules::Rules::parse(text) {
            Ok(_) => {}
            Err(pres_rules::RulesError::NotRuleset) => {
                return Ok(Answer::conflict("schema-validation-error", "not a common-policy ruleset"));
            }
            Err(e) => return Ok(Answer::conflict("not-well-formed", &e.to_string().replace('"', "'"))),
        }
        let current = self.find(t)?;
        if let Err(a) = Self::preconditions(req, current.as_ref().map(|(_, e)| e.as_str())) {
            return Ok(a);
        }
        let etag = self.new_etag();
        let values: Vec<(&str, DbValue)> = vec![
            ("username", t.user.as_str().into()),
            ("domain", t.domain.as_str().into()),
            ("doc", DbValue::Blob(body)),
            ("doc_type", PRES_RULES.into()),
            ("etag", etag.as_str().into()),
            ("source", 0i64.into()),
            ("doc_uri", t.doc_uri.as_str().into()),
            ("port", 0i64.into()),
        ];
        self.db.upsert(&self.table, &["doc_uri"], &values)?;
        self.refresh(t);
        let mut a = Answer::new(if current.is_some() { 200 } else { 201 });
        a.headers.push(("ETag", format!("\"{etag}\"")));
        Ok(a)
    }

    fn delete(&self, req: &tiny_http::Request, t: &Target) -> Result<Answer, Error> {
        let Some((_, etag)) = self.find(t)? else { return Ok(Answer::error(404, "no such document")) };
        if let Err(a) = Self::preconditions(req, Some(&etag)) {
            return Ok(a);
        }
        self.db.delete(&self.table, &[Cond::eq("doc_uri", t.doc_uri.as_str())])?;
        self.refresh(t);
        Ok(Answer::new(200))
    }
}

fn respond(req: tiny_http::Request, a: Answer) {
    let mut r = Response::from_data(a.body).with_status_code(a.status);
    for (n, v) in a.headers {
        if let Ok(h) = Header::from_bytes(n.as_bytes(), v.as_bytes()) {
            r.add_header(h);
        }
    }
    if let Err(e) = req.respond(r) {
        tracing::debug!("xcap_server: reply not sent: {e}");
    }
}

impl Module for XcapServer {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("xcap_server", env!("CARGO_PKG_VERSION"))
            .doc(
                "XCAP server (RFC 4825) for pres-rules documents in the xcap table; changes re-authorize the watchers.",
            )
            .param(Param::required_str("db_url").doc("database with the xcap and subscriber tables"))
            .param(Param::required_str("http").doc("listen address of the XCAP server, e.g. 127.0.0.1:5081"))
            .param(Param::str("xcap_table", "xcap"))
            .param(Param::str("auth_table", "subscriber").doc("credentials: username, domain, password"))
            .param(Param::str("url_match", "/xcap-root/").doc("path prefix of the XCAP root"))
            .param(Param::int("max_body", 1 << 20).min(1).doc("largest document accepted (413 above)"))
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let db = host.db(params.str("db_url"))?;
        let table = params.str("xcap_table").to_string();
        let auth_table = params.str("auth_table").to_string();
        for (t, version) in [(&table, 4), (&auth_table, 7)] {
            if db.ensure_table(t)? {
                tracing::info!("created table {t}");
            }
            db.check_version(t, version)?;
        }
        let mut url_match = params.str("url_match").to_string();
        if !url_match.ends_with('/') {
            url_match.push('/');
        }
        let store = Arc::new(Store {
            db,
            table,
            auth_table,
            url_match,
            max_body: usize::try_from(params.int("max_body")).unwrap_or(usize::MAX),
            presence: Presence::bind(host).ok(),
            etags: AtomicU64::new(0),
        });
        let addr = params.str("http");
        let server =
            Arc::new(Server::http(addr).map_err(|e| Error::new(format!("xcap_server: cannot listen on {addr}: {e}")))?);
        tracing::info!("xcap_server: XCAP root http://{addr}{}", store.url_match);
        let s = server.clone();
        host.spawn_supervised("http", move || {
            for mut req in s.incoming_requests() {
                let answer = store.handle(&mut req);
                respond(req, answer);
            }
            Ok(())
        })?;
        Ok(XcapServer { server })
    }

    fn destroy(&self, _host: &Host) {
        self.server.unblock();
    }
}

export_module!(XcapServer);
