//! Renders a described statement ([`FfiDbOp`]) as SQL for one database.
//!
//! sqlx's `Any` driver does not rewrite `?` to `$1` for PostgreSQL and cannot decode DATETIME,
//! so the host renders per dialect: placeholders, identifier quoting, upserts, and DATETIME
//! values (Kamailio stores them as local time; SQLite as `YYYY-MM-DD HH:MM:SS` text).
//! Identifiers are checked, never escaped: a table or column name that is not a plain SQL
//! identifier is refused, so a modparam such as `db_table` cannot inject SQL.

use chrono::{Local, NaiveDateTime, TimeZone};
use db_schema::Dialect;
use plugin_api::ffi::{FfiDbCond, FfiDbOp, FfiDbValue};

/// A value to bind, already converted for the dialect.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Int(i64),
    Double(f64),
    Str(String),
    Blob(Vec<u8>),
    DateTime(NaiveDateTime),
}

/// Statement kinds, as numbered in `FfiDbOp::kind`.
pub const SELECT: u8 = 0;
pub const INSERT: u8 = 1;
pub const UPDATE: u8 = 2;
pub const DELETE: u8 = 3;
pub const UPSERT: u8 = 4;
pub const VERSION: u8 = 5;
/// Create the table from the catalog when it has no version row (handled by the service).
pub const ENSURE_TABLE: u8 = 6;

/// `UPDATE table SET c = c + 1 WHERE ...` giving the new value of `c` (`FfiDbOp::returning`).
pub const INCREMENT: u8 = 7;

/// Whether a rendered statement of `kind` gives one value back through RETURNING (an insert's
/// new id, an increment's new value).
pub fn returns_value(kind: u8, sql: &str) -> bool {
    matches!(kind, INSERT | INCREMENT) && sql.contains(" RETURNING ")
}

/// Whether a rendered statement of `kind` returns rows: reads, and writes with RETURNING.
pub fn returns_rows(kind: u8, sql: &str) -> bool {
    kind == SELECT || kind == VERSION || returns_value(kind, sql)
}

const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Epoch seconds as local time, as Kamailio's `db_time2str` writes DATETIME columns.
pub fn epoch_to_local(epoch: i64) -> NaiveDateTime {
    Local.timestamp_opt(epoch, 0).single().map_or_else(|| chrono::DateTime::UNIX_EPOCH.naive_utc(), |t| t.naive_local())
}

/// A local-time DATETIME back to epoch seconds.
pub fn local_to_epoch(t: NaiveDateTime) -> i64 {
    Local.from_local_datetime(&t).earliest().map_or_else(|| t.and_utc().timestamp(), |t| t.timestamp())
}

/// Parses SQLite's DATETIME text.
pub fn parse_datetime_text(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s.trim(), DATETIME_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .map(local_to_epoch)
}

struct Sql {
    dialect: Dialect,
    text: String,
    binds: Vec<Bind>,
}

fn check_ident(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes().first().is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(name) } else { Err(format!("`{name}` is not a valid table or column name")) }
}

