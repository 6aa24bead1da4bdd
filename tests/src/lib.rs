//! Harness for the end-to-end tests: builds nothing, starts the real `puahost` binary (built by
//! `cargo build --workspace --release`, which `scripts/test.sh` runs first) on free loopback
//! ports in a temporary directory, and stops it by PID.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// Where the release build puts binaries and modules.
pub fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    target.join("release")
}

/// The `puahost` binary.
pub fn puahost() -> PathBuf {
    let p = release_dir().join("puahost");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --release` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("puahost-e2e-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// baresip (Debian's baresip-core, a real SIP phone) in `dir` with one account line (the
/// `accounts` file: `<sip:user@domain>;outbound=...;regint=...`), listening on a free loopback
/// port; it quits after `quit_after` seconds. Its log is `dir/baresip.log`.
pub fn baresip(dir: &Path, account: &str, quit_after: u32) -> Child {
    std::fs::create_dir_all(dir).expect("baresip dir");
    let port = free_port();
    std::fs::write(
        dir.join("config"),
        format!("sip_listen\t127.0.0.1:{port}\nmodule_path\t/usr/lib/baresip/modules\nmodule\taccount.so\n"),
    )
    .expect("config");
    std::fs::write(dir.join("accounts"), format!("{account}\n")).expect("accounts");
    let log = std::fs::File::create(dir.join("baresip.log")).expect("log");
    Command::new("baresip")
        .arg("-f")
        .arg(dir)
        .args(["-t", &quit_after.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("run baresip")
}

/// The routes of a presence server in a test config: PUBLISH to `handle_publish()`, SUBSCRIBE
/// to `handle_subscribe()` (use as `{PRESENCE_ROUTES}` in a `format!` of the config).
pub const PRESENCE_ROUTES: &str = r#"[[route]]
method = "PUBLISH"
do = ["handle_publish()"]
[[route]]
method = "SUBSCRIBE"
do = ["handle_subscribe()"]
"#;

/// A route answering OPTIONS 200 (a load balancer's probes, a liveness check).
pub const OPTIONS_ROUTE: &str = r#"[[route]]
method = "OPTIONS"
reply = "200 OK"
"#;

/// The modules the project ships: pua (pua-core/) and every directory of plugins/ (as
/// scripts/module-docs.sh and packaging/build-deb.sh list them).
pub fn shipped_modules() -> Vec<String> {
    let mut names = vec!["pua".to_string()];
    for entry in std::fs::read_dir(root().join("plugins")).expect("plugins/") {
        let entry = entry.expect("plugins/ entry");
        if entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

/// A free TCP port on 127.0.0.1 (also free for UDP, so a SIP listener can use both).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// The host's own start-up line (`puahost 0.1.0 ready modules=2 ...`), logged after every
/// listener is bound. Modules may log other lines with "ready" in them (testmod does).
const READY: &str = " ready modules=";

/// Runs `puahost` with `args` to completion.
pub fn cli(args: &[&str]) -> Output {
    Command::new(puahost()).args(args).output().expect("run puahost")
}

/// Text of a finished command: stdout then stderr.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A running host.
pub struct Host {
    pub dir: TempDir,
    pub config: PathBuf,
    pub http: Option<u16>,
    /// The SIP port (`@SIP@` in the config), UDP and TCP.
    pub sip: u16,
    child: Option<Child>,
}

/// Config text with `@HTTP@` replaced by a free port and `@MODULES@` by the release dir.
pub fn render(config: &str, http: u16) -> String {
    config.replace("@HTTP@", &http.to_string()).replace("@MODULES@", &release_dir().display().to_string())
}

impl Host {
    /// The SIP address on 127.0.0.1.
    pub fn sip_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.sip))
    }
}

impl Host {
    /// Starts a host with `config` (see [`render`]) and waits until it is ready.
    pub fn start(name: &str, config: &str) -> Host {
        let dir = TempDir::new(name);
        Self::start_in(dir, config)
    }

    /// Starts a host in `dir`, which may already hold files the config names.
    ///
    /// A port found free can be taken by a test running beside this one before the host binds
    /// it; the host then exits with "Address already in use" and is started again on other
    /// ports (up to 5 times).
    pub fn start_in(mut dir: TempDir, config: &str) -> Host {
        for attempt in 1.. {
            let http = free_port();
            let sip = free_port();
            let config_path = dir.write("puahost.toml", &render(config, http).replace("@SIP@", &sip.to_string()));
            let mut host =
                Host { dir, config: config_path, http: config.contains("@HTTP@").then_some(http), sip, child: None };
            match host.spawn() {
                Ok(()) => return host,
                Err(why) if attempt < 5 && host.log().contains("Address already in use") => {
                    eprintln!("puahost could not bind its ports ({why}); starting it again on others");
                    let _ = std::fs::remove_file(host.dir.join("host.log"));
                    dir = std::mem::replace(&mut host.dir, TempDir(PathBuf::new()));
                }
                Err(why) => panic!("{why}:\n{}", host.log()),
            }
        }
        unreachable!()
    }

    /// Starts the process (again) with the same config, ports and directory; its log is
    /// appended to host.log. Waits until it is ready; an exit before that is an error.
    fn spawn(&mut self) -> Result<(), String> {
        let seen = self.log().matches(READY).count();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("host.log")).expect("log file");
        let child = Command::new(puahost())
            .args(["run", "-c"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .spawn()
            .expect("spawn puahost");
        self.child = Some(child);
        self.wait_ready(seen)
    }

    /// Starts the host again after [`Host::stop`] or [`Host::kill`] (same ports and files).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the host first");
        if let Err(why) = self.spawn() {
            panic!("{why}:\n{}", self.log());
        }
    }

    /// SIGKILL: no shutdown work at all (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self, seen: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.log().matches(READY).count() > seen {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("puahost exited before it was ready ({status})"));
            }
            assert!(Instant::now() < deadline, "puahost not ready after 20 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("host.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/RPC", self.http.expect("config has [rpc] http = \"127.0.0.1:@HTTP@\""))
    }

    /// POSTs a raw body to /RPC; returns (HTTP status, body).
    pub fn post(&self, body: &str) -> (u16, String) {
        http_post(self.http.expect("http"), "/RPC", body)
    }

    /// Calls `method` over HTTP and returns the whole response document.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        let (_, body) = self.post(&json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }

    /// Calls `method` and returns its `result`, failing the test on a fault.
    pub fn result(&self, method: &str, params: Value) -> Value {
        let r = self.rpc(method, params);
        assert!(r.get("error").is_none(), "{method} failed: {r}\n{}", self.log());
        r["result"].clone()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A raw HTTP/1.1 POST on a fresh connection; returns (status, body).
pub fn http_post(port: u16, path: &str, body: &str) -> (u16, String) {
    http_request(port, "POST", path, body)
}

/// A raw HTTP/1.1 request on a fresh connection; returns (status, body).
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// Sends `request` to the RPC FIFO at `fifo`, as kamctl does (reply FIFO in `reply_dir`, named
/// in `reply_name`), and returns the reply document.
pub fn fifo_call(fifo: &Path, reply_dir: &Path, request: &str, reply_name: &str) -> Value {
    let reply_path = reply_dir.join(reply_name);
    let _ = std::fs::remove_file(&reply_path);
    nix::unistd::mkfifo(&reply_path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    // The reader opens first (blocking open in a thread), as kamctl's `cat < fifo &` does.
    let reader = {
        let reply_path = reply_path.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&reply_path).expect("open reply fifo");
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            s
        })
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .expect("open server fifo")
        .write_all(request.as_bytes())
        .expect("write request");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "no FIFO reply within 20 s for {request}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = reader.join().expect("reader");
    let _ = std::fs::remove_file(&reply_path);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("FIFO reply is not JSON ({e}): {text:?}"))
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// sipp with `tests/sipp/<scenario>.xml` for one call (`-d` is the scenario's pause), its
/// errors in the host's directory; started, then given 200 ms to bind.
pub fn sipp_call(host: &Host, scenario: &str, args: &[&str], pause_ms: u32) -> Child {
    let file = root().join(format!("tests/sipp/{scenario}.xml"));
    let child = Command::new("sipp")
        .args(["-sf", file.to_str().unwrap(), "-i", "127.0.0.1", "-m", "1", "-nostdin"])
        .args(["-d", &pause_ms.to_string(), "-timeout", "20s", "-trace_err", "-error_file"])
        .arg(host.dir.path().join(format!("{scenario}-err.log")))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is missing: run scripts/install-test-deps.sh (Debian package sip-tester)");
    std::thread::sleep(Duration::from_millis(200));
    child
}

pub mod dbs;
pub mod kamailio;
pub mod notify;
pub mod xmpp;

/// A raw SIP client for the tests: sends text over UDP or TCP, reads replies.
pub mod sip {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream, UdpSocket};
    use std::time::{Duration, Instant};

    /// A socket to talk SIP on.
    pub enum Client {
        Udp(UdpSocket, SocketAddr),
        Tcp(TcpStream, Vec<u8>),
    }

    impl Client {
        /// A UDP socket on 127.0.0.1 (or ::1 when `server` is IPv6) talking to `server`.
        pub fn udp(server: SocketAddr) -> Client {
            let local = if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
            let s = UdpSocket::bind(local).expect("bind udp");
            Client::Udp(s, server)
        }

        /// A TCP connection to `server`.
        pub fn tcp(server: SocketAddr) -> Client {
            let s = TcpStream::connect(server).expect("connect tcp");
            s.set_nodelay(true).ok();
            Client::Tcp(s, Vec::new())
        }

        /// The local address (for Via and Contact).
        pub fn local(&self) -> SocketAddr {
            match self {
                Client::Udp(s, _) => s.local_addr().expect("addr"),
                Client::Tcp(s, _) => s.local_addr().expect("addr"),
            }
        }

        /// `udp` or `tcp`.
        pub fn transport(&self) -> &'static str {
            match self {
                Client::Udp(..) => "UDP",
                Client::Tcp(..) => "TCP",
            }
        }

        /// Sends raw bytes.
        pub fn send(&mut self, msg: &[u8]) {
            match self {
                Client::Udp(s, to) => {
                    s.send_to(msg, *to).expect("send udp");
                }
                Client::Tcp(s, _) => s.write_all(msg).expect("send tcp"),
            }
        }

        /// Sends `reply` to request `req`: over UDP to the address of its top Via (a NOTIFY
        /// may come from another server than the one this client talks to).
        pub fn answer(&mut self, req: &str, reply: &str) {
            let via = super::sip::header(req, "Via").and_then(|v| {
                let sent_by = v.split_whitespace().nth(1)?.split(';').next()?.to_string();
                sent_by.parse::<SocketAddr>().ok()
            });
            match (self, via) {
                (Client::Udp(s, _), Some(to)) => {
                    s.send_to(reply.as_bytes(), to).expect("send udp");
                }
                (c, _) => c.send(reply.as_bytes()),
            }
        }

        /// The next message, or None after `timeout`.
        pub fn recv(&mut self, timeout: Duration) -> Option<String> {
            let deadline = Instant::now() + timeout;
            match self {
                Client::Udp(s, _) => {
                    let mut buf = vec![0u8; 65535];
                    let left = deadline.checked_duration_since(Instant::now())?;
                    s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok();
                    s.recv_from(&mut buf).ok().map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
                }
                Client::Tcp(s, pending) => loop {
                    if let Some(len) = complete(pending) {
                        let msg: Vec<u8> = pending.drain(..len).collect();
                        return Some(String::from_utf8_lossy(&msg).into_owned());
                    }
                    let left = deadline.checked_duration_since(Instant::now())?;
                    s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok();
                    let mut buf = [0u8; 8192];
                    match s.read(&mut buf) {
                        Ok(0) => return None,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(_) => return None,
                    }
                },
            }
        }

        /// Sends `msg` and returns the first final reply (skipping provisional ones).
        pub fn transact(&mut self, msg: &str) -> String {
            self.send(msg.as_bytes());
            loop {
                let r = self.recv(Duration::from_secs(5)).unwrap_or_else(|| panic!("no reply to:\n{msg}"));
                if status(&r) >= 200 {
                    return r;
                }
            }
        }
    }

    /// Length of the first complete message in a stream buffer.
    fn complete(buf: &[u8]) -> Option<usize> {
        // Offsets in bytes: a lossy conversion of a message with invalid UTF-8 (a reply that
        // copies a hostile header) would shift them.
        let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let text = String::from_utf8_lossy(&buf[..head]);
        let cl = text
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                (n.trim().eq_ignore_ascii_case("content-length") || n.trim() == "l")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        (buf.len() >= head + cl).then_some(head + cl)
    }

    /// A request from `client` with a fresh branch, tag and Call-ID; `extra` are header lines.
    pub fn request(client: &Client, method: &str, ruri: &str, extra: &[&str], body: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let local = client.local();
        let id = format!("{}-{n}", std::process::id());
        let mut m = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/{} {local};branch=z9hG4bK-{id};rport\r\nMax-Forwards: 70\r\nFrom: <sip:tester@sip.test>;tag=t{id}\r\nTo: <{ruri}>\r\nCall-ID: c{id}@test\r\nCSeq: 1 {method}\r\nContact: <sip:tester@{local}>\r\n",
            client.transport()
        );
        for h in extra {
            m.push_str(h);
            m.push_str("\r\n");
        }
        m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        m
    }

    /// Status code of a reply (0 for a request or junk).
    pub fn status(msg: &str) -> u16 {
        msg.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// First value of header `name` (case-insensitive, long form).
    pub fn header(msg: &str, name: &str) -> Option<String> {
        let head = msg.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// Every value of header `name`, in order.
    pub fn headers(msg: &str, name: &str) -> Vec<String> {
        let head = msg.split("\r\n\r\n").next().unwrap_or("");
        head.lines()
            .skip(1)
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .collect()
    }
}
