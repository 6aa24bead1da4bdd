//! The database service modules use through plugin-api: connections keyed by URL, statements
//! rendered per dialect, transactions with table locks, and Kamailio's `version` table.
//!
//! Module code is synchronous. SQLite runs on the caller's thread (`sqlite.rs`). PostgreSQL and
//! MySQL go through sqlx, which is async: the caller blocks on the host's runtime for the
//! duration of the statement. A call from an I/O thread (inside the runtime) is refused instead
//! of stalling or deadlocking it.
//!
//! SQLite (the embedded default) gets one connection per file, shared by every module that
//! names it: SQLite serialises writers anyway, and one connection avoids `SQLITE_BUSY` between
//! our own modules. It runs in WAL mode with synchronous NORMAL and a busy timeout unless the
//! URL says otherwise (`?journal_mode=...&synchronous=...`), and the file is created if missing.

pub mod dialect;
mod exec;
mod sqlite;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use db_schema::Dialect;
use plugin_api::ffi::{FfiDbOp, FfiDbResult};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use exec::{Conn, Pool};
use sqlite::{SqliteDb, SqliteOptions};

/// Pools and open transactions.
pub struct DbService {
    runtime: tokio::runtime::Handle,
    config_dir: PathBuf,
    max_connections: u32,
    pools: Mutex<Vec<(String, Pool)>>,
    txs: Mutex<HashMap<u64, Conn>>,
    next_tx: AtomicU64,
}

/// Where a URL points, once relative SQLite paths are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Sqlite(PathBuf, SqliteOptions),
    SqliteMemory,
    Postgres(String),
    Mysql(String),
}

impl Target {
    /// Parses a Kamailio-style `db_url`. `sqlite://pua.sqlite` is relative to `config_dir`,
    /// `sqlite:///var/lib/puahost/pua.sqlite` is absolute.
    pub fn parse(url: &str, config_dir: &Path) -> Result<Self, String> {
        match Dialect::from_url(url) {
            Some(Dialect::Sqlite) => {
                let rest = url.split_once(':').map_or("", |(_, r)| r);
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path == ":memory:" || path.is_empty() && rest == ":memory:" {
                    return Ok(Target::SqliteMemory);
                }
                let (path, query) = path.split_once('?').unwrap_or((path, ""));
                if path.is_empty() {
                    return Err(format!("database URL `{url}` names no file"));
                }
                let options = SqliteOptions::from_query(query).map_err(|e| format!("database URL `{url}`: {e}"))?;
                let p = Path::new(path);
                Ok(Target::Sqlite(if p.is_absolute() { p.to_path_buf() } else { config_dir.join(p) }, options))
            }
            Some(Dialect::Postgres) => Ok(Target::Postgres(url.to_string())),
            Some(Dialect::Mysql) => Ok(Target::Mysql(url.to_string())),
            None => Err(format!("database URL `{url}` is not sqlite://, postgres:// or mysql://")),
        }
    }

    fn key(&self) -> String {
        match self {
            Target::Sqlite(p, _) => format!("sqlite:{}", p.canonicalize().unwrap_or_else(|_| p.clone()).display()),
            Target::SqliteMemory => "sqlite::memory:".into(),
            Target::Postgres(u) | Target::Mysql(u) => u.clone(),
        }
    }
}

