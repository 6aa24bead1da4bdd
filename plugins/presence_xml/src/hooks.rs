//! The hooks presence_xml gives the presence server: body checks, aggregation, authorization
//! by pres-rules and filtering.

use std::sync::Arc;
use std::time::Duration;

use plugin_api::api::presence::{EventHooks, HookRequest, status};
use plugin_api::prelude::*;
use pres_rules::{Mode, Rules, Status, SubHandling, Watcher};

/// Where pres-rules documents come from: the `xcap` table (doc_type 2, pres-rules), then the
/// configured XCAP servers over HTTP.
pub struct XcapRules {
    db: Db,
    table: String,
    servers: Vec<String>,
    http: ureq::Agent,
}

/// `doc_type` of pres-rules documents in the `xcap` table.
const PRES_RULES: i64 = 2;

fn user_domain(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:")).unwrap_or(uri);
    rest.split_once('@')
}

impl XcapRules {
    /// Opens the database with the xcap table (created when missing, version 4 checked).
    pub fn open(host: &Host, url: &str, table: &str, servers: Vec<String>) -> Result<Self, Error> {
        let db = host.db(url)?;
        if db.ensure_table(table)? {
            tracing::info!("created table {table}");
        }
        db.check_version(table, 4)?;
        let http: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(3))).build().into();
        Ok(Self { db, table: table.to_string(), servers, http })
    }

    /// The pres-rules document of `pres_uri`, if it has one.
    pub fn fetch(&self, pres_uri: &str) -> Result<Option<String>, Error> {
        let Some((user, domain)) = user_domain(pres_uri) else { return Ok(None) };
        let rows = self
            .db
            .select(&self.table)
            .columns(&["doc"])
            .filter(Cond::eq("username", user))
            .filter(Cond::eq("domain", domain))
            .filter(Cond::eq("doc_type", PRES_RULES))
            .limit(1)
            .run()?;
        if let Some(row) = rows.row(0) {
            return Ok(match row.get("doc") {
                Some(DbValue::Blob(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                Some(DbValue::Str(s)) => Some(s.clone()),
                _ => None,
            });
        }
        for server in &self.servers {
            // Kamailio's xcap_client path for a user's pres-rules document.
            let url = format!("http://{server}/pres-rules/users/sip:{user}@{domain}/index");
            match self.http.get(&url).call() {
                Ok(mut r) if r.status() == 200 => {
                    return r.body_mut().read_to_string().map(Some).map_err(|e| Error::new(format!("{url}: {e}")));
                }
                Ok(r) => tracing::debug!("presence_xml: {url}: HTTP {}", r.status()),
                Err(e) => tracing::warn!("presence_xml: {url}: {e}"),
            }
        }
        Ok(None)
    }
}

/// What the `presence` hooks run with.
pub struct Settings {
    pub mode: Mode,
    pub force_active: bool,
    pub userdel_reason: String,
    pub dummy: bool,
    /// force_presence_single_body: (priorities, lookup element).
    pub single_body: Option<(String, String)>,
    pub sphere_check: bool,
    /// The presence server, for the presentity's sphere (enable_sphere_check).
    pub presence: Option<plugin_api::api::presence::Presence>,
    pub limits: pidf::Limits,
    pub rules: Option<XcapRules>,
}

fn check_error(e: &pidf::PidfError) -> (u16, String) {
    use pidf::PidfError as E;
    let code = match e {
        E::TooLarge { .. } => 413,
        E::NotUtf8 | E::Malformed(_) | E::NotPidf => 415,
        _ => 400,
    };
    (code, e.to_string())
}

/// Hooks of the `presence` package.
pub struct PidfHooks(pub Arc<Settings>);

impl PidfHooks {
    /// The rules of `pres_uri` and the decision for the watcher of `q`; `None` when the
    /// presentity has no (readable) rules. Read and parsed once per question: the decision and
    /// the transformations come from the same document.
    fn decide(&self, q: &HookRequest<'_>, rules: &XcapRules) -> Option<(Rules, pres_rules::Decision)> {
        let doc = match rules.fetch(q.pres_uri) {
            Ok(Some(d)) => d,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!("presence_xml: reading the pres-rules of {}: {e}", q.pres_uri);
                return None;
            }
        };
        let rules = match Rules::parse(&doc) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("presence_xml: the pres-rules of {} are unusable: {e}", q.pres_uri);
                return None;
            }
        };
        // The presentity's RPID sphere, only when sphere conditions are evaluated (it costs an
        // aggregation): with enable_sphere_check, and always in RFC mode.
        let sphere = self
            .0
            .presence
            .filter(|_| self.0.sphere_check || self.0.mode == Mode::Rfc)
            .and_then(|p| p.presentity_body(q.pres_uri, "presence"))
            .and_then(|doc| pidf::sphere(&String::from_utf8_lossy(&doc)));
        let watcher = Watcher { uri: q.watcher_uri, from_domain: q.from_domain };
        let decision =
            rules.evaluate(&watcher, sphere.as_deref(), chrono::Utc::now(), self.0.mode, self.0.sphere_check);
        Some((rules, decision))
    }
}

