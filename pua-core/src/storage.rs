//! Records in Kamailio's `pua` table (version 7) and puahost's `pua_body` (version 1).
//!
//! * db_mode 0: the memory store is loaded at start and written back every update_period (and
//!   at shutdown). Unlike Kamailio, the rows are not deleted after loading: a crash between the
//!   start and the first write-back would lose every record otherwise. Rows are identified by
//!   their `id`, so an update or a delete touches exactly the row of its record.
//! * db_mode 2: [`DbStore`] reads and writes the table on every operation; each engine
//!   operation runs in one transaction, with the tables write-locked when db_table_lock_write
//!   is set, so several hosts can share one database.
//!
//! Kamailio's table has no body column, but a 412 must be answered with the full body even
//! after a restart: bodies live in `pua_body`, keyed by the `pua` row id.

use plugin_api::Error;
use plugin_api::db::{Cond, Db, Executor, Op, Row, Transaction, Value};

use crate::record::{Kind, Publication, Record, Subscription};
use crate::store::{PubQuery, Records, SubQuery};

/// The body side table.
pub const BODY_TABLE: &str = "pua_body";

/// Makes sure the tables exist (created from the catalog when they have no version row) and
/// have the versions this module knows.
pub fn prepare(db: &Db, table: &str) -> Result<(), Error> {
    if table == "pua" && db.ensure_table("pua")? {
        tracing::info!("created table pua");
    }
    if db.ensure_table(BODY_TABLE)? {
        tracing::info!("created table {BODY_TABLE}");
    }
    db.check_version(table, 7)?;
    db.check_version(BODY_TABLE, 1)?;
    Ok(())
}

/// The `pua` columns of a record (everything but `id`).
fn columns(r: &Record) -> Vec<(&'static str, Value)> {
    let (etag, tuple_id, watcher, call_id, to_tag, from_tag, cseq, rr, contact, remote) = match &r.kind {
        Kind::Publish(p) => (p.etag.as_str(), p.tuple_id.as_str(), "", "", "", "", 0, "", "", ""),
        Kind::Subscribe(s) => (
            "",
            "",
            s.watcher_uri.as_str(),
            s.call_id.as_str(),
            s.to_tag.as_str(),
            s.from_tag.as_str(),
            s.cseq,
            s.record_route.as_str(),
            s.contact.as_str(),
            s.remote_contact.as_str(),
        ),
    };
    vec![
        ("pres_uri", r.pres_uri.as_str().into()),
        ("pres_id", r.id.as_str().into()),
        ("event", r.event.into()),
        ("expires", r.expires.into()),
        ("desired_expires", r.desired_expires.into()),
        ("flag", r.flag.into()),
        ("etag", etag.into()),
        // NULL rather than '' keeps the unique index (etag, tuple_id, call_id, from_tag) clear
        // of collisions between records that have no tuple id.
        ("tuple_id", if tuple_id.is_empty() { Value::Null } else { tuple_id.into() }),
        ("watcher_uri", watcher.into()),
        ("call_id", call_id.into()),
        ("to_tag", to_tag.into()),
        ("from_tag", from_tag.into()),
        ("cseq", cseq.into()),
        ("record_route", rr.into()),
        ("contact", contact.into()),
        ("remote_contact", remote.into()),
        ("version", r.version.into()),
        ("extra_headers", r.extra_headers.as_str().into()),
    ]
}

/// A record from a `pua` row (an empty watcher_uri marks a publication, as in Kamailio).
fn from_row(row: &Row<'_>) -> Record {
    let db_id = row.int("id");
    let kind = if row.str("watcher_uri").is_empty() {
        Kind::Publish(Publication {
            etag: row.str("etag").to_string(),
            tuple_id: row.str("tuple_id").to_string(),
            body: None,
            content_type: String::new(),
        })
    } else {
        Kind::Subscribe(Box::new(Subscription {
            watcher_uri: row.str("watcher_uri").to_string(),
            call_id: row.str("call_id").to_string(),
            to_tag: row.str("to_tag").to_string(),
            from_tag: row.str("from_tag").to_string(),
            cseq: row.int("cseq") as i32,
            record_route: row.str("record_route").to_string(),
            remote_contact: row.str("remote_contact").to_string(),
            contact: row.str("contact").to_string(),
        }))
    };
    Record {
        key: db_id as u64,
        db_id: Some(db_id),
        id: row.str("pres_id").to_string(),
        pres_uri: row.str("pres_uri").to_string(),
        event: row.int("event") as i32,
        flag: row.int("flag") as i32,
        expires: row.int("expires"),
        desired_expires: row.int("desired_expires"),
        version: row.int("version") as i32,
        extra_headers: row.str("extra_headers").to_string(),
        outbound_proxy: String::new(),
        cb_param: 0,
        kind,
    }
}

