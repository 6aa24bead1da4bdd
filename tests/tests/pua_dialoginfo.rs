//! pua_dialoginfo end to end, on the shipped configs/blf.toml (free ports, the phones' domain
//! `sip.test` as the alias): the callee registers, watchers SUBSCRIBE to the caller and the
//! callee with `Event: dialog`, sipp phones call through the proxy (`record_route()`,
//! `dlg_manage()`, `lookup()`, `t_relay()`), and the NOTIFYs' dialog-info bodies follow the
//! call: trying → early → confirmed → terminated for the caller, early → confirmed →
//! terminated for the callee; a 486 and a CANCEL end in terminated; modparams change the
//! bodies; URIs that are not local publish nothing; message flags (`setflag()`) and AVPs
//! (`set_avp()`) of the INVITE decide who publishes and where.

use std::process::Child;
use std::time::{Duration, Instant};

use e2e::kamailio::reply;
use e2e::sip::{Client, request, status};
use e2e::{Host, root, sipp_call as sipp, text};
use serde_json::json;

/// configs/blf.toml on free ports, with `sip.test` (the sipp phones' domain) as the alias
/// (`alias` replaces it: `None` leaves no alias) and `overrides` (`key = value` lines) set in
/// `[modparam.pua_dialoginfo]`.
fn blf(name: &str, alias: Option<&str>, overrides: &[&str]) -> Host {
    blf_with(name, alias, overrides, &[])
}

/// [`blf`] with `functions` (e.g. `setflag(7)`) first in the initial INVITE's route.
fn blf_with(name: &str, alias: Option<&str>, overrides: &[&str], functions: &[&str]) -> Host {
    Host::start(name, &blf_config(alias, overrides, functions))
}

/// The config [`blf_with`] starts.
fn blf_config(alias: Option<&str>, overrides: &[&str], functions: &[&str]) -> String {
    let shipped = std::fs::read_to_string(root().join("configs/blf.toml")).expect("configs/blf.toml");
    let mut config = shipped
        .replace("127.0.0.1:5060", "127.0.0.1:@SIP@")
        .replace("127.0.0.1:5080", "127.0.0.1:@HTTP@")
        .replace("[core]\n", "[core]\nmodules_path = [\"@MODULES@\"]\n")
        .replace("alias = [\"example.com\"]", &alias.map_or(String::new(), |a| format!("alias = [\"{a}\"]")));
    assert!(config.contains("@SIP@") && config.contains("@HTTP@"), "configs/blf.toml changed: {config}");
    let invite = "do = [\"record_route()\", \"dlg_manage()\", \"lookup(\\\"location\\\")\"";
    assert!(config.contains(invite), "configs/blf.toml's INVITE route changed: {config}");
    let first: String = functions.iter().map(|f| format!("{f:?}, ")).collect();
    config = config.replace(invite, &invite.replace("do = [", &format!("do = [{first}")));
    for line in overrides {
        let key = line.split('=').next().unwrap().trim();
        let lines: Vec<String> = config.lines().map(str::to_string).collect();
        let section = lines.iter().position(|l| l == "[modparam.pua_dialoginfo]").expect("the section");
        let end = lines[section + 1..].iter().position(|l| l.starts_with('[')).map_or(lines.len(), |i| section + 1 + i);
        let mut lines = lines;
        match (section + 1..end).find(|&i| lines[i].split('=').next().is_some_and(|k| k.trim() == key)) {
            Some(i) => lines[i] = line.to_string(),
            None => lines.insert(section + 1, line.to_string()),
        }
        config = lines.join("\n") + "\n";
    }
    config
}

