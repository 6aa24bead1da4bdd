//! SQL rendering, following Kamailio's `doc/stylesheets/dbschema_k/xsl/*.xsl` output
//! byte for byte: the layout (4-space indents, blank lines, which names get backticks on
//! MySQL) is part of what the tests compare against the installed scripts.

use std::fmt::Write;

use crate::{Column, ColumnType, DefaultValue, Dialect, Table};

/// The script that creates `tables` for `dialect`, as Kamailio 5.6.3's `kamdbctl` scripts
/// write it: per table a `CREATE TABLE` with its unique constraints, its `CREATE INDEX`
/// statements, and the `INSERT INTO version` row recording its version.
///
/// `create_sql(group("presence").unwrap(), Dialect::Postgres)` is the content of
/// `/usr/share/kamailio/postgres/presence-create.sql`. The `version` table must exist before
/// running it (it is group `standard`), unless `tables` starts with it.
pub fn create_sql(tables: &[&Table], dialect: Dialect) -> String {
    let mut out = String::new();
    for table in tables {
        let sql = table_sql(table, dialect);
        // Kamailio's layout: a blank line after the table, after the index block (if any),
        // and after the version row.
        writeln!(out, "{};\n", sql.create).unwrap();
        for index in &sql.indexes {
            writeln!(out, "{index};").unwrap();
        }
        if !sql.indexes.is_empty() {
            out.push('\n');
        }
        writeln!(out, "{};\n", sql.insert).unwrap();
    }
    out
}

/// The statements of [`create_sql`], one per element and without the final `;`, for drivers
/// that execute one statement at a time.
pub fn create_statements(tables: &[&Table], dialect: Dialect) -> Vec<String> {
    let mut statements = Vec::new();
    for table in tables {
        let sql = table_sql(table, dialect);
        statements.push(sql.create);
        statements.extend(sql.indexes);
        statements.push(sql.insert);
    }
    statements
}

/// The statements creating one table, without their `;`.
struct TableSql {
    /// `CREATE TABLE`, with the unique constraints.
    create: String,
    /// `CREATE INDEX` of each plain index.
    indexes: Vec<String>,
    /// The `INSERT INTO version` row.
    insert: String,
}

fn table_sql(table: &Table, dialect: Dialect) -> TableSql {
    let mut lines: Vec<String> = table.columns.iter().map(|c| column_line(c, dialect)).collect();
    for index in table.indexes.iter().filter(|i| i.unique) {
        lines.push(format!(
            "    CONSTRAINT {} UNIQUE ({})",
            table.index_name(index, dialect),
            column_list(index.columns, dialect)
        ));
    }
    let create = format!("CREATE TABLE {} (\n{}\n)", quote(table.name, dialect), lines.join(",\n"));
    let indexes = table
        .indexes
        .iter()
        .filter(|i| !i.unique)
        // The table name is not quoted here even on MySQL: Kamailio's stylesheet quotes column
        // names and the table name of `CREATE TABLE` only.
        .map(|index| {
            format!(
                "CREATE INDEX {} ON {} ({})",
                table.index_name(index, dialect),
                table.name,
                column_list(index.columns, dialect)
            )
        })
        .collect();
    let insert =
        format!("INSERT INTO version (table_name, table_version) values ('{}','{}')", table.name, table.version);
    TableSql { create, indexes, insert }
}

fn column_line(column: &Column, dialect: Dialect) -> String {
    let mut line = format!("    {} {}", quote(column.name, dialect), column_type(column.ty, dialect));
    match column.default {
        None => {}
        Some(DefaultValue::Null) => line.push_str(" DEFAULT NULL"),
        Some(DefaultValue::Int(v)) => write!(line, " DEFAULT {v}").unwrap(),
        // Debug keeps the `.0` of whole numbers, as Kamailio writes `1.0`.
        Some(DefaultValue::Float(v)) => write!(line, " DEFAULT {v:?}").unwrap(),
        Some(DefaultValue::Str(v)) => write!(line, " DEFAULT '{}'", v.replace('\'', "''")).unwrap(),
    }
    if !column.nullable {
        line.push_str(" NOT NULL");
    }
    line
}

