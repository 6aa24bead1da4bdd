//! Dialogs in Kamailio's `dialog` table (version 7, Kamailio 5.6's columns), as its dialog
//! module keeps them: one row per confirmed dialog, keyed by (hash_entry, hash_id); CSeqs as
//! text; `start_time` and `timeout` in seconds since the epoch. puahost adds the INVITE's time
//! in `xdata` (`{"init_ts":N}`, a JSON object as Kamailio's own xdata is) so a dialog keeps its
//! identity across a restart; a row without it takes `start_time`.

use plugin_api::db::{Batch, Cond, Db, Row, Value};
use plugin_api::prelude::*;

use crate::store::{Changes, Dialog, Id};

/// Kamailio's `dialog` table version.
pub const DIALOG_VERSION: i64 = 7;

/// db_mode values (Kamailio's numbers).
pub mod db_mode {
    /// Memory only.
    pub const NONE: i64 = 0;
    /// Every change written at once.
    pub const REALTIME: i64 = 1;
    /// Changes written every `db_update_period`.
    pub const DELAYED: i64 = 2;
    /// Every dialog written at shutdown.
    pub const SHUTDOWN: i64 = 3;
}

/// The database side of the dialog module.
#[derive(Debug)]
pub struct Storage {
    db: Db,
    table: String,
    fetch_rows: u64,
}

fn int(v: u32) -> Value {
    Value::Int(i64::from(v))
}

fn opt_str(v: &str) -> Value {
    if v.is_empty() { Value::Null } else { Value::Str(v.to_string()) }
}

/// The row of `d` (every column but `id`).
pub fn row_values(d: &Dialog) -> Vec<(&'static str, Value)> {
    vec![
        ("hash_entry", int(d.h_entry)),
        ("hash_id", int(d.h_id)),
        ("callid", d.call_id.as_str().into()),
        ("from_uri", d.from_uri.as_str().into()),
        ("from_tag", d.from_tag.as_str().into()),
        ("to_uri", d.to_uri.as_str().into()),
        ("to_tag", d.to_tag.as_str().into()),
        ("caller_cseq", d.caller_cseq.to_string().into()),
        ("callee_cseq", d.callee_cseq.to_string().into()),
        ("caller_route_set", opt_str(&d.caller_route_set)),
        ("callee_route_set", opt_str(&d.callee_route_set)),
        ("caller_contact", d.caller_contact.as_str().into()),
        ("callee_contact", d.callee_contact.as_str().into()),
        // The relay sends from the socket the INVITE came in on: both legs name it.
        ("caller_sock", d.caller_socket.as_str().into()),
        ("callee_sock", d.caller_socket.as_str().into()),
        ("state", int(d.state)),
        ("start_time", Value::Int(d.start_ts)),
        ("timeout", Value::Int(d.timeout)),
        ("sflags", Value::Int(0)),
        ("iflags", Value::Int(0)),
        ("toroute_name", Value::Null),
        ("req_uri", d.req_uri.as_str().into()),
        ("xdata", Value::Str(format!("{{\"init_ts\":{}}}", d.init_ts))),
    ]
}

/// The dialog of a row, or why it cannot be one.
pub fn dialog_of_row(row: &Row<'_>) -> Result<Dialog, String> {
    let u32_of = |c: &str| u32::try_from(row.int(c)).map_err(|_| format!("{c} {} out of range", row.int(c)));
    let cseq = |c: &str| {
        let t = row.str(c).trim();
        if t.is_empty() { Ok(0) } else { t.parse::<u32>().map_err(|_| format!("{c} `{t}` is not a CSeq")) }
    };
    let call_id = row.str("callid").to_string();
    if call_id.is_empty() || row.str("from_tag").is_empty() {
        return Err("no Call-ID or From tag".into());
    }
    let start_ts = row.int("start_time");
    let timeout = row.int("timeout");
    let init_ts = serde_json::from_str::<serde_json::Value>(row.str("xdata"))
        .ok()
        .and_then(|x| x.get("init_ts").and_then(serde_json::Value::as_i64))
        .unwrap_or(start_ts);
    Ok(Dialog {
        h_entry: u32_of("hash_entry")?,
        h_id: u32_of("hash_id")?,
        call_id,
        from_uri: row.str("from_uri").to_string(),
        from_tag: row.str("from_tag").to_string(),
        to_uri: row.str("to_uri").to_string(),
        to_tag: row.str("to_tag").to_string(),
        req_uri: row.str("req_uri").to_string(),
        caller_contact: row.str("caller_contact").to_string(),
        callee_contact: row.str("callee_contact").to_string(),
        caller_cseq: cseq("caller_cseq")?,
        callee_cseq: cseq("callee_cseq")?,
        caller_route_set: row.str("caller_route_set").to_string(),
        callee_route_set: row.str("callee_route_set").to_string(),
        caller_socket: row.str("caller_sock").to_string(),
        state: u32_of("state")?,
        init_ts,
        start_ts,
        lifetime: u32::try_from((timeout - start_ts).max(0)).unwrap_or(u32::MAX),
        timeout,
    })
}

fn key(id: Id) -> [Cond; 2] {
    [Cond::eq("hash_entry", i64::from(id.0)), Cond::eq("hash_id", i64::from(id.1))]
}