/// Hides the password of a URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl DbService {
    pub fn new(runtime: tokio::runtime::Handle, config_dir: PathBuf, max_connections: u32) -> Self {
        Self {
            runtime,
            config_dir,
            max_connections: max_connections.max(2),
            pools: Mutex::new(Vec::new()),
            txs: Mutex::new(HashMap::new()),
            next_tx: AtomicU64::new(1),
        }
    }

    /// Refuses database work on a runtime thread (it would stall the I/O).
    fn check_thread() -> Result<(), String> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err("database calls must be made on worker threads (init, child_init, routes, timers, RPC handlers), not on I/O threads".into());
        }
        Ok(())
    }

    /// Blocks on `fut`, refusing to do so on a runtime thread.
    fn block_on<F: Future>(&self, fut: F) -> Result<F::Output, String> {
        Self::check_thread()?;
        Ok(self.runtime.block_on(fut))
    }

    async fn connect(target: &Target, max: u32) -> Result<Pool, exec::DbError> {
        let timeout = Duration::from_secs(10);
        Ok(match target {
            Target::Sqlite(path, options) => {
                Pool::Sqlite(Arc::new(SqliteDb::open(Some(path), options).map_err(exec::DbError::Sqlite)?))
            }
            // One connection, kept: each in-memory connection is a database of its own.
            Target::SqliteMemory => {
                Pool::Sqlite(Arc::new(SqliteDb::open(None, &SqliteOptions::default()).map_err(exec::DbError::Sqlite)?))
            }
            Target::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url)?;
                Pool::Postgres(
                    PgPoolOptions::new().max_connections(max).acquire_timeout(timeout).connect_with(opts).await?,
                )
            }
            Target::Mysql(url) => {
                let opts = MySqlConnectOptions::from_str(url)?;
                Pool::Mysql(
                    MySqlPoolOptions::new().max_connections(max).acquire_timeout(timeout).connect_with(opts).await?,
                )
            }
        })
    }

    /// Opens (or shares) the pool for `url` and returns its handle.
    pub fn open(&self, module: &str, url: &str) -> Result<u32, String> {
        let target = Target::parse(url, &self.config_dir)?;
        let key = target.key();
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pools.iter().position(|(k, _)| *k == key) {
            return Ok(i as u32);
        }
        let pool = self
            .block_on(Self::connect(&target, self.max_connections))?
            .map_err(|e| format!("cannot open database {}: {e}", redact(url)))?;
        tracing::info!(module, url = %redact(url), "database opened");
        pools.push((key, pool));
        Ok((pools.len() - 1) as u32)
    }

    fn pool(&self, db: u32) -> Result<Pool, String> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.get(db as usize).map(|(_, p)| p.clone()).ok_or_else(|| format!("no database handle {db}"))
    }

    /// Runs `op` on pool `db`, or inside transaction `tx` when it is not 0.
    pub fn exec(&self, db: u32, tx: u64, op: &FfiDbOp) -> Result<FfiDbResult, String> {
        if op.kind == dialect::ENSURE_TABLE {
            return self.ensure_table(db, op.table.as_str());
        }
        self.exec_raw(db, tx, op)
    }

    /// Runs writes `ops` all or none, outside a transaction: on SQLite as one unit of the
    /// group commit; elsewhere in a transaction of their own.
    pub fn exec_batch(&self, db: u32, ops: &[FfiDbOp]) -> Result<Vec<FfiDbResult>, String> {
        if let Some(bad) =
            ops.iter().find(|o| matches!(o.kind, dialect::SELECT | dialect::VERSION | dialect::ENSURE_TABLE))
        {
            return Err(format!("a batch takes writes only, not statement kind {} on {}", bad.kind, bad.table));
        }
        if let Pool::Sqlite(sqlite) = &self.pool(db)? {
            Self::check_thread()?;
            let stmts = ops
                .iter()
                .map(|op| dialect::render(Dialect::Sqlite, op).map(|(sql, binds)| (sql, binds, op.kind)))
                .collect::<Result<Vec<_>, _>>()?;
            return sqlite.write_many(stmts);
        }
        let tx = self.begin(db, &[])?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match self.exec_raw(db, tx, op) {
                Ok(r) => out.push(r),
                Err(e) => {
                    let _ = self.end(tx, false);
                    return Err(e);
                }
            }
        }
        self.end(tx, true)?;
        Ok(out)
    }

    fn exec_raw(&self, db: u32, tx: u64, op: &FfiDbOp) -> Result<FfiDbResult, String> {
        if tx == 0 {
            let pool = self.pool(db)?;
            if let Pool::Sqlite(sqlite) = &pool {
                return Self::run_sqlite(sqlite, 0, op);
            }
            let (sql, binds) = dialect::render(pool.dialect(), op)?;
            return self.block_on(pool.run(&sql, binds, op.kind))?.map_err(|e| format!("{e} (in: {sql})"));
        }
        let sqlite = match self.txs.lock().unwrap_or_else(|e| e.into_inner()).get(&tx) {
            Some(Conn::Sqlite(s)) => Some(s.clone()),
            _ => None,
        };
        if let Some(sqlite) = sqlite {
            return Self::run_sqlite(&sqlite, tx, op);
        }
        // Take the connection out while the statement runs, so no lock is held across it.
        let mut conn = self
            .txs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&tx)
            .ok_or_else(|| format!("no open transaction {tx}"))?;
        let result = dialect::render(conn.dialect(), op).and_then(|(sql, binds)| {
            self.block_on(conn.run(tx, &sql, binds, op.kind))?.map_err(|e| format!("{e} (in: {sql})"))
        });
        self.txs.lock().unwrap_or_else(|e| e.into_inner()).insert(tx, conn);
        result
    }

    /// SQLite straight on this thread, no runtime in the way: the hot path of write-through
    /// modules. (`Pool::run`/`Conn::run` would get the same result through `block_on`.)
    fn run_sqlite(sqlite: &SqliteDb, tx: u64, op: &FfiDbOp) -> Result<FfiDbResult, String> {
        Self::check_thread()?;
        let (sql, binds) = dialect::render(Dialect::Sqlite, op)?;
        sqlite.run(tx, &sql, binds, op.kind)
    }

    /// Creates `table` from the catalog when it has no version row (and the `version` table
    /// first, when it is missing). Tables that have a version row are never touched.
    fn ensure_table(&self, db: u32, table: &str) -> Result<FfiDbResult, String> {
        let def = db_schema::table(table).ok_or_else(|| format!("table `{table}` is not in the schema catalog"))?;
        let pool = self.pool(db)?;
        let dialect = pool.dialect();
        let version = |t: &str| self.exec_raw(db, 0, &FfiDbOp::new(dialect::VERSION, t));
        if version("version").is_err() {
            for stmt in db_schema::create_statements(&[&db_schema::VERSION], dialect) {
                self.block_on(pool.execute_script(&stmt))?.map_err(|e| format!("creating table version: {e}"))?;
            }
        }
        if !version(table)?.rows.is_empty() {
            return Ok(FfiDbResult::default());
        }
        for stmt in db_schema::create_statements(&[def], dialect) {
            self.block_on(pool.execute_script(&stmt))?
                .map_err(|e| format!("creating table {table}: {e} (in: {stmt})"))?;
        }
        tracing::info!(table, "table created (it had no version row)");
        Ok(FfiDbResult { last_insert_id: 1, ..Default::default() })
    }

    /// Starts a transaction, write-locking `lock_tables` where the database has table locks.
    pub fn begin(&self, db: u32, lock_tables: &[&str]) -> Result<u64, String> {
        for t in lock_tables {
            if !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || t.is_empty() {
                return Err(format!("`{t}` is not a valid table name"));
            }
        }
        let pool = self.pool(db)?;
        let id = self.next_tx.fetch_add(1, Ordering::Relaxed);
        let conn =
            self.block_on(pool.begin(id, lock_tables))?.map_err(|e| format!("cannot start a transaction: {e}"))?;
        self.txs.lock().unwrap_or_else(|e| e.into_inner()).insert(id, conn);
        Ok(id)
    }

    /// Commits or rolls back transaction `tx` and releases its locks.
    pub fn end(&self, tx: u64, commit: bool) -> Result<(), String> {
        let conn = self
            .txs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&tx)
            .ok_or_else(|| format!("no open transaction {tx}"))?;
        self.block_on(conn.end(tx, commit))?.map_err(|e| format!("cannot end the transaction: {e}"))
    }

    /// Closes every pool (at shutdown, after modules flushed their state).
    pub fn close(&self) {
        let pools = std::mem::take(&mut *self.pools.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = self.block_on(async move {
            for (_, p) in pools {
                p.close().await;
            }
        });
    }
}

