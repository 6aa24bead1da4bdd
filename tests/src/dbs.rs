//! Databases for a test: SQLite in a directory of its own (it outlives a host's directory, so a
//! restarted host finds it), PostgreSQL and MariaDB with a database created under a unique name
//! and dropped when the test ends.
//!
//! The servers are found through environment variables (`scripts/test.sh` sets them when the
//! servers answer; CI's `.ci/run` always sets them):
//! - `PUAHOST_TEST_POSTGRES`, e.g. `postgres://postgres@127.0.0.1:5432` (trust auth)
//! - `PUAHOST_TEST_MYSQL`, e.g. `mysql://root@127.0.0.1:3306` (MariaDB, root without password)
//!
//! When one is not set, [`postgres`] / [`mariadb`] return `None` and say on stderr that the test
//! is skipped, and why.

use std::process::Command;

use crate::{TempDir, text};

/// A database for one test.
pub struct Database {
    /// The URL a host config takes (`db_url`).
    pub url: String,
    /// "sqlite", "postgres" or "mariadb".
    pub kind: &'static str,
    name: String,
    server: Option<Server>,
    _dir: Option<TempDir>,
}

#[derive(Clone)]
struct Server {
    kind: &'static str,
    user: String,
    host: String,
    port: String,
}

impl Server {
    fn from_env(var: &str, kind: &'static str) -> Option<Server> {
        let url = std::env::var(var).ok().filter(|u| !u.is_empty())?;
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let (user, hostport) = rest.split_once('@').unwrap_or(("", rest));
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, ""));
        Some(Server { kind, user: user.to_string(), host: host.to_string(), port: port.to_string() })
    }

    fn url(&self, db: &str) -> String {
        let scheme = if self.kind == "postgres" { "postgres" } else { "mysql" };
        format!("{scheme}://{}@{}:{}/{db}", self.user, self.host, self.port)
    }

    /// Runs `sql` in database `db` with the server's command-line client.
    fn exec(&self, db: &str, sql: &str) {
        let out = if self.kind == "postgres" {
            Command::new("psql")
                .args([
                    "-h",
                    &self.host,
                    "-p",
                    &self.port,
                    "-U",
                    &self.user,
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ])
                .output()
                .expect("psql is missing (scripts/install-test-deps.sh installs postgresql-client)")
        } else {
            let mut c = Command::new("mariadb");
            c.args(["-h", &self.host, "-P", &self.port, "-u", &self.user]);
            if !db.is_empty() {
                c.arg(db);
            }
            c.args(["-e", sql])
                .output()
                .expect("mariadb is missing (scripts/install-test-deps.sh installs mariadb-client)")
        };
        assert!(out.status.success(), "{} {sql}: {}", self.kind, text(&out));
    }
}

impl Database {
    /// Runs `sql` inside this database (not for SQLite).
    pub fn exec(&self, sql: &str) {
        self.server.as_ref().expect("a server database").exec(&self.name, sql);
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(s) = &self.server {
            let sql = if s.kind == "postgres" {
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
            } else {
                format!("DROP DATABASE IF EXISTS {}", self.name)
            };
            let admin = if s.kind == "postgres" { "postgres" } else { "" };
            s.exec(admin, &sql);
        }
    }
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A fresh SQLite file (created by whoever opens it first).
pub fn sqlite() -> Database {
    let dir = TempDir::new("sqlite-data");
    let url = format!("sqlite://{}", dir.join("puahost.sqlite").display());
    Database { url, kind: "sqlite", name: String::new(), server: None, _dir: Some(dir) }
}

fn server_db(var: &str, kind: &'static str, admin_db: &str) -> Option<Database> {
    let Some(server) = Server::from_env(var, kind) else {
        eprintln!(
            "SKIPPED: {var} is not set, so this {kind} test does not run (scripts/test.sh sets it when the server answers)"
        );
        return None;
    };
    let name = unique("puahost_e2e");
    server.exec(admin_db, &format!("CREATE DATABASE {name}"));
    Some(Database { url: server.url(&name), kind, name, server: Some(server), _dir: None })
}

/// A new PostgreSQL database, or `None` (skipped) when `PUAHOST_TEST_POSTGRES` is not set.
pub fn postgres() -> Option<Database> {
    server_db("PUAHOST_TEST_POSTGRES", "postgres", "postgres")
}

/// A new MariaDB database, or `None` (skipped) when `PUAHOST_TEST_MYSQL` is not set.
pub fn mariadb() -> Option<Database> {
    server_db("PUAHOST_TEST_MYSQL", "mariadb", "")
}

/// The database a test runs on: "sqlite" always; "postgres" and "mariadb" when their servers are
/// configured, else `None` (the test says it is skipped).
pub fn database(kind: &str) -> Option<Database> {
    match kind {
        "postgres" => postgres(),
        "mariadb" => mariadb(),
        _ => Some(sqlite()),
    }
}

/// `name: "kind", |db| body;` → a test `name` running `body` on a [`database`] of that kind.
#[macro_export]
macro_rules! database_tests {
    ($($test:ident: $kind:literal, $run:expr;)*) => {$(
        #[test]
        fn $test() {
            if let Some(db) = $crate::dbs::database($kind) {
                let run: &dyn Fn(&$crate::dbs::Database) = &$run;
                run(&db);
            }
        }
    )*};
}