/// Attaches the stored body to a publication.
fn load_body(exec: &Executor, r: &mut Record) -> Result<(), Error> {
    let Some(id) = r.db_id else { return Ok(()) };
    if !matches!(r.kind, Kind::Publish(_)) {
        return Ok(());
    }
    let rows = exec.select(BODY_TABLE).filter(Cond::eq("pua_id", id)).run()?;
    if let (Some(row), Some(p)) = (rows.row(0), r.publ_mut()) {
        p.body = Some(row.str("body").to_string());
        p.content_type = row.str("content_type").to_string();
    }
    Ok(())
}

/// Writes the body row of a publication (after its `pua` row has an id).
fn write_body(exec: &Executor, r: &Record) -> Result<(), Error> {
    let Some(row) = body_row(r) else { return Ok(()) };
    exec.upsert_many(BODY_TABLE, &["pua_id"], &["pua_id", "body", "content_type"], &[row])?;
    Ok(())
}

/// The `pua_body` row of a publication that has a row id and a body.
fn body_row(r: &Record) -> Option<Vec<Value>> {
    let (Some(id), Some(p)) = (r.db_id, r.publ()) else { return None };
    let body = p.body.as_ref()?;
    Some(vec![id.into(), body.as_str().into(), p.content_type.as_str().into()])
}

fn delete_row(exec: &Executor, table: &str, id: i64) -> Result<(), Error> {
    exec.delete(table, &[Cond::eq("id", id)])?;
    exec.delete(BODY_TABLE, &[Cond::eq("pua_id", id)])?;
    Ok(())
}

/// Every record of the table, with bodies (db_mode 0 start), read `fetch_rows` rows at a time
/// (Kamailio's `db_fetch_query` batches).
pub fn load_all(db: &Db, table: &str, fetch_rows: u64) -> Result<Vec<Record>, Error> {
    let mut bodies = std::collections::HashMap::new();
    let mut last = i64::MIN;
    loop {
        let page = db
            .select(BODY_TABLE)
            .filter(Cond::new("pua_id", Op::Gt, last))
            .order_by("pua_id")
            .limit(fetch_rows)
            .run()?;
        for b in page.iter() {
            last = b.int("pua_id");
            bodies.insert(last, (b.str("body").to_string(), b.str("content_type").to_string()));
        }
        if (page.len() as u64) < fetch_rows {
            break;
        }
    }
    let mut records = Vec::new();
    let mut last = i64::MIN;
    loop {
        let page = db.select(table).filter(Cond::new("id", Op::Gt, last)).order_by("id").limit(fetch_rows).run()?;
        for row in page.iter() {
            let mut r = from_row(&row);
            last = r.db_id.unwrap_or(last);
            if let (Some(id), Some(p)) = (r.db_id, r.publ_mut())
                && let Some((body, ct)) = bodies.remove(&id)
            {
                p.body = Some(body);
                p.content_type = ct;
            }
            records.push(r);
        }
        if (page.len() as u64) < fetch_rows {
            break;
        }
    }
    Ok(records)
}

/// One write-back (db_mode 0): inserts and updates of changed records and deletes of removed
/// ones, in one transaction. Returns the row ids of inserted records, by key.
pub fn write_back(db: &Db, table: &str, changed: &[(Record, bool)], deleted: &[i64]) -> Result<Vec<(u64, i64)>, Error> {
    let tx = db.transaction(&[])?;
    let mut inserted = Vec::new();
    // Rows that exist are rewritten by id, many to a statement; a body row only when the body
    // changed (a refresh only moves expires and the ETag or CSeq).
    let mut rows = Vec::new();
    let mut bodies = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (r, body_changed) in changed {
        match r.db_id {
            Some(id) => {
                let cols = columns(r);
                if names.is_empty() {
                    names.push("id");
                    names.extend(cols.iter().map(|(c, _)| *c));
                }
                rows.push(std::iter::once(Value::from(id)).chain(cols.into_iter().map(|(_, v)| v)).collect());
                if *body_changed {
                    bodies.extend(body_row(r));
                }
            }
            None => {
                let id = tx.insert_returning_id(table, "id", &columns(r))?;
                let mut with_id = r.clone();
                with_id.db_id = Some(id);
                bodies.extend(body_row(&with_id));
                inserted.push((r.key, id));
            }
        }
    }
    for batch in rows.chunks(ROWS_PER_STATEMENT) {
        tx.upsert_many(table, &["id"], &names, batch)?;
    }
    for batch in bodies.chunks(ROWS_PER_STATEMENT) {
        tx.upsert_many(BODY_TABLE, &["pua_id"], &["pua_id", "body", "content_type"], batch)?;
    }
    for id in deleted {
        delete_row(&tx, table, *id)?;
    }
    tx.commit()?;
    Ok(inserted)
}

