//! The presence servers the `pua` tests talk to.
//!
//! Kamailio's own presence server (Debian's kamailio 5.6 with `presence` + `presence_xml` on
//! SQLite) as a real peer: [`Kamailio::start_presence`] renders
//! `tests/kamailio/presence.cfg` into a temp dir, creates a fresh SQLite database from Debian's
//! SQL scripts (`standard`, `presence`), runs `kamailio -DD -E` (foreground, log to stderr) as
//! our child in its own process group on a free 127.0.0.1 port (UDP and TCP), waits until it
//! answers an OPTIONS, and stops it by PID on drop. The tables are read with python3's sqlite3
//! module (no sqlite3 CLI on the test machines).
//!
//! [`SippServer`] runs one of the `tests/sipp/pua_*.xml` scenarios, which play a presence server
//! that checks what pua sends (each file documents its `-key`s, `-m` and expectations).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{TempDir, free_port, root, sip};

const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";

/// The `kamailio` binary: `$KAMAILIO`, or /usr/sbin/kamailio, or the first one on `$PATH`.
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KAMAILIO") {
        return Some(PathBuf::from(p));
    }
    let sbin = PathBuf::from("/usr/sbin/kamailio");
    if sbin.is_file() {
        return Some(sbin);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("kamailio"))
        .find(|p| p.is_file())
}

/// The module directory that holds `presence.so`: `$KAMAILIO_MODULES` or the usual places.
fn modules_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("KAMAILIO_MODULES").map(PathBuf::from).into_iter().collect();
    candidates.extend(
        [
            "/usr/lib/x86_64-linux-gnu/kamailio/modules",
            "/usr/lib/aarch64-linux-gnu/kamailio/modules",
            "/usr/lib/kamailio/modules",
            "/usr/lib64/kamailio/modules",
            "/usr/local/lib64/kamailio/modules",
            "/usr/local/lib/kamailio/modules",
        ]
        .map(PathBuf::from),
    );
    candidates.into_iter().find(|d| d.join("tm.so").is_file())
}

/// Debian's SQLite scripts (`standard-create.sql`, `presence-create.sql`).
fn sqlite_scripts() -> PathBuf {
    std::env::var_os("KAMAILIO_DB_SQLITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/kamailio/db_sqlite"))
}

/// Checks that kamailio and the modules and scripts the presence server needs are installed.
/// `Err` names what is missing and how to install it.
pub fn check_installed() -> Result<(PathBuf, PathBuf), String> {
    let bin = binary()
        .filter(|b| b.is_file())
        .ok_or_else(|| format!("kamailio is not installed (no /usr/sbin/kamailio or $KAMAILIO): {INSTALL_HINT}"))?;
    let modules = modules_dir()
        .ok_or_else(|| format!("kamailio's module directory (with tm.so) was not found: {INSTALL_HINT}"))?;
    for (module, package) in [
        ("presence.so", "kamailio-presence-modules"),
        ("presence_xml.so", "kamailio-presence-modules"),
        ("db_sqlite.so", "kamailio-sqlite-modules"),
    ] {
        if !modules.join(module).is_file() {
            return Err(format!(
                "{} is missing (Debian package {package}): {INSTALL_HINT}",
                modules.join(module).display()
            ));
        }
    }
    for script in ["standard-create.sql", "presence-create.sql"] {
        let p = sqlite_scripts().join(script);
        if !p.is_file() {
            return Err(format!("{} is missing (Debian package kamailio-sqlite-modules): {INSTALL_HINT}", p.display()));
        }
    }
    Ok((bin, modules))
}

/// The config template the presence server runs (placeholders `@PORT@`, `@DB@`, `@MODULES@`,
/// `@EXTRA@`).
pub fn presence_template() -> PathBuf {
    root().join("tests/kamailio/presence.cfg")
}

/// A row of Kamailio's `presentity` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Presentity {
    pub username: String,
    pub domain: String,
    pub event: String,
    pub etag: String,
    /// Absolute (Unix time).
    pub expires: i64,
    pub received_time: i64,
    pub sender: String,
    pub body: String,
}

