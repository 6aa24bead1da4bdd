//! The host's database service, as Kamailio's `db_func_t`: typed select / insert / update /
//! delete / upsert with AND-ed conditions, transactions with table locks, and the `version`
//! table check. The host renders each statement for the database behind the URL (SQLite,
//! PostgreSQL, MySQL/MariaDB); modules never write SQL and never link a database driver.

use std::ops::Deref;

use abi_stable::std_types::{RErr, ROk, RString};

use crate::Error;
use crate::ffi::{FfiDbCond, FfiDbOp, FfiDbResult, FfiDbValue};
use crate::host::Host;

/// A column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Any integer column.
    Int(i64),
    /// Floating point.
    Double(f64),
    /// Text.
    Str(String),
    /// Binary.
    Blob(Vec<u8>),
    /// DATETIME / TIMESTAMP as seconds since the epoch (stored in local time, as Kamailio does).
    DateTime(i64),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Self::Int(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}

impl Value {
    fn to_ffi(&self) -> FfiDbValue {
        match self {
            Value::Null => FfiDbValue::Null,
            Value::Int(v) => FfiDbValue::Int(*v),
            Value::Double(v) => FfiDbValue::Double(*v),
            Value::Str(v) => FfiDbValue::Str(v.as_str().into()),
            Value::Blob(v) => FfiDbValue::Blob(v.as_slice().into()),
            Value::DateTime(v) => FfiDbValue::DateTime(*v),
        }
    }

    fn from_ffi(v: FfiDbValue) -> Self {
        match v {
            FfiDbValue::Null => Value::Null,
            FfiDbValue::Int(v) => Value::Int(v),
            FfiDbValue::Double(v) => Value::Double(v),
            FfiDbValue::Str(v) => Value::Str(v.into_string()),
            FfiDbValue::Blob(v) => Value::Blob(v.into_vec()),
            FfiDbValue::DateTime(v) => Value::DateTime(v),
        }
    }

    /// The integer, if this is one (a DATETIME reads as its epoch seconds).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) | Value::DateTime(v) => Some(*v),
            _ => None,
        }
    }

    /// The text, if this is text (a BLOB of UTF-8 also reads as text).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(v) => Some(v),
            Value::Blob(v) => std::str::from_utf8(v).ok(),
            _ => None,
        }
    }
}

/// A comparison in a WHERE clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=` (`IS NULL` for a NULL value).
    Eq,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `!=`
    Ne,
}

/// One `column <op> value` condition; a statement's conditions are AND-ed.
#[derive(Debug, Clone)]
pub struct Cond {
    column: String,
    op: Op,
    value: Value,
}

impl Cond {
    /// `column = value`
    pub fn eq(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, Op::Eq, value)
    }

    /// `column <op> value`
    pub fn new(column: &str, op: Op, value: impl Into<Value>) -> Self {
        Self { column: column.to_string(), op, value: value.into() }
    }

    fn to_ffi(&self) -> FfiDbCond {
        FfiDbCond {
            column: self.column.as_str().into(),
            op: match self.op {
                Op::Eq => 0,
                Op::Lt => 1,
                Op::Gt => 2,
                Op::Le => 3,
                Op::Ge => 4,
                Op::Ne => 5,
            },
            value: self.value.to_ffi(),
        }
    }
}

/// Rows a select returned.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Rows {
    fn from_ffi(r: FfiDbResult) -> Self {
        Self {
            columns: r.columns.into_iter().map(RString::into_string).collect(),
            rows: r.rows.into_iter().map(|row| row.into_iter().map(Value::from_ffi).collect()).collect(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Iterates over the rows.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(move |values| Row { columns: &self.columns, values })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> Option<Row<'_>> {
        self.rows.get(i).map(|values| Row { columns: &self.columns, values })
    }
}

/// One row, with values by column name.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// A row of `values` under `columns` (in the same order), e.g. to test code that reads
    /// rows without a database.
    pub fn new(columns: &'a [String], values: &'a [Value]) -> Self {
        Self { columns, values }
    }

    /// The value of `column` (case-insensitive), if the row has it.
    pub fn get(&self, column: &str) -> Option<&'a Value> {
        let i = self.columns.iter().position(|c| c.eq_ignore_ascii_case(column))?;
        self.values.get(i)
    }

    /// `column` as an integer (0 when NULL or missing, as Kamailio's modules read them).
    pub fn int(&self, column: &str) -> i64 {
        self.get(column).and_then(Value::as_int).unwrap_or(0)
    }

    /// `column` as text ("" when NULL or missing).
    pub fn str(&self, column: &str) -> &'a str {
        self.get(column).and_then(Value::as_str).unwrap_or("")
    }

    /// The values in column order.
    pub fn values(&self) -> &'a [Value] {
        self.values
    }
}