impl Sql {
    fn new(dialect: Dialect) -> Self {
        // Upserts of Kamailio's wide tables (active_watchers: 25 columns, each named twice)
        // run past 1 KiB: one allocation instead of four regrowths.
        Self { dialect, text: String::with_capacity(1024), binds: Vec::with_capacity(32) }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn ident(&mut self, name: &str) -> Result<&mut Self, String> {
        let name = check_ident(name)?;
        let q = if self.dialect == Dialect::Mysql { '`' } else { '"' };
        self.text.push(q);
        self.text.push_str(name);
        self.text.push(q);
        Ok(self)
    }

    /// Appends a placeholder bound to `v`, or the literal NULL.
    fn value(&mut self, v: &FfiDbValue) -> &mut Self {
        let bind = match v {
            FfiDbValue::Null => {
                self.text.push_str("NULL");
                return self;
            }
            FfiDbValue::Int(i) => Bind::Int(*i),
            FfiDbValue::Double(d) => Bind::Double(*d),
            FfiDbValue::Str(s) => Bind::Str(s.to_string()),
            FfiDbValue::Blob(b) => Bind::Blob(b.to_vec()),
            FfiDbValue::DateTime(t) => match self.dialect {
                Dialect::Sqlite => Bind::Str(epoch_to_local(*t).format(DATETIME_FORMAT).to_string()),
                _ => Bind::DateTime(epoch_to_local(*t)),
            },
        };
        self.binds.push(bind);
        match self.dialect {
            Dialect::Postgres => {
                let n = self.binds.len();
                self.text.push('$');
                self.text.push_str(&n.to_string());
            }
            _ => self.text.push('?'),
        }
        self
    }

    fn conds(&mut self, conds: &[FfiDbCond]) -> Result<(), String> {
        for (i, c) in conds.iter().enumerate() {
            self.push(if i == 0 { " WHERE " } else { " AND " });
            self.ident(&c.column)?;
            if c.value == FfiDbValue::Null {
                match c.op {
                    0 => self.push(" IS NULL"),
                    5 => self.push(" IS NOT NULL"),
                    _ => return Err(format!("column {} cannot be compared with NULL by order", c.column)),
                };
                continue;
            }
            let op = match c.op {
                0 => " = ",
                1 => " < ",
                2 => " > ",
                3 => " <= ",
                4 => " >= ",
                5 => " <> ",
                other => return Err(format!("unknown comparison operator {other}")),
            };
            self.push(op).value(&c.value);
        }
        Ok(())
    }

    fn column_list(&mut self, columns: &[impl AsRef<str>]) -> Result<(), String> {
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.ident(c.as_ref())?;
        }
        Ok(())
    }
}

