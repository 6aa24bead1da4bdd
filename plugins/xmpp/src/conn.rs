//! The XEP-0114 component connection: connect, handshake, read stanzas and hand them to the
//! registered callbacks. [`run`] returns (with an error) when the connection ends for any
//! reason; the module runs it under `Host::spawn_supervised`, which logs the reason and runs it
//! again after a back-off, so the component reconnects when the server restarts.
//!
//! Stanzas from other modules are queued (bounded, never blocking the caller, which may be a
//! SIP worker) to a writer thread that lives as long as the connection; a full queue or a
//! lost connection is an error for the caller, logged, never a wait.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use plugin_api::Error;
use plugin_api::api::xmpp::{Stanza, XmppCallback, cb};
use xmpp_stream::{Event, StanzaReader, escape};

/// The stream's default namespace.
pub const NS: &str = "jabber:component:accept";
/// Largest stanza accepted from the server.
const MAX_STANZA: usize = 256 * 1024;
/// How long the handshake may take, and the write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time after which a whitespace keep-alive is sent (it finds a dead connection).
const KEEPALIVE: Duration = Duration::from_secs(60);
/// Stanzas waiting for the writer at most.
const QUEUE: usize = 10_000;

/// Where to connect.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `xmpp_host`.
    pub host: String,
    /// `xmpp_port`.
    pub port: u16,
    /// `xmpp_domain`: the component's name.
    pub domain: String,
    /// `xmpp_password`.
    pub secret: String,
}

/// State shared between the connection thread and the API.
#[derive(Default)]
pub struct Shared {
    /// The writer thread's queue, while connected.
    writer: Mutex<Option<SyncSender<String>>>,
    callbacks: RwLock<Vec<(i32, XmppCallback)>>,
    stopping: AtomicBool,
}

impl Shared {
    /// Queues `xml` for the stream, when connected; never blocks.
    pub fn send(&self, xml: &str) -> Result<(), Error> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = w.as_ref() else { return Err(Error::new("not connected")) };
        match tx.try_send(xml.to_string()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::new(format!("{QUEUE} stanzas wait for the XMPP server already"))),
            Err(TrySendError::Disconnected(_)) => Err(Error::new("the XMPP connection is closing")),
        }
    }

    /// Adds a callback for the stanza kinds in `types`.
    pub fn register(&self, types: i32, callback: XmppCallback) {
        self.callbacks.write().unwrap_or_else(|p| p.into_inner()).push((types, callback));
    }

    /// Ends the connection for good (module shutdown).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // The writer thread ends when its queue closes and shuts the socket down, which
        // ends the reading thread's blocking read.
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn dispatch(&self, stanza: &str) -> Result<(), Error> {
        let parsed = xmpp_stream::parse_stanza(stanza, NS, |n| {
            let attr = |a: &str| n.attribute(a).unwrap_or("").to_string();
            (n.tag_name().name().to_string(), attr("from"), attr("to"), attr("type"), attr("id"))
        });
        let (name, from, to, ty, id) = match parsed {
            Ok(v) => v,
            Err(e) => {
                // One bad stanza is dropped; the stream itself was well framed.
                tracing::warn!("xmpp: unreadable stanza dropped ({e}): {}", clip(stanza));
                return Ok(());
            }
        };
        let kind = match name.as_str() {
            "presence" => cb::RCV_PRESENCE,
            "message" => cb::RCV_MESSAGE,
            "iq" => cb::RCV_IQ,
            "error" => return Err(Error::new(format!("stream error from the XMPP server: {}", stream_error(stanza)))),
            other => {
                tracing::debug!("xmpp: <{other}> ignored");
                return Ok(());
            }
        };
        let s = Stanza { kind, from: &from, to: &to, ty: &ty, xml: stanza };
        let callbacks = self.callbacks.read().unwrap_or_else(|p| p.into_inner());
        let mut handled = false;
        for (types, callback) in callbacks.iter() {
            if types & kind != 0 {
                callback.call(&s);
                handled = true;
            }
        }
        drop(callbacks);
        if kind == cb::RCV_IQ && !handled && (ty == "get" || ty == "set") {
            // RFC 6120 §8.2.3: every get/set gets an answer.
            let reply = format!(
                "<iq type='error' from='{}' to='{}' id='{}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
                escape(&to),
                escape(&from),
                escape(&id)
            );
            let _ = self.send(&reply);
        }
        Ok(())
    }
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `condition (text)` of a `<stream:error>`.
fn stream_error(stanza: &str) -> String {
    xmpp_stream::parse_stanza(stanza, NS, |n| {
        let cond = n
            .children()
            .find(|c| c.is_element() && c.tag_name().name() != "text")
            .map_or("unknown", |c| c.tag_name().name())
            .to_string();
        match xmpp_stream::child_text(n, "text") {
            Some(t) if !t.is_empty() => format!("{cond} ({t})"),
            _ => cond,
        }
    })
    .unwrap_or_else(|_| clip(stanza).to_string())
}