/// A select statement under construction.
#[derive(Debug)]
pub struct Select<'a> {
    exec: &'a Executor,
    op: FfiDbOp,
}

impl Select<'_> {
    /// Reads only these columns (default: all).
    pub fn columns(mut self, columns: &[&str]) -> Self {
        self.op.columns = columns.iter().map(|c| RString::from(*c)).collect();
        self
    }

    /// Adds a WHERE condition.
    pub fn filter(mut self, cond: Cond) -> Self {
        self.op.conds.push(cond.to_ffi());
        self
    }

    /// ORDER BY `column`.
    pub fn order_by(mut self, column: &str) -> Self {
        self.op.order_by = column.into();
        self
    }

    /// LIMIT `n`.
    pub fn limit(mut self, n: u64) -> Self {
        self.op.limit = n;
        self
    }

    /// Runs it.
    pub fn run(self) -> Result<Rows, Error> {
        self.exec.exec(&self.op).map(Rows::from_ffi)
    }
}

/// Runs statements, on the pool or inside a transaction.
#[derive(Debug)]
pub struct Executor {
    host: Host,
    db: u32,
    tx: u64,
}

fn op(kind: u8, table: &str) -> FfiDbOp {
    FfiDbOp::new(kind, table)
}

fn set_values(op: &mut FfiDbOp, values: &[(&str, Value)]) {
    op.columns = values.iter().map(|(c, _)| RString::from(*c)).collect();
    op.values = values.iter().map(|(_, v)| v.to_ffi()).collect();
}

fn insert_op(table: &str, values: &[(&str, Value)]) -> FfiDbOp {
    let mut o = op(1, table);
    set_values(&mut o, values);
    o
}

fn update_op(table: &str, set: &[(&str, Value)], conds: &[Cond]) -> FfiDbOp {
    let mut o = op(2, table);
    set_values(&mut o, set);
    o.conds = conds.iter().map(Cond::to_ffi).collect();
    o
}

fn delete_op(table: &str, conds: &[Cond]) -> FfiDbOp {
    let mut o = op(3, table);
    o.conds = conds.iter().map(Cond::to_ffi).collect();
    o
}

fn upsert_op(table: &str, key: &[&str], values: &[(&str, Value)]) -> FfiDbOp {
    let mut o = op(4, table);
    set_values(&mut o, values);
    o.key_columns = key.iter().map(|c| RString::from(*c)).collect();
    o
}

fn upsert_many_op(table: &str, key: &[&str], columns: &[&str], rows: &[Vec<Value>]) -> Result<FfiDbOp, Error> {
    if let Some(bad) = rows.iter().find(|r| r.len() != columns.len()) {
        return Err(Error::new(format!("{} columns but a row of {} values for {table}", columns.len(), bad.len())));
    }
    let mut o = op(4, table);
    o.columns = columns.iter().map(|c| RString::from(*c)).collect();
    o.values = rows.iter().flatten().map(Value::to_ffi).collect();
    o.key_columns = key.iter().map(|c| RString::from(*c)).collect();
    Ok(o)
}

