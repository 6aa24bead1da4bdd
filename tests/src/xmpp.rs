//! A real XMPP server for the gateway tests (Debian's Prosody, started in a temporary directory
//! on free loopback ports with an XEP-0114 component and two users, stopped by PID), and a
//! small XMPP client (plain TCP c2s, SASL PLAIN, resource binding) to log users in.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xmpp_stream::{Event, StanzaReader};

use crate::{TempDir, free_port};

/// The XMPP domain of the users.
pub const DOMAIN: &str = "xmpp.test";
/// The component's domain (the gateway's `xmpp_domain`).
pub const COMPONENT: &str = "sip-xmpp.xmpp.test";

/// A running Prosody.
pub struct Prosody {
    pub dir: TempDir,
    pub c2s: u16,
    pub component: u16,
    pub secret: String,
    child: Option<Child>,
}

/// Whether Prosody is installed (scripts/install-test-deps.sh installs it).
pub fn available() -> bool {
    Command::new("prosody").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

impl Prosody {
    /// Starts Prosody with users `alice` and `bob` (passwords `alicepw`, `bobpw`) and the
    /// component [`COMPONENT`] with `secret`.
    pub fn start(name: &str, secret: &str) -> Prosody {
        let dir = TempDir::new(&format!("prosody-{name}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        let (c2s, component) = (free_port(), free_port());
        let d = dir.path().display();
        let cfg = format!(
            r#"run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
plugin_paths = {{}}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
legacy_ssl_ports = {{}}
component_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {component} }}
http_ports = {{}}
https_ports = {{}}
modules_enabled = {{ "posix"; "roster"; "saslauth"; "disco"; "ping"; }}
modules_disabled = {{ "s2s"; "s2s_auth_certs"; "offline" }}
authentication = "internal_hashed"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = false
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{d}/prosody.log" }}; }}
VirtualHost "{DOMAIN}"
Component "{COMPONENT}"
    component_secret = "{secret}"
"#
        );
        let cfg_path = dir.write("prosody.cfg.lua", &cfg);
        for (user, pw) in [("alice", "alicepw"), ("bob", "bobpw")] {
            let out = Command::new("prosodyctl")
                .arg("--config")
                .arg(&cfg_path)
                .args(["register", user, DOMAIN, pw])
                .output()
                .expect("run prosodyctl");
            assert!(out.status.success(), "prosodyctl register {user}: {}", crate::text(&out));
        }
        let mut p = Prosody { dir, c2s, component, secret: secret.into(), child: None };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("prosody.stdout"))
            .expect("prosody.stdout");
        let child = Command::new("prosody")
            .arg("-F")
            .arg("--config")
            .arg(self.dir.join("prosody.cfg.lua"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn prosody");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [self.c2s, self.component] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "prosody not listening on {port}:\n{}", self.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Prosody's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prosody.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.join("prosody.stdout")).unwrap_or_default()
    }

    /// SIGTERM by PID, then wait (SIGKILL after 5 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops and starts again on the same ports and data (rosters are kept).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.stop();
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A logged-in XMPP user.
pub struct Client {
    stream: TcpStream,
    reader: StanzaReader,
    /// The full JID.
    pub jid: String,
    /// Answer `subscribe` requests with `subscribed`.
    pub approve: bool,
    /// Every stanza received so far (after login), in order.
    pub seen: Vec<String>,
    queue: VecDeque<String>,
}

impl Client {
    /// Logs `user` in on Prosody's c2s port with `resource`; does not send presence yet.
    pub fn login(port: u16, user: &str, password: &str, resource: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to prosody c2s");
        let mut c = Client {
            stream,
            reader: StanzaReader::new(1 << 20),
            jid: String::new(),
            approve: false,
            seen: Vec::new(),
            queue: VecDeque::new(),
        };
        c.open();
        let auth = base64(format!("\0{user}\0{password}").as_bytes());
        c.send(&format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"));
        let r = c.next_raw(Duration::from_secs(5)).expect("SASL answer");
        assert!(r.starts_with("<success"), "SASL PLAIN for {user} failed: {r}");
        c.reader = StanzaReader::new(1 << 20);
        c.open();
        c.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ));
        let r = c.next_raw(Duration::from_secs(5)).expect("bind answer");
        let jid = r.split("<jid>").nth(1).and_then(|s| s.split("</jid>").next()).unwrap_or_default().to_string();
        assert!(jid.starts_with(&format!("{user}@")), "bind failed: {r}");
        c.jid = jid;
        c.send("<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
        let r = c.next_raw(Duration::from_secs(5)).expect("session answer");
        assert!(r.contains("type='result'") || r.contains("type=\"result\""), "session: {r}");
        // Fetching the roster makes the resource "interested": Prosody sends roster pushes and
        // subscription answers only to those.
        c.send("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>");
        let r = c.next_raw(Duration::from_secs(5)).expect("roster answer");
        assert!(r.contains("jabber:iq:roster"), "roster: {r}");
        c
    }

    fn open(&mut self) {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}' version='1.0'>"
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut header = false;
        loop {
            let left = deadline.checked_duration_since(Instant::now()).expect("stream features within 5 s");
            match self.read_event(left) {
                Some(Event::StreamStart(_)) => header = true,
                Some(Event::Stanza(s)) if header && s.starts_with("<stream:features") => return,
                Some(other) => panic!("unexpected during stream start: {other:?}"),
                None => {}
            }
        }
    }

    fn read_event(&mut self, timeout: Duration) -> Option<Event> {
        if let Some(e) = self.reader.next_event().expect("valid XMPP stream") {
            return Some(e);
        }
        self.stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).unwrap();
        let mut buf = [0u8; 16384];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!("prosody closed the client stream of {}", self.jid),
            Ok(n) => self.reader.feed(&buf[..n]),
            Err(_) => return None,
        }
        self.reader.next_event().expect("valid XMPP stream")
    }

    fn next_raw(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if let Some(Event::Stanza(s)) = self.read_event(left) {
                return Some(s);
            }
        }
    }

    /// Sends the available `presence` and waits until Prosody has taken it (it echoes it to
    /// the sender), so messages and subscription requests are delivered from then on.
    pub fn online(&mut self, presence: &str) {
        self.send(presence);
        let me = self.jid.clone();
        self.wait_for(Duration::from_secs(5), |s| {
            s.starts_with("<presence") && attr(s, "from").as_deref() == Some(&me)
        })
        .unwrap_or_else(|| panic!("{me}: own presence not echoed: {:#?}", self.seen));
    }

    /// Writes raw XML.
    pub fn send(&mut self, xml: &str) {
        self.stream.write_all(xml.as_bytes()).expect("write to prosody");
    }

    /// The next stanza within `timeout`; roster pushes are acknowledged and subscription
    /// requests approved (when [`Client::approve`]) on the way, and still returned.
    pub fn recv(&mut self, timeout: Duration) -> Option<String> {
        if let Some(s) = self.queue.pop_front() {
            return Some(s);
        }
        let s = self.next_raw(timeout)?;
        self.seen.push(s.clone());
        if s.starts_with("<iq") && s.contains("type='set'") {
            let id = attr(&s, "id").unwrap_or_default();
            self.send(&format!("<iq type='result' id='{id}'/>"));
        }
        if self.approve && s.starts_with("<presence") && attr(&s, "type").as_deref() == Some("subscribe") {
            let from = attr(&s, "from").unwrap_or_default();
            let bare = from.split('/').next().unwrap_or_default().to_string();
            self.send(&format!("<presence to='{bare}' type='subscribed'/>"));
        }
        Some(s)
    }

    /// Receives until a stanza satisfies `pred` (within `timeout`); None otherwise.
    pub fn wait_for(&mut self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let s = self.recv(left)?;
            if pred(&s) {
                return Some(s);
            }
        }
    }
}

/// An attribute of the top element of a stanza (either quote style).
pub fn attr(stanza: &str, name: &str) -> Option<String> {
    let head = &stanza[..stanza.find('>').unwrap_or(stanza.len())];
    for q in ['\'', '"'] {
        let pat = format!(" {name}={q}");
        if let Some(i) = head.find(&pat) {
            let rest = &head[i + pat.len()..];
            return rest.split(q).next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_plain() {
        assert_eq!(super::base64(b"\0alice\0alicepw"), "AGFsaWNlAGFsaWNlcHc=");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"abc"), "YWJj");
    }

    #[test]
    fn attrs() {
        assert_eq!(
            super::attr("<presence from='a@b/c' type=\"x\"><x from='no'/></presence>", "type").as_deref(),
            Some("x")
        );
        assert_eq!(super::attr("<presence from='a@b/c'/>", "from").as_deref(), Some("a@b/c"));
        assert_eq!(super::attr("<presence><x type='no'/></presence>", "type"), None);
    }
}
