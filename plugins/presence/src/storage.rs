//! Kamailio's `presentity` (version 5), `active_watchers` (12) and `watchers` (3) tables,
//! created on first start when they have no version row, checked otherwise.

use plugin_api::prelude::*;

use crate::config::Config;
use crate::store::{Authorization, DialogKey, Publication, Subscription};

/// (presentity URI, watcher URI, event) of an authorization record.
pub type WatcherKey = (String, String, String);

/// The database side of the server.
pub struct Storage {
    db: Db,
    presentity: String,
    active_watchers: String,
    watchers: String,
}

/// (user, domain) of a stored `sip:user@domain` identity (the form the server keys by).
pub(crate) fn split_identity(uri: &str) -> (&str, &str) {
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:")).unwrap_or(uri);
    rest.split_once('@').unwrap_or(("", rest))
}

/// The unique key of the `watchers` table.
const WATCHER_KEY: [&str; 4] = ["presentity_uri", "watcher_username", "watcher_domain", "event"];

const SUB_COLUMNS: [&str; 26] = [
    "presentity_uri",
    "watcher_username",
    "watcher_domain",
    "to_user",
    "to_domain",
    "event",
    "event_id",
    "to_tag",
    "from_tag",
    "callid",
    "local_cseq",
    "remote_cseq",
    "contact",
    "record_route",
    "expires",
    "status",
    "reason",
    "version",
    "socket_info",
    "local_contact",
    "from_user",
    "from_domain",
    "updated",
    "updated_winfo",
    "flags",
    "user_agent",
];

fn sub_values(s: &Subscription) -> Vec<DbValue> {
    vec![
        s.pres_uri.as_str().into(),
        s.watcher_user.as_str().into(),
        s.watcher_domain.as_str().into(),
        s.to_user.as_str().into(),
        s.to_domain.as_str().into(),
        s.event.as_str().into(),
        if s.event_id.is_empty() { DbValue::Null } else { s.event_id.as_str().into() },
        s.key.to_tag.as_str().into(),
        s.key.from_tag.as_str().into(),
        s.key.call_id.as_str().into(),
        i64::from(s.local_cseq).into(),
        i64::from(s.remote_cseq).into(),
        s.contact.as_str().into(),
        if s.record_route.is_empty() { DbValue::Null } else { s.record_route.join(",").into() },
        // An ended subscription is kept only until its last NOTIFY is answered; 0 marks it
        // (and keeps it out of every query for live ones, also on other servers).
        if s.ended { 0 } else { s.expires }.into(),
        i64::from(s.status).into(),
        if s.reason.is_empty() { DbValue::Null } else { s.reason.as_str().into() },
        i64::from(s.version).into(),
        s.socket_info.as_str().into(),
        s.local_contact.as_str().into(),
        s.from_user.as_str().into(),
        s.from_domain.as_str().into(),
        (-1i64).into(),
        (-1i64).into(),
        i64::from(s.flags).into(),
        s.user_agent.as_str().into(),
    ]
}

/// Splits a stored Record-Route column (comma-separated values) into route values.
fn routes(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        out.push(s[start..].trim().to_string());
    }
    out
}

fn dialog_conds(k: &DialogKey) -> Vec<Cond> {
    vec![
        Cond::eq("callid", k.call_id.as_str()),
        Cond::eq("to_tag", k.to_tag.as_str()),
        Cond::eq("from_tag", k.from_tag.as_str()),
    ]
}

fn dialog_of(r: &plugin_api::db::Row<'_>) -> DialogKey {
    DialogKey {
        call_id: r.str("callid").to_string(),
        to_tag: r.str("to_tag").to_string(),
        from_tag: r.str("from_tag").to_string(),
    }
}

fn publication_of(r: &plugin_api::db::Row<'_>) -> Publication {
    let body = match r.get("body") {
        Some(DbValue::Blob(b)) => b.clone(),
        Some(DbValue::Str(s)) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    };
    Publication {
        etag: r.str("etag").to_string(),
        expires: r.int("expires"),
        received_time: r.int("received_time"),
        body,
        sender: r.str("sender").to_string(),
        priority: r.int("priority"),
    }
}