/// The callee (`sip:callee@sip.test`): registered from a UDP socket whose port the sipp UAS
/// then takes over (registrar stores the REGISTER's source as `received`, and `lookup` sends
/// there).
fn callee(host: &Host, scenario: &str, pause_ms: u32) -> (Child, u16) {
    let mut phone = Client::udp(host.sip_addr());
    let local = phone.local();
    let port = local.port();
    let register = format!(
        "REGISTER sip:sip.test SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-reg-{port};rport\r\nMax-Forwards: 70\r\nFrom: <sip:callee@sip.test>;tag=r{port}\r\nTo: <sip:callee@sip.test>\r\nCall-ID: reg-{port}\r\nCSeq: 1 REGISTER\r\nContact: <sip:callee@127.0.0.1:{port}>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
    );
    let r = phone.transact(&register);
    assert_eq!(status(&r), 200, "{r}\n{}", host.log());
    drop(phone);
    let uas = sipp(host, scenario, &["-p", &port.to_string()], pause_ms);
    (uas, port)
}

/// The caller (`sip:caller@sip.test`) calling the callee through the proxy.
fn caller(host: &Host, scenario: &str, callee_port: u16, pause_ms: u32) -> Child {
    let proxy = format!("127.0.0.1:{}", host.sip);
    let port = e2e::free_port().to_string();
    sipp(host, scenario, &[proxy.as_str(), "-p", &port, "-key", "callee_port", &callee_port.to_string()], pause_ms)
}

fn finished(child: Child, what: &str, host: &Host) {
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{what} failed: {}\n{}", text(&out), host.log());
}

/// A watcher subscribed to `sip:<user>@sip.test` with `Event: dialog` (its first NOTIFY
/// consumed).
fn watch(h: &Host, user: &str) -> Client {
    watch_at(h.sip_addr(), user, &|| h.log())
}

/// [`watch`] on the presence server at `server` (`log` for a failure).
fn watch_at(server: std::net::SocketAddr, user: &str, log: &dyn Fn() -> String) -> Client {
    let mut w = Client::udp(server);
    let sub = request(&w, "SUBSCRIBE", &format!("sip:{user}@sip.test"), &["Event: dialog", "Expires: 600"], "");
    let r = w.transact(&sub);
    assert!(matches!(status(&r), 200 | 202), "{r}\n{}", log());
    next_notify(&mut w, Duration::from_secs(5)).expect("the first NOTIFY");
    w
}

/// The next NOTIFY on `c` within `within` (answered 200).
fn next_notify(c: &mut Client, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(m) = c.recv(left.min(Duration::from_millis(200)))
            && m.starts_with("NOTIFY ")
        {
            c.send(reply(&m, 200, "OK").as_bytes());
            return Some(m);
        }
    }
    None
}

fn body(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn state(b: &str) -> Option<&str> {
    b.split("<state>").nth(1)?.split("</state>").next()
}

/// The bodies of the NOTIFYs `w` gets until one shows `terminated` (or 15 s pass), with the
/// distinct states in order.
fn follow(w: &mut Client, h: &Host) -> (Vec<String>, Vec<String>) {
    follow_at(w, &|| h.log())
}

/// [`follow`] with `log` for a failure.
fn follow_at(w: &mut Client, log: &dyn Fn() -> String) -> (Vec<String>, Vec<String>) {
    let mut bodies = Vec::new();
    let mut states: Vec<String> = Vec::new();
    let mut other = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let Some(n) = next_notify(w, Duration::from_secs(1)) else { continue };
        let b = body(&n).to_string();
        if state(&b).is_none() {
            other.push(n.clone());
        }
        if let Some(s) = state(&b) {
            if states.last().map(String::as_str) != Some(s) {
                states.push(s.to_string());
            }
            bodies.push(b.clone());
            if s == "terminated" {
                return (states, bodies);
            }
        }
    }
    panic!("no terminated state within 15 s; states {states:?}; NOTIFYs without a state: {other:#?}\n{}", log());
}

/// What [`follow`] saw on one watcher.
type Followed = (Vec<String>, Vec<String>);

/// [`follow`] on two watchers at once (each answers its NOTIFYs as they come).
fn follow_both(a: &mut Client, b: &mut Client, h: &Host) -> (Followed, Followed) {
    std::thread::scope(|s| {
        let ta = s.spawn(|| follow(a, h));
        let tb = s.spawn(|| follow(b, h));
        (ta.join().unwrap(), tb.join().unwrap())
    })
}

