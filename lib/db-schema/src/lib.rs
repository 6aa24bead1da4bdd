//! Kamailio 5.6.3's database schemas as data, rendered per SQL dialect.
//!
//! puahost must work against an existing Kamailio database, so it creates and checks exactly
//! the tables Kamailio's `kamdbctl` creates. Kamailio generates its per-database scripts from
//! XML with XSL; this crate holds the same definitions as Rust data ([`Table`], [`Column`],
//! [`Index`]) and renders them the way those stylesheets do: [`create_sql`] of a group is the
//! installed `/usr/share/kamailio/<db>/<group>-create.sql` of Kamailio 5.6.3.
//!
//! ```
//! use db_schema::{Dialect, create_statements, group};
//!
//! let dialect = Dialect::from_url("sqlite:///var/lib/puahost/db.sqlite").unwrap();
//! // `version` first: every other group inserts its table versions into it.
//! let mut statements = create_statements(group("standard").unwrap(), dialect);
//! statements.extend(create_statements(group("presence").unwrap(), dialect));
//! assert!(statements[0].starts_with("CREATE TABLE version ("));
//! ```

#![warn(missing_docs)]

mod render;
mod tables;

pub use render::{create_sql, create_statements};
pub use tables::{
    ACTIVE_WATCHERS, DIALOG, DIALOG_VARS, LOCATION, LOCATION_ATTRS, PRESENTITY, PUA, PUA_BODY, SUBSCRIBER, VERSION,
    WATCHERS, XCAP,
};

/// An SQL database flavour, as far as Kamailio's generated scripts differ between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite 3 (Kamailio's `db_sqlite` scripts).
    Sqlite,
    /// PostgreSQL (Kamailio's `postgres` scripts).
    Postgres,
    /// MySQL / MariaDB (Kamailio's `mysql` scripts).
    Mysql,
}

impl Dialect {
    /// The dialect of a database URL, from its scheme: `sqlite:`, `postgres:` or
    /// `postgresql:`, `mysql:` (case-insensitive, as URL schemes are). `None` for anything else.
    pub fn from_url(url: &str) -> Option<Dialect> {
        let (scheme, _) = url.split_once(':')?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" => Some(Dialect::Mysql),
            _ => None,
        }
    }
}

/// A table as Kamailio defines it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Table {
    /// The table name.
    pub name: &'static str,
    /// The schema version Kamailio records for it in the `version` table and checks at startup.
    pub version: u32,
    /// The columns, in creation order.
    pub columns: &'static [Column],
    /// Unique constraints, then plain indexes, each in Kamailio's order.
    pub indexes: &'static [Index],
}

impl Table {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The name `index` gets in the database for `dialect`: Kamailio prefixes it with
    /// `<table>_` on SQLite and PostgreSQL (where index names share one namespace per schema),
    /// not on MySQL (where they are per table).
    pub fn index_name(&self, index: &Index, dialect: Dialect) -> String {
        match dialect {
            Dialect::Sqlite | Dialect::Postgres => format!("{}_{}", self.name, index.name),
            Dialect::Mysql => index.name.to_string(),
        }
    }
}

/// A column of a [`Table`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Column {
    /// The column name.
    pub name: &'static str,
    /// The column type.
    pub ty: ColumnType,
    /// Whether NULL is allowed (otherwise the column is `NOT NULL`).
    pub nullable: bool,
    /// The `DEFAULT` clause, if any. `Some(DefaultValue::Null)` is an explicit
    /// `DEFAULT NULL`, which Kamailio writes for some nullable columns and not for others.
    pub default: Option<DefaultValue>,
}

impl Column {
    /// A `NOT NULL` column without default.
    pub(crate) const fn new(name: &'static str, ty: ColumnType) -> Column {
        Column { name, ty, nullable: false, default: None }
    }

    /// The same column, nullable.
    pub(crate) const fn null(self) -> Column {
        Column { nullable: true, ..self }
    }

    /// The same column with a default.
    pub(crate) const fn default(self, default: DefaultValue) -> Column {
        Column { default: Some(default), ..self }
    }
}

/// A column type: Kamailio's schema types, with the details that change the rendered SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnType {
    /// Kamailio's `id` column: an unsigned auto-increment primary key (`INTEGER PRIMARY KEY`,
    /// `SERIAL PRIMARY KEY`, `INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY`).
    Id,
    /// A 32-bit integer. `width` is MySQL's display width (`INT(11)`), which Kamailio gives
    /// to most but not all integer columns; `unsigned` is only expressible on MySQL.
    Int {
        /// MySQL display width, if Kamailio declares one.
        width: Option<u8>,
        /// MySQL `UNSIGNED`.
        unsigned: bool,
    },
    /// A single-precision float (`REAL`; on MySQL `FLOAT(precision,scale)` when sized).
    Float {
        /// MySQL `(precision, scale)`, if Kamailio declares one.
        size: Option<(u8, u8)>,
    },
    /// A date and time without time zone (`TIMESTAMP WITHOUT TIME ZONE`, MySQL `DATETIME`).
    DateTime,
    /// A string of at most this many characters (`VARCHAR(n)`).
    Varchar(u16),
    /// Unbounded text (`TEXT`; MySQL's TEXT holds up to 64 KiB).
    Text,
    /// Binary data (`BLOB`, PostgreSQL `BYTEA`; MySQL's BLOB holds up to 64 KiB).
    Blob,
    /// Large binary data: MySQL `MEDIUMBLOB` (up to 16 MiB); `BLOB` / `BYTEA` elsewhere.
    LargeBlob,
}