/// Writes that commit together, all or none: built with its methods, run by [`Db::write`].
/// On SQLite a batch is one unit of the host's group commit, so the writes of one request
/// cost one commit (one fsync) shared with other requests', instead of one each.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<FfiDbOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an [`Executor::insert`].
    pub fn insert(&mut self, table: &str, values: &[(&str, Value)]) -> &mut Self {
        self.ops.push(insert_op(table, values));
        self
    }

    /// Adds an [`Executor::update`].
    pub fn update(&mut self, table: &str, set: &[(&str, Value)], conds: &[Cond]) -> &mut Self {
        self.ops.push(update_op(table, set, conds));
        self
    }

    /// Adds an [`Executor::delete`].
    pub fn delete(&mut self, table: &str, conds: &[Cond]) -> &mut Self {
        self.ops.push(delete_op(table, conds));
        self
    }

    /// Adds an [`Executor::upsert`].
    pub fn upsert(&mut self, table: &str, key: &[&str], values: &[(&str, Value)]) -> &mut Self {
        self.ops.push(upsert_op(table, key, values));
        self
    }

    /// Adds an [`Executor::upsert_many`] (nothing for no rows).
    pub fn upsert_many(
        &mut self,
        table: &str,
        key: &[&str],
        columns: &[&str],
        rows: &[Vec<Value>],
    ) -> Result<&mut Self, Error> {
        if !rows.is_empty() {
            self.ops.push(upsert_many_op(table, key, columns, rows)?);
        }
        Ok(self)
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// No statements.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl Executor {
    fn exec(&self, op: &FfiDbOp) -> Result<FfiDbResult, Error> {
        match (self.host.vtable().db_exec())(self.db, self.tx, op) {
            ROk(r) => Ok(r),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// `SELECT ... FROM table`, built with [`Select`]'s methods and [`Select::run`].
    pub fn select(&self, table: &str) -> Select<'_> {
        Select { exec: self, op: op(0, table) }
    }

    /// `INSERT INTO table (columns) VALUES (...)`; returns the rows inserted.
    pub fn insert(&self, table: &str, values: &[(&str, Value)]) -> Result<u64, Error> {
        self.exec(&insert_op(table, values)).map(|r| r.affected)
    }

    /// `INSERT` that returns the new value of the auto-increment column `id_column` (Kamailio
    /// tables call it `id`).
    pub fn insert_returning_id(&self, table: &str, id_column: &str, values: &[(&str, Value)]) -> Result<i64, Error> {
        let mut o = insert_op(table, values);
        o.returning = id_column.into();
        self.exec(&o).map(|r| r.last_insert_id)
    }

    /// Creates `table` from the host's schema catalog (Kamailio's tables and puahost's own) when
    /// it has no row in the `version` table; true when it was created. Never touches a table
    /// that has a version row.
    pub fn ensure_table(&self, table: &str) -> Result<bool, Error> {
        self.exec(&op(6, table)).map(|r| r.last_insert_id == 1)
    }

    /// `UPDATE table SET ... WHERE conds`; returns the rows updated.
    pub fn update(&self, table: &str, set: &[(&str, Value)], conds: &[Cond]) -> Result<u64, Error> {
        self.exec(&update_op(table, set, conds)).map(|r| r.affected)
    }

    /// `UPDATE table SET column = column + 1 WHERE conds` in one statement, so concurrent
    /// callers (processes or hosts sharing the database) each get a value of their own; the
    /// new value, or None when no row matched. `conds` should name one row.
    pub fn increment(&self, table: &str, column: &str, conds: &[Cond]) -> Result<Option<i64>, Error> {
        let mut o = op(7, table);
        o.returning = column.into();
        o.conds = conds.iter().map(Cond::to_ffi).collect();
        self.exec(&o).map(|r| (r.affected > 0).then_some(r.last_insert_id))
    }

    /// `DELETE FROM table WHERE conds` (all rows when `conds` is empty); returns the rows deleted.
    pub fn delete(&self, table: &str, conds: &[Cond]) -> Result<u64, Error> {
        self.exec(&delete_op(table, conds)).map(|r| r.affected)
    }

    /// Inserts the row, or updates the other columns of the row whose unique key `key` matches.
    pub fn upsert(&self, table: &str, key: &[&str], values: &[(&str, Value)]) -> Result<u64, Error> {
        self.exec(&upsert_op(table, key, values)).map(|r| r.affected)
    }

    /// [`Executor::upsert`] for many rows in one statement (`VALUES (...), (...)`): each of
    /// `rows` holds a value per column of `columns`. Write-backs of thousands of rows go in a
    /// few statements instead of one per row.
    pub fn upsert_many(&self, table: &str, key: &[&str], columns: &[&str], rows: &[Vec<Value>]) -> Result<u64, Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.exec(&upsert_many_op(table, key, columns, rows)?).map(|r| r.affected)
    }

    /// The `table_version` of `table` in Kamailio's `version` table, if it has a row.
    pub fn table_version(&self, table: &str) -> Result<Option<i64>, Error> {
        let r = self.exec(&op(5, table))?;
        Ok(r.rows.first().and_then(|row| row.first()).and_then(|v| match v {
            FfiDbValue::Int(v) => Some(*v),
            _ => None,
        }))
    }

    /// Refuses to go on unless `table` has version `expected`, as Kamailio's
    /// `db_check_table_version`.
    pub fn check_version(&self, table: &str, expected: i64) -> Result<(), Error> {
        match self.table_version(table)? {
            Some(v) if v == expected => Ok(()),
            Some(v) => Err(Error::new(format!(
                "table {table} has version {v}, expected {expected}: upgrade the schema (puahost db create) or point db_url at a matching database"
            ))),
            None => Err(Error::new(format!(
                "table {table} has no row in the version table (expected version {expected}): create the schema with `puahost db create --url <db_url>`"
            ))),
        }
    }
}

