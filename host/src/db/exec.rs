//! Runs rendered statements on the drivers and decodes rows into [`FfiDbValue`]s: SQLite
//! synchronously ([`super::sqlite`]), PostgreSQL and MySQL/MariaDB through sqlx.

use std::sync::Arc;

use abi_stable::std_types::{RString, RVec};
use db_schema::Dialect;
use plugin_api::ffi::{FfiDbResult, FfiDbValue};
use sqlx::pool::PoolConnection;
use sqlx::{Column, MySql, MySqlPool, PgPool, Postgres, Row, TypeInfo, ValueRef};

use super::dialect::{Bind, local_to_epoch, returns_rows, returns_value};
use super::sqlite::SqliteDb;

#[derive(Clone)]
pub enum Pool {
    Sqlite(Arc<SqliteDb>),
    Postgres(PgPool),
    Mysql(MySqlPool),
}

/// A connection held by an open transaction (SQLite: the database the transaction owns).
pub enum Conn {
    Sqlite(Arc<SqliteDb>),
    Postgres(PoolConnection<Postgres>),
    Mysql(PoolConnection<MySql>),
}

/// A driver failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error("{0}")]
    Sqlite(String),
}

/// A `... RETURNING` result (an insert's id, an increment's value) as MySQL's: the row count
/// and the value, no rows.
pub(super) fn take_returned_id(out: &mut FfiDbResult) {
    out.affected = out.rows.len() as u64;
    out.last_insert_id = match out.rows.first().and_then(|r| r.first()) {
        Some(FfiDbValue::Int(id)) => *id,
        _ => 0,
    };
    out.rows = RVec::new();
    out.columns = RVec::new();
}

/// Binds `binds` to a query of any of the three drivers.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                Bind::Int(v) => q.bind(v),
                Bind::Double(v) => q.bind(v),
                Bind::Str(v) => q.bind(v),
                Bind::Blob(v) => q.bind(v),
                Bind::DateTime(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Runs one statement on an executor (pool or connection) and collects its result;
/// `$insert_id` reads the new row id from the driver's result (SQLite, MySQL).
macro_rules! run_on {
    ($exec:expr, $sql:expr, $binds:expr, $kind:expr, $decode:path, $insert_id:expr) => {{
        let returning = returns_value($kind, &$sql);
        let rows_back = returns_rows($kind, &$sql);
        let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe($sql)), $binds);
        if rows_back {
            let rows = q.fetch_all($exec).await?;
            let mut out = FfiDbResult::default();
            if let Some(first) = rows.first() {
                out.columns = first.columns().iter().map(|c| RString::from(c.name())).collect();
            }
            out.rows = rows.iter().map($decode).collect::<Result<RVec<_>, sqlx::Error>>()?;
            if returning {
                take_returned_id(&mut out);
            }
            Ok::<FfiDbResult, sqlx::Error>(out)
        } else {
            let done = q.execute($exec).await?;
            let last_insert_id: i64 = $insert_id(&done);
            Ok::<FfiDbResult, sqlx::Error>(FfiDbResult {
                affected: done.rows_affected(),
                last_insert_id,
                ..Default::default()
            })
        }
    }};
}

fn mysql_id(r: &sqlx::mysql::MySqlQueryResult) -> i64 {
    i64::try_from(r.last_insert_id()).unwrap_or(0)
}

fn pg_id(_: &sqlx::postgres::PgQueryResult) -> i64 {
    0
}

fn pg_row(row: &sqlx::postgres::PgRow) -> Result<RVec<FfiDbValue>, sqlx::Error> {
    (0..row.len())
        .map(|i| {
            if row.try_get_raw(i)?.is_null() {
                return Ok(FfiDbValue::Null);
            }
            Ok(match row.column(i).type_info().name() {
                "INT2" => FfiDbValue::Int(row.try_get::<i16, _>(i)?.into()),
                "INT4" => FfiDbValue::Int(row.try_get::<i32, _>(i)?.into()),
                "INT8" => FfiDbValue::Int(row.try_get::<i64, _>(i)?),
                "BOOL" => FfiDbValue::Int(row.try_get::<bool, _>(i)?.into()),
                "FLOAT4" => FfiDbValue::Double(row.try_get::<f32, _>(i)?.into()),
                "FLOAT8" => FfiDbValue::Double(row.try_get::<f64, _>(i)?),
                "BYTEA" => FfiDbValue::Blob(row.try_get::<Vec<u8>, _>(i)?.into()),
                "TIMESTAMP" => FfiDbValue::DateTime(local_to_epoch(row.try_get::<chrono::NaiveDateTime, _>(i)?)),
                "TIMESTAMPTZ" => FfiDbValue::DateTime(row.try_get::<chrono::DateTime<chrono::Utc>, _>(i)?.timestamp()),
                _ => FfiDbValue::Str(row.try_get::<String, _>(i)?.into()),
            })
        })
        .collect()
}

