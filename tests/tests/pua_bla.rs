//! pua_bla end to end: registrar + usrloc + pua + pua_bla + presence + presence_xml
//! (disable_bla = 0) on one host, as configs/bla.toml. Three phones (the tests' own UDP
//! clients, acting as phones do) register on one shared line with `bla_set_flag()`; each gets
//! the host's SUBSCRIBE for `dialog;sla`, answers it and NOTIFYs its (idle) state. Then each
//! phone watches the line; a confirmed dialog NOTIFYed by phone A reaches B and C (not A) with
//! pua's version, its terminated dialog clears it; refused NOTIFYs (no such subscription,
//! malformed body) publish nothing; re-registration refreshes the subscription, unregistration
//! and expiry end it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use e2e::kamailio::{reply, tag};
use e2e::notify::body;
use e2e::sip::{Client, header, status};
use e2e::{Host, eventually, root};
use serde_json::{Value, json};

const LINE: &str = "sip:line@example.com";

/// The shipped configs/bla.toml on free ports, with usrloc's expiry pass every second and
/// registrations as short as 2 s (the expiry case).
fn server(name: &str) -> Host {
    Host::start(name, &config())
}

/// The config [`server`] starts.
fn config() -> String {
    let shipped = std::fs::read_to_string(root().join("configs/bla.toml")).expect("configs/bla.toml");
    let config = shipped
        .replace("127.0.0.1:5060", "127.0.0.1:@SIP@")
        .replace("127.0.0.1:5080", "127.0.0.1:@HTTP@")
        .replace("[core]\n", "[core]\nmodules_path = [\"@MODULES@\"]\n")
        .replace("children = 4", "children = 2")
        .replace(
            "[modparam.registrar]\n",
            "[modparam.usrloc]\ntimer_interval = 1\n[modparam.registrar]\nmin_expires = 2\n",
        );
    for expected in ["@SIP@", "@HTTP@", "timer_interval = 1", "handle_publish(\\\"$hdr(Sender)\\\")", "bla_set_flag()"]
    {
        assert!(config.contains(expected), "configs/bla.toml changed ({expected}): {config}");
    }
    config
}

