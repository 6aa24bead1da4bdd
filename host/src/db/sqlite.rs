//! SQLite, the embedded default, on rusqlite: statements run on the calling thread (a UDP
//! receiver or a worker) against one connection per file, with prepared statements cached.
//!
//! Why not sqlx here: its SQLite driver runs each connection on a thread of its own and the
//! caller blocks on the runtime meanwhile, so a one-row INSERT cost three thread hand-offs;
//! profiles of the presence server showed those hand-offs, not SQLite, taking most of the CPU
//! of a PUBLISH. SQLite serialises writers anyway, so one connection behind a mutex loses no
//! concurrency that the file would have allowed.
//!
//! Transactions: the connection belongs to the open transaction (if any) until it ends; other
//! callers wait for it, up to [`BUSY_WAIT`].
//!
//! Group commit: writes outside a transaction that arrive while another write is running are
//! queued, and the next one to run takes the whole queue into one transaction. Each caller
//! still returns only after its write committed (a reply is never sent for state that could be
//! lost), but a burst pays for one commit, one set of file locks and, with
//! `synchronous=full`, one fsync, instead of one per write. A statement that fails inside a
//! batch fails alone (SQLite rolls back the statement, not the transaction); a failed COMMIT
//! fails every write of its batch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RString, RVec};
use plugin_api::ffi::{FfiDbResult, FfiDbValue};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::dialect::{Bind, parse_datetime_text, returns_rows, returns_value};

/// How long a statement waits for another caller's transaction to end.
const BUSY_WAIT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection (modules use a few dozen distinct statements).
const STATEMENT_CACHE: usize = 256;

/// Journal and sync settings, from the URL's query (`sqlite:///p.db?synchronous=full`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// `PRAGMA journal_mode`: `wal` (the default), `delete`, `truncate`, `persist`, `memory`.
    pub journal_mode: String,
    /// `PRAGMA synchronous`: `normal` (the default with WAL), `full`, `off`, `extra`.
    pub synchronous: String,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { journal_mode: "wal".into(), synchronous: "normal".into() }
    }
}

impl SqliteOptions {
    /// Reads `journal_mode` and `synchronous` from a URL query; unknown keys or values are
    /// errors, so a typo is not silently ignored.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut o = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = v.to_ascii_lowercase();
            match k {
                "journal_mode" if ["wal", "delete", "truncate", "persist", "memory"].contains(&v.as_str()) => {
                    o.journal_mode = v;
                }
                "synchronous" if ["off", "normal", "full", "extra"].contains(&v.as_str()) => o.synchronous = v,
                "journal_mode" | "synchronous" => return Err(format!("`{v}` is not a valid {k}")),
                _ => return Err(format!("unknown SQLite URL option `{k}` (known: journal_mode, synchronous)")),
            }
        }
        Ok(o)
    }
}

struct State {
    conn: Connection,
    /// The transaction that owns the connection.
    owner: Option<u64>,
}

/// One rendered statement: SQL, binds, kind.
pub type Statement = (String, Vec<Bind>, u8);

/// A caller's writes (one statement, or several that take effect all or none) waiting for
/// the next batch.
struct QueuedWrite {
    ticket: u64,
    stmts: Vec<Statement>,
    /// Its caller, parked until its result is in (or it is to run the next batch).
    waiter: std::thread::Thread,
}

type UnitResult = Result<Vec<FfiDbResult>, SqliteError>;

/// Writes waiting to be committed, and the results of committed ones not yet picked up.
#[derive(Default)]
struct WriteQueue {
    queued: Vec<QueuedWrite>,
    done: HashMap<u64, UnitResult>,
    next_ticket: u64,
    /// A caller is running a batch now.
    running: bool,
}

/// One SQLite database (file or in-memory), shared by every module that names it.
pub struct SqliteDb {
    state: Mutex<State>,
    released: Condvar,
    writes: Mutex<WriteQueue>,
}