/// A database connection pool, shared by every module that opened the same URL.
#[derive(Debug)]
pub struct Db {
    exec: Executor,
}

impl Db {
    pub(crate) fn new(host: Host, db: u32) -> Self {
        Self { exec: Executor { host, db, tx: 0 } }
    }

    /// Runs `batch`: every write or none, and the rows each affected. Outside a transaction
    /// only (a transaction already groups its writes). A host without batches runs it in a
    /// transaction.
    pub fn write(&self, batch: &Batch) -> Result<Vec<u64>, Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let Some(exec_batch) = self.exec.host.vtable().db_exec_batch() else {
            let tx = self.transaction(&[])?;
            let affected = batch.ops.iter().map(|o| tx.exec(o).map(|r| r.affected)).collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            return Ok(affected);
        };
        match exec_batch(self.exec.db, batch.ops.as_slice().into()) {
            ROk(r) => Ok(r.iter().map(|r| r.affected).collect()),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }

    /// Starts a transaction. `lock_tables` are write-locked until it ends where the database
    /// has table locks (MySQL/MariaDB `LOCK TABLES`, PostgreSQL `LOCK TABLE ... EXCLUSIVE`);
    /// SQLite takes its database write lock (`BEGIN IMMEDIATE`).
    pub fn transaction(&self, lock_tables: &[&str]) -> Result<Transaction, Error> {
        let tables: Vec<RString> = lock_tables.iter().map(|t| RString::from(*t)).collect();
        match (self.exec.host.vtable().db_begin())(self.exec.db, tables.as_slice().into()) {
            ROk(tx) => Ok(Transaction { exec: Executor { host: self.exec.host, db: self.exec.db, tx }, done: false }),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }
}

impl Deref for Db {
    type Target = Executor;
    fn deref(&self) -> &Executor {
        &self.exec
    }
}

/// A transaction; rolled back when dropped without [`Transaction::commit`].
#[derive(Debug)]
pub struct Transaction {
    exec: Executor,
    done: bool,
}

impl Transaction {
    /// Commits it.
    pub fn commit(mut self) -> Result<(), Error> {
        self.end(true)
    }

    /// Rolls it back.
    pub fn rollback(mut self) -> Result<(), Error> {
        self.end(false)
    }

    fn end(&mut self, commit: bool) -> Result<(), Error> {
        self.done = true;
        match (self.exec.host.vtable().db_end())(self.exec.tx, commit) {
            ROk(()) => Ok(()),
            RErr(e) => Err(Error::new(e.into_string())),
        }
    }
}

impl Deref for Transaction {
    type Target = Executor;
    fn deref(&self) -> &Executor {
        &self.exec
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.end(false);
        }
    }
}