fn with_state<'a>(bodies: &'a [String], s: &str) -> &'a str {
    bodies.iter().find(|b| state(b) == Some(s)).unwrap_or_else(|| panic!("no {s} body in {bodies:?}"))
}

/// The callee rings, answers; the caller hangs up. Both watchers see the whole call.
#[test]
fn call_published_for_caller_and_callee() {
    let h = blf("pua-dialoginfo-call", Some("sip.test"), &[]);
    let mut wa = watch(&h, "caller");
    let mut wb = watch(&h, "callee");
    let (uas, port) = callee(&h, "dlg_callee_late_ring", 1000);
    let uac = caller(&h, "dlg_caller", port, 1000);

    let ((states, bodies), (callee_states, callee_bodies)) = follow_both(&mut wa, &mut wb, &h);
    assert_eq!(states, ["trying", "early", "confirmed", "terminated"], "caller: {bodies:#?}");
    let early = with_state(&bodies, "early");
    assert!(early.contains("entity=\"sip:caller@sip.test\""), "{early}");
    assert!(early.contains("direction=\"initiator\""), "{early}");
    assert!(early.contains("call-id=\""), "{early}");
    assert!(early.contains("local-tag=\"") && early.contains("SIPpTag00"), "the From tag: {early}");
    assert!(early.contains("remote-tag=\"") && early.contains("SIPpTag01"), "the 180's To tag: {early}");
    assert!(early.contains("<identity>sip:callee@sip.test</identity>"), "{early}");
    assert!(early.contains(&format!("<target uri=\"sip:callee@127.0.0.1:{port}\"/>")), "{early}");
    let confirmed = with_state(&bodies, "confirmed");
    assert!(!confirmed.contains("local-tag"), "tags only while early: {confirmed}");
    assert!(confirmed.contains("dialog id=\"padi-"), "{confirmed}");

    let (states, bodies) = (callee_states, callee_bodies);
    assert_eq!(states, ["early", "confirmed", "terminated"], "callee (no callee_trying): {bodies:#?}");
    let early = with_state(&bodies, "early");
    assert!(early.contains("entity=\"sip:callee@sip.test\"") && early.contains("direction=\"recipient\""), "{early}");
    assert!(early.contains("<identity>sip:caller@sip.test</identity>"), "{early}");

    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
}

/// include_tags, include_callid off, caller_confirmed and callee_trying on, attribute_display.
#[test]
fn modparams_change_the_bodies() {
    let h = blf(
        "pua-dialoginfo-params",
        Some("sip.test"),
        &[
            "include_tags = 0",
            "include_callid = 0",
            "caller_confirmed = 1",
            "callee_trying = 1",
            "attribute_display = 1",
        ],
    );
    let mut wa = watch(&h, "caller");
    let mut wb = watch(&h, "callee");
    let (uas, port) = callee(&h, "dlg_callee_late_ring", 800);
    let uac = caller(&h, "dlg_caller", port, 800);

    let ((states, bodies), (callee_states, callee_bodies)) = follow_both(&mut wa, &mut wb, &h);
    assert_eq!(states, ["trying", "confirmed", "terminated"], "caller_confirmed: no early for the caller: {bodies:#?}");
    for b in &bodies {
        assert!(!b.contains("local-tag") && !b.contains("call-id"), "{b}");
    }
    let c = with_state(&bodies, "confirmed");
    assert!(c.contains("<target display=\"callee\" uri="), "attribute_display: {c}");

    let (states, bodies) = (callee_states, callee_bodies);
    assert_eq!(states, ["trying", "early", "confirmed", "terminated"], "callee_trying: {bodies:#?}\n{}", h.log());
    let early = with_state(&bodies, "early");
    assert!(!early.contains("local-tag"), "include_tags = 0: {early}");

    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
}

