//! The DB service on SQLite (embedded), PostgreSQL and MariaDB: `puahost db create/check`
//! make Kamailio's schema, and a module's statements (transaction with a table lock, upsert,
//! DATETIME columns, version check) behave the same on all three.
//!
//! PostgreSQL (127.0.0.1:5432, trust) and MariaDB (127.0.0.1:3306, root without password) run
//! on the test machine; each test creates a database with a unique name and drops it.

use std::process::Command;

use e2e::{Host, TempDir, cli, text};
use serde_json::json;

/// A database created for one test and dropped afterwards.
struct Database {
    url: String,
    drop: Box<dyn Fn()>,
}

impl Drop for Database {
    fn drop(&mut self) {
        (self.drop)();
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql is missing (Debian package postgresql-client)");
    assert!(out.status.success(), "psql {sql}: {}", text(&out));
}

fn mariadb(sql: &str) {
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql])
        .output()
        .expect("mariadb client is missing (Debian package mariadb-client)");
    assert!(out.status.success(), "mariadb {sql}: {}", text(&out));
}

fn postgres_db() -> Database {
    let name = unique("puahost_e2e");
    psql(&format!("CREATE DATABASE {name}"));
    Database {
        url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
        drop: Box::new(move || psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))),
    }
}

fn mariadb_db() -> Database {
    let name = unique("puahost_e2e");
    mariadb(&format!("CREATE DATABASE {name}"));
    Database {
        url: format!("mysql://root@127.0.0.1:3306/{name}"),
        drop: Box::new(move || mariadb(&format!("DROP DATABASE IF EXISTS {name}"))),
    }
}

/// create → check → a module's statements through the running host → a version mismatch is
/// refused at init with a message naming the table.
fn exercise(url: &str, dir: TempDir, break_version: impl Fn()) {
    let out = cli(&["db", "create", "--url", url, "--tables", "presence", "usrloc"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("location         created"), "{}", text(&out));
    let out = cli(&["db", "create", "--url", url, "--tables", "presence"]);
    assert!(text(&out).contains("pua              exists, kept"), "{}", text(&out));
    let out = cli(&["db", "check", "--url", url, "--tables", "presence", "usrloc"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pua              ok (version 7)"), "{}", text(&out));
    let out = cli(&["db", "check", "--url", url, "--tables", "dialog"]);
    assert!(!out.status.success(), "missing requested tables must fail the check");

    let config = format!(
        "loadmodule = [\"testmod\"]\n[core]\nchildren = 2\nmodules_path = [\"@MODULES@\"]\n[rpc]\nhttp = \"127.0.0.1:@HTTP@\"\n[modparam.testmod]\ndb_url = \"{url}\"\n"
    );
    {
        let host = Host::start_in(dir, &config);
        let first = host.result("testmod.db", json!(["alice", 1]));
        assert_eq!(first["contact"], "sip:alice@127.0.0.1:5070", "{first}");
        assert_eq!(first["expires"], 1_700_000_000, "DATETIME must round-trip: {first}");
        assert_eq!(first["status"], 1, "{first}");
        assert_eq!(first["location_version"], 9);
        assert_eq!(first["pua_body_created"], true, "pua_body is created on first use: {first}");
        assert_eq!(first["body_id_found"], 1, "insert_returning_id gives the new row's id: {first}");
        // Again: the transaction replaces the row, the upsert updates in place.
        let second = host.result("testmod.db", json!(["alice", 3]));
        assert_eq!(second["watchers"], 1, "{second}");
        assert_eq!(second["status"], 3, "{second}");
        assert_eq!(second["pua_body_created"], false, "{second}");
        assert_eq!(second["body_id_found"], 3, "{second}");
    }

    break_version();
    let dir = TempDir::new("db-version");
    let path = dir.write("v.toml", &e2e::render(&config, e2e::free_port()));
    let out = Command::new(e2e::puahost()).args(["run", "-c", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("table location has version 8, expected 9"), "{}", text(&out));
    let out = cli(&["db", "check", "--url", url, "--tables", "usrloc"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("version 8, expected 9"), "{}", text(&out));
}

#[test]
fn sqlite_embedded() {
    // The database lives in a directory of its own: the host's directory goes away when it stops.
    let data = TempDir::new("db-sqlite-data");
    let file = data.join("kamailio.sqlite");
    let url = format!("sqlite://{}", file.display());
    let file2 = file.clone();
    exercise(&url, TempDir::new("db-sqlite"), move || {
        sqlite_exec(&file2, "UPDATE version SET table_version = 8 WHERE table_name = 'location'")
    });
}

/// Runs SQL on a SQLite file (with Python's sqlite3 module: the sqlite3 shell is not installed).
fn sqlite_exec(file: &std::path::Path, sql: &str) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
            file.to_str().unwrap(),
            sql,
        ])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn postgresql() {
    let db = postgres_db();
    let name = db.url.rsplit('/').next().unwrap().to_string();
    exercise(&db.url, TempDir::new("db-pg"), move || {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                &name,
                "-c",
                "UPDATE version SET table_version = 8 WHERE table_name = 'location'",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    });
}

#[test]
fn mariadb_server() {
    let db = mariadb_db();
    let name = db.url.rsplit('/').next().unwrap().to_string();
    exercise(&db.url, TempDir::new("db-mysql"), move || {
        mariadb(&format!("UPDATE {name}.version SET table_version = 8 WHERE table_name = 'location'"));
    });
}

/// A relative SQLite path is resolved against the config file's directory, and the file is
/// created when missing.
#[test]
fn relative_sqlite_path_is_next_to_the_config() {
    let dir = TempDir::new("db-relative");
    let out = cli(&[
        "db",
        "create",
        "--url",
        &format!("sqlite://{}", dir.join("rel.sqlite").display()),
        "--tables",
        "presence",
        "usrloc",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let config = "loadmodule = [\"testmod\"]\n[core]\nmodules_path = [\"@MODULES@\"]\n[rpc]\nhttp = \"127.0.0.1:@HTTP@\"\n[modparam.testmod]\ndb_url = \"sqlite://rel.sqlite\"\n";
    let host = Host::start_in(dir, config);
    assert_eq!(host.result("testmod.db", json!(["bob", 2]))["status"], 2);
    assert!(host.dir.join("rel.sqlite-wal").exists() || host.dir.join("rel.sqlite").exists());
}