/// The shipped config passes `puahost check`.
#[test]
fn shipped_bla_config_checks() {
    let out = e2e::cli(&["check", "-c", root().join("configs/bla.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", e2e::text(&out));
}

/// The dialog-info a phone NOTIFYs: no dialog (idle), or one dialog in `state`. The phone's
/// own version is 41: what the watchers see must be pua's.
fn dialog_info(dialog: Option<(&str, &str)>) -> String {
    let inner = dialog
        .map(|(id, state)| format!("<dialog id=\"{id}\" direction=\"initiator\"><state>{state}</state></dialog>"))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"41\" state=\"full\" entity=\"{LINE}\">{inner}</dialog-info>"
    )
}

/// The `version` attribute of a dialog-info body.
fn version(b: &str) -> u32 {
    let root = &b[b.find("<dialog-info").expect("a dialog-info root")..];
    let at = root.find(" version=\"").expect("a version") + 10;
    root[at..].split('"').next().and_then(|v| v.parse().ok()).expect("a numeric version")
}

/// One phone of the line: a UDP socket that keeps what it received but did not wait for yet
/// (the host's SUBSCRIBEs, the presence server's NOTIFYs and replies to its own requests share
/// it).
struct Phone {
    c: Client,
    name: &'static str,
    contact: String,
    seen: VecDeque<String>,
    /// Our side of the host's subscription: (Call-ID, our tag, the host's tag, the host's
    /// Contact), once its SUBSCRIBE came.
    dialog: Option<(String, String, String, String)>,
    cseq: u32,
}

impl Phone {
    fn new(h: &Host, name: &'static str) -> Phone {
        let c = Client::udp(h.sip_addr());
        let contact = format!("sip:line@{}", c.local());
        Phone { c, name, contact, seen: VecDeque::new(), dialog: None, cseq: 0 }
    }

    /// The next message satisfying `want` within `within`; the others are kept.
    fn next(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(i) = self.seen.iter().position(|m| want(m)) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(m) = self.c.recv(left) else { break };
            if want(&m) {
                return Some(m);
            }
            self.seen.push_back(m);
        }
        None
    }

    /// Sends a request and waits for its final reply (by Call-ID and CSeq).
    fn transact(&mut self, m: &str) -> String {
        self.c.send(m.as_bytes());
        let (call_id, cseq) = (header(m, "Call-ID").unwrap(), header(m, "CSeq").unwrap());
        self.next(Duration::from_secs(5), |r| {
            status(r) >= 200
                && header(r, "Call-ID").as_ref() == Some(&call_id)
                && header(r, "CSeq").as_ref() == Some(&cseq)
        })
        .unwrap_or_else(|| panic!("{}: no reply to\n{m}", self.name))
    }

    fn register(&mut self, call_id: &str, cseq: u32, expires: u32) -> u16 {
        let (local, contact) = (self.c.local(), &self.contact);
        let user = if call_id.starts_with("plain") { "bob" } else { "line" };
        let m = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r{cseq}\r\nTo: <sip:{user}@example.com>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
        );
        status(&self.transact(&m))
    }

    /// The host's next SUBSCRIBE, answered 200 (a new dialog gets our tag); its Expires.
    fn subscribed(&mut self) -> (String, u32) {
        let s = self
            .next(Duration::from_secs(5), |m| m.starts_with("SUBSCRIBE "))
            .unwrap_or_else(|| panic!("{}: no SUBSCRIBE from the host", self.name));
        let expires: u32 = header(&s, "Expires").and_then(|e| e.parse().ok()).expect("Expires");
        let to = header(&s, "To").unwrap();
        let our_tag = tag(&to).unwrap_or_else(|| format!("ph-{}", self.name));
        let mut r = reply(&s, 200, "OK");
        if tag(&to).is_none() {
            r = r.replace(&format!(";tag=e2e-{}", std::process::id()), &format!(";tag={our_tag}"));
        }
        let r = r.replace(
            "Content-Length: 0\r\n",
            &format!("Contact: <{}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n", self.contact),
        );
        self.c.answer(&s, &r);
        let host_tag = tag(&header(&s, "From").unwrap()).expect("a From tag");
        let host_contact = header(&s, "Contact").unwrap().trim_matches(|c| c == '<' || c == '>').to_string();
        self.dialog = Some((header(&s, "Call-ID").unwrap(), our_tag, host_tag, host_contact));
        (s, expires)
    }

    /// A NOTIFY in the host's subscription (as the phone sends it) and its reply code.
    fn notify_with(&mut self, state: &str, body: &str, from_tag: Option<&str>) -> (u16, String) {
        let (call_id, our_tag, host_tag, host_contact) = self.dialog.clone().expect("subscribed first");
        self.cseq += 1;
        let (local, cseq, contact) = (self.c.local(), self.cseq, &self.contact);
        let from_tag = from_tag.unwrap_or(&our_tag);
        let m = format!(
            "NOTIFY {host_contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-n{}-{cseq}-{};rport\r\nMax-Forwards: 70\r\nFrom: <{LINE}>;tag={from_tag}\r\nTo: <{LINE}>;tag={host_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} NOTIFY\r\nContact: <{contact}>\r\nEvent: dialog;sla\r\nSubscription-State: {state}\r\nContent-Type: application/dialog-info+xml\r\nContent-Length: {}\r\n\r\n{body}",
            self.name,
            std::process::id(),
            body.len()
        );
        let r = self.transact(&m);
        (status(&r), r)
    }

    fn notify(&mut self, body: &str) -> u16 {
        self.notify_with("active;expires=600", body, None).0
    }

    /// Subscribes to the line (`dialog;sla`); the body of the first NOTIFY.
    fn watch(&mut self) -> String {
        let local = self.c.local();
        let m = format!(
            "SUBSCRIBE {LINE} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-w{}-{};rport\r\nMax-Forwards: 70\r\nFrom: <{LINE}>;tag=w{}\r\nTo: <{LINE}>\r\nCall-ID: watch-{}-{}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <{}>\r\nEvent: dialog;sla\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
            self.name,
            std::process::id(),
            self.name,
            self.name,
            std::process::id(),
            self.contact
        );
        assert_eq!(status(&self.transact(&m)), 200, "{}", self.name);
        self.presence_notify(Duration::from_secs(5)).unwrap_or_else(|| panic!("{}: no first NOTIFY", self.name))
    }

    /// [`Phone::watch`] at another presence server, from the same socket (so the same Contact).
    fn watch_at(&mut self, server: std::net::SocketAddr) -> String {
        let Client::Udp(_, to) = &mut self.c else { unreachable!("phones are UDP") };
        let home = std::mem::replace(to, server);
        let n = self.watch();
        if let Client::Udp(_, to) = &mut self.c {
            *to = home;
        }
        n
    }

    /// The presence server's next NOTIFY (dialog;sla), answered 200.
    fn presence_notify(&mut self, within: Duration) -> Option<String> {
        let n = self.next(within, |m| m.starts_with("NOTIFY "))?;
        assert_eq!(header(&n, "Event").as_deref(), Some("dialog;sla"), "{n}");
        self.c.answer(&n, &reply(&n, 200, "OK"));
        Some(n)
    }

    fn no_presence_notify(&mut self, within: Duration) {
        if let Some(n) = self.presence_notify(within) {
            panic!("{}: unexpected NOTIFY\n{n}", self.name);
        }
    }
}