impl ColumnType {
    /// The type as Kamailio's script writes it for `dialect`, including the primary key and
    /// auto-increment words of [`ColumnType::Id`] (but not `NOT NULL`).
    pub fn sql(self, dialect: Dialect) -> String {
        render::column_type(self, dialect)
    }
}

/// A column default value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DefaultValue {
    /// `DEFAULT NULL`.
    Null,
    /// An integer default.
    Int(i64),
    /// A float default.
    Float(f64),
    /// A string default, also used for date-times (`'2000-01-01 00:00:01'`).
    Str(&'static str),
}

/// An index of a [`Table`]: a unique constraint (written inside `CREATE TABLE`) or a plain
/// index (a `CREATE INDEX` statement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Index {
    /// Kamailio's name for it; the name in the database depends on the dialect, see
    /// [`Table::index_name`].
    pub name: &'static str,
    /// The indexed columns, in order.
    pub columns: &'static [&'static str],
    /// A `UNIQUE` constraint rather than a plain index.
    pub unique: bool,
}

/// A group of tables: what one Kamailio `<group>-create.sql` script creates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group {
    /// The group name, Kamailio's script name without `-create.sql` (`"presence"`).
    pub name: &'static str,
    /// The tables, in creation order.
    pub tables: &'static [&'static Table],
}

/// All of Kamailio's groups, `standard` (the `version` table the others insert into) first.
pub fn all_groups() -> &'static [Group] {
    tables::GROUPS
}

/// puahost's own groups (`puahost`: `pua_body`), created like Kamailio's but not part of its
/// scripts.
pub fn own_groups() -> &'static [Group] {
    tables::OWN_GROUPS
}

/// The tables of group `name` (`"standard"`, `"presence"`, `"usrloc"`, `"dialog"`,
/// `"auth_db"`), in creation order.
pub fn group(name: &str) -> Option<&'static [&'static Table]> {
    all_groups().iter().chain(own_groups()).find(|g| g.name == name).map(|g| g.tables)
}

/// The table named `name`, in whichever group it is.
pub fn table(name: &str) -> Option<&'static Table> {
    all_groups().iter().chain(own_groups()).flat_map(|g| g.tables).find(|t| t.name == name).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_from_url() {
        assert_eq!(Dialect::from_url("sqlite:///tmp/x.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_url("sqlite::memory:"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::from_url("postgres://u:p@h/db"), Some(Dialect::Postgres));
        assert_eq!(Dialect::from_url("postgresql://h/db"), Some(Dialect::Postgres));
        assert_eq!(Dialect::from_url("mysql://u:p@h:3306/kamailio"), Some(Dialect::Mysql));
        assert_eq!(Dialect::from_url("MySQL://h/db"), Some(Dialect::Mysql));
        assert_eq!(Dialect::from_url("mariadb://h/db"), None);
        assert_eq!(Dialect::from_url("sqlite"), None);
        assert_eq!(Dialect::from_url("/tmp/x.db"), None);
        assert_eq!(Dialect::from_url(""), None);
    }

    #[test]
    fn groups() {
        let names: Vec<_> = all_groups().iter().map(|g| g.name).collect();
        assert_eq!(names, ["standard", "presence", "usrloc", "dialog", "auth_db"]);
        let presence: Vec<_> = group("presence").unwrap().iter().map(|t| t.name).collect();
        assert_eq!(presence, ["presentity", "active_watchers", "watchers", "xcap", "pua"]);
        assert_eq!(group("standard").unwrap()[0].name, "version");
        assert!(group("Presence").is_none());
        assert!(group("presence-create.sql").is_none());
        assert!(group("").is_none());
    }

    #[test]
    fn tables() {
        let versions: Vec<_> = all_groups().iter().flat_map(|g| g.tables).map(|t| (t.name, t.version)).collect();
        assert_eq!(
            versions,
            [
                ("version", 1),
                ("presentity", 5),
                ("active_watchers", 12),
                ("watchers", 3),
                ("xcap", 4),
                ("pua", 7),
                ("location", 9),
                ("location_attrs", 1),
                ("dialog", 7),
                ("dialog_vars", 1),
                ("subscriber", 7),
            ]
        );
        assert_eq!(table("pua").unwrap().version, 7);
        assert!(table("rls_presentity").is_none());
        assert!(table("PUA").is_none());
    }

    #[test]
    fn every_index_names_existing_columns() {
        for t in all_groups().iter().flat_map(|g| g.tables) {
            assert_eq!(t.columns[0].ty, ColumnType::Id, "{}", t.name);
            for i in t.indexes {
                for c in i.columns {
                    assert!(t.column(c).is_some(), "{}.{}: no column {c}", t.name, i.name);
                }
            }
        }
    }

    #[test]
    fn index_names() {
        let pua = table("pua").unwrap();
        let idx = &pua.indexes[0];
        assert_eq!(pua.index_name(idx, Dialect::Sqlite), "pua_pua_idx");
        assert_eq!(pua.index_name(idx, Dialect::Postgres), "pua_pua_idx");
        assert_eq!(pua.index_name(idx, Dialect::Mysql), "pua_idx");
    }

    #[test]
    fn column_types() {
        let location = table("location").unwrap();
        let q = location.column("q").unwrap().ty;
        assert_eq!(q.sql(Dialect::Mysql), "FLOAT(10,2)");
        assert_eq!(q.sql(Dialect::Postgres), "REAL");
        let doc = table("xcap").unwrap().column("doc").unwrap().ty;
        assert_eq!(doc.sql(Dialect::Mysql), "MEDIUMBLOB");
        assert_eq!(doc.sql(Dialect::Postgres), "BYTEA");
        assert_eq!(doc.sql(Dialect::Sqlite), "BLOB");
    }
}