/// A row of Kamailio's `active_watchers` table (the columns a test looks at).
#[derive(Debug, Clone, PartialEq)]
pub struct Watcher {
    pub presentity_uri: String,
    pub watcher_username: String,
    pub watcher_domain: String,
    pub to_user: String,
    pub to_domain: String,
    pub event: String,
    pub event_id: String,
    pub callid: String,
    /// Kamailio's (the notifier's) tag.
    pub to_tag: String,
    /// The subscriber's tag.
    pub from_tag: String,
    pub local_cseq: i64,
    pub remote_cseq: i64,
    /// The subscriber's Contact (the NOTIFY target).
    pub contact: String,
    pub record_route: String,
    /// Absolute (Unix time).
    pub expires: i64,
    /// 1 active, 2 pending, 3 terminated, 4 waiting.
    pub status: i64,
    pub reason: String,
    pub local_contact: String,
    pub user_agent: String,
}

/// A running Kamailio presence server.
pub struct Kamailio {
    pub dir: TempDir,
    /// UDP and TCP on 127.0.0.1.
    pub sip_port: u16,
    /// The SQLite database file.
    pub db: PathBuf,
    /// The rendered config.
    pub config: PathBuf,
    child: Option<Child>,
}

impl Kamailio {
    /// Starts Kamailio as a presence server (`tests/kamailio/presence.cfg`: presence +
    /// presence_xml with force_active=1, publ_cache=1, subs_db_mode=1 write-through) on a free
    /// 127.0.0.1 port, UDP and TCP, with a fresh SQLite database; waits until it answers OPTIONS.
    /// Panics with "run scripts/install-test-deps.sh" when kamailio or its modules are missing.
    pub fn start_presence() -> Kamailio {
        Self::start_presence_with("")
    }

    /// Same, with `extra` config lines (usually `modparam(...)`) placed after the defaults, so
    /// they override them (e.g. `modparam("presence", "min_expires", 1800)`).
    pub fn start_presence_with(extra: &str) -> Kamailio {
        let template = std::fs::read_to_string(presence_template()).expect("tests/kamailio/presence.cfg");
        Self::start_config("kamailio-presence", &template, extra)
    }

    /// Starts Kamailio with any config `template` (same placeholders as presence.cfg). The
    /// free port is picked before Kamailio binds it, so a test running beside it can take it
    /// first: then Kamailio is started again on another port (up to three times).
    pub fn start_config(name: &str, template: &str, extra: &str) -> Kamailio {
        for attempt in 1.. {
            match Self::try_start_config(name, template, extra) {
                Ok(k) => return k,
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!("kamailio exited before it was ready:\n{log}"),
            }
        }
        unreachable!()
    }