/// The line's publication as the presence server holds it: (sender, body).
fn publication(h: &Host) -> Option<(String, String)> {
    let all = h.result("presence.presentity_list", json!(["full"]));
    let p = all.as_array()?.iter().find(|p| p["event"] == "dialog;sla")?.clone();
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    Some((s(&p["sender"]), s(&p["body"])))
}

#[test]
fn three_phones_share_a_line() {
    let h = server("pua-bla-line");
    let mut phones = [Phone::new(&h, "a"), Phone::new(&h, "b"), Phone::new(&h, "c")];

    // Each phone registers on the line and gets the host's SUBSCRIBE (dialog;sla) for its
    // contact; it answers and NOTIFYs its idle state, which pua_bla PUBLISHes with the phone's
    // Contact as Sender.
    for (i, p) in phones.iter_mut().enumerate() {
        assert_eq!(p.register(&format!("reg-{}", p.name), 1, 60), 200);
        let (s, expires) = p.subscribed();
        assert!(s.starts_with(&format!("SUBSCRIBE {} SIP/2.0", p.contact)), "to the contact:\n{s}");
        assert_eq!(header(&s, "Event").as_deref(), Some("dialog;sla"), "{s}");
        assert!(header(&s, "From").unwrap().starts_with(&format!("<{LINE}>")), "watcher = the line:\n{s}");
        assert!(header(&s, "To").unwrap().starts_with(&format!("<{LINE}>")), "presentity = REGISTER From:\n{s}");
        assert_eq!(header(&s, "Contact").unwrap(), format!("<sip:bla@{}>", h.sip_addr()), "server_address:\n{s}");
        assert!((50..=70).contains(&expires), "the contact's expires (pua adds 10): {expires}");
        assert_eq!(p.notify(&dialog_info(None)), 200);
        let sender = p.contact.clone();
        assert!(
            eventually(Duration::from_secs(5), || publication(&h).is_some_and(|(s, _)| s == sender)),
            "phone {i}'s idle state published with its Sender: {:?}\n{}",
            publication(&h),
            h.log()
        );
    }
    let (_, idle) = publication(&h).unwrap();
    assert!(!idle.contains("<dialog "), "{idle}");

    // Every phone watches the line and sees the idle state, with pua's version.
    let mut v0 = None;
    for p in phones.iter_mut() {
        let n = p.watch();
        let b = body(&n);
        assert!(b.contains("<dialog-info") && !b.contains("<dialog "), "{b}");
        let v = version(b);
        assert_ne!(v, 41, "pua rewrote the phone's version: {b}");
        assert!(v0.is_none_or(|x| x == v));
        v0 = Some(v);
    }
    let v0 = v0.unwrap();
    let [a, b, c] = &mut phones;

    // A's call is confirmed: B and C see it, A does not get its own state back.
    assert_eq!(a.notify(&dialog_info(Some(("call-a", "confirmed")))), 200);
    for p in [&mut *b, &mut *c] {
        let n =
            p.presence_notify(Duration::from_secs(5)).unwrap_or_else(|| panic!("{}: no NOTIFY\n{}", p.name, h.log()));
        let body = body(&n);
        assert!(body.contains("<dialog id=\"call-a\"") && body.contains("<state>confirmed</state>"), "{body}");
        assert_eq!(version(body), v0 + 1, "{body}");
        assert!(header(&n, "Subscription-State").unwrap().starts_with("active"), "{n}");
    }
    a.no_presence_notify(Duration::from_millis(700));

    // The call ends: B and C see it terminated, A still nothing.
    assert_eq!(a.notify(&dialog_info(Some(("call-a", "terminated")))), 200);
    for p in [&mut *b, &mut *c] {
        let n = p.presence_notify(Duration::from_secs(5)).unwrap_or_else(|| panic!("{}: no NOTIFY", p.name));
        let body = body(&n);
        assert!(body.contains("<dialog id=\"call-a\"") && body.contains("<state>terminated</state>"), "{body}");
        assert_eq!(version(body), v0 + 2, "{body}");
    }
    a.no_presence_notify(Duration::from_millis(700));
    let before = publication(&h).unwrap();

    // A malformed body: answered 400, nothing published, nobody notified.
    let (code, r) =
        a.notify_with("active;expires=600", "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\"", None);
    assert_eq!(code, 400, "{r}");
    // Not dialog-info at all, and no body: 400 too.
    let pidf = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:line@example.com\"/>";
    assert_eq!(a.notify_with("active;expires=600", pidf, None).0, 400);
    assert_eq!(a.notify_with("active;expires=600", "", None).0, 400);
    // active without expires: 400.
    assert_eq!(a.notify_with("active", &dialog_info(Some(("call-x", "confirmed"))), None).0, 400);
    // A NOTIFY in no subscription of ours (A's Call-ID and tags, another From tag): 481.
    let (code, r) = a.notify_with("active;expires=600", &dialog_info(Some(("call-x", "confirmed"))), Some("stranger"));
    assert_eq!(code, 481, "{r}");
    // ... nor a NOTIFY from elsewhere with made-up identifiers.
    let mut stranger = Client::udp(h.sip_addr());
    let local = stranger.local();
    let bodyx = dialog_info(Some(("call-x", "confirmed")));
    let m = format!(
        "NOTIFY sip:bla@{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-stray;rport\r\nMax-Forwards: 70\r\nFrom: <{LINE}>;tag=x1\r\nTo: <{LINE}>;tag=x2\r\nCall-ID: no-such-dialog\r\nCSeq: 1 NOTIFY\r\nContact: <sip:x@{local}>\r\nEvent: dialog;sla\r\nSubscription-State: active;expires=60\r\nContent-Length: {}\r\n\r\n{bodyx}",
        h.sip_addr(),
        bodyx.len()
    );
    assert_eq!(status(&stranger.transact(&m)), 481);
    for p in [&mut *a, &mut *b, &mut *c] {
        p.no_presence_notify(Duration::from_millis(500));
    }
    assert_eq!(publication(&h), Some(before), "nothing was published");

    // Re-registration refreshes A's subscription within its dialog, with the new expires.
    let (call_id, our_tag, ..) = a.dialog.clone().unwrap();
    assert_eq!(a.register("reg-a", 2, 30), 200);
    let (s, expires) = a.subscribed();
    assert_eq!(header(&s, "Call-ID").unwrap(), call_id, "within the dialog:\n{s}");
    assert_eq!(tag(&header(&s, "To").unwrap()).as_deref(), Some(our_tag.as_str()), "{s}");
    assert!((20..=40).contains(&expires), "the new expires (pua adds 10): {expires}");

    // C unregisters: its subscription ends (SUBSCRIBE Expires: 0 within the dialog).
    let (call_id, ..) = c.dialog.clone().unwrap();
    assert_eq!(c.register("reg-c", 2, 0), 200);
    let (s, expires) = c.subscribed();
    assert_eq!((header(&s, "Call-ID").unwrap(), expires), (call_id, 0), "{s}");
    // The phone's last NOTIFY (terminated) comes after pua ended the dialog: 481, and the
    // line's state stays (it would otherwise be removed for every phone).
    std::thread::sleep(Duration::from_millis(200));
    let before = publication(&h);
    assert_eq!(c.notify_with("terminated;reason=timeout", &dialog_info(None), None).0, 481);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(publication(&h), before);
    // A REGISTER without bla_set_flag() (another AoR, same phone) subscribes to nothing.
    assert_eq!(c.register("plain-c", 1, 60), 200);
    assert!(c.next(Duration::from_millis(700), |m| m.starts_with("SUBSCRIBE ")).is_none(), "not a BLA line");

    // B's registration expires: usrloc's timer ends its subscription too.
    let (call_id, ..) = b.dialog.clone().unwrap();
    assert_eq!(b.register("reg-b", 2, 2), 200);
    let (_, expires) = b.subscribed();
    assert!(expires <= 12, "refreshed for 2 s: {expires}");
    let s = b.next(Duration::from_secs(8), |m| m.starts_with("SUBSCRIBE ")).expect("an unsubscribe on expiry");
    assert_eq!(header(&s, "Expires").as_deref(), Some("0"), "{s}");
    assert_eq!(header(&s, "Call-ID").unwrap(), call_id, "{s}");
    b.c.answer(&s, &reply(&s, 200, "OK"));

    // A ends its subscription (Subscription-State: terminated): the line's publication is
    // removed (PUBLISH with Expires 0).
    assert!(publication(&h).is_some());
    let (code, r) = a.notify_with("terminated;reason=noresource", &dialog_info(None), None);
    assert_eq!(code, 200, "{r}");
    assert!(eventually(Duration::from_secs(5), || publication(&h).is_none()), "{:?}", publication(&h));
}