/// Rows per multi-row statement in a write-back: 200 rows of pua's 20 columns stay well under
/// every driver's limit on bound values (SQLite 32766, PostgreSQL and MySQL 65535).
const ROWS_PER_STATEMENT: usize = 200;

/// db_mode 2: the table is the store.
pub struct DbStore {
    db: Db,
    table: String,
    lock: bool,
    tx: Option<Transaction>,
}

impl DbStore {
    pub fn new(db: Db, table: &str, lock: bool) -> Self {
        Self { db, table: table.to_string(), lock, tx: None }
    }

    fn exec(&self) -> &Executor {
        match &self.tx {
            Some(tx) => tx,
            None => &self.db,
        }
    }

    fn report<T>(&self, what: &str, r: Result<T, Error>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!("pua table {what}: {e}");
                None
            }
        }
    }

    fn records(&mut self, conds: &[Cond]) -> Vec<Record> {
        let mut q = self.exec().select(&self.table).order_by("id");
        for c in conds {
            q = q.filter(c.clone());
        }
        let rows = q.run();
        let Some(rows) = self.report("select", rows) else { return Vec::new() };
        let mut out: Vec<Record> = rows.iter().map(|r| from_row(&r)).collect();
        for r in &mut out {
            let res = load_body(self.exec(), r);
            self.report("body", res);
        }
        out
    }
}

impl Records for DbStore {
    fn get(&mut self, key: u64) -> Option<Record> {
        self.records(&[Cond::eq("id", key as i64)]).pop()
    }

    fn find_publication(&mut self, q: &PubQuery<'_>) -> Option<Record> {
        let mut conds = vec![Cond::eq("pres_uri", q.pres_uri), Cond::eq("watcher_uri", "")];
        if !q.id.is_empty() {
            conds.push(Cond::eq("pres_id", q.id));
        }
        self.records(&conds).into_iter().rev().find(|r| q.matches(r))
    }

    fn find_subscription(&mut self, q: &SubQuery<'_>) -> Option<Record> {
        let conds = vec![Cond::eq("pres_uri", q.pres_uri), Cond::eq("watcher_uri", q.watcher_uri)];
        self.records(&conds).into_iter().rev().find(|r| q.matches(r))
    }

    fn find_dialog(&mut self, call_id: &str, from_tag: &str) -> Option<Record> {
        self.records(&[Cond::eq("call_id", call_id), Cond::eq("from_tag", from_tag)]).pop()
    }

    fn insert(&mut self, mut r: Record) -> u64 {
        let res = self.exec().insert_returning_id(&self.table, "id", &columns(&r));
        let Some(id) = self.report("insert", res) else { return 0 };
        r.db_id = Some(id);
        let res = write_body(self.exec(), &r);
        self.report("body", res);
        id as u64
    }

    fn update(&mut self, r: &Record) {
        let res = self.exec().update(&self.table, &columns(r), &[Cond::eq("id", r.key as i64)]);
        self.report("update", res);
        let mut with_id = r.clone();
        with_id.db_id = Some(r.key as i64);
        let res = write_body(self.exec(), &with_id);
        self.report("body", res);
    }

    fn remove(&mut self, key: u64) {
        let res = delete_row(self.exec(), &self.table, key as i64);
        self.report("delete", res);
    }

    fn due(&mut self, before: i64) -> Vec<u64> {
        let rows = self.exec().select(&self.table).columns(&["id"]).filter(Cond::new("expires", Op::Lt, before)).run();
        let Some(rows) = self.report("due", rows) else { return Vec::new() };
        rows.iter().map(|r| r.int("id") as u64).collect()
    }

    fn all(&mut self) -> Vec<Record> {
        self.records(&[])
    }

    fn counts(&mut self) -> (usize, usize) {
        let rows = self.exec().select(&self.table).columns(&["watcher_uri"]).run();
        let Some(rows) = self.report("count", rows) else { return (0, 0) };
        let p = rows.iter().filter(|r| r.str("watcher_uri").is_empty()).count();
        (p, rows.len() - p)
    }

    fn begin(&mut self) {
        let tables = [self.table.as_str(), BODY_TABLE];
        let res = self.db.transaction(if self.lock { &tables } else { &[] });
        self.tx = self.report("transaction", res);
    }

    fn commit(&mut self) {
        if let Some(tx) = self.tx.take() {
            let res = tx.commit();
            self.report("commit", res);
        }
    }
}