    fn try_start_config(name: &str, template: &str, extra: &str) -> Result<Kamailio, String> {
        let (bin, modules) = check_installed().unwrap_or_else(|e| panic!("{e}"));
        let dir = TempDir::new(name);
        let db = dir.join("kamailio.sqlite");
        create_db(&db);
        let sip_port = free_port();
        let config = dir.write(
            "kamailio.cfg",
            &template
                .replace("@PORT@", &sip_port.to_string())
                .replace("@DB@", &db.display().to_string())
                .replace("@MODULES@", &modules.display().to_string())
                .replace("@EXTRA@", extra),
        );
        let log = std::fs::File::create(dir.join("kamailio.log")).expect("log file");
        let child = Command::new(&bin)
            .arg("-f")
            .arg(&config)
            // -DD: do not daemonize (the main process stays our child and forks its workers);
            // -E: log to stderr; -Y: runtime dir (FIFOs/sockets) in the temp dir, not /run.
            .args(["-DD", "-E", "-Y"])
            .arg(dir.path())
            .args(["-m", "64", "-M", "8"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            // Its own process group, so the workers can be killed with it if the main process
            // does not stop them.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} ({INSTALL_HINT})", bin.display()));
        let mut k = Kamailio { dir, sip_port, db, config, child: Some(child) };
        k.wait_ready()?;
        Ok(k)
    }

    /// Waits until it answers OPTIONS; its log when it exited first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut client = sip::Client::udp(self.addr());
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("({status})\n{}", self.log()));
            }
            let req = sip::request(&client, "OPTIONS", &format!("sip:127.0.0.1:{}", self.sip_port), &[], "");
            client.send(req.as_bytes());
            if let Some(r) = client.recv(Duration::from_millis(200))
                && sip::status(&r) == 200
            {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "kamailio does not answer OPTIONS after 20 s:\n{}", self.log());
        }
    }

    /// The SIP address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }

    /// `sip:127.0.0.1:<port>` (for an outbound proxy or a Route).
    pub fn uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.sip_port)
    }

    /// Everything Kamailio logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// PID of the main process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Rows of `sql` (run read-only on the database) as JSON objects: BLOBs are decoded as
    /// UTF-8 text, NULL is `null`.
    pub fn query(&self, sql: &str) -> Vec<serde_json::Map<String, Value>> {
        query(&self.db, sql)
    }

    /// The `presentity` table, oldest first.
    pub fn presentity(&self) -> Vec<Presentity> {
        self.query("SELECT * FROM presentity ORDER BY id")
            .iter()
            .map(|r| Presentity {
                username: s(r, "username"),
                domain: s(r, "domain"),
                event: s(r, "event"),
                etag: s(r, "etag"),
                expires: i(r, "expires"),
                received_time: i(r, "received_time"),
                sender: s(r, "sender"),
                body: s(r, "body"),
            })
            .collect()
    }

    /// The `active_watchers` table, oldest first (subs_db_mode=1 writes through at once).
    pub fn active_watchers(&self) -> Vec<Watcher> {
        self.query("SELECT * FROM active_watchers ORDER BY id")
            .iter()
            .map(|r| Watcher {
                presentity_uri: s(r, "presentity_uri"),
                watcher_username: s(r, "watcher_username"),
                watcher_domain: s(r, "watcher_domain"),
                to_user: s(r, "to_user"),
                to_domain: s(r, "to_domain"),
                event: s(r, "event"),
                event_id: s(r, "event_id"),
                callid: s(r, "callid"),
                to_tag: s(r, "to_tag"),
                from_tag: s(r, "from_tag"),
                local_cseq: i(r, "local_cseq"),
                remote_cseq: i(r, "remote_cseq"),
                contact: s(r, "contact"),
                record_route: s(r, "record_route"),
                expires: i(r, "expires"),
                status: i(r, "status"),
                reason: s(r, "reason"),
                local_contact: s(r, "local_contact"),
                user_agent: s(r, "user_agent"),
            })
            .collect()
    }

    /// Sends SIGTERM to the main process (which stops its workers), waits for it, then kills
    /// whatever is left of its process group.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id() as i32;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The workers normally exit with the main process; give them a moment, then make sure.
        let group = nix::unistd::Pid::from_raw(-pid);
        let deadline = Instant::now() + Duration::from_secs(2);
        while nix::sys::signal::kill(group, None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- kamailio log ({}) ---\n{}", self.config.display(), self.log());
        }
    }
}

/// Creates `db` from Debian's `standard` and `presence` SQLite scripts.
fn create_db(db: &Path) {
    let dir = sqlite_scripts();
    let out = Command::new("python3")
        .args([
            "-c",
            // WAL: the tests read the tables while Kamailio writes them; in the default rollback
            // journal a reader's shared lock makes Kamailio's commit fail ("database is locked").
            "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.execute('PRAGMA journal_mode=WAL')\nfor f in sys.argv[2:]:\n    c.executescript(open(f).read())\nc.commit()",
        ])
        .arg(db)
        .arg(dir.join("standard-create.sql"))
        .arg(dir.join("presence-create.sql"))
        .output()
        .expect("python3 is missing (scripts/install-test-deps.sh installs it)");
    assert!(out.status.success(), "creating {}: {}", db.display(), crate::text(&out));
}

/// Rows of `sql` on the SQLite file `db`, read-only, as JSON objects.
pub fn query(db: &Path, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    const PY: &str = r#"
import json, sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=10)
c.row_factory = sqlite3.Row
rows = []
for r in c.execute(sys.argv[2]):
    rows.append({k: (r[k].decode("utf-8", "replace") if isinstance(r[k], bytes) else r[k]) for k in r.keys()})