#[test]
fn mandatory_modparams_are_refused_when_missing() {
    for (missing, keep) in [
        ("server_address", "default_domain = \"example.com\"\nheader_name = \"Sender\""),
        ("default_domain", "server_address = \"sip:bla@127.0.0.1\"\nheader_name = \"Sender\""),
        ("header_name", "server_address = \"sip:bla@127.0.0.1\"\ndefault_domain = \"example.com\""),
    ] {
        let dir = e2e::TempDir::new("pua-bla-params");
        let config = format!(
            "loadmodule = [\"usrloc\", \"pua\", \"pua_bla\"]\n[core]\nmodules_path = [\"{}\"]\nlisten = [\"udp:127.0.0.1:5060\"]\n[modparam.pua_bla]\n{keep}\n",
            e2e::release_dir().display()
        );
        let path = dir.write("bla.toml", &config);
        let out = e2e::cli(&["check", "-c", path.to_str().unwrap()]);
        let text = e2e::text(&out);
        assert!(!out.status.success(), "{missing} missing must fail:\n{text}");
        assert!(text.contains(missing), "the error names {missing}:\n{text}");
    }
    // Empty, or not a header name: the start fails (module init) with a message naming it.
    for (value, expected) in [("\"\"", "header_name is mandatory"), ("\"Bad Name\"", "is not a header name")] {
        let dir = e2e::TempDir::new("pua-bla-empty");
        let config = format!(
            "loadmodule = [\"usrloc\", \"pua\", \"pua_bla\"]\n[core]\nmodules_path = [\"{}\"]\nlisten = [\"udp:127.0.0.1:{}\"]\n[modparam.pua_bla]\nserver_address = \"sip:bla@127.0.0.1\"\ndefault_domain = \"example.com\"\nheader_name = {value}\n",
            e2e::release_dir().display(),
            e2e::free_port()
        );
        let path = dir.write("bla.toml", &config);
        let out =
            std::process::Command::new(e2e::puahost()).args(["run", "-c", path.to_str().unwrap()]).output().unwrap();
        let text = e2e::text(&out);
        assert!(!out.status.success(), "header_name = {value} must fail:\n{text}");
        assert!(text.contains(expected), "{text}");
    }
}