/// `puahost db create` and `puahost db check`, on top of the schema catalog.
pub mod admin {
    use super::*;
    use db_schema::Table;

    /// What `check` found for one table.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum TableState {
        Ok,
        Missing,
        WrongVersion { found: i64 },
    }

    /// The tables named by `names` (table or group names), or every table when empty; the
    /// `version` table first.
    pub fn select_tables(names: &[String]) -> Result<Vec<&'static Table>, String> {
        let mut out: Vec<&'static Table> = Vec::new();
        let mut add = |t: &'static Table| {
            if !out.iter().any(|o| o.name == t.name) {
                out.push(t);
            }
        };
        add(&db_schema::VERSION);
        if names.is_empty() {
            for g in db_schema::all_groups().iter().chain(db_schema::own_groups()) {
                g.tables.iter().copied().for_each(&mut add);
            }
        }
        for n in names {
            if let Some(g) = db_schema::group(n) {
                g.iter().copied().for_each(&mut add);
            } else if let Some(t) = db_schema::table(n) {
                add(t);
            } else {
                let known: Vec<&str> = db_schema::all_groups()
                    .iter()
                    .chain(db_schema::own_groups())
                    .flat_map(|g| std::iter::once(g.name).chain(g.tables.iter().map(|t| t.name)))
                    .collect();
                return Err(format!("unknown table or group `{n}` (known: {})", known.join(", ")));
            }
        }
        Ok(out)
    }

    fn version_of(db: &DbService, id: u32, table: &str) -> Result<Option<i64>, String> {
        let op = FfiDbOp::new(dialect::VERSION, table);
        let r = db.exec(id, 0, &op)?;
        Ok(r.rows.first().and_then(|row| row.first()).and_then(|v| match v {
            plugin_api::ffi::FfiDbValue::Int(i) => Some(*i),
            _ => None,
        }))
    }

    fn has_version_table(db: &DbService, id: u32) -> bool {
        version_of(db, id, "version").is_ok()
    }

    /// The state of each table.
    pub fn check(
        db: &DbService,
        url: &str,
        tables: &[&'static Table],
    ) -> Result<Vec<(&'static str, u32, TableState)>, String> {
        let id = db.open("db", url)?;
        let have_version = has_version_table(db, id);
        let mut out = Vec::new();
        for t in tables {
            let state = if !have_version {
                TableState::Missing
            } else {
                match version_of(db, id, t.name)? {
                    None => TableState::Missing,
                    Some(v) if v == i64::from(t.version) => TableState::Ok,
                    Some(found) => TableState::WrongVersion { found },
                }
            };
            out.push((t.name, t.version, state));
        }
        Ok(out)
    }

    /// Creates the tables that have no version row yet; returns (table, created?) per table.
    pub fn create(db: &DbService, url: &str, tables: &[&'static Table]) -> Result<Vec<(&'static str, bool)>, String> {
        let id = db.open("db", url)?;
        let dialect = db.pool(id)?.dialect();
        let mut out = Vec::new();
        for t in tables {
            let exists =
                if t.name == "version" { has_version_table(db, id) } else { version_of(db, id, t.name)?.is_some() };
            if exists {
                out.push((t.name, false));
                continue;
            }
            let pool = db.pool(id)?;
            for stmt in db_schema::create_statements(&[t], dialect) {
                db.block_on(pool.execute_script(&stmt))?
                    .map_err(|e| format!("creating table {}: {e} (in: {stmt})", t.name))?;
            }
            out.push((t.name, true));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let dir = Path::new("/etc/puahost");
        assert_eq!(
            Target::parse("sqlite://pua.sqlite", dir).unwrap(),
            Target::Sqlite("/etc/puahost/pua.sqlite".into(), SqliteOptions::default())
        );
        assert_eq!(
            Target::parse("sqlite:///var/lib/p.db", dir).unwrap(),
            Target::Sqlite("/var/lib/p.db".into(), SqliteOptions::default())
        );
        assert!(matches!(
            Target::parse("sqlite:///var/lib/p.db?synchronous=full", dir).unwrap(),
            Target::Sqlite(_, SqliteOptions { ref synchronous, .. }) if synchronous == "full"
        ));
        assert!(Target::parse("sqlite:///var/lib/p.db?sync=full", dir).is_err());
        assert_eq!(Target::parse("sqlite::memory:", dir).unwrap(), Target::SqliteMemory);
        assert!(matches!(Target::parse("postgres://u@h/db", dir).unwrap(), Target::Postgres(_)));
        assert!(Target::parse("oracle://x", dir).is_err());
        assert_eq!(redact("mysql://kamailio:kamailiorw@localhost/kamailio"), "mysql://kamailio:***@localhost/kamailio");
    }
}

#[cfg(test)]
mod sqlite_tests {
    use super::*;
    use abi_stable::std_types::RString;
    use plugin_api::ffi::FfiDbValue;

    fn op(kind: u8, table: &str, cols: &[&str], values: Vec<FfiDbValue>) -> FfiDbOp {
        FfiDbOp {
            columns: cols.iter().map(|c| RString::from(*c)).collect(),
            values: values.into(),
            ..FfiDbOp::new(kind, table)
        }
    }

    /// A real SQLite file with Kamailio's schema: DATETIME columns come back as DateTime.
    #[test]
    fn kamailio_location_table_roundtrip() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let dir = std::env::temp_dir().join(format!("puahost-db-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = DbService::new(rt.handle().clone(), dir.clone(), 2);
        let url = "sqlite://loc.sqlite";
        let tables = admin::select_tables(&["usrloc".into()]).unwrap();
        admin::create(&db, url, &tables).unwrap();
        let id = db.open("t", url).unwrap();
        db.exec(
            id,
            0,
            &op(
                dialect::INSERT,
                "location",
                &["ruid", "username", "contact", "expires"],
                vec![
                    FfiDbValue::Str("r1".into()),
                    FfiDbValue::Str("alice".into()),
                    FfiDbValue::Str("sip:alice@h".into()),
                    FfiDbValue::DateTime(1_700_000_000),
                ],
            ),
        )
        .unwrap();
        let r = db.exec(id, 0, &op(dialect::SELECT, "location", &["expires", "username", "q"], vec![])).unwrap();
        assert_eq!(r.rows[0][0], FfiDbValue::DateTime(1_700_000_000), "{:?}", r.rows[0]);
        assert_eq!(r.rows[0][1], FfiDbValue::Str("alice".into()));
        assert_eq!(r.rows[0][2], FfiDbValue::Double(1.0));
        // Second create keeps what exists.
        assert!(admin::create(&db, url, &tables).unwrap().iter().all(|(_, created)| !created));
        db.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