fn mysql_row(row: &sqlx::mysql::MySqlRow) -> Result<RVec<FfiDbValue>, sqlx::Error> {
    (0..row.len())
        .map(|i| {
            if row.try_get_raw(i)?.is_null() {
                return Ok(FfiDbValue::Null);
            }
            let ty = row.column(i).type_info().name().to_ascii_uppercase();
            Ok(match ty.as_str() {
                t if t.ends_with("UNSIGNED") && (t.contains("INT")) => {
                    FfiDbValue::Int(i64::try_from(row.try_get::<u64, _>(i)?).unwrap_or(i64::MAX))
                }
                "TINYINT" => FfiDbValue::Int(row.try_get::<i8, _>(i)?.into()),
                "SMALLINT" => FfiDbValue::Int(row.try_get::<i16, _>(i)?.into()),
                "INT" | "MEDIUMINT" => FfiDbValue::Int(row.try_get::<i32, _>(i)?.into()),
                "BIGINT" => FfiDbValue::Int(row.try_get::<i64, _>(i)?),
                "BOOLEAN" => FfiDbValue::Int(row.try_get::<bool, _>(i)?.into()),
                "FLOAT" => FfiDbValue::Double(row.try_get::<f32, _>(i)?.into()),
                "DOUBLE" => FfiDbValue::Double(row.try_get::<f64, _>(i)?),
                "DATETIME" | "TIMESTAMP" => {
                    FfiDbValue::DateTime(local_to_epoch(row.try_get::<chrono::NaiveDateTime, _>(i)?))
                }
                t if t.contains("BLOB") || t.contains("BINARY") => {
                    FfiDbValue::Blob(row.try_get::<Vec<u8>, _>(i)?.into())
                }
                _ => FfiDbValue::Str(row.try_get::<String, _>(i)?.into()),
            })
        })
        .collect()
}

impl Pool {
    pub fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::Mysql(_) => Dialect::Mysql,
        }
    }

    /// Runs one statement. SQLite runs before the first `.await`, on the caller's thread.
    pub async fn run(&self, sql: &str, binds: Vec<Bind>, kind: u8) -> Result<FfiDbResult, DbError> {
        let sql = sql.to_string();
        Ok(match self {
            Pool::Sqlite(db) => db.run(0, &sql, binds, kind).map_err(DbError::Sqlite)?,
            Pool::Postgres(p) => run_on!(p, sql, binds, kind, pg_row, pg_id)?,
            Pool::Mysql(p) => run_on!(p, sql, binds, kind, mysql_row, mysql_id)?,
        })
    }

    /// Runs one DDL statement (no binds).
    pub async fn execute_script(&self, sql: &str) -> Result<(), DbError> {
        let q = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()));
        match self {
            Pool::Sqlite(db) => db.execute_script(sql).map_err(DbError::Sqlite)?,
            Pool::Postgres(p) => q.execute(p).await.map(drop)?,
            Pool::Mysql(p) => q.execute(p).await.map(drop)?,
        }
        Ok(())
    }

    /// Takes a connection and starts a transaction on it, locking `tables` for writing:
    /// SQLite's `BEGIN IMMEDIATE` takes the database write lock; PostgreSQL locks each table
    /// EXCLUSIVE (reads still go on); MySQL/MariaDB does what Kamailio's db_mysql does
    /// (`SET autocommit=0` then `LOCK TABLES ... WRITE`).
    pub async fn begin(&self, tx: u64, tables: &[&str]) -> Result<Conn, DbError> {
        async fn exec<'c, E: sqlx::Executor<'c>>(e: E, sql: String) -> Result<(), sqlx::Error> {
            e.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql))).await.map(drop)
        }
        match self {
            Pool::Sqlite(db) => {
                db.begin(tx).map_err(DbError::Sqlite)?;
                Ok(Conn::Sqlite(db.clone()))
            }
            Pool::Postgres(p) => {
                let mut c = p.acquire().await?;
                exec(&mut *c, "BEGIN".into()).await?;
                for t in tables {
                    exec(&mut *c, format!("LOCK TABLE \"{t}\" IN EXCLUSIVE MODE")).await?;
                }
                Ok(Conn::Postgres(c))
            }
            Pool::Mysql(p) => {
                let mut c = p.acquire().await?;
                exec(&mut *c, "SET autocommit=0".into()).await?;
                if tables.is_empty() {
                    exec(&mut *c, "START TRANSACTION".into()).await?;
                } else {
                    let list: Vec<String> = tables.iter().map(|t| format!("`{t}` WRITE")).collect();
                    exec(&mut *c, format!("LOCK TABLES {}", list.join(", "))).await?;
                }
                Ok(Conn::Mysql(c))
            }
        }
    }
}

impl Conn {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Mysql(_) => Dialect::Mysql,
        }
    }

    /// Runs one statement inside transaction `tx`.
    pub async fn run(&mut self, tx: u64, sql: &str, binds: Vec<Bind>, kind: u8) -> Result<FfiDbResult, DbError> {
        let sql = sql.to_string();
        Ok(match self {
            Conn::Sqlite(db) => db.run(tx, &sql, binds, kind).map_err(DbError::Sqlite)?,
            Conn::Postgres(c) => run_on!(&mut **c, sql, binds, kind, pg_row, pg_id)?,
            Conn::Mysql(c) => run_on!(&mut **c, sql, binds, kind, mysql_row, mysql_id)?,
        })
    }

    pub async fn end(self, tx: u64, commit: bool) -> Result<(), DbError> {
        let verb = if commit { "COMMIT" } else { "ROLLBACK" };
        let q = |s: &str| sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()));
        match self {
            Conn::Sqlite(db) => db.end(tx, commit).map_err(DbError::Sqlite),
            Conn::Postgres(mut c) => Ok(q(verb).execute(&mut *c).await.map(drop)?),
            Conn::Mysql(mut c) => {
                let r = q(verb).execute(&mut *c).await.map(drop);
                // Release the locks and restore autocommit even when the COMMIT failed, so the
                // pooled connection is clean for its next user.
                let _ = q("UNLOCK TABLES").execute(&mut *c).await;
                let _ = q("SET autocommit=1").execute(&mut *c).await;
                Ok(r?)
            }
        }
    }
}

impl Pool {
    pub async fn close(&self) {
        match self {
            // Closed when the last handle drops (WAL checkpointed by SQLite itself).
            Pool::Sqlite(_) => {}
            Pool::Postgres(p) => p.close().await,
            Pool::Mysql(p) => p.close().await,
        }
    }
}