/// An SQLite failure, with the statement it came from where there was one.
pub type SqliteError = String;

impl SqliteDb {
    /// Opens (creating if missing) the file at `path`; `None`: a private in-memory database.
    pub fn open(path: Option<&Path>, options: &SqliteOptions) -> Result<Self, SqliteError> {
        let conn = match path {
            Some(p) => Connection::open_with_flags(
                p,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            None => Connection::open_in_memory(),
        }
        .map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        if path.is_some() {
            // journal_mode answers with a row, so it cannot go through execute_batch.
            conn.query_row(&format!("PRAGMA journal_mode = {}", options.journal_mode), [], |_| Ok(()))
                .map_err(|e| format!("setting journal_mode: {e}"))?;
            conn.execute_batch(&format!("PRAGMA synchronous = {}", options.synchronous))
                .map_err(|e| format!("setting synchronous: {e}"))?;
        }
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { state: Mutex::new(State { conn, owner: None }), released: Condvar::new(), writes: Mutex::default() })
    }

    /// The connection for transaction `tx` (0: none; then it waits until no transaction owns
    /// the connection).
    fn acquire(&self, tx: u64) -> Result<MutexGuard<'_, State>, SqliteError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if tx != 0 {
            return if state.owner == Some(tx) { Ok(state) } else { Err(format!("no open transaction {tx}")) };
        }
        let deadline = Instant::now() + BUSY_WAIT;
        while state.owner.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("database busy: a transaction has held it for too long".into());
            }
            state = self.released.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        Ok(state)
    }

    /// Runs one rendered statement, inside transaction `tx` when it is not 0. Writes outside a
    /// transaction are group-committed.
    pub fn run(&self, tx: u64, sql: &str, binds: Vec<Bind>, kind: u8) -> Result<FfiDbResult, SqliteError> {
        if tx == 0 && !is_read(kind, sql) {
            let mut r = self.write_many(vec![(sql.to_string(), binds, kind)])?;
            return r.pop().ok_or_else(|| "no result".to_string());
        }
        let state = self.acquire(tx)?;
        run_statement(&state.conn, sql, binds, kind).map_err(|e| format!("{e} (in: {sql})"))
    }

    /// Queues a write and waits until a batch that holds it committed; runs the batch itself
    /// when no other caller is running one.
    ///
    /// Waiters park and are unparked one by one (their result is in, or the first still queued
    /// is to run the next batch): a condition variable woke all of them after every batch, and
    /// with 16 receivers waiting the futex traffic cost more CPU than the fsync.
    ///
    /// `stmts` take effect all or none (a savepoint inside the batch's transaction); the result
    /// of each.
    pub fn write_many(&self, stmts: Vec<Statement>) -> UnitResult {
        let mut q = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        let waiter = std::thread::current();
        q.queued.push(QueuedWrite { ticket, stmts, waiter });
        loop {
            if let Some(result) = q.done.remove(&ticket) {
                return result;
            }
            if !q.running {
                q.running = true;
                let batch = std::mem::take(&mut q.queued);
                drop(q);
                let waiters: Vec<(u64, std::thread::Thread)> =
                    batch.iter().map(|w| (w.ticket, w.waiter.clone())).collect();
                let results = self.run_batch(batch);
                q = self.writes.lock().unwrap_or_else(|e| e.into_inner());
                q.done.extend(results);
                q.running = false;
                let next_leader = q.queued.first().map(|w| w.waiter.clone());
                drop(q);
                for (t, w) in waiters {
                    if t != ticket {
                        w.unpark();
                    }
                }
                if let Some(w) = next_leader {
                    w.unpark();
                }
                q = self.writes.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            drop(q);
            // Spurious wake-ups are fine: the loop looks again.
            std::thread::park();
            q = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs `batch` in one transaction (a single statement in autocommit) and returns each
    /// caller's result, all after the commit.
    fn run_batch(&self, batch: Vec<QueuedWrite>) -> Vec<(u64, UnitResult)> {
        let state = match self.acquire(0) {
            Ok(s) => s,
            Err(e) => return batch.into_iter().map(|w| (w.ticket, Err(e.clone()))).collect(),
        };
        let conn = &state.conn;
        let one = |w: QueuedWrite| (w.ticket, run_unit(conn, w.stmts));
        if batch.len() == 1 && batch[0].stmts.len() == 1 {
            return batch.into_iter().map(one).collect();
        }
        if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
            let e = format!("cannot start a transaction: {e}");
            return batch.into_iter().map(|w| (w.ticket, Err(e.clone()))).collect();
        }
        let mut results: Vec<(u64, UnitResult)> = Vec::with_capacity(batch.len());
        let mut uncommitted = 0;
        for w in batch {
            let r = one(w);
            if r.1.is_err() && conn.is_autocommit() {
                // The error rolled back the whole transaction (I/O error, disk full): the writes
                // before it are lost with it. Fail them too and go on in a new transaction.
                let why = r.1.clone().err().unwrap_or_default();
                for earlier in results.iter_mut().rev().take(uncommitted) {
                    earlier.1 = Err(format!("rolled back with the transaction: {why}"));
                }
                uncommitted = 0;
                results.push(r);
                let _ = control(conn, "BEGIN IMMEDIATE");
                continue;
            }
            uncommitted += 1;
            results.push(r);
        }
        if !conn.is_autocommit()
            && let Err(e) = control(conn, "COMMIT")
        {
            let _ = control(conn, "ROLLBACK");
            for earlier in results.iter_mut().rev().take(uncommitted) {
                earlier.1 = Err(format!("the commit failed: {e}"));
            }
        }
        results
    }

    /// Runs DDL (no binds).
    pub fn execute_script(&self, sql: &str) -> Result<(), SqliteError> {
        self.acquire(0)?.conn.execute_batch(sql).map_err(|e| e.to_string())
    }

    /// Starts transaction `tx` with `BEGIN IMMEDIATE` (SQLite's write lock), after any other
    /// transaction ended.
    pub fn begin(&self, tx: u64) -> Result<(), SqliteError> {
        let mut state = self.acquire(0)?;
        control(&state.conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
        state.owner = Some(tx);
        Ok(())
    }

    /// Commits or rolls back transaction `tx` and hands the connection to the next caller.
    pub fn end(&self, tx: u64, commit: bool) -> Result<(), SqliteError> {
        let mut state = self.acquire(tx)?;
        let result = control(&state.conn, if commit { "COMMIT" } else { "ROLLBACK" });
        if result.is_err() && !state.conn.is_autocommit() {
            // A failed COMMIT leaves the transaction open: roll it back so the next caller
            // does not inherit it.
            let _ = control(&state.conn, "ROLLBACK");
        }
        state.owner = None;
        drop(state);
        self.released.notify_all();
        result.map_err(|e| e.to_string())
    }
}

/// Statements that only read: they need no commit and are never queued.
fn is_read(kind: u8, sql: &str) -> bool {
    returns_rows(kind, sql) && !returns_value(kind, sql)
}

fn bind_value(b: Bind) -> Value {
    match b {
        Bind::Int(v) => Value::Integer(v),
        Bind::Double(v) => Value::Real(v),
        Bind::Str(v) => Value::Text(v),
        Bind::Blob(v) => Value::Blob(v),
        // The dialect renders DATETIME binds as text for SQLite; this keeps Kamailio's format
        // should one arrive anyway.
        Bind::DateTime(v) => Value::Text(v.format("%Y-%m-%d %H:%M:%S").to_string()),
    }
}

/// Runs a transaction-control statement (`BEGIN IMMEDIATE`, `COMMIT`, `SAVEPOINT unit`, ...)
/// from the statement cache: `execute_batch` would parse and compile it on every call, which
/// cost more than the INSERT it wraps.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

/// Runs one caller's statements; several go under a savepoint, so that a failing one undoes
/// the others of its caller and nobody else's.
fn run_unit(conn: &Connection, stmts: Vec<Statement>) -> UnitResult {
    let run =
        |(sql, binds, kind): Statement| run_statement(conn, &sql, binds, kind).map_err(|e| format!("{e} (in: {sql})"));
    if stmts.len() == 1 {
        return stmts.into_iter().map(run).collect();
    }
    // Outside a transaction (a batch of one caller) the savepoint opens one itself.
    control(conn, "SAVEPOINT unit").map_err(|e| format!("cannot start a savepoint: {e}"))?;
    let result = stmts.into_iter().map(run).collect::<UnitResult>();
    if result.is_err() && !conn.is_autocommit() {
        let _ = control(conn, "ROLLBACK TO unit");
    }
    if !conn.is_autocommit()
        && let Err(e) = control(conn, "RELEASE unit")
    {
        return Err(format!("cannot release a savepoint: {e}"));
    }
    result
}

fn run_statement(conn: &Connection, sql: &str, binds: Vec<Bind>, kind: u8) -> rusqlite::Result<FfiDbResult> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (i, b) in binds.into_iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, bind_value(b))?;
    }
    let returning = returns_value(kind, sql);
    if !returns_rows(kind, sql) {
        let affected = stmt.raw_execute()?;
        return Ok(FfiDbResult {
            affected: affected as u64,
            last_insert_id: conn.last_insert_rowid(),
            ..Default::default()
        });
    }
    let columns: RVec<RString> = stmt.column_names().into_iter().map(RString::from).collect();
    // Kamailio keeps DATETIME columns as local-time text in SQLite; modules get epoch seconds,
    // as from the other databases.
    let datetime: Vec<bool> = stmt
        .columns()
        .iter()
        .map(|c| {
            c.decl_type().is_some_and(|t| {
                let t = t.to_ascii_uppercase();
                t.contains("DATE") || t.contains("TIME")
            })
        })
        .collect();
    let mut out = FfiDbResult::default();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        let mut values = RVec::with_capacity(columns.len());
        for (i, is_datetime) in datetime.iter().enumerate() {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => FfiDbValue::Null,
                ValueRef::Integer(v) => FfiDbValue::Int(v),
                ValueRef::Real(v) => FfiDbValue::Double(v),
                ValueRef::Text(t) => {
                    let text = String::from_utf8_lossy(t);
                    match is_datetime.then(|| parse_datetime_text(&text)).flatten() {
                        Some(epoch) => FfiDbValue::DateTime(epoch),
                        None => FfiDbValue::Str(text.as_ref().into()),
                    }
                }
                ValueRef::Blob(b) => FfiDbValue::Blob(b.to_vec().into()),
            });
        }
        out.rows.push(values);
    }
    if returning {
        super::exec::take_returned_id(&mut out);
    } else if !out.rows.is_empty() {
        out.columns = columns;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::dialect::{INSERT, SELECT};

    #[test]
    fn url_options() {
        assert_eq!(SqliteOptions::from_query("").unwrap(), SqliteOptions::default());
        let o = SqliteOptions::from_query("synchronous=FULL&journal_mode=delete").unwrap();
        assert_eq!((o.synchronous.as_str(), o.journal_mode.as_str()), ("full", "delete"));
        assert!(SqliteOptions::from_query("synchronous=sometimes").unwrap_err().contains("not a valid synchronous"));
        assert!(SqliteOptions::from_query("cache=shared").unwrap_err().contains("unknown SQLite URL option"));
    }

    #[test]
    fn a_transaction_owns_the_connection_until_it_ends() {
        let db = std::sync::Arc::new(SqliteDb::open(None, &SqliteOptions::default()).unwrap());
        db.execute_script("CREATE TABLE t (v INTEGER)").unwrap();
        db.begin(7).unwrap();
        db.run(7, "INSERT INTO t (v) VALUES (?)", vec![Bind::Int(1)], INSERT).unwrap();
        // Another caller waits for the transaction instead of writing into it.
        let other = db.clone();
        let waiter = std::thread::spawn(move || {
            other.run(0, "INSERT INTO t (v) VALUES (?)", vec![Bind::Int(2)], INSERT).unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        db.end(7, false).unwrap();
        waiter.join().unwrap();
        let r = db.run(0, "SELECT v FROM t", vec![], SELECT).unwrap();
        assert_eq!(r.rows.len(), 1, "the rolled-back row is gone, the other caller's row is there");
        assert_eq!(r.rows[0][0], FfiDbValue::Int(2));
        assert!(db.run(7, "SELECT v FROM t", vec![], SELECT).unwrap_err().contains("no open transaction"));
    }

    /// Concurrent writers: every write is committed exactly once, and a failing one (a unique
    /// key violation) fails alone, whatever batch it landed in.
    #[test]
    fn group_commit_keeps_each_writes_own_result() {
        let dir = std::env::temp_dir().join(format!("puahost-sqlite-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.sqlite");
        let db = std::sync::Arc::new(SqliteDb::open(Some(&path), &SqliteOptions::default()).unwrap());
        db.execute_script("CREATE TABLE t (v INTEGER PRIMARY KEY)").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut failed = 0;
                    for i in 0..200 {
                        // Every thread also tries value 0 once per round of 50: only one wins.
                        let v = if i % 50 == 0 { 0 } else { n * 1000 + i };
                        match db.run(0, "INSERT INTO t (v) VALUES (?)", vec![Bind::Int(v)], INSERT) {
                            Ok(r) => assert_eq!(r.affected, 1),
                            Err(e) => {
                                assert!(e.contains("UNIQUE"), "{e}");
                                failed += 1;
                            }
                        }
                    }
                    failed
                })
            })
            .collect();
        let failed: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let r = db.run(0, "SELECT COUNT(*) FROM t", vec![], SELECT).unwrap();
        assert_eq!(r.rows[0][0], FfiDbValue::Int(8 * 200 - failed));
        assert_eq!(failed, 8 * 4 - 1, "value 0 goes in once");
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A caller's several statements take effect all or none, alone or in a batch with other
    /// callers' writes; a failing unit leaves the others' writes in.
    #[test]
    fn units_of_several_statements_are_all_or_none() {
        let dir = std::env::temp_dir().join(format!("puahost-sqlite-units-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = std::sync::Arc::new(SqliteDb::open(Some(&dir.join("u.sqlite")), &SqliteOptions::default()).unwrap());
        db.execute_script("CREATE TABLE t (v INTEGER PRIMARY KEY)").unwrap();
        let ins = |v: i64| ("INSERT INTO t (v) VALUES (?)".to_string(), vec![Bind::Int(v)], INSERT);
        let r = db.write_many(vec![ins(1), ins(2)]).unwrap();
        assert_eq!(r.len(), 2);
        assert!(db.write_many(vec![ins(3), ins(1)]).unwrap_err().contains("UNIQUE"), "1 is taken");
        let threads: Vec<_> = (0..8i64)
            .map(|n| {
                let db = db.clone();
                std::thread::spawn(move || {
                    (0..100i64)
                        .filter(|i| {
                            // Every tenth unit of each thread collides on its second statement.
                            let second = if i % 10 == 0 { 1 } else { 1_000_000 + n * 1000 + i };
                            db.write_many(vec![ins(10_000 + n * 1000 + i), ins(second)]).is_ok()
                        })
                        .count() as i64
                })
            })
            .collect();
        let ok: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(ok, 8 * 90);
        let r = db.run(0, "SELECT COUNT(*) FROM t", vec![], SELECT).unwrap();
        assert_eq!(r.rows[0][0], FfiDbValue::Int(2 + 2 * ok), "3 and the failed units' first rows are not in");
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
