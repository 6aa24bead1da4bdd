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

macro_rules! columns {
    ($($field:ident: $param:literal = $default:literal,)*) => {
        /// The column names (Kamailio's `*_column` modparams; defaults are the table's).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Columns {
            $(#[doc = concat!("`", $param, "` (`", $default, "`)")] pub $field: String,)*
        }

        impl Default for Columns {
            fn default() -> Self {
                Self { $($field: $default.to_string(),)* }
            }
        }

        impl Columns {
            /// (modparam, default column name) of every column.
            pub const PARAMS: &[(&str, &str)] = &[$(($param, $default),)*];

            /// The names `param` gives for each modparam of [`Columns::PARAMS`].
            pub fn from_params(param: impl Fn(&str) -> String) -> Self {
                Self { $($field: param($param),)* }
            }
        }
    };
}

columns! {
    h_entry: "h_entry_column" = "hash_entry",
    h_id: "h_id_column" = "hash_id",
    call_id: "call_id_column" = "callid",
    from_uri: "from_uri_column" = "from_uri",
    from_tag: "from_tag_column" = "from_tag",
    to_uri: "to_uri_column" = "to_uri",
    to_tag: "to_tag_column" = "to_tag",
    from_cseq: "from_cseq_column" = "caller_cseq",
    to_cseq: "to_cseq_column" = "callee_cseq",
    from_route: "from_route_column" = "caller_route_set",
    to_route: "to_route_column" = "callee_route_set",
    from_contact: "from_contact_column" = "caller_contact",
    to_contact: "to_contact_column" = "callee_contact",
    from_sock: "from_sock_column" = "caller_sock",
    to_sock: "to_sock_column" = "callee_sock",
    state: "state_column" = "state",
    start_time: "start_time_column" = "start_time",
    timeout: "timeout_column" = "timeout",
    sflags: "sflags_column" = "sflags",
    iflags: "iflags_column" = "iflags",
    toroute_name: "toroute_name_column" = "toroute_name",
    req_uri: "req_uri_column" = "req_uri",
    xdata: "xdata_column" = "xdata",
}

/// The database side of the dialog module.
#[derive(Debug)]
pub struct Storage {
    db: Db,
    table: String,
    fetch_rows: u64,
    columns: Columns,
}

fn int(v: u32) -> Value {
    Value::Int(i64::from(v))
}

fn opt_str(v: &str) -> Value {
    if v.is_empty() { Value::Null } else { Value::Str(v.to_string()) }
}

/// The row of `d` (every column but `id`), under the names of `c`.
pub fn row_values<'c>(d: &Dialog, c: &'c Columns) -> Vec<(&'c str, Value)> {
    vec![
        (&c.h_entry, int(d.h_entry)),
        (&c.h_id, int(d.h_id)),
        (&c.call_id, d.call_id.as_str().into()),
        (&c.from_uri, d.from_uri.as_str().into()),
        (&c.from_tag, d.from_tag.as_str().into()),
        (&c.to_uri, d.to_uri.as_str().into()),
        (&c.to_tag, d.to_tag.as_str().into()),
        (&c.from_cseq, d.caller_cseq.to_string().into()),
        (&c.to_cseq, d.callee_cseq.to_string().into()),
        (&c.from_route, opt_str(&d.caller_route_set)),
        (&c.to_route, opt_str(&d.callee_route_set)),
        (&c.from_contact, d.caller_contact.as_str().into()),
        (&c.to_contact, d.callee_contact.as_str().into()),
        // The relay sends from the socket the INVITE came in on: both legs name it.
        (&c.from_sock, d.caller_socket.as_str().into()),
        (&c.to_sock, d.caller_socket.as_str().into()),
        (&c.state, int(d.state)),
        (&c.start_time, Value::Int(d.start_ts)),
        (&c.timeout, Value::Int(d.timeout)),
        (&c.sflags, Value::Int(0)),
        (&c.iflags, Value::Int(0)),
        (&c.toroute_name, Value::Null),
        (&c.req_uri, d.req_uri.as_str().into()),
        (&c.xdata, Value::Str(format!("{{\"init_ts\":{}}}", d.init_ts))),
    ]
}