/// A burst: phone A NOTIFYs `BLA_BURST` states (default 300) one after the other, each answered
/// before the next; watcher B must end on the last one (pua collapses PUBLISHes queued behind
/// one in flight, so B sees fewer states than A sent, never a stale one last). Prints the rate
/// (`--nocapture`; `BLA_BURST=2000` for the numbers in the report).
#[test]
fn notify_to_publish_rate() {
    let h = server("pua-bla-rate");
    let mut a = Phone::new(&h, "a");
    let mut b = Phone::new(&h, "b");
    assert_eq!(a.register("reg-a", 1, 600), 200);
    a.subscribed();
    assert_eq!(a.notify(&dialog_info(None)), 200);
    assert!(eventually(Duration::from_secs(5), || publication(&h).is_some()));
    b.watch();
    let watcher = std::thread::spawn(move || {
        let mut seen = 0u32;
        let mut last = String::new();
        while let Some(n) = b.presence_notify(Duration::from_secs(2)) {
            seen += 1;
            last = body(&n).to_string();
        }
        (seen, last)
    });
    let n: u32 = std::env::var("BLA_BURST").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..n {
        let state = if i % 2 == 0 { "confirmed" } else { "terminated" };
        let t = Instant::now();
        assert_eq!(a.notify(&dialog_info(Some((&format!("call-{i}"), state)))), 200);
        worst = worst.max(t.elapsed());
    }
    let took = start.elapsed();
    let (seen, last) = watcher.join().unwrap();
    println!(
        "{n} NOTIFYs answered in {:.2} s: {:.0}/s, {:.0} us mean, {} us worst; watcher B got {seen} NOTIFYs, the last with {}",
        took.as_secs_f64(),
        f64::from(n) / took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / f64::from(n),
        worst.as_micros(),
        if last.contains(&format!("call-{}", n - 1)) { "the last state" } else { "ANOTHER state" }
    );
    assert!(last.contains(&format!("call-{}", n - 1)), "{last}");
}

