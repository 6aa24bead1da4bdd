//! Kamailio's `location` table (version 9): created when it has no version row, checked
//! otherwise; one row per contact, keyed by `ruid`. `expires` and `last_modified` are DATETIME
//! columns: the host renders them per database (local time, as Kamailio writes them).

use plugin_api::db::{Executor, Row, Transaction};
use plugin_api::prelude::*;

use crate::store::Contact;

/// Kamailio 5.6's `location` version.
pub const LOCATION_VERSION: i64 = 9;

/// Why the database side failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The host's database service refused a statement.
    #[error("usrloc: table {table}: {source}")]
    Db {
        /// The table.
        table: String,
        /// The host's error.
        source: Error,
    },
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::new(e.to_string())
    }
}

/// The columns written for each contact, in [`row_values`] order.
pub const COLUMNS: [&str; 22] = [
    "ruid",
    "username",
    "domain",
    "contact",
    "received",
    "path",
    "expires",
    "q",
    "callid",
    "cseq",
    "last_modified",
    "flags",
    "cflags",
    "user_agent",
    "socket",
    "methods",
    "instance",
    "reg_id",
    "server_id",
    "connection_id",
    "keepalive",
    "partition",
];

fn opt(s: &str) -> DbValue {
    if s.is_empty() { DbValue::Null } else { s.into() }
}

/// (username, domain) columns of an AoR: the domain only when use_domain is on.
fn split_aor(aor: &str, use_domain: bool) -> (&str, Option<&str>) {
    match aor.split_once('@') {
        Some((u, d)) if use_domain => (u, Some(d)),
        _ => (aor, None),
    }
}

/// A bit set in a signed INT column: Kamailio writes the 32 bits as they are, so all methods
/// (0xFFFFFFFF) is stored as -1.
fn bits(v: u32) -> DbValue {
    i64::from(v as i32).into()
}

/// A bit set read back from a signed INT column.
fn bits_of(v: i64) -> u32 {
    v as i32 as u32
}

/// A contact as the values of [`COLUMNS`].
pub fn row_values(c: &Contact, use_domain: bool) -> Vec<DbValue> {
    let (user, domain) = split_aor(&c.aor, use_domain);
    vec![
        c.ruid.as_str().into(),
        user.into(),
        domain.map_or(DbValue::Null, DbValue::from),
        c.contact.as_str().into(),
        opt(&c.received),
        opt(&c.path),
        DbValue::DateTime(c.expires),
        // Kamailio stores q/1000 (Q_UNSPECIFIED, -1, becomes -0.001).
        DbValue::Double(f64::from(c.q) / 1000.0),
        c.callid.as_str().into(),
        i64::from(c.cseq).into(),
        DbValue::DateTime(c.last_modified),
        bits(c.flags),
        bits(c.cflags),
        c.user_agent.as_str().into(),
        opt(&c.socket),
        bits(c.methods),
        opt(&c.instance),
        i64::from(c.reg_id).into(),
        0i64.into(),
        (-1i64).into(),
        0i64.into(),
        0i64.into(),
    ]
}

fn contact_of_row(table: &str, row: &Row<'_>, use_domain: bool) -> Contact {
    let user = row.str("username");
    let domain = row.str("domain");
    let aor = if use_domain && !domain.is_empty() { format!("{user}@{domain}") } else { user.to_string() };
    let q = match row.get("q") {
        Some(DbValue::Double(q)) => (q * 1000.0).round() as i32,
        Some(v) => v.as_int().map_or(-1, |q| (q * 1000) as i32),
        None => -1,
    };
    Contact {
        table: table.to_string(),
        aor,
        contact: row.str("contact").to_string(),
        ruid: row.str("ruid").to_string(),
        received: row.str("received").to_string(),
        path: row.str("path").to_string(),
        socket: row.str("socket").to_string(),
        user_agent: row.str("user_agent").to_string(),
        callid: row.str("callid").to_string(),
        cseq: i32::try_from(row.int("cseq")).unwrap_or(0),
        expires: row.int("expires"),
        q,
        flags: bits_of(row.int("flags")),
        cflags: bits_of(row.int("cflags")),
        methods: match row.get("methods") {
            Some(DbValue::Null) | None => u32::MAX,
            Some(v) => bits_of(v.as_int().unwrap_or(-1)),
        },
        instance: row.str("instance").to_string(),
        reg_id: u32::try_from(row.int("reg_id")).unwrap_or(0),
        last_modified: row.int("last_modified"),
    }
}

/// The database side of usrloc.
#[derive(Debug)]
pub struct Storage {
    db: Db,
    use_domain: bool,
}

impl Storage {
    /// Opens the database.
    pub fn open(host: &Host, url: &str, use_domain: bool) -> Result<Self, Error> {
        Ok(Self { db: host.db(url)?, use_domain })
    }

    /// The pool.
    pub fn pool(&self) -> &Executor {
        &self.db
    }