/// Closes the writer's queue when the connection ends, however it ends.
struct Connected<'a>(&'a Shared, TcpStream);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = self.1.shutdown(Shutdown::Both);
    }
}

/// The writer thread: writes queued stanzas until the queue closes or a write fails, then
/// shuts the socket down (so the reading thread notices and the connection is made again).
fn writer(mut stream: TcpStream, rx: Receiver<String>) {
    for xml in rx {
        if let Err(e) = stream.write_all(xml.as_bytes()) {
            tracing::warn!("xmpp: write to the XMPP server failed: {e}");
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// One connection's life: returns `Ok(())` only when the module is stopping.
pub fn run(settings: &Settings, shared: &Shared) -> Result<(), Error> {
    if shared.stopping.load(Ordering::SeqCst) {
        return Ok(());
    }
    let target = format!("{}:{}", settings.host, settings.port);
    let addr = target
        .to_socket_addrs()
        .map_err(|e| Error::new(format!("cannot resolve XMPP server {target}: {e}")))?
        .next()
        .ok_or_else(|| Error::new(format!("XMPP server {target} has no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| Error::new(format!("cannot connect to XMPP server {target}: {e}")))?;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS}' xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        escape(&settings.domain)
    );
    stream.write_all(header.as_bytes()).map_err(io)?;

    let mut reader = StanzaReader::new(MAX_STANZA);
    let mut buf = vec![0u8; 16 * 1024];
    let mut handshake_sent = false;
    let refused = |why: String| {
        Error::new(format!(
            "XMPP server {target} refused component {}: {why}; check xmpp_domain and xmpp_password",
            settings.domain
        ))
    };
    // Handshake: the server's stream header gives the id; the digest answers it.
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(refused("connection closed during the handshake".into())),
            Ok(n) => n,
            Err(e) => return Err(Error::new(format!("XMPP handshake with {target} failed: {e}"))),
        };
        reader.feed(&buf[..n]);
        let mut done = false;
        while let Some(ev) = reader.next_event().map_err(|e| Error::new(format!("XMPP server {target}: {e}")))? {
            match ev {
                Event::StreamStart(h) if !handshake_sent => {
                    let id = xmpp_stream::header_attr(&h, "id").unwrap_or_default();
                    if id.is_empty() {
                        // Prosody answers an unknown component name with id='' and then an error.
                        continue;
                    }
                    let digest = xmpp_stream::handshake_digest(&id, &settings.secret);
                    stream.write_all(format!("<handshake>{digest}</handshake>").as_bytes()).map_err(io)?;
                    handshake_sent = true;
                }
                Event::Stanza(s) if s.starts_with("<handshake") => done = true,
                Event::Stanza(s) if s.starts_with("<stream:error") => return Err(refused(stream_error(&s))),
                Event::StreamEnd => return Err(refused("stream closed".into())),
                Event::StreamStart(_) | Event::Stanza(_) => {}
            }
            if done {
                break;
            }
        }
        if done {
            break;
        }
    }
    stream.set_read_timeout(Some(KEEPALIVE)).map_err(io)?;
    let (tx, rx) = sync_channel(QUEUE);
    let out = stream.try_clone().map_err(io)?;
    std::thread::Builder::new()
        .name("xmpp:writer".into())
        .spawn(move || writer(out, rx))
        .map_err(|e| Error::new(format!("cannot start the XMPP writer thread: {e}")))?;
    *shared.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    let _connected = Connected(shared, stream.try_clone().map_err(io)?);
    if shared.stopping.load(Ordering::SeqCst) {
        return Ok(());
    }
    tracing::info!("xmpp: connected to {target} as component {}", settings.domain);
    // Stanzas that came with the handshake answer.
    while let Some(ev) = reader.next_event().map_err(|e| Error::new(format!("XMPP stream: {e}")))? {
        handle(shared, ev)?;
    }
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) if shared.stopping.load(Ordering::SeqCst) => return Ok(()),
            Ok(0) => return Err(Error::new(format!("XMPP server {target} closed the connection"))),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                shared.send(" ")?;
                continue;
            }
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return Ok(()),
            Err(e) => return Err(Error::new(format!("XMPP connection to {target} lost: {e}"))),
        };
        reader.feed(&buf[..n]);
        while let Some(ev) = reader.next_event().map_err(|e| Error::new(format!("XMPP stream from {target}: {e}")))? {
            handle(shared, ev)?;
        }
    }
}