/// The dialog of a row (columns named by `c`), or why it cannot be one.
pub fn dialog_of_row(row: &Row<'_>, c: &Columns) -> Result<Dialog, String> {
    let u32_of = |col: &str| u32::try_from(row.int(col)).map_err(|_| format!("{col} {} out of range", row.int(col)));
    let cseq = |col: &str| {
        let t = row.str(col).trim();
        if t.is_empty() { Ok(0) } else { t.parse::<u32>().map_err(|_| format!("{col} `{t}` is not a CSeq")) }
    };
    let call_id = row.str(&c.call_id).to_string();
    if call_id.is_empty() || row.str(&c.from_tag).is_empty() {
        return Err("no Call-ID or From tag".into());
    }
    let start_ts = row.int(&c.start_time);
    let timeout = row.int(&c.timeout);
    let init_ts = serde_json::from_str::<serde_json::Value>(row.str(&c.xdata))
        .ok()
        .and_then(|x| x.get("init_ts").and_then(serde_json::Value::as_i64))
        .unwrap_or(start_ts);
    Ok(Dialog {
        h_entry: u32_of(&c.h_entry)?,
        h_id: u32_of(&c.h_id)?,
        call_id,
        from_uri: row.str(&c.from_uri).to_string(),
        from_tag: row.str(&c.from_tag).to_string(),
        to_uri: row.str(&c.to_uri).to_string(),
        to_tag: row.str(&c.to_tag).to_string(),
        req_uri: row.str(&c.req_uri).to_string(),
        caller_contact: row.str(&c.from_contact).to_string(),
        callee_contact: row.str(&c.to_contact).to_string(),
        caller_cseq: cseq(&c.from_cseq)?,
        callee_cseq: cseq(&c.to_cseq)?,
        caller_route_set: row.str(&c.from_route).to_string(),
        callee_route_set: row.str(&c.to_route).to_string(),
        caller_socket: row.str(&c.from_sock).to_string(),
        state: u32_of(&c.state)?,
        init_ts,
        start_ts,
        lifetime: u32::try_from((timeout - start_ts).max(0)).unwrap_or(u32::MAX),
        timeout,
    })
}

fn key(id: Id, c: &Columns) -> [Cond; 2] {
    [Cond::eq(&c.h_entry, i64::from(id.0)), Cond::eq(&c.h_id, i64::from(id.1))]
}

impl Storage {
    /// Opens `url`, creates the table when it has no version row (the host's catalog knows
    /// `dialog`; a table of another name must exist) and checks its version.
    pub fn open(host: &Host, url: &str, table: &str, fetch_rows: u64, columns: Columns) -> Result<Self, Error> {
        let db = host.db(url)?;
        let err = |e: Error| Error::new(format!("dialog: table {table}: {e}"));
        if db.ensure_table(table).map_err(err)? {
            tracing::info!("dialog: created table {table}");
        }
        db.check_version(table, DIALOG_VERSION).map_err(err)?;
        Ok(Self { db, table: table.to_string(), fetch_rows: fetch_rows.max(1), columns })
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
                match dialog_of_row(&row, &self.columns) {
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
            batch.delete(&self.table, &key(*id, &self.columns));
        }
        for d in &changes.writes {
            batch.delete(&self.table, &key(d.id(), &self.columns));
            batch.insert(&self.table, &row_values(d, &self.columns));
        }
        self.db.write(&batch).map(drop)
    }

    /// Replaces the whole table with `dialogs` (db_mode 3 at shutdown).
    pub fn replace_all(&self, dialogs: &[Dialog]) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(&self.table, &[]);
        for d in dialogs {
            batch.insert(&self.table, &row_values(d, &self.columns));
        }
        self.db.write(&batch).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_of(values: Vec<(&str, Value)>) -> (Vec<String>, Vec<Value>) {
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
        let c = Columns::default();
        let values = row_values(&d, &c);
        assert_eq!(values.len(), 23, "every column of dialog v7 but id");
        assert_eq!(Columns::PARAMS.len(), 23);
        assert!(values.iter().any(|(c, v)| *c == "callee_route_set" && *v == Value::Null));
        assert!(values.iter().any(|(c, v)| *c == "caller_cseq" && *v == Value::Str("10".into())));
        let (columns, vals) = row_of(values);
        let row = Row::new(&columns, &vals);
        assert_eq!(dialog_of_row(&row, &c), Ok(d.clone()));
        // Other column names (the *_column modparams) are written and read back.
        let renamed = Columns { call_id: "cid".into(), from_cseq: "cs1".into(), ..Columns::default() };
        let values = row_values(&d, &renamed);
        assert!(values.iter().any(|(c, _)| *c == "cid") && !values.iter().any(|(c, _)| *c == "callid"));
        let (columns, vals) = row_of(values);
        assert_eq!(dialog_of_row(&Row::new(&columns, &vals), &renamed), Ok(d));
    }

    #[test]
    fn rows_written_elsewhere() {
        // Kamailio's own row: no init_ts in xdata (the INVITE time is taken as start_time).
        let d = dialog();
        let c = Columns::default();
        let mut values = row_values(&d, &c);
        for (c, v) in values.iter_mut() {
            if *c == "xdata" {
                *v = Value::Null;
            }
        }
        let (columns, vals) = row_of(values.clone());
        let got = dialog_of_row(&Row::new(&columns, &vals), &c).unwrap();
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
            assert!(dialog_of_row(&Row::new(&columns, &vals), &c).is_err(), "{column} = {bad}");
        }
    }
}