fn authorization_of(r: &plugin_api::db::Row<'_>) -> Authorization {
    Authorization {
        status: r.int("status") as i32,
        reason: r.str("reason").to_string(),
        inserted_time: r.int("inserted_time"),
    }
}

/// An `active_watchers` row; `expires` 0 marks an ended subscription (subs_db_mode 3).
fn subscription_of(r: &plugin_api::db::Row<'_>) -> Subscription {
    let (to_user, to_domain) = (r.str("to_user").to_string(), r.str("to_domain").to_string());
    let (from_user, from_domain) = (r.str("from_user").to_string(), r.str("from_domain").to_string());
    let expires = r.int("expires");
    Subscription {
        key: dialog_of(r),
        pres_uri: r.str("presentity_uri").to_string(),
        event: r.str("event").to_string(),
        event_id: r.str("event_id").to_string(),
        to_uri: format!("sip:{to_user}@{to_domain}"),
        from_uri: format!("sip:{from_user}@{from_domain}"),
        to_user,
        to_domain,
        from_user,
        from_domain,
        watcher_user: r.str("watcher_username").to_string(),
        watcher_domain: r.str("watcher_domain").to_string(),
        local_cseq: u32::try_from(r.int("local_cseq")).unwrap_or(0),
        remote_cseq: u32::try_from(r.int("remote_cseq")).unwrap_or(0),
        contact: r.str("contact").to_string(),
        record_route: routes(r.str("record_route")),
        expires,
        status: r.int("status") as i32,
        reason: r.str("reason").to_string(),
        version: u32::try_from(r.int("version")).unwrap_or(0),
        socket_info: r.str("socket_info").to_string(),
        local_contact: r.str("local_contact").to_string(),
        user_agent: r.str("user_agent").to_string(),
        flags: r.int("flags") as i32,
        queue: Default::default(),
        in_flight: false,
        ended: expires == 0,
        touched: 0,
    }
}

impl Storage {
    /// Opens the database, creating the tables when missing and checking their versions.
    pub fn open(host: &Host, cfg: &Config, url: &str) -> Result<Self, Error> {
        let db = host.db(url)?;
        for (table, version) in [(&cfg.presentity_table, 5), (&cfg.active_watchers_table, 12), (&cfg.watchers_table, 3)]
        {
            if db.ensure_table(table)? {
                tracing::info!("created table {table}");
            }
            db.check_version(table, version)?;
        }
        Ok(Self {
            db,
            presentity: cfg.presentity_table.clone(),
            active_watchers: cfg.active_watchers_table.clone(),
            watchers: cfg.watchers_table.clone(),
        })
    }

