//! pua's modparams, with Kamailio's meanings, defaults and corrections at init.

use plugin_api::{Error, Param, Params};

/// Storage mode (`db_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbMode {
    /// 0: records in memory, written back every update_period, reloaded at start.
    WriteBack,
    /// 2: records only in the database (every host of a cluster sees them).
    DbOnly,
}

/// The validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub db_url: String,
    pub db_table: String,
    pub min_expires: i64,
    pub default_expires: i64,
    pub update_period: i64,
    pub outbound_proxy: Option<String>,
    pub dlginfo_increase_version: bool,
    pub reginfo_increase_version: bool,
    pub db_mode: DbMode,
    pub db_table_lock_write: bool,
    pub check_remote_contact: bool,
    pub fetch_rows: i64,
    /// `hash_size`: see [`Config::table_capacity`].
    pub hash_size: i64,
}

/// The modparam declarations (name, type, default, range, doc), as Kamailio's pua has them.
pub fn declare() -> Vec<Param> {
    vec![
        Param::int("hash_size", -1).doc("records the memory table holds before it first grows, as a power of 2 (<= 1: 512); it grows as needed"),
        Param::str("db_url", "sqlite://pua.sqlite").doc("database URL (sqlite://, postgres://, mysql://); relative SQLite paths are next to the config"),
        Param::str("db_table", "pua").doc("table of the records (version 7)"),
        Param::int("min_expires", 0).doc("smallest Expires sent; negative values become 0"),
        Param::int("default_expires", 3600).doc("Expires used when the caller gives none (< 600 is replaced by 3600, as Kamailio does)"),
        Param::int("update_period", 100).doc("seconds between refresh passes (every update_period-5 s) and write-backs; 0 disables both; 1..5 is refused"),
        Param::opt_str("outbound_proxy").doc("next hop for PUBLISH (refreshes included) when the caller gave none; SUBSCRIBE uses only the caller's"),
        Param::int("dlginfo_increase_version", 0).range(0..=1).doc("1: rewrite dialog-info@version on every dialog PUBLISH"),
        Param::int("reginfo_increase_version", 0).range(0..=1).doc("1: rewrite reginfo@version on every reg PUBLISH"),
        Param::int("db_mode", 0).range(0..=2).doc("0: memory with write-back; 2: database only (1 is mapped to 0, as Kamailio does)"),
        Param::int("db_table_lock_write", 1).range(0..=1).doc("db_mode 2: lock the table for writing during each operation"),
        Param::int("check_remote_contact", 1).range(0..=1).doc("1: a SUBSCRIBE update must name the dialog's remote target to match it"),
        Param::int("fetch_rows", 500).min(1).doc("rows per batch when loading or scanning the table"),
    ]
}

impl Config {
    /// Reads and checks the modparams, applying Kamailio's corrections.
    pub fn from_params(p: &Params) -> Result<Config, Error> {
        let update_period = p.int("update_period");
        if update_period < 0 || (1..=5).contains(&update_period) {
            return Err(Error::new(format!("update_period must be 0 or greater than 5, not {update_period}")));
        }
        let mut default_expires = p.int("default_expires");
        if default_expires < 600 {
            tracing::warn!(default_expires, "default_expires below 600 is replaced by 3600 (as Kamailio does)");
            default_expires = 3600;
        }
        let db_mode = match p.int("db_mode") {
            2 => DbMode::DbOnly,
            1 => {
                tracing::error!("db_mode 1 is reserved; using 0 (as Kamailio does)");
                DbMode::WriteBack
            }
            _ => DbMode::WriteBack,
        };
        let table = p.str("db_table");
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::new(format!("db_table `{table}` is not a table name")));
        }
        Ok(Config {
            db_url: p.str("db_url").to_string(),
            db_table: table.to_string(),
            min_expires: p.int("min_expires").max(0),
            default_expires,
            update_period,
            outbound_proxy: p.opt_str("outbound_proxy").filter(|s| !s.is_empty()).map(str::to_string),
            dlginfo_increase_version: p.int("dlginfo_increase_version") == 1,
            reginfo_increase_version: p.int("reginfo_increase_version") == 1,
            db_mode,
            db_table_lock_write: p.int("db_table_lock_write") == 1,
            check_remote_contact: p.int("check_remote_contact") == 1,
            fetch_rows: p.int("fetch_rows"),
            hash_size: p.int("hash_size"),
        })
    }

    /// Initial record capacity from `hash_size` (Kamailio: `1 << hash_size` buckets, 512 when
    /// hash_size <= 1). Capped at 2^20 so a large value cannot reserve gigabytes at start.
    pub fn table_capacity(&self) -> usize {
        if self.hash_size <= 1 { 512 } else { 1usize << self.hash_size.min(20) }
    }

    /// Kamailio's defaults, with no database (tests and benchmarks).
    pub fn defaults() -> Config {
        Config {
            db_url: String::new(),
            db_table: "pua".into(),
            min_expires: 0,
            default_expires: 3600,
            update_period: 100,
            outbound_proxy: None,
            dlginfo_increase_version: false,
            reginfo_increase_version: false,
            db_mode: DbMode::WriteBack,
            db_table_lock_write: true,
            check_remote_contact: true,
            fetch_rows: 500,
            hash_size: -1,
        }
    }

    /// The Expires header of a PUBLISH for a requested `expires` (< 0: default): the request
    /// plus 1 (Kamailio's `publ_build_hdr`). A removal (0) is sent as 0: Kamailio sends
    /// min_expires there, which leaves the state on the server when min_expires is set.
    pub fn publish_expires(&self, expires: i64) -> i64 {
        if expires == 0 {
            return 0;
        }
        let x = if expires < 0 { self.default_expires } else { expires };
        if x <= 0 { self.min_expires } else { x + 1 }
    }

    /// The Expires header of a SUBSCRIBE: min_expires when the request is ≤ min_expires, else
    /// the request + 10 (Kamailio's `subs_build_hdr`). An unsubscribe (0) is sent as 0 (see
    /// `publish_expires`).
    pub fn subscribe_expires(&self, expires: i64) -> i64 {
        if expires == 0 {
            return 0;
        }
        let x = if expires < 0 { self.default_expires } else { expires };
        if x <= self.min_expires { self.min_expires } else { x + 10 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_arithmetic() {
        let mut c = Config::defaults();
        assert_eq!(c.publish_expires(3600), 3601);
        assert_eq!(c.publish_expires(-1), 3601);
        assert_eq!(c.publish_expires(0), 0);
        assert_eq!(c.subscribe_expires(3600), 3610);
        assert_eq!(c.subscribe_expires(0), 0);
        c.min_expires = 300;
        assert_eq!(c.publish_expires(0), 0, "a removal stays a removal");
        assert_eq!(c.subscribe_expires(0), 0, "an unsubscribe stays an unsubscribe");
        assert_eq!(c.subscribe_expires(200), 300);
        assert_eq!(c.subscribe_expires(301), 311);
    }

    #[test]
    fn hash_size_presizes_the_table() {
        let mut c = Config::defaults();
        assert_eq!(c.table_capacity(), 512, "the default (-1) gives Kamailio's 512");
        c.hash_size = 1;
        assert_eq!(c.table_capacity(), 512);
        c.hash_size = 14;
        assert_eq!(c.table_capacity(), 16384);
        c.hash_size = 60;
        assert_eq!(c.table_capacity(), 1 << 20, "capped");
    }
}