print(json.dumps(rows))
"#;
    let out = Command::new("python3").args(["-c", PY]).arg(db).arg(sql).output().expect("python3");
    assert!(out.status.success(), "{sql} on {}: {}", db.display(), crate::text(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON rows");
    rows.into_iter().map(|r| r.as_object().cloned().unwrap_or_default()).collect()
}

fn s(row: &serde_json::Map<String, Value>, k: &str) -> String {
    match row.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn i(row: &serde_json::Map<String, Value>, k: &str) -> i64 {
    row.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// A reply to `request` (a request text received from Kamailio, e.g. a NOTIFY) with
/// Via/From/To/Call-ID/CSeq copied, adding a To-tag when there is none.
pub fn reply(request: &str, code: u16, reason: &str) -> String {
    let head = request.split("\r\n\r\n").next().unwrap_or("");
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let n = name.trim().to_ascii_lowercase();
        match n.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" | "t" if !value.contains(";tag=") => {
                out.push_str(&format!("{line};tag=e2e-{}\r\n", std::process::id()))
            }
            "to" | "t" => out.push_str(&format!("{line}\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// The body of a SIP message (after the blank line).
pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The `tag` parameter of a From/To header value.
pub fn tag(header_value: &str) -> Option<String> {
    header_value.split(';').skip(1).find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string))
}

/// A SIPp scenario from `tests/sipp/` playing the server side (UAS) on 127.0.0.1:<free port>,
/// UDP, in its own temp dir: `sipp -sf FILE -i 127.0.0.1 -p PORT -m CALLS -key K V … -nostdin
/// -timeout T -timeout_error -trace_err -trace_msg -trace_logs`. [`SippServer::wait`] gives its
/// verdict (exit code 0, or the errors and the messages it saw). Killed on drop if still running.
pub struct SippServer {
    pub dir: TempDir,
    pub port: u16,
    pub scenario: PathBuf,
    timeout: Duration,
    child: Option<Child>,
}

impl SippServer {
    /// Starts `tests/sipp/<name>.xml` for `calls` calls (`-m`) with `keys` (`-key k v`); sipp
    /// gives up after `timeout` (`-timeout`, counted as a failure). Returns once it listens.
    pub fn start(name: &str, calls: u32, keys: &[(&str, &str)], timeout: Duration) -> SippServer {
        let scenario = root().join(format!("tests/sipp/{name}.xml"));
        assert!(scenario.is_file(), "{} is missing", scenario.display());
        let dir = TempDir::new(&format!("sipp-{name}"));
        let port = free_port();
        let out = std::fs::File::create(dir.join("sipp.out")).expect("sipp.out");
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf").arg(&scenario);
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", &calls.to_string(), "-nostdin"]);
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        cmd.args(["-timeout", &format!("{}s", timeout.as_secs().max(1)), "-timeout_error"])
            .args(["-trace_err", "-error_file"])
            .arg(dir.join("errors.log"))
            .args(["-trace_msg", "-message_file"])
            .arg(dir.join("messages.log"))
            .args(["-trace_logs", "-log_file"])
            .arg(dir.join("actions.log"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("sipp.out"))
            .stderr(out);
        let child =
            cmd.spawn().unwrap_or_else(|e| panic!("sipp is missing ({e}): {INSTALL_HINT} (Debian package sip-tester)"));
        let mut s = SippServer { dir, port, scenario, timeout, child: Some(child) };
        // Ready when the UDP port is taken (or sipp already exited, e.g. on a scenario error).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            if let Some(status) = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("sipp exited at once ({status}):\n{}", s.report());
            }
            assert!(Instant::now() < deadline, "sipp does not listen on {port} after 10 s:\n{}", s.report());
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    /// The scenario's address (UDP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `sip:127.0.0.1:<port>` (for an outbound proxy).
    pub fn uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.port)
    }

    /// Every message sipp sent and received so far (`-trace_msg`).
    pub fn messages(&self) -> String {
        std::fs::read_to_string(self.dir.join("messages.log")).unwrap_or_default()
    }

    /// sipp's error log (failed checks are logged as `FAIL: <what>: got '…', expected '…'`).
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default()
    }

    /// Errors, actions log, screen output and messages, for a failure message.
    pub fn report(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- sipp {} errors ---\n{}\n--- actions ---\n{}\n--- screen (tail) ---\n{}\n--- messages ---\n{}",
            self.scenario.display(),
            self.errors(),
            read("actions.log"),
            read("sipp.out")
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
            self.messages()
        )
    }

    /// Waits for sipp to end (at most its `-timeout` + 10 s): `Ok` when it exited 0 (every call
    /// passed every check), otherwise `Err` with the exit status and [`SippServer::report`].
    pub fn wait(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else { return Err("sipp was already waited for".into()) };
        let deadline = Instant::now() + self.timeout + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("sipp failed ({s}):\n{}", self.report())),
            None => Err(format!("sipp did not end in time; killed:\n{}", self.report())),
        }
    }

    /// [`SippServer::wait`], panicking with the report on failure.
    pub fn passed(&mut self) {
        if let Err(e) = self.wait() {
            panic!("{e}");
        }
    }
}

impl Drop for SippServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