fn handle(shared: &Shared, ev: Event) -> Result<(), Error> {
    match ev {
        Event::Stanza(s) => shared.dispatch(&s),
        Event::StreamEnd => Err(Error::new("the XMPP server closed the stream")),
        Event::StreamStart(_) => Err(Error::new("a second stream header from the XMPP server")),
    }
}

fn io(e: std::io::Error) -> Error {
    Error::new(format!("XMPP connection: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    /// A fake server: checks the handshake digest, then sends `after` and closes.
    fn fake_server(secret: &'static str, after: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = String::new();
            let mut buf = [0u8; 4096];
            while !got.contains("<stream:stream") || !got.ends_with('>') {
                let n = s.read(&mut buf).unwrap();
                got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            }
            s.write_all(b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='i1' from='gw.test' xmlns='jabber:component:accept'>").unwrap();
            let mut hs = String::new();
            while !hs.contains("</handshake>") {
                let n = s.read(&mut buf).unwrap();
                hs.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            }
            if hs.contains(&xmpp_stream::handshake_digest("i1", secret)) {
                s.write_all(b"<handshake/>").unwrap();
                // Two stanzas in one write, one split over two.
                s.write_all(after.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                s.write_all(b"<presence from='c@x/r' to='u*s@gw.test'><show>dnd</sh").unwrap();
                std::thread::sleep(Duration::from_millis(50));
                s.write_all(b"ow></presence></stream:stream>").unwrap();
            } else {
                s.write_all(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Given token does not match calculated token</text></stream:error></stream:stream>").unwrap();
            }
            got + &hs
        });
        (port, h)
    }

    fn settings(port: u16, secret: &str) -> Settings {
        Settings { host: "127.0.0.1".into(), port, domain: "gw.test".into(), secret: secret.into() }
    }

    #[test]
    fn handshake_then_stanzas_to_callbacks() {
        let (port, server) = fake_server(
            "pw",
            "<presence from='a@x/r' to='u*s@gw.test'/><iq type='get' id='q1' from='a@x/r' to='gw.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq><message from='a@x' to='u*s@gw.test'><body>hi</body></message>",
        );
        let shared = Shared::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (seen.clone(), count.clone());
        let api_cb = plugin_api_callback(move |s: &Stanza<'_>| {
            s2.lock().unwrap().push(format!("{} {} {} {}", s.kind, s.from, s.ty, s.xml.len()));
            c2.fetch_add(1, Ordering::SeqCst);
        });
        shared.register(cb::RCV_PRESENCE, api_cb);
        let err = run(&settings(port, "pw"), &shared).unwrap_err().to_string();
        assert!(err.contains("closed the stream"), "{err}");
        let sent = server.join().unwrap();
        assert!(sent.contains("to='gw.test'") && sent.contains("jabber:component:accept"), "{sent}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "presences only: {seen:?}");
        assert!(seen[0].starts_with("2 a@x/r  "), "{seen:?}");
        assert!(seen[1].starts_with("2 c@x/r "), "{seen:?}");
        assert!(shared.send("<x/>").is_err(), "no writer once the connection is gone");
    }

    #[test]
    fn wrong_secret_is_a_clear_error() {
        let (port, server) = fake_server("right", "");
        let shared = Shared::default();
        let err = run(&settings(port, "wrong"), &shared).unwrap_err().to_string();
        server.join().unwrap();
        assert!(err.contains("refused component gw.test: not-authorized (Given token does not match"), "{err}");
        assert!(err.contains("xmpp_password"), "{err}");
    }

    /// A server that completes the handshake, echoes what it reads into `got` until it sees
    /// `stop_reading`, then reads nothing more and keeps the connection open for `hold`.
    fn slow_server(stop_reading: &'static str, hold: Duration) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = String::new();
            let mut buf = [0u8; 4096];
            let mut greeted = false;
            while !got.contains(stop_reading) {
                let n = s.read(&mut buf).unwrap();
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
                if !greeted && got.contains("<stream:stream") {
                    s.write_all(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='i2' xmlns='jabber:component:accept'>").unwrap();
                    greeted = true;
                }
                if got.contains("</handshake>") && !got.contains("HANDSHOOK") {
                    s.write_all(b"<handshake/>").unwrap();
                    got.push_str("HANDSHOOK");
                }
            }
            std::thread::sleep(hold);
            got
        });
        (port, h)
    }

    #[test]
    fn sends_are_queued_and_never_block() {
        let (port, server) = slow_server("<last/>", Duration::from_secs(1));
        let shared = Arc::new(Shared::default());
        let (s2, st) = (shared.clone(), settings(port, "pw"));
        let conn = std::thread::spawn(move || run(&st, &s2));
        let t = std::time::Instant::now();
        while shared.send("<first/>").is_err() {
            assert!(t.elapsed() < Duration::from_secs(5), "never connected");
            std::thread::sleep(Duration::from_millis(5));
        }
        shared.send("<presence to='a@x'/><last/>").unwrap();
        // The server reads no more: the socket buffers fill, then the queue; a send is refused
        // at once instead of waiting.
        let big = format!("<message><body>{}</body></message>", "x".repeat(4000));
        let t = std::time::Instant::now();
        let mut refused = None;
        for i in 0..QUEUE * 4 {
            if let Err(e) = shared.send(&big) {
                refused = Some((i, e.to_string()));
                break;
            }
        }
        let (i, e) = refused.expect("a full queue refuses");
        assert!(e.contains("wait for the XMPP server"), "{e}");
        assert!(i >= QUEUE, "the queue holds {QUEUE} stanzas first ({i})");
        assert!(t.elapsed() < Duration::from_secs(2), "sends never wait: {:?}", t.elapsed());
        // Stopping the module ends the connection's thread without an error.
        shared.stop();
        let got = server.join().unwrap();
        assert!(got.contains("<first/>") && got.contains("<presence to='a@x'/>"), "{got}");
        assert!(conn.join().unwrap().is_ok());
    }

    #[test]
    fn nothing_listening_is_an_error() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = run(&settings(port, "x"), &Shared::default()).unwrap_err().to_string();
        assert!(err.contains("cannot connect"), "{err}");
    }

    /// A callback as another plugin would register it, through the API's own FFI shape.
    fn plugin_api_callback(f: impl Fn(&Stanza<'_>) + Send + Sync + 'static) -> XmppCallback {
        XmppCallback::new(f)
    }
}