    /// The error of a statement on `table`.
    pub fn err(table: &str) -> impl FnOnce(Error) -> StorageError + '_ {
        move |source| StorageError::Db { table: table.to_string(), source }
    }

    /// Creates `table` when it has no version row (the host's catalog knows `location`; a table
    /// of another name must be created beforehand), then checks its version.
    pub fn ensure(&self, table: &str) -> Result<(), StorageError> {
        if self.db.ensure_table(table).map_err(Self::err(table))? {
            tracing::info!("usrloc: created table {table}");
        }
        self.db.check_version(table, LOCATION_VERSION).map_err(Self::err(table))
    }

    /// Checks that `table` exists with Kamailio's version, creating nothing (db_mode 4 never
    /// writes).
    pub fn check(&self, table: &str) -> Result<(), StorageError> {
        self.db.check_version(table, LOCATION_VERSION).map_err(Self::err(table))
    }

    /// Every row of `table` (expired ones too: the first timer run expires them, with callbacks).
    pub fn load(&self, table: &str, page: u64) -> Result<Vec<Contact>, StorageError> {
        let mut out = Vec::new();
        let mut last = i64::MIN;
        loop {
            let rows = self
                .db
                .select(table)
                .filter(Cond::new("id", Op::Gt, last))
                .order_by("id")
                .limit(page)
                .run()
                .map_err(Self::err(table))?;
            for row in rows.iter() {
                last = row.int("id");
                out.push(contact_of_row(table, &row, self.use_domain));
            }
            if (rows.len() as u64) < page {
                return Ok(out);
            }
        }
    }

    /// Writes contacts (insert or update by ruid), many per statement.
    pub fn upsert(&self, table: &str, contacts: &[&Contact]) -> Result<(), StorageError> {
        self.upsert_in(&self.db, table, contacts)
    }

    /// [`Storage::upsert`] on `exec` (the pool or a transaction).
    pub fn upsert_in(&self, exec: &Executor, table: &str, contacts: &[&Contact]) -> Result<(), StorageError> {
        for chunk in contacts.chunks(500) {
            let rows: Vec<Vec<DbValue>> = chunk.iter().map(|c| row_values(c, self.use_domain)).collect();
            exec.upsert_many(table, &["ruid"], &COLUMNS, &rows).map_err(Self::err(table))?;
        }
        Ok(())
    }

    /// Deletes the row of `ruid`.
    pub fn delete(&self, table: &str, ruid: &str) -> Result<(), StorageError> {
        self.delete_in(&self.db, table, ruid)
    }

    /// [`Storage::delete`] on `exec`.
    pub fn delete_in(&self, exec: &Executor, table: &str, ruid: &str) -> Result<(), StorageError> {
        exec.delete(table, &[Cond::eq("ruid", ruid)]).map(drop).map_err(Self::err(table))
    }

    /// Every row of `aor` in `table` (db_mode 3 reads them for each operation).
    pub fn select_aor(&self, exec: &Executor, table: &str, aor: &str) -> Result<Vec<Contact>, StorageError> {
        let (user, domain) = split_aor(aor, self.use_domain);
        let mut q = exec.select(table).filter(Cond::eq("username", user));
        if let Some(d) = domain {
            q = q.filter(Cond::eq("domain", d));
        }
        let rows = q.order_by("id").run().map_err(Self::err(table))?;
        Ok(rows.iter().map(|r| contact_of_row(table, &r, self.use_domain)).collect())
    }

    /// Rows of `table` whose expiry is before `now` (permanent contacts, expires 0, included:
    /// the caller keeps only the expired ones).
    pub fn select_expired(&self, exec: &Executor, table: &str, now: i64) -> Result<Vec<Contact>, StorageError> {
        let rows = exec
            .select(table)
            .filter(Cond::new("expires", Op::Lt, DbValue::DateTime(now)))
            .run()
            .map_err(Self::err(table))?;
        Ok(rows.iter().map(|r| contact_of_row(table, &r, self.use_domain)).collect())
    }

    /// A transaction holding `table` (a table lock on PostgreSQL/MariaDB, SQLite's write lock),
    /// so two servers sharing the table (db_mode 3) do not interleave read-modify-write.
    pub fn transaction(&self, table: &str) -> Result<Transaction, StorageError> {
        self.db.transaction(&[table]).map_err(Self::err(table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_columns() {
        let c = Contact {
            aor: "alice@example.com".into(),
            contact: "sip:alice@192.0.2.1".into(),
            q: 500,
            methods: u32::MAX,
            ..Default::default()
        };
        let v = row_values(&c, true);
        assert_eq!(v.len(), COLUMNS.len());
        assert_eq!(v[1], DbValue::from("alice"));
        assert_eq!(v[2], DbValue::from("example.com"));
        assert_eq!(v[4], DbValue::Null, "no received: NULL, as Kamailio");
        assert_eq!(v[7], DbValue::Double(0.5));
        assert_eq!(v[15], DbValue::Int(-1), "every method, as Kamailio stores it");
        assert_eq!(bits_of(-1), u32::MAX);
        let v = row_values(&c, false);
        assert_eq!((v[1].clone(), v[2].clone()), (DbValue::from("alice@example.com"), DbValue::Null));
    }
}