/// A 486: the caller's dialog ends in terminated.
#[test]
fn busy_callee_ends_in_terminated() {
    let h = blf("pua-dialoginfo-busy", Some("sip.test"), &[]);
    let mut wa = watch(&h, "caller");
    let (uas, port) = callee(&h, "dlg_callee_busy", 0);
    let uac = caller(&h, "dlg_caller_busy", port, 0);
    let (states, bodies) = follow(&mut wa, &h);
    // The 486 follows the INVITE at once: presence builds a NOTIFY from what is stored when
    // it sends it, so `trying` may already be `terminated` by then.
    assert_eq!(states.last().map(String::as_str), Some("terminated"), "{bodies:#?}");
    assert!(states.iter().all(|s| s == "trying" || s == "terminated"), "{bodies:#?}");
    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
}

/// A CANCEL while the callee rings: the caller's dialog goes early, then terminated (the 487).
#[test]
fn cancelled_call_ends_in_terminated() {
    let h = blf("pua-dialoginfo-cancel", Some("sip.test"), &[]);
    let mut w = watch(&h, "tester");
    let (uas, _port) = callee(&h, "uas_ring_cancel", 0);
    let mut c = Client::udp(h.sip_addr());
    let invite = request(&c, "INVITE", "sip:callee@sip.test", &[], "");
    c.send(invite.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut early = None;
    while early.is_none() && Instant::now() < deadline {
        if let Some(n) = next_notify(&mut w, Duration::from_millis(200))
            && state(body(&n)) == Some("early")
        {
            early = Some(n);
        }
    }
    let early = early.unwrap_or_else(|| panic!("no early state\n{}", h.log()));
    assert!(body(&early).contains("entity=\"sip:tester@sip.test\""), "{early}");
    let cancel = invite.replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    c.send(cancel.as_bytes());
    let mut got = Vec::new();
    while !got.contains(&487) {
        // 10 s: a CI machine running the other e2e files beside this one can be slow.
        let r = c.recv(Duration::from_secs(10)).unwrap_or_else(|| panic!("got {got:?}\n{}", h.log()));
        got.push(status(&r));
    }
    c.send(invite.replacen("INVITE sip", "ACK sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 ACK").as_bytes());
    let (states, bodies) = follow(&mut w, &h);
    assert_eq!(states.last().map(String::as_str), Some("terminated"), "{bodies:#?}");
    assert!(!states.iter().any(|s| s == "confirmed"), "{bodies:#?}");
    finished(uas, "the callee", &h);
}

/// send_publish_flag -1: without the phones' domain as an alias, nothing is published.
#[test]
fn foreign_domains_publish_nothing() {
    let h = blf("pua-dialoginfo-foreign", None, &[]);
    let (uas, port) = callee(&h, "dlg_callee", 300);
    let uac = caller(&h, "dlg_caller", port, 300);
    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
    std::thread::sleep(Duration::from_millis(500));
    let p = h.result("presence.presentity_list", json!([]));
    assert_eq!(p.as_array().map_or(0, Vec::len), 0, "{p}\n{}", h.log());
}

/// send_publish_flag set on the INVITE publishes without the local-URI check (no alias here);
/// disable_caller_publish_flag on the INVITE leaves the caller dark, and the callee's body
/// shows caller_entity_when_publish_disabled as its peer.
#[test]
fn message_flags_of_the_invite() {
    let h = blf_with(
        "pua-dialoginfo-flags",
        None,
        &[
            "send_publish_flag = 8",
            "disable_caller_publish_flag = 7",
            "caller_entity_when_publish_disabled = \"sip:reception@sip.test\"",
        ],
        &["setflag(8)", "setflag(7)"],
    );
    let mut wa = watch(&h, "caller");
    let mut wb = watch(&h, "callee");
    let (uas, port) = callee(&h, "dlg_callee_late_ring", 300);
    let uac = caller(&h, "dlg_caller", port, 300);
    let (states, bodies) = follow(&mut wb, &h);
    assert_eq!(states, ["early", "confirmed", "terminated"], "{bodies:#?}");
    let early = with_state(&bodies, "early");
    assert!(early.contains("<identity>sip:reception@sip.test</identity>"), "{early}");
    assert!(!early.contains("<identity>sip:caller@sip.test</identity>"), "{early}");
    if let Some(n) = next_notify(&mut wa, Duration::from_millis(300)) {
        panic!("the disabled caller published:\n{n}");
    }
    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
    let p = h.result("presence.presentity_list", json!([]));
    assert_eq!(p.as_array().map_or(0, Vec::len), 1, "only the callee: {p}");
}

/// send_publish_flag set but not on the INVITE: nothing is published, local URIs included.
#[test]
fn send_publish_flag_missing_publishes_nothing() {
    let h = blf("pua-dialoginfo-noflag", Some("sip.test"), &["send_publish_flag = 8"]);
    let (uas, port) = callee(&h, "dlg_callee", 300);
    let uac = caller(&h, "dlg_caller", port, 300);
    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
    std::thread::sleep(Duration::from_millis(500));
    let p = h.result("presence.presentity_list", json!([]));
    assert_eq!(p.as_array().map_or(0, Vec::len), 0, "{p}\n{}", h.log());
}

/// use_pubruri_avps: the caller's state is published to each URI of its AVP (set in the
/// route with set_avp), not to its From URI.
#[test]
fn pubruri_avps_choose_where_to_publish() {
    let h = blf_with(
        "pua-dialoginfo-avps",
        Some("sip.test"),
        &["use_pubruri_avps = 1", "pubruri_caller_avp = \"$avp(s:blf_a)\"", "pubruri_callee_avp = \"$avp(s:blf_b)\""],
        &["set_avp(blf_a, sip:desk@sip.test)"],
    );
    let mut wd = watch(&h, "desk");
    let mut wa = watch(&h, "caller");
    let (uas, port) = callee(&h, "dlg_callee_late_ring", 300);
    let uac = caller(&h, "dlg_caller", port, 300);
    let (states, bodies) = follow(&mut wd, &h);
    assert_eq!(states, ["trying", "early", "confirmed", "terminated"], "{bodies:#?}");
    assert!(with_state(&bodies, "confirmed").contains("direction=\"initiator\""));
    if let Some(n) = next_notify(&mut wa, Duration::from_millis(300)) {
        panic!("published to the From URI too:\n{n}");
    }
    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
}

/// Kamailio 5.6 (Debian's presence + presence_dialoginfo) as the presence server: pua's
/// outbound proxy is Kamailio, so every PUBLISH of pua_dialoginfo goes there. Kamailio accepts
/// them (its presentity table holds the caller's and the callee's dialog-info) and its NOTIFYs
/// to a watcher subscribed to it with `Event: dialog` follow the call through trying, early,
/// confirmed and terminated.
#[test]
fn kamailio_presence_dialoginfo_accepts_the_publishes() {
    // One worker: Debian's db_sqlite has no busy timeout, so two workers storing the caller's
    // and the callee's PUBLISH at once fail with `database is locked`.
    let mut k = e2e::kamailio::Kamailio::start_presence_with(
        "children=1\nloadmodule \"presence_dialoginfo.so\"\nmodparam(\"presence_dialoginfo\", \"force_single_dialog\", 0)",
    );
    let config = blf_config(Some("sip.test"), &[], &[]);
    let proxy = "outbound_proxy = \"sip:127.0.0.1:@SIP@\"";
    assert!(config.contains(proxy), "configs/blf.toml's pua section changed: {config}");
    let h =
        Host::start("pua-dialoginfo-kamailio", &config.replace(proxy, &format!("outbound_proxy = \"{}\"", k.uri())));
    let klog = || k.log();
    let mut wa = watch_at(k.addr(), "caller", &klog);
    let mut wb = watch_at(k.addr(), "callee", &klog);
    let (uas, port) = callee(&h, "dlg_callee_late_ring", 1000);
    let uac = caller(&h, "dlg_caller", port, 1000);
    let ((states, bodies), (callee_states, callee_bodies)) = std::thread::scope(|s| {
        let ta = s.spawn(|| follow_at(&mut wa, &klog));
        let tb = s.spawn(|| follow_at(&mut wb, &klog));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_eq!(states, ["trying", "early", "confirmed", "terminated"], "caller via Kamailio: {bodies:#?}");
    assert_eq!(callee_states, ["early", "confirmed", "terminated"], "callee via Kamailio: {callee_bodies:#?}");
    let early = with_state(&bodies, "early");
    assert!(early.contains("entity=\"sip:caller@sip.test\"") && early.contains("direction=\"initiator\""), "{early}");
    let rows = k.presentity();
    for user in ["caller", "callee"] {
        assert!(
            rows.iter().any(|r| r.username == user && r.event == "dialog" && r.body.contains("<dialog-info")),
            "Kamailio stored {user}'s dialog-info: {:?}",
            rows.iter().map(|r| (&r.username, &r.event)).collect::<Vec<_>>()
        );
    }
    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
    let log = k.log();
    assert!(!log.contains("ERROR: presence"), "Kamailio refused something:\n{log}");
    assert!(!h.log().contains("PUBLISH for"), "no PUBLISH failed:\n{}", h.log());
    k.stop();
}

/// The shipped config passes `puahost check`.
#[test]
fn shipped_blf_config_checks() {
    let out = e2e::cli(&["check", "-c", root().join("configs/blf.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The dialog of `call_id` in `dlg.list`, if any.
fn listed(h: &Host, call_id: &str) -> Option<serde_json::Value> {
    let list = h.result("dlg.list", json!([]));
    list.as_array()?.iter().find(|d| d["call-id"] == call_id).cloned()
}

fn dialog_id(b: &str) -> &str {
    b.split("dialog id=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("")
}

/// Persistence (dialog's db_mode with Kamailio's `dialog` table): a call is confirmed, the
/// host is killed (db_mode 1 and 2: nothing runs at exit) or stopped (db_mode 3: written at
/// shutdown) and started again while the phones hold the call. The dialog is read back as it
/// was (ids, tags, CSeqs, route sets, contacts, timeout) and the caller's BYE still publishes
/// `terminated` under the same dialog id, through pua_dialoginfo's callbacks on the loaded
/// dialog. Afterwards the row is gone: a second restart loads nothing.
fn restart_mid_call(db: &e2e::dbs::Database, db_mode: u8) {
    restart_mid_call_with(db, db_mode, &[]);
}

/// [`restart_mid_call`] with `overrides` for pua_dialoginfo.
fn restart_mid_call_with(db: &e2e::dbs::Database, db_mode: u8, overrides: &[&str]) {
    let dialog = format!("[modparam.dialog]\ndb_url = \"{}\"\ndb_mode = {db_mode}\ndb_update_period = 1\n", db.url);
    let config = blf_config(Some("sip.test"), overrides, &[]).replace("[modparam.dialog]\n", &dialog);
    let mut h = Host::start(&format!("pua-dialoginfo-restart-{}-{db_mode}", db.kind), &config);
    let mut before = watch(&h, "caller");
    let (uas, port) = callee(&h, "dlg_callee", 0);
    let uac = caller(&h, "dlg_caller", port, 7000);
    let mut confirmed = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while confirmed.is_none() && Instant::now() < deadline {
        if let Some(n) = next_notify(&mut before, Duration::from_millis(200))
            && state(body(&n)) == Some("confirmed")
        {
            confirmed = Some(body(&n).to_string());
        }
    }
    let confirmed = confirmed.unwrap_or_else(|| panic!("no confirmed state\n{}", h.log()));
    let id = dialog_id(&confirmed).to_string();
    assert!(id.starts_with("padi-"), "{confirmed}");
    let mut was = None;
    assert!(
        e2e::eventually(Duration::from_secs(3), || {
            was = h.result("dlg.list", json!([])).as_array().and_then(|l| l.first().cloned());
            was.as_ref().is_some_and(|d| d["state"] == 4)
        }),
        "the ACK confirmed the dialog: {was:?}"
    );
    let was = was.unwrap();
    // db_mode 1 writes right after the change is in memory (so `dlg.list` can show state 4 a
    // moment before the row does); db_mode 2 writes every db_update_period (1 s).
    std::thread::sleep(Duration::from_millis(if db_mode == 2 { 2500 } else { 500 }));
    if db_mode == 3 {
        h.stop();
    } else {
        h.kill();
    }
    h.restart();
    let call_id = was["call-id"].as_str().unwrap();
    let now = listed(&h, call_id).unwrap_or_else(|| panic!("not loaded back\n{}", h.log()));
    for key in ["h_entry", "h_id", "call-id", "from_uri", "to_uri", "state", "start_ts", "timeout", "caller", "callee"]
    {
        assert_eq!(now[key], was[key], "{key} after the restart: {now:#}\nbefore: {was:#}");
    }
    assert!(!was["callee"]["route_set"].as_str().unwrap_or("").is_empty(), "{was:#}");
    let mut after = watch(&h, "caller");
    let (states, bodies) = follow(&mut after, &h);
    assert_eq!(states.last().map(String::as_str), Some("terminated"), "{bodies:#?}");
    let terminated = with_state(&bodies, "terminated");
    assert_eq!(dialog_id(terminated), id, "the same dialog: {terminated}");
    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
    assert!(listed(&h, call_id).is_none(), "ended by the BYE");
    std::thread::sleep(Duration::from_millis(if db_mode == 2 { 2500 } else { 100 }));
    h.stop();
    h.restart();
    assert_eq!(h.result("dlg.list", json!([])), json!([]), "the row was deleted at the BYE\n{}", h.log());
}

e2e::database_tests! {
    restart_mid_call_sqlite_realtime: "sqlite", |db| restart_mid_call(db, 1);
    restart_mid_call_sqlite_delayed: "sqlite", |db| restart_mid_call(db, 2);
    restart_mid_call_sqlite_shutdown: "sqlite", |db| restart_mid_call(db, 3);
    restart_mid_call_postgres_realtime: "postgres", |db| restart_mid_call(db, 1);
    restart_mid_call_mariadb_realtime: "mariadb", |db| restart_mid_call(db, 1);
    // A disable flag configured (not set on the INVITE): pua_dialoginfo keeps per-dialog marks,
    // and a loaded dialog gets its marks from the LOADED callback, or would publish nothing.
    restart_mid_call_sqlite_with_marks: "sqlite", |db| restart_mid_call_with(db, 1, &["disable_callee_publish_flag = 7"]);
}

/// Runs `sql` on the SQLite file of `db` (python3's sqlite3: no sqlite3 CLI on the test
/// machines).
fn sqlite_exec(db: &e2e::dbs::Database, sql: &str) {
    let path = db.url.strip_prefix("sqlite://").expect("a SQLite URL");
    let out = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.commit()"])
        .arg(path)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{sql}: {}", text(&out));
}

/// Rows of Kamailio's `dialog` table written elsewhere (Kamailio's own rows have no `xdata`)
/// are loaded; rows that are not dialogs (a CSeq that is no number, no Call-ID, an unknown
/// state) are logged and skipped without stopping the host; a loaded dialog whose timeout has
/// passed expires at once and its row goes.
#[test]
fn rows_from_the_table_are_checked_when_loaded() {
    let db = e2e::dbs::sqlite();
    let dialog = format!("[modparam.dialog]\ndb_url = \"{}\"\ndb_mode = 1\n", db.url);
    let config = blf_config(Some("sip.test"), &[], &[]).replace("[modparam.dialog]\n", &dialog);
    let mut h = Host::start("pua-dialoginfo-dialog-rows", &config);
    h.stop(); // the table exists now
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let row = |h_id: u32, call_id: &str, cseq: &str, state: u32, timeout: i64| {
        format!(
            "INSERT INTO dialog (hash_entry, hash_id, callid, from_uri, from_tag, to_uri, to_tag, caller_cseq, callee_cseq, caller_contact, callee_contact, caller_sock, callee_sock, state, start_time, timeout, req_uri) VALUES (7, {h_id}, '{call_id}', 'sip:caller@sip.test', 'ft', 'sip:callee@sip.test', 'tt', '{cseq}', '1', 'sip:caller@127.0.0.1:1', 'sip:callee@127.0.0.1:2', 'udp:127.0.0.1:5060', 'udp:127.0.0.1:5060', {state}, {}, {timeout}, 'sip:callee@sip.test');",
            now - 10
        )
    };
    sqlite_exec(
        &db,
        &[
            row(40, "good", "3", 4, now + 3600),
            row(41, "old", "2", 4, now - 5),
            row(42, "bad-cseq", "x1", 4, now + 3600),
            row(43, "", "2", 4, now + 3600),
            row(44, "bad-state", "2", 9, now + 3600),
        ]
        .concat(),
    );
    h.restart();
    let good = listed(&h, "good").unwrap_or_else(|| panic!("not loaded\n{}", h.log()));
    assert_eq!((good["h_entry"].as_i64(), good["h_id"].as_i64(), good["state"].as_i64()), (Some(7), Some(40), Some(4)));
    assert_eq!(good["caller"]["cseq"], "3");
    assert_eq!((good["init_ts"].as_i64(), good["start_ts"].as_i64()), (Some(now - 10), Some(now - 10)), "{good:#}");
    assert_eq!(good["timeout"].as_i64(), Some(now + 3600));
    for skipped in ["bad-cseq", "bad-state"] {
        assert!(listed(&h, skipped).is_none(), "{skipped} loaded");
    }
    let log = h.log();
    assert!(log.contains("caller_cseq `x1` is not a CSeq") && log.contains("no Call-ID"), "{log}");
    assert!(log.contains("2 dialogs loaded from the database (1 rows skipped)"), "good, old; bad-state: {log}");
    assert!(e2e::eventually(Duration::from_secs(3), || listed(&h, "old").is_none()), "the old dialog expired");
    let rows = e2e::kamailio::query(
        std::path::Path::new(db.url.strip_prefix("sqlite://").unwrap()),
        "SELECT callid FROM dialog",
    );
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["callid"].as_str()).collect();
    assert!(ids.contains(&"good") && !ids.contains(&"old"), "the expired dialog's row is deleted: {ids:?}");
    assert!(h.alive());
    assert_eq!(h.result("dlg.stats_active", json!([]))["active"]["all"], 1);
}

/// A database that fails under a running host (its dialog table dropped) costs the writes,
/// not the calls: each failed write is logged, the call is tracked and published to its end.
#[test]
fn failed_dialog_writes_do_not_stop_calls() {
    let db = e2e::dbs::sqlite();
    let dialog = format!("[modparam.dialog]\ndb_url = \"{}\"\ndb_mode = 1\n", db.url);
    let config = blf_config(Some("sip.test"), &[], &[]).replace("[modparam.dialog]\n", &dialog);
    let mut h = Host::start("pua-dialoginfo-dialog-db-fails", &config);
    sqlite_exec(&db, "DROP TABLE dialog;");
    let mut w = watch(&h, "caller");
    let (uas, port) = callee(&h, "dlg_callee", 0);
    let uac = caller(&h, "dlg_caller", port, 300);
    let (states, bodies) = follow(&mut w, &h);
    assert_eq!(states.last().map(String::as_str), Some("terminated"), "{bodies:#?}");
    assert!(states.iter().any(|s| s == "confirmed"), "{bodies:#?}");
    finished(uac, "the caller", &h);
    finished(uas, "the callee", &h);
    assert!(h.log().contains("dialog: writing"), "the failed write is logged:\n{}", h.log());
    assert!(h.alive());
    assert_eq!(h.result("dlg.list", json!([])), json!([]));
}