/// Against Kamailio 5.6's presence server (Debian packages; presence_xml with disable_bla = 0
/// and `handle_publish("$hdr(Sender)")`, as the draft's setup has it): our pua_bla PUBLISHes
/// there through pua's outbound_proxy, Kamailio stores A's Contact as the sender and notifies
/// B, not A, with the version pua wrote.
#[test]
fn kamailios_presence_server_leaves_the_sender_out() {
    let template = std::fs::read_to_string(e2e::kamailio::presence_template()).expect("presence.cfg");
    let publish = "\t\thandle_publish();";
    assert!(template.contains(publish), "tests/kamailio/presence.cfg changed");
    let template = template.replace(publish, "\t\thandle_publish(\"$hdr(Sender)\");");
    let mut k = e2e::kamailio::Kamailio::start_config(
        "kamailio-bla",
        &template,
        "modparam(\"presence_xml\", \"disable_bla\", 0)",
    );
    let proxy = "outbound_proxy = \"sip:127.0.0.1:@SIP@\"";
    let config = config();
    assert!(config.contains(proxy), "configs/bla.toml's pua section changed");
    let h = Host::start("pua-bla-kamailio", &config.replace(proxy, &format!("outbound_proxy = \"{}\"", k.uri())));
    let mut a = Phone::new(&h, "a");
    let mut b = Phone::new(&h, "b");
    for p in [&mut a, &mut b] {
        assert_eq!(p.register(&format!("reg-{}", p.name), 1, 60), 200);
        p.subscribed();
        assert_eq!(p.notify(&dialog_info(None)), 200);
    }
    let sender_is = |who: &str| k.presentity().iter().any(|p| p.event == "dialog;sla" && p.sender == who);
    assert!(eventually(Duration::from_secs(5), || sender_is(&b.contact)), "{:?}\n{}", k.presentity(), h.log());
    let first = a.watch_at(k.addr());
    let v = version(body(&first));
    assert_ne!(v, 41, "{first}");
    b.watch_at(k.addr());

    assert_eq!(a.notify(&dialog_info(Some(("call-a", "confirmed")))), 200);
    let n = b.presence_notify(Duration::from_secs(5)).unwrap_or_else(|| panic!("B: no NOTIFY\n{}", k.log()));
    let nb = body(&n);
    assert!(nb.contains("<dialog id=\"call-a\"") && nb.contains("<state>confirmed</state>"), "{nb}");
    assert_eq!(version(nb), v + 1, "{nb}");
    a.no_presence_notify(Duration::from_millis(700));
    assert!(sender_is(&a.contact), "{:?}", k.presentity());
    k.stop();
}
