//! Database statements and results as they cross the boundary.

use abi_stable::StableAbi;
use abi_stable::std_types::{RString, RVec};

/// A column value, typed as Kamailio's `db_val_t`.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum FfiDbValue {
    /// SQL NULL.
    Null,
    /// Any integer column.
    Int(i64),
    /// Floating point.
    Double(f64),
    /// Text.
    Str(RString),
    /// Binary (BLOB / BYTEA).
    Blob(RVec<u8>),
    /// DATETIME / TIMESTAMP, as seconds since the epoch; rendered per dialect by the host.
    DateTime(i64),
}

/// One `column <op> value` condition; a statement's conditions are ANDed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiDbCond {
    /// Column name.
    pub column: RString,
    /// Operator: 0 `=`, 1 `<`, 2 `>`, 3 `<=`, 4 `>=`, 5 `!=`.
    pub op: u8,
    /// Right-hand value (`= NULL` is rendered as `IS NULL`).
    pub value: FfiDbValue,
}

/// One statement, described rather than written, so the host renders it for the dialect.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiDbOp {
    /// 0 select, 1 insert, 2 update, 3 delete, 4 upsert, 5 table version, 6 create the table
    /// (from the host's schema catalog) when it has no version row, 7 increment the column
    /// named by `returning` by one in the rows of `conds` (the new value in `last_insert_id`).
    pub kind: u8,
    /// Table name (for kind 5, the table whose `version` row is read).
    pub table: RString,
    /// select: the columns to read; insert/upsert/update: the columns to write.
    pub columns: RVec<RString>,
    /// insert/upsert/update: the values, one per column.
    pub values: RVec<FfiDbValue>,
    /// select/update/delete: the WHERE conditions.
    pub conds: RVec<FfiDbCond>,
    /// upsert: the columns of the unique key that decides between insert and update.
    pub key_columns: RVec<RString>,
    /// select: ORDER BY column (empty = none).
    pub order_by: RString,
    /// select: LIMIT (0 = none).
    pub limit: u64,
    /// insert: the auto-increment column whose new value to return (empty: none);
    /// increment: the column to increment.
    pub returning: RString,
}

impl FfiDbOp {
    /// A statement of `kind` on `table` with nothing else set.
    pub fn new(kind: u8, table: &str) -> Self {
        Self {
            kind,
            table: table.into(),
            columns: RVec::new(),
            values: RVec::new(),
            conds: RVec::new(),
            key_columns: RVec::new(),
            order_by: RString::new(),
            limit: 0,
            returning: RString::new(),
        }
    }
}

/// What a statement returned.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FfiDbResult {
    /// Rows inserted, updated or deleted.
    pub affected: u64,
    /// insert with `returning`: the new row's id; kind 6: 1 when the table was created.
    pub last_insert_id: i64,
    /// The column names of the rows.
    pub columns: RVec<RString>,
    /// The rows (select; the version for kind 5 as one row of one Int, or no row).
    pub rows: RVec<RVec<FfiDbValue>>,
}