pub(crate) fn column_type(ty: ColumnType, dialect: Dialect) -> String {
    use ColumnType as T;
    use Dialect::*;
    match (ty, dialect) {
        (T::Id, Sqlite) => "INTEGER PRIMARY KEY".into(),
        (T::Id, Postgres) => "SERIAL PRIMARY KEY".into(),
        (T::Id, Mysql) => "INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY".into(),
        (T::Int { .. }, Sqlite | Postgres) => "INTEGER".into(),
        (T::Int { width, unsigned }, Mysql) => {
            let mut s = String::from("INT");
            if let Some(w) = width {
                write!(s, "({w})").unwrap();
            }
            if unsigned {
                s.push_str(" UNSIGNED");
            }
            s
        }
        (T::Float { .. }, Sqlite | Postgres) => "REAL".into(),
        (T::Float { size: None }, Mysql) => "FLOAT".into(),
        (T::Float { size: Some((p, s)) }, Mysql) => format!("FLOAT({p},{s})"),
        (T::DateTime, Sqlite | Postgres) => "TIMESTAMP WITHOUT TIME ZONE".into(),
        (T::DateTime, Mysql) => "DATETIME".into(),
        (T::Varchar(n), _) => format!("VARCHAR({n})"),
        (T::Text, _) => "TEXT".into(),
        (T::Blob | T::LargeBlob, Sqlite) => "BLOB".into(),
        (T::Blob | T::LargeBlob, Postgres) => "BYTEA".into(),
        (T::Blob, Mysql) => "BLOB".into(),
        (T::LargeBlob, Mysql) => "MEDIUMBLOB".into(),
    }
}

/// Column names (and the created table's name) are backquoted on MySQL, where several of
/// Kamailio's column names (`partition`, `version`...) are reserved or keyword-like.
fn quote(name: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Mysql => format!("`{name}`"),
        Dialect::Sqlite | Dialect::Postgres => name.to_string(),
    }
}

fn column_list(columns: &[&str], dialect: Dialect) -> String {
    columns.iter().map(|c| quote(c, dialect)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{group, table};

    #[test]
    fn statements_are_the_script_split() {
        for g in crate::all_groups() {
            for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql] {
                let statements = create_statements(g.tables, d);
                let script = create_sql(g.tables, d);
                let from_script: Vec<_> = script.split(";\n").map(str::trim).filter(|s| !s.is_empty()).collect();
                assert_eq!(statements, from_script, "{} {d:?}", g.name);
                assert!(statements.iter().all(|s| !s.ends_with(';')));
            }
        }
    }

    #[test]
    fn statement_kinds_in_order() {
        let statements = create_statements(&[table("pua").unwrap()], Dialect::Mysql);
        assert_eq!(statements.len(), 6);
        assert!(statements[0].starts_with("CREATE TABLE `pua` (\n"));
        assert_eq!(statements[1], "CREATE INDEX expires_idx ON pua (`expires`)");
        assert_eq!(statements[5], "INSERT INTO version (table_name, table_version) values ('pua','7')");
        assert_eq!(create_statements(group("presence").unwrap(), Dialect::Sqlite).len(), 23);
    }

    #[test]
    fn defaults() {
        let t = table("location").unwrap();
        let line = |c| column_line(t.column(c).unwrap(), Dialect::Sqlite);
        assert_eq!(line("q"), "    q REAL DEFAULT 1.0 NOT NULL");
        assert_eq!(line("domain"), "    domain VARCHAR(64) DEFAULT NULL");
        assert_eq!(line("ruid"), "    ruid VARCHAR(64) DEFAULT '' NOT NULL");
        assert_eq!(line("expires"), "    expires TIMESTAMP WITHOUT TIME ZONE DEFAULT '2030-05-28 21:32:15' NOT NULL");
        let quoted = Column::new("x", ColumnType::Text).default(DefaultValue::Str("it's"));
        assert_eq!(column_line(&quoted, Dialect::Postgres), "    x TEXT DEFAULT 'it''s' NOT NULL");
    }
}