impl EventHooks for PidfHooks {
    fn check_body(&self, body: &[u8]) -> Result<(), (u16, String)> {
        pidf::check_pidf(body, &self.0.limits).map_err(|e| check_error(&e))
    }

    fn aggregate(&self, pres_uri: &str, bodies: &[&[u8]], removed: Option<usize>) -> Option<Vec<u8>> {
        let mut docs: Vec<String> = Vec::with_capacity(bodies.len());
        for (i, b) in bodies.iter().enumerate() {
            let text = String::from_utf8_lossy(b);
            if Some(i) == removed {
                if let Some(off) = pidf::offline(&text) {
                    docs.push(off);
                }
            } else {
                docs.push(text.into_owned());
            }
        }
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let out = match &self.0.single_body {
            Some((prio, element)) => pidf::single_body(&refs, prio, element).map(str::to_string),
            None => pidf::aggregate(&refs),
        };
        match out {
            Some(d) => Some(d.into_bytes()),
            None if self.0.dummy => {
                let user = user_domain(pres_uri).map_or(pres_uri, |(u, _)| u);
                Some(pidf::dummy(user).into_bytes())
            }
            None => None,
        }
    }

    fn authorize(&self, q: &HookRequest<'_>) -> (i32, String) {
        let Some(rules) = self.0.rules.as_ref().filter(|_| !self.0.force_active) else {
            return (status::ACTIVE, String::new());
        };
        let previous = match q.previous {
            status::ACTIVE | status::POLITE_BLOCK => Status::Active,
            status::TERMINATED => Status::Terminated,
            status::WAITING => Status::Waiting,
            _ => Status::Pending,
        };
        let Some((_, decision)) = self.decide(q, rules) else {
            return (status::PENDING, String::new());
        };
        if decision.is_error() {
            tracing::warn!("presence_xml: pres-rules of {}: {:?}", q.pres_uri, decision.fault);
            return (status::PENDING, String::new());
        }
        let (st, reason) = pres_rules::subscription_state(&decision, true, previous, &self.0.userdel_reason);
        match (st, reason) {
            (Status::Active, Some(r)) if r == "polite-block" => (status::POLITE_BLOCK, r),
            (st, reason) => (st as i32, reason.unwrap_or_default()),
        }
    }

    fn transform(&self, q: &HookRequest<'_>, body: &[u8]) -> Vec<u8> {
        let Some(rules) = self.0.rules.as_ref().filter(|_| !self.0.force_active) else {
            return body.to_vec();
        };
        let neutral = || pres_rules::polite_block_document(q.pres_uri).into_bytes();
        let Some((parsed, decision)) = self.decide(q, rules) else {
            // No rules: Kamailio shows the document (the watcher is pending anyway, so this is
            // reached only after a rule was removed); RFC mode shows nothing.
            return if self.0.mode == Mode::Rfc { neutral() } else { body.to_vec() };
        };
        if decision.sub_handling == Some(SubHandling::PoliteBlock) {
            return neutral();
        }
        match parsed.transform(&decision, &String::from_utf8_lossy(body), self.0.mode) {
            Ok(t) => t.body.into_bytes(),
            Err(e) => {
                tracing::warn!("presence_xml: filtering {} for {}: {e}", q.pres_uri, q.watcher_uri);
                neutral()
            }
        }
    }
}

/// Hooks of packages whose bodies only need to be well-formed XML (`dialog;sla`, `xcap-diff`).
pub struct BodyCheck(pub pidf::Limits);

impl EventHooks for BodyCheck {
    fn check_body(&self, body: &[u8]) -> Result<(), (u16, String)> {
        pidf::check_xml(body, &self.0).map_err(|e| check_error(&e))
    }
}
