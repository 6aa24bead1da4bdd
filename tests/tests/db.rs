//! The DB service on SQLite (embedded), PostgreSQL and MariaDB: `puahost db create/check`
//! make Kamailio's schema, and a module's statements (transaction with a table lock, upsert,
//! DATETIME columns, version check) behave the same on all three.
//!
//! PostgreSQL and MariaDB come from `PUAHOST_TEST_POSTGRES` / `PUAHOST_TEST_MYSQL` (see
//! `e2e::dbs`); each test creates a database with a unique name and drops it.

use std::process::Command;

use e2e::{Host, TempDir, cli, dbs, text};
use serde_json::json;

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
        assert_eq!(first["increments_distinct"], 200, "concurrent increments must not share a value: {first}");
        assert_eq!(first["increment_last"], 200, "{first}");
        assert_eq!(first["increment_missing"], serde_json::Value::Null, "{first}");
        assert_eq!(first["batch_failed"], true, "{first}");
        assert_eq!(first["batch_left"], 0, "a failed batch leaves none of its writes: {first}");
        assert_eq!(first["batch_affected"], json!([0, 1]), "{first}");
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
    let Some(db) = dbs::postgres() else { return };
    exercise(&db.url, TempDir::new("db-pg"), || {
        db.exec("UPDATE version SET table_version = 8 WHERE table_name = 'location'")
    });
}

#[test]
fn mariadb_server() {
    let Some(db) = dbs::mariadb() else { return };
    exercise(&db.url, TempDir::new("db-mysql"), || {
        db.exec("UPDATE version SET table_version = 8 WHERE table_name = 'location'")
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