impl Storage {
    /// Opens `url`, creates the table when it has no version row (the host's catalog knows
    /// `dialog`; a table of another name must exist) and checks its version.
    pub fn open(host: &Host, url: &str, table: &str, fetch_rows: u64) -> Result<Self, Error> {
        let db = host.db(url)?;
        let err = |e: Error| Error::new(format!("dialog: table {table}: {e}"));
        if db.ensure_table(table).map_err(err)? {
            tracing::info!("dialog: created table {table}");
        }
        db.check_version(table, DIALOG_VERSION).map_err(err)?;
        Ok(Self { db, table: table.to_string(), fetch_rows: fetch_rows.max(1) })
    }

    /// Every row, a page at a time; rows that are not dialogs are logged and skipped.
    pub fn load(&self) -> Result<Vec<Dialog>, Error> {
        let mut out = Vec::new();
        let mut last = i64::MIN;
        loop {
            let rows = self
                .db
                .select(&self.table)
                .filter(Cond::new("id", plugin_api::db::Op::Gt, last))
                .order_by("id")
                .limit(self.fetch_rows)
                .run()?;
            for row in rows.iter() {
                last = row.int("id");
                match dialog_of_row(&row) {
                    Ok(d) => out.push(d),
                    Err(e) => tracing::error!("dialog: row {last} of {} skipped: {e}", self.table),
                }
            }
            if (rows.len() as u64) < self.fetch_rows {
                return Ok(out);
            }
        }
    }

    /// Writes `changes` in one batch: a written dialog's row is replaced (the table has no
    /// unique key to upsert on), a deleted one's removed.
    pub fn write(&self, changes: &Changes) -> Result<(), Error> {
        let mut batch = Batch::new();
        for id in &changes.deletes {
            batch.delete(&self.table, &key(*id));
        }
        for d in &changes.writes {
            batch.delete(&self.table, &key(d.id()));
            batch.insert(&self.table, &row_values(d));
        }
        self.db.write(&batch).map(drop)
    }

    /// Replaces the whole table with `dialogs` (db_mode 3 at shutdown).
    pub fn replace_all(&self, dialogs: &[Dialog]) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(&self.table, &[]);
        for d in dialogs {
            batch.insert(&self.table, &row_values(d));
        }
        self.db.write(&batch).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_of(values: Vec<(&'static str, Value)>) -> (Vec<String>, Vec<Value>) {
        let mut columns = vec!["id".to_string()];
        let mut vals = vec![Value::Int(1)];
        for (c, v) in values {
            columns.push(c.to_string());
            vals.push(v);
        }
        (columns, vals)
    }

    fn dialog() -> Dialog {
        Dialog {
            h_entry: 17,
            h_id: 3,
            call_id: "c1".into(),
            from_uri: "sip:alice@a.test".into(),
            from_tag: "ft".into(),
            to_uri: "sip:bob@b.test".into(),
            to_tag: "tt".into(),
            req_uri: "sip:bob@192.0.2.2".into(),
            caller_contact: "sip:alice@192.0.2.1".into(),
            callee_contact: "sip:bob@192.0.2.2".into(),
            caller_cseq: 10,
            callee_cseq: 4,
            caller_route_set: "<sip:up;lr>".into(),
            callee_route_set: String::new(),
            caller_socket: "udp:127.0.0.1:5060".into(),
            state: 4,
            init_ts: 1000,
            start_ts: 1002,
            lifetime: 60,
            timeout: 1062,
        }
    }

    #[test]
    fn rows_round_trip() {
        let d = dialog();
        let values = row_values(&d);
        assert_eq!(values.len(), 23, "every column of dialog v7 but id");
        assert!(values.iter().any(|(c, v)| *c == "callee_route_set" && *v == Value::Null));
        assert!(values.iter().any(|(c, v)| *c == "caller_cseq" && *v == Value::Str("10".into())));
        let (columns, vals) = row_of(values);
        let row = Row::new(&columns, &vals);
        assert_eq!(dialog_of_row(&row), Ok(d));
    }

    #[test]
    fn rows_written_elsewhere() {
        // Kamailio's own row: no init_ts in xdata (the INVITE time is taken as start_time).
        let d = dialog();
        let mut values = row_values(&d);
        for (c, v) in values.iter_mut() {
            if *c == "xdata" {
                *v = Value::Null;
            }
        }
        let (columns, vals) = row_of(values.clone());
        let got = dialog_of_row(&Row::new(&columns, &vals)).unwrap();
        assert_eq!((got.init_ts, got.lifetime), (1002, 60));
        // Bad rows are refused with a reason, never loaded half.
        for (column, bad) in [("caller_cseq", "x1"), ("callid", ""), ("hash_id", "-1")] {
            let mut v = values.clone();
            for (c, val) in v.iter_mut() {
                if *c == column {
                    *val = if column == "hash_id" { Value::Int(-1) } else { Value::Str(bad.into()) };
                }
            }
            let (columns, vals) = row_of(v);
            assert!(dialog_of_row(&Row::new(&columns, &vals)).is_err(), "{column} = {bad}");
        }
    }
}