/// Renders `op` for `dialect`: the SQL text and the values to bind, in placeholder order.
pub fn render(dialect: Dialect, op: &FfiDbOp) -> Result<(String, Vec<Bind>), String> {
    let mut q = Sql::new(dialect);
    let table = op.table.as_str();
    let columns: Vec<&str> = op.columns.iter().map(|c| c.as_str()).collect();
    if matches!(op.kind, INSERT | UPDATE | UPSERT) {
        if columns.is_empty() {
            return Err(format!("nothing to write to {table}"));
        }
        // INSERT and UPSERT may carry several rows: the values are row after row.
        let rows_ok = match op.kind {
            UPDATE => columns.len() == op.values.len(),
            _ => !op.values.is_empty() && op.values.len().is_multiple_of(columns.len()),
        };
        if !rows_ok {
            return Err(format!("{} columns but {} values for {table}", columns.len(), op.values.len()));
        }
        if op.kind == INSERT && !op.returning.is_empty() && op.values.len() != columns.len() {
            return Err(format!("an insert into {table} returning an id takes one row"));
        }
    }
    match op.kind {
        SELECT => {
            q.push("SELECT ");
            if columns.is_empty() {
                q.push("*");
            } else {
                q.column_list(&columns)?;
            }
            q.push(" FROM ").ident(table)?;
            q.conds(&op.conds)?;
            if !op.order_by.is_empty() {
                q.push(" ORDER BY ").ident(&op.order_by)?;
            }
            if op.limit > 0 {
                q.push(&format!(" LIMIT {}", op.limit));
            }
        }
        INSERT | UPSERT => {
            q.push("INSERT INTO ").ident(table)?.push(" (");
            q.column_list(&columns)?;
            q.push(") VALUES ");
            for (r, row) in op.values.chunks(columns.len()).enumerate() {
                q.push(if r > 0 { ", (" } else { "(" });
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.value(v);
                }
                q.push(")");
            }
            // PostgreSQL reports a new id only through RETURNING; SQLite and MySQL give it with
            // the result (`last_insert_rowid`, `LAST_INSERT_ID`).
            if op.kind == INSERT && !op.returning.is_empty() && dialect == Dialect::Postgres {
                q.push(" RETURNING ").ident(&op.returning)?;
            }
            if op.kind == UPSERT {
                let keys: Vec<&str> = op.key_columns.iter().map(|c| c.as_str()).collect();
                if keys.is_empty() {
                    return Err(format!("an upsert into {table} needs the columns of a unique key"));
                }
                let rest: Vec<&str> = columns.iter().copied().filter(|c| !keys.contains(c)).collect();
                match dialect {
                    Dialect::Mysql => {
                        // MySQL picks the unique key itself; updating a key column to itself
                        // keeps the statement valid when every column is a key.
                        let set = if rest.is_empty() { vec![keys[0]] } else { rest };
                        q.push(" ON DUPLICATE KEY UPDATE ");
                        for (i, c) in set.iter().enumerate() {
                            if i > 0 {
                                q.push(", ");
                            }
                            q.ident(c)?.push(" = VALUES(").ident(c)?.push(")");
                        }
                    }
                    _ => {
                        q.push(" ON CONFLICT (");
                        q.column_list(&keys)?;
                        if rest.is_empty() {
                            q.push(") DO NOTHING");
                        } else {
                            q.push(") DO UPDATE SET ");
                            for (i, c) in rest.iter().enumerate() {
                                if i > 0 {
                                    q.push(", ");
                                }
                                q.ident(c)?.push(" = excluded.").ident(c)?;
                            }
                        }
                    }
                }
            }
        }
        UPDATE => {
            q.push("UPDATE ").ident(table)?.push(" SET ");
            for (i, (c, v)) in columns.iter().zip(op.values.iter()).enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.ident(c)?.push(" = ").value(v);
            }
            q.conds(&op.conds)?;
        }
        INCREMENT => {
            let c = op.returning.as_str();
            if c.is_empty() {
                return Err(format!("an increment in {table} needs the column to increment"));
            }
            q.push("UPDATE ").ident(table)?.push(" SET ").ident(c)?.push(" = ");
            // One statement, so concurrent increments (other hosts sharing the database) each
            // get their own value. MySQL has no UPDATE ... RETURNING: LAST_INSERT_ID(expr)
            // sets the value its result reports, for this connection only.
            if dialect == Dialect::Mysql {
                q.push("LAST_INSERT_ID(").ident(c)?.push(" + 1)");
            } else {
                q.ident(c)?.push(" + 1");
            }
            q.conds(&op.conds)?;
            if dialect != Dialect::Mysql {
                q.push(" RETURNING ").ident(c)?;
            }
        }
        DELETE => {
            q.push("DELETE FROM ").ident(table)?;
            q.conds(&op.conds)?;
        }
        VERSION => {
            q.push("SELECT ")
                .ident("table_version")?
                .push(" FROM ")
                .ident("version")?
                .push(" WHERE ")
                .ident("table_name")?
                .push(" = ");
            q.value(&FfiDbValue::Str(check_ident(table)?.into()));
        }
        other => return Err(format!("unknown statement kind {other}")),
    }
    Ok((q.text, q.binds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RString;

    fn op(kind: u8, cols: &[&str], values: Vec<FfiDbValue>, conds: Vec<FfiDbCond>) -> FfiDbOp {
        FfiDbOp {
            columns: cols.iter().map(|c| RString::from(*c)).collect(),
            values: values.into(),
            conds: conds.into(),
            ..FfiDbOp::new(kind, "pua")
        }
    }

    fn cond(c: &str, op: u8, v: FfiDbValue) -> FfiDbCond {
        FfiDbCond { column: c.into(), op, value: v }
    }

    #[test]
    fn increment_per_dialect() {
        let mut o = op(INCREMENT, &[], vec![], vec![cond("id", 0, FfiDbValue::Int(7))]);
        o.returning = "cseq".into();
        let (sql, binds) = render(Dialect::Postgres, &o).unwrap();
        assert_eq!(sql, r#"UPDATE "pua" SET "cseq" = "cseq" + 1 WHERE "id" = $1 RETURNING "cseq""#);
        assert_eq!(binds, [Bind::Int(7)]);
        assert!(returns_rows(INCREMENT, &sql));
        let (sql, _) = render(Dialect::Mysql, &o).unwrap();
        assert_eq!(sql, "UPDATE `pua` SET `cseq` = LAST_INSERT_ID(`cseq` + 1) WHERE `id` = ?");
        assert!(!returns_rows(INCREMENT, &sql), "MySQL reports the value as its insert id");
        o.returning = "".into();
        assert!(render(Dialect::Sqlite, &o).unwrap_err().contains("needs the column"));
    }

    #[test]
    fn placeholders_per_dialect() {
        let o = op(
            SELECT,
            &["etag"],
            vec![],
            vec![cond("pres_uri", 0, FfiDbValue::Str("sip:a@b".into())), cond("expires", 1, FfiDbValue::Int(5))],
        );
        let (pg, binds) = render(Dialect::Postgres, &o).unwrap();
        assert_eq!(pg, r#"SELECT "etag" FROM "pua" WHERE "pres_uri" = $1 AND "expires" < $2"#);
        assert_eq!(binds, vec![Bind::Str("sip:a@b".into()), Bind::Int(5)]);
        let (my, _) = render(Dialect::Mysql, &o).unwrap();
        assert_eq!(my, "SELECT `etag` FROM `pua` WHERE `pres_uri` = ? AND `expires` < ?");
    }

    #[test]
    fn nulls_are_literals() {
        let o = op(UPDATE, &["tuple_id"], vec![FfiDbValue::Null], vec![cond("etag", 0, FfiDbValue::Null)]);
        let (sql, binds) = render(Dialect::Postgres, &o).unwrap();
        assert_eq!(sql, r#"UPDATE "pua" SET "tuple_id" = NULL WHERE "etag" IS NULL"#);
        assert!(binds.is_empty());
    }

    #[test]
    fn upserts() {
        let mut o = op(
            UPSERT,
            &["table_name", "table_version"],
            vec![FfiDbValue::Str("pua".into()), FfiDbValue::Int(7)],
            vec![],
        );
        o.key_columns = vec![RString::from("table_name")].into();
        let (s, _) = render(Dialect::Sqlite, &o).unwrap();
        assert!(
            s.ends_with(r#"ON CONFLICT ("table_name") DO UPDATE SET "table_version" = excluded."table_version""#),
            "{s}"
        );
        let (m, _) = render(Dialect::Mysql, &o).unwrap();
        assert!(m.ends_with("ON DUPLICATE KEY UPDATE `table_version` = VALUES(`table_version`)"), "{m}");
    }

    #[test]
    fn upserts_of_many_rows() {
        let mut o = op(
            UPSERT,
            &["id", "expires"],
            vec![FfiDbValue::Int(1), FfiDbValue::Int(10), FfiDbValue::Int(2), FfiDbValue::Int(20)],
            vec![],
        );
        o.key_columns = vec![RString::from("id")].into();
        let (pg, binds) = render(Dialect::Postgres, &o).unwrap();
        assert_eq!(
            pg,
            r#"INSERT INTO "pua" ("id", "expires") VALUES ($1, $2), ($3, $4) ON CONFLICT ("id") DO UPDATE SET "expires" = excluded."expires""#
        );
        assert_eq!(binds.len(), 4);
        let (my, _) = render(Dialect::Mysql, &o).unwrap();
        assert!(my.contains("VALUES (?, ?), (?, ?) ON DUPLICATE KEY"), "{my}");
        // A row cut short, and an id asked of several rows, are refused.
        o.values.pop();
        assert!(render(Dialect::Sqlite, &o).is_err());
        let mut ins = op(INSERT, &["id"], vec![FfiDbValue::Int(1), FfiDbValue::Int(2)], vec![]);
        ins.returning = "id".into();
        assert!(render(Dialect::Postgres, &ins).unwrap_err().contains("one row"));
    }

    #[test]
    fn refuses_bad_identifiers() {
        let mut o = op(DELETE, &[], vec![], vec![]);
        o.table = "pua; DROP TABLE x".into();
        assert!(render(Dialect::Sqlite, &o).unwrap_err().contains("not a valid table"));
    }

    #[test]
    fn datetimes() {
        let o = op(INSERT, &["expires"], vec![FfiDbValue::DateTime(1_700_000_000)], vec![]);
        let (_, binds) = render(Dialect::Sqlite, &o).unwrap();
        let Bind::Str(text) = &binds[0] else { panic!() };
        assert_eq!(parse_datetime_text(text), Some(1_700_000_000));
        let (_, binds) = render(Dialect::Postgres, &o).unwrap();
        let Bind::DateTime(t) = binds[0] else { panic!() };
        assert_eq!(local_to_epoch(t), 1_700_000_000);
    }
}