    fn pages(&self, table: &str, fetch_rows: u64, mut f: impl FnMut(&plugin_api::db::Row<'_>)) -> Result<(), Error> {
        let mut last = i64::MIN;
        loop {
            let page =
                self.db.select(table).filter(Cond::new("id", Op::Gt, last)).order_by("id").limit(fetch_rows).run()?;
            for row in page.iter() {
                last = row.int("id");
                f(&row);
            }
            if (page.len() as u64) < fetch_rows {
                return Ok(());
            }
        }
    }

    /// Publications of the table: (presentity URI, event, publication); only unexpired ones
    /// when `only_live`.
    pub fn load_publications(
        &self,
        fetch_rows: u64,
        now: i64,
        only_live: bool,
    ) -> Result<Vec<(String, String, Publication)>, Error> {
        let mut out = Vec::new();
        self.pages(&self.presentity, fetch_rows, |r| {
            let expires = r.int("expires");
            if only_live && expires <= now {
                return;
            }
            out.push((
                format!("sip:{}@{}", r.str("username"), r.str("domain")),
                r.str("event").to_string(),
                publication_of(r),
            ));
        })?;
        Ok(out)
    }

    fn publication_conds(uri: &str, event: &str) -> Vec<Cond> {
        let (user, domain) = split_identity(uri);
        vec![Cond::eq("username", user), Cond::eq("domain", domain), Cond::eq("event", event)]
    }

    /// publ_cache 0: the publication of (uri, event) with `etag`.
    pub fn find_publication(&self, uri: &str, event: &str, etag: &str) -> Result<Option<Publication>, Error> {
        let mut q = self.db.select(&self.presentity);
        for c in Self::publication_conds(uri, event) {
            q = q.filter(c);
        }
        let rows = q.filter(Cond::eq("etag", etag)).run()?;
        Ok(rows.row(0).map(|r| publication_of(&r)))
    }

    /// publ_cache 0: the unexpired publications of (uri, event), oldest first (received time,
    /// then priority, as [`crate::store::Presentities::current`]).
    pub fn current_publications(&self, uri: &str, event: &str, now: i64) -> Result<Vec<Publication>, Error> {
        let mut q = self.db.select(&self.presentity);
        for c in Self::publication_conds(uri, event) {
            q = q.filter(c);
        }
        let rows = q.filter(Cond::new("expires", Op::Gt, now)).order_by("received_time").run()?;
        let mut out: Vec<Publication> = rows.iter().map(|r| publication_of(&r)).collect();
        out.sort_by_key(|p| (p.received_time, p.priority));
        Ok(out)
    }

    /// publ_cache 0: every publication expired at `now`, with its presentity and event.
    pub fn expired_publications(&self, now: i64) -> Result<Vec<(String, String, Publication)>, Error> {
        let rows = self.db.select(&self.presentity).filter(Cond::new("expires", Op::Le, now)).run()?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    format!("sip:{}@{}", r.str("username"), r.str("domain")),
                    r.str("event").to_string(),
                    publication_of(&r),
                )
            })
            .collect())
    }

    /// Inserts a publication, or rewrites the one with `old_etag`; the rows written (0 when
    /// `old_etag` is gone: another server sharing the table changed or removed it).
    pub fn save_publication(
        &self,
        uri: &str,
        event: &str,
        old_etag: Option<&str>,
        p: &Publication,
    ) -> Result<u64, Error> {
        let (user, domain) = split_identity(uri);
        let values: Vec<(&str, DbValue)> = vec![
            ("username", user.into()),
            ("domain", domain.into()),
            ("event", event.into()),
            ("etag", p.etag.as_str().into()),
            ("expires", p.expires.into()),
            ("received_time", p.received_time.into()),
            ("body", DbValue::Blob(p.body.clone())),
            ("sender", p.sender.as_str().into()),
            ("priority", p.priority.into()),
        ];
        match old_etag {
            None => self.db.insert(&self.presentity, &values),
            Some(old) => {
                let mut conds = Self::publication_conds(uri, event);
                conds.push(Cond::eq("etag", old));
                self.db.update(&self.presentity, &values[3..], &conds)
            }
        }
    }

    /// Deletes the publication with `etag`; the rows deleted (0: already gone, so another
    /// server sharing the table took it).
    pub fn delete_publication(&self, uri: &str, event: &str, etag: &str) -> Result<u64, Error> {
        let mut conds = Self::publication_conds(uri, event);
        conds.push(Cond::eq("etag", etag));
        self.db.delete(&self.presentity, &conds)
    }

    /// Subscriptions of the table (unexpired), with `margin` added to their NOTIFY CSeq.
    pub fn load_subscriptions(&self, fetch_rows: u64, now: i64, margin: u32) -> Result<Vec<Subscription>, Error> {
        let mut out = Vec::new();
        self.pages(&self.active_watchers, fetch_rows, |r| {
            if r.int("expires") <= now {
                return;
            }
            let mut s = subscription_of(r);
            s.local_cseq = s.local_cseq.saturating_add(margin);
            out.push(s);
        })?;
        Ok(out)
    }

    /// Writes one subscription (insert or update by dialog).
    pub fn save_subscription(&self, s: &Subscription) -> Result<(), Error> {
        self.db
            .upsert_many(&self.active_watchers, &["callid", "to_tag", "from_tag"], &SUB_COLUMNS, &[sub_values(s)])
            .map(drop)
    }

    /// Writes a new subscription and, when one was just made, the decision about its watcher,
    /// in one commit.
    pub fn save_new_subscription(
        &self,
        s: &Subscription,
        decision: Option<(&str, &Authorization)>,
    ) -> Result<(), Error> {
        let mut batch = Batch::new();
        if let Some((watcher_uri, a)) = decision {
            let values = self.watcher_values(&s.pres_uri, watcher_uri, &s.event, a);
            batch.upsert(&self.watchers, &WATCHER_KEY, &values);
        }
        batch.upsert_many(&self.active_watchers, &["callid", "to_tag", "from_tag"], &SUB_COLUMNS, &[sub_values(s)])?;
        self.db.write(&batch).map(drop)
    }

    /// Deletes one subscription.
    pub fn delete_subscription(&self, k: &DialogKey) -> Result<(), Error> {
        self.db.delete(&self.active_watchers, &dialog_conds(k)).map(drop)
    }

    /// delete_same_subs in subs_db_mode 3: deletes the other subscriptions of (pres_uri,
    /// event) with `k`'s Call-ID.
    pub fn delete_same_call_id(&self, k: &DialogKey, pres_uri: &str, event: &str) -> Result<u64, Error> {
        let conds = [
            Cond::eq("presentity_uri", pres_uri),
            Cond::eq("event", event),
            Cond::eq("callid", k.call_id.as_str()),
            Cond::new("to_tag", Op::Ne, k.to_tag.as_str()),
        ];
        self.db.delete(&self.active_watchers, &conds)
    }

    /// subs_db_mode 3: the subscription of dialog `k`.
    pub fn subscription(&self, k: &DialogKey) -> Result<Option<Subscription>, Error> {
        let mut q = self.db.select(&self.active_watchers);
        for c in dialog_conds(k) {
            q = q.filter(c);
        }
        Ok(q.run()?.row(0).map(|r| subscription_of(&r)))
    }

    /// subs_db_mode 3: unexpired subscriptions to `pres_uri` (of `event`, or of every event).
    pub fn live_subscriptions(
        &self,
        pres_uri: &str,
        event: Option<&str>,
        now: i64,
    ) -> Result<Vec<Subscription>, Error> {
        let mut q = self
            .db
            .select(&self.active_watchers)
            .filter(Cond::eq("presentity_uri", pres_uri))
            .filter(Cond::new("expires", Op::Gt, now));
        if let Some(e) = event {
            q = q.filter(Cond::eq("event", e));
        }
        Ok(q.run()?.iter().map(|r| subscription_of(&r)).collect())
    }

    /// subs_db_mode 3: whether `pres_uri` has an unexpired subscription of `event`.
    pub fn has_subscriptions(&self, pres_uri: &str, event: &str, now: i64) -> Result<bool, Error> {
        let rows = self
            .db
            .select(&self.active_watchers)
            .columns(&["id"])
            .filter(Cond::eq("presentity_uri", pres_uri))
            .filter(Cond::eq("event", event))
            .filter(Cond::new("expires", Op::Gt, now))
            .limit(1)
            .run()?;
        Ok(!rows.is_empty())
    }

    /// subs_db_mode 3: dialogs of the subscriptions expired at `now` and not ended yet
    /// (ended ones have `expires` 0).
    pub fn expired_subscriptions(&self, now: i64) -> Result<Vec<DialogKey>, Error> {
        let rows = self
            .db
            .select(&self.active_watchers)
            .columns(&["callid", "to_tag", "from_tag"])
            .filter(Cond::new("expires", Op::Gt, 0))
            .filter(Cond::new("expires", Op::Le, now))
            .run()?;
        Ok(rows.iter().map(|r| dialog_of(&r)).collect())
    }

    /// subs_db_mode 3: marks the expired subscription `k` ended (`expires` 0); true for the
    /// one server, of those sharing the table, that changed it (and so sends its last NOTIFY).
    pub fn claim_expired(&self, k: &DialogKey, now: i64) -> Result<bool, Error> {
        let mut conds = dialog_conds(k);
        conds.push(Cond::new("expires", Op::Gt, 0));
        conds.push(Cond::new("expires", Op::Le, now));
        Ok(self.db.update(&self.active_watchers, &[("expires", 0i64.into())], &conds)? == 1)
    }

    /// subs_db_mode 3: dialogs of ended subscriptions (`expires` 0): normally deleted when
    /// their last NOTIFY is answered, left behind when the server sending it stopped.
    pub fn ended_subscriptions(&self) -> Result<Vec<DialogKey>, Error> {
        let rows = self
            .db
            .select(&self.active_watchers)
            .columns(&["callid", "to_tag", "from_tag"])
            .filter(Cond::eq("expires", 0i64))
            .run()?;
        Ok(rows.iter().map(|r| dialog_of(&r)).collect())
    }

    /// subs_db_mode 3: deletes subscription `k` if it is (still) ended.
    pub fn delete_ended(&self, k: &DialogKey) -> Result<u64, Error> {
        let mut conds = dialog_conds(k);
        conds.push(Cond::eq("expires", 0i64));
        self.db.delete(&self.active_watchers, &conds)
    }

    /// subs_db_mode 3: the next NOTIFY CSeq of `k`, taken atomically so servers sharing the
    /// table never send two NOTIFYs with one CSeq; None when the row is gone.
    pub fn next_cseq(&self, k: &DialogKey) -> Result<Option<u32>, Error> {
        Ok(self.db.increment(&self.active_watchers, "local_cseq", &dialog_conds(k))?.map(|v| v as u32))
    }

    /// subs_db_mode 3: the next watcher-info version of winfo subscription `k` (atomic).
    pub fn next_version(&self, k: &DialogKey) -> Result<Option<u32>, Error> {
        Ok(self.db.increment(&self.active_watchers, "version", &dialog_conds(k))?.map(|v| v as u32))
    }

    /// subs_db_mode 3: writes what a SUBSCRIBE or an authorization change sets; the NOTIFY
    /// CSeq and the winfo version are left to their atomic increments. An ended subscription
    /// is stored with `expires` 0. The rows written (0: the row is gone).
    pub fn update_subscription(&self, s: &Subscription) -> Result<u64, Error> {
        let values: Vec<(&str, DbValue)> = vec![
            ("remote_cseq", i64::from(s.remote_cseq).into()),
            ("contact", s.contact.as_str().into()),
            ("expires", if s.ended { 0 } else { s.expires }.into()),
            ("status", i64::from(s.status).into()),
            ("reason", if s.reason.is_empty() { DbValue::Null } else { s.reason.as_str().into() }),
        ];
        self.db.update(&self.active_watchers, &values, &dialog_conds(&s.key))
    }

    /// subs_db_mode 2: one transaction with the changed rows (multi-row upserts) and deletes.
    pub fn write_back(&self, changed: &[Subscription], removed: &[DialogKey]) -> Result<(), Error> {
        let tx = self.db.transaction(&[])?;
        for batch in changed.chunks(500) {
            let rows: Vec<Vec<DbValue>> = batch.iter().map(sub_values).collect();
            tx.upsert_many(&self.active_watchers, &["callid", "to_tag", "from_tag"], &SUB_COLUMNS, &rows)?;
        }
        for k in removed {
            tx.delete(&self.active_watchers, &dialog_conds(k))?;
        }
        tx.commit()
    }

    /// Authorization records: ((presentity, watcher URI, event), record).
    pub fn load_watchers(&self, fetch_rows: u64) -> Result<Vec<(WatcherKey, Authorization)>, Error> {
        let mut out = Vec::new();
        self.pages(&self.watchers, fetch_rows, |r| {
            out.push((
                (
                    r.str("presentity_uri").to_string(),
                    format!("sip:{}@{}", r.str("watcher_username"), r.str("watcher_domain")),
                    r.str("event").to_string(),
                ),
                authorization_of(r),
            ));
        })?;
        Ok(out)
    }

    /// subs_db_mode 3: the authorization record of (pres_uri, watcher_uri, event).
    pub fn watcher(&self, pres_uri: &str, watcher_uri: &str, event: &str) -> Result<Option<Authorization>, Error> {
        let (user, domain) = split_identity(watcher_uri);
        let rows = self
            .db
            .select(&self.watchers)
            .filter(Cond::eq("presentity_uri", pres_uri))
            .filter(Cond::eq("watcher_username", user))
            .filter(Cond::eq("watcher_domain", domain))
            .filter(Cond::eq("event", event))
            .run()?;
        Ok(rows.row(0).map(|r| authorization_of(&r)))
    }

    /// subs_db_mode 3: watcher URIs of (pres_uri, event) whose record says pending.
    pub fn pending_watchers(&self, pres_uri: &str, event: &str) -> Result<Vec<String>, Error> {
        let rows = self
            .db
            .select(&self.watchers)
            .filter(Cond::eq("presentity_uri", pres_uri))
            .filter(Cond::eq("event", event))
            .filter(Cond::eq("status", i64::from(plugin_api::api::presence::status::PENDING)))
            .run()?;
        Ok(rows.iter().map(|r| format!("sip:{}@{}", r.str("watcher_username"), r.str("watcher_domain"))).collect())
    }

    /// subs_db_mode 3: forgets every decision about watchers of (pres_uri, event).
    pub fn delete_watchers_of(&self, pres_uri: &str, event: &str) -> Result<u64, Error> {
        self.db.delete(&self.watchers, &[Cond::eq("presentity_uri", pres_uri), Cond::eq("event", event)])
    }

    /// subs_db_mode 3: deletes pending records inserted before `before`.
    pub fn purge_pending_watchers(&self, before: i64) -> Result<u64, Error> {
        let conds = [
            Cond::eq("status", i64::from(plugin_api::api::presence::status::PENDING)),
            Cond::new("inserted_time", Op::Lt, before),
        ];
        self.db.delete(&self.watchers, &conds)
    }

    fn watcher_values(
        &self,
        pres_uri: &str,
        watcher_uri: &str,
        event: &str,
        a: &Authorization,
    ) -> Vec<(&'static str, DbValue)> {
        let (user, domain) = split_identity(watcher_uri);
        vec![
            ("presentity_uri", pres_uri.into()),
            ("watcher_username", user.into()),
            ("watcher_domain", domain.into()),
            ("event", event.into()),
            ("status", i64::from(a.status).into()),
            ("reason", if a.reason.is_empty() { DbValue::Null } else { a.reason.as_str().into() }),
            ("inserted_time", a.inserted_time.into()),
        ]
    }

    /// Writes an authorization record.
    pub fn save_watcher(&self, pres_uri: &str, watcher_uri: &str, event: &str, a: &Authorization) -> Result<(), Error> {
        let values = self.watcher_values(pres_uri, watcher_uri, event, a);
        self.db.upsert(&self.watchers, &WATCHER_KEY, &values).map(drop)
    }

    /// Deletes an authorization record.
    pub fn delete_watcher(&self, pres_uri: &str, watcher_uri: &str, event: &str) -> Result<(), Error> {
        let (user, domain) = split_identity(watcher_uri);
        let conds = [
            Cond::eq("presentity_uri", pres_uri),
            Cond::eq("watcher_username", user),
            Cond::eq("watcher_domain", domain),
            Cond::eq("event", event),
        ];
        self.db.delete(&self.watchers, &conds).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_column_round_trip() {
        assert_eq!(routes("<sip:p1;lr>,<sip:p2;lr;x=\"a,b\">"), ["<sip:p1;lr>", "<sip:p2;lr;x=\"a,b\">"]);
        assert!(routes("").is_empty());
        assert_eq!(split_identity("sip:alice@example.com"), ("alice", "example.com"));
    }
}
