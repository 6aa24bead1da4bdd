//! The dialog module end to end: sipp phones call each other through the proxy
//! (`record_route()`, `dlg_manage()`, `t_relay()`), and `dlg.list` shows each dialog's state
//! as Kamailio numbers it: 2 while the callee rings, 4 after the ACK, gone after the BYE from
//! either side, after a 486, after a CANCEL (through the 487), and after `default_timeout`.
//! The `testdlg` module (tests/plugins/testdlg) records the dialog API's callbacks: their
//! types, directions, states and triggering messages are checked for each call.

use std::process::Child;
use std::time::{Duration, Instant};

use e2e::sip::{Client, header, request, status};
use e2e::{Host, eventually, sipp_call as sipp, text};
use serde_json::{Value, json};

/// A proxy with the dialog module; `timeout` is `default_timeout`.
fn proxy(name: &str, timeout: u32) -> Host {
    let config = format!(
        r#"loadmodule = ["dialog", "testdlg"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.dialog]
default_timeout = {timeout}
[[route]]
method = "INVITE"
do = ["record_route()", "dlg_manage()", "t_relay()"]
[[route]]
method = ["ACK", "BYE"]
do = ["dlg_manage()", "t_relay()"]
"#
    );
    Host::start(name, &config)
}

/// The callee on `port`.
fn callee(host: &Host, name: &str, port: u16, pause_ms: u32) -> Child {
    sipp(host, name, &["-p", &port.to_string()], pause_ms)
}

/// The caller, sending to the proxy, calling the callee on `callee_port`.
fn caller(host: &Host, name: &str, callee_port: u16, pause_ms: u32) -> Child {
    let proxy = format!("127.0.0.1:{}", host.sip);
    sipp(
        host,
        name,
        &[proxy.as_str(), "-p", &e2e::free_port().to_string(), "-key", "callee_port", &callee_port.to_string()],
        pause_ms,
    )
}

fn finished(child: Child, what: &str, host: &Host) {
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{what} failed: {}\n{}", text(&out), host.log());
}

fn dialogs(host: &Host) -> Vec<Value> {
    host.result("dlg.list", json!([])).as_array().cloned().unwrap_or_default()
}

/// Waits until `dlg.list` holds one dialog in `state`; returns it.
fn wait_state(host: &Host, state: u64) -> Value {
    let mut last = Vec::new();
    let ok = eventually(Duration::from_secs(5), || {
        last = dialogs(host);
        last.len() == 1 && last[0]["state"] == state
    });
    assert!(ok, "no dialog in state {state}: {last:?}\n{}", host.log());
    last.remove(0)
}

/// Waits until the dialog API's callbacks recorded by testdlg are `want` (each `TYPE direction
/// state trigger`, the trigger being the message's method or status, `-` without one).
fn wait_events(host: &Host, want: &[&str]) {
    let mut got: Vec<String> = Vec::new();
    let ok = eventually(Duration::from_secs(5), || {
        let more = host.result("testdlg.events", json!([]));
        for e in more.as_array().unwrap() {
            let e = e.as_str().unwrap();
            got.push(e.split(' ').take(4).collect::<Vec<_>>().join(" "));
        }
        got.len() >= want.len()
    });
    assert!(ok && got == want, "callbacks: got {got:?}, want {want:?}\n{}", host.log());
}

fn wait_gone(host: &Host) {
    let mut last = Vec::new();
    let ok = eventually(Duration::from_secs(5), || {
        last = dialogs(host);
        last.is_empty()
    });
    assert!(ok, "the dialog is still listed: {last:?}\n{}", host.log());
}

/// INVITE / 180 / 200 / ACK / BYE from the caller: unconfirmed, early while it rings (with the
/// callee's tag and contact), confirmed after the ACK (with start time and timeout), then gone.
#[test]
fn call_rings_is_answered_and_the_caller_hangs_up() {
    let host = proxy("dlg-call", 43200);
    let port = e2e::free_port();
    let uas = callee(&host, "dlg_callee", port, 1500);
    let uac = caller(&host, "dlg_caller", port, 1500);

    let d = wait_state(&host, 2);
    assert_eq!(d["from_uri"], "sip:caller@sip.test", "{d}");
    assert_eq!(d["to_uri"], "sip:callee@sip.test", "{d}");
    assert!(d["caller"]["tag"].as_str().unwrap().contains("SIPpTag00"), "{d}");
    assert!(d["callee"]["tag"].as_str().unwrap().contains("SIPpTag01"), "{d}");
    assert_eq!(d["callee"]["contact"], format!("sip:callee@127.0.0.1:{port}"), "{d}");
    assert!(d["caller"]["contact"].as_str().unwrap().starts_with("sip:caller@127.0.0.1:"), "{d}");
    assert_eq!(d["caller"]["cseq"], "1", "{d}");
    assert_eq!(d["caller"]["socket"], format!("udp:127.0.0.1:{}", host.sip), "{d}");
    assert_eq!(d["start_ts"], 0, "not answered yet: {d}");
    assert_eq!(d["lifetime"], 43200, "{d}");
    let call_id = d["call-id"].as_str().unwrap().to_string();
    let from_tag = d["caller"]["tag"].as_str().unwrap().to_string();

    let d = wait_state(&host, 4);
    let start = d["start_ts"].as_i64().unwrap();
    assert!(start > 0, "{d}");
    assert_eq!(d["timeout"].as_i64().unwrap(), start + 43200, "{d}");
    assert!(d["callee"]["route_set"].as_str().unwrap().contains(&format!("127.0.0.1:{};lr", host.sip)), "{d}");
    let one = host.result("dlg.dlg_list", json!([call_id, from_tag]));
    assert_eq!(one["h_id"], d["h_id"], "{one}");
    let stats = host.result("dlg.stats_active", json!([]));
    assert_eq!(stats["active"]["ongoing"], 1, "{stats}");

    wait_gone(&host);
    finished(uac, "the caller", &host);
    finished(uas, "the callee", &host);
    let r = host.rpc("dlg.dlg_list", json!([call_id, from_tag]));
    assert_eq!(r["error"]["code"], 404, "{r}");
    wait_events(
        &host,
        &["CREATED 1 1 INVITE", "EARLY 2 2 180", "CONFIRMED_NA 2 3 200", "CONFIRMED 1 4 ACK", "TERMINATED 1 5 BYE"],
    );
}

/// The callee hangs up: its BYE (upstream, tags swapped) ends the dialog too.
#[test]
fn the_callee_hangs_up() {
    let host = proxy("dlg-callee-bye", 43200);
    let port = e2e::free_port();
    let uas = callee(&host, "dlg_callee_hangs_up", port, 1500);
    let uac = caller(&host, "dlg_caller_hung_up_on", port, 0);
    wait_state(&host, 4);
    wait_gone(&host);
    finished(uas, "the callee", &host);
    finished(uac, "the caller", &host);
    wait_events(&host, &["CREATED 1 1 INVITE", "CONFIRMED_NA 2 3 200", "CONFIRMED 1 4 ACK", "TERMINATED 2 5 BYE"]);
}

/// `dlg.end_dlg h_entry h_id` ends a confirmed call with a BYE to each side;
/// `dlg.terminate_dlg` needs the dialog's three identifiers.
#[test]
fn end_dlg_sends_byes_both_ways() {
    let host = proxy("dlg-end", 43200);
    let port = e2e::free_port();
    let uas = callee(&host, "dlg_callee", port, 0);
    let uac = caller(&host, "dlg_caller_hung_up_on", port, 0);
    let d = wait_state(&host, 4);
    let r = host.rpc("dlg.terminate_dlg", json!([d["call-id"], d["caller"]["tag"], "not-the-to-tag"]));
    assert_eq!(r["error"]["code"], 404, "{r}");
    host.result("dlg.end_dlg", json!([d["h_entry"], d["h_id"]]));
    assert!(dialogs(&host).is_empty());
    finished(uas, "the callee", &host);
    finished(uac, "the caller", &host);
    wait_events(
        &host,
        &["CREATED 1 1 INVITE", "EARLY 2 2 180", "CONFIRMED_NA 2 3 200", "CONFIRMED 1 4 ACK", "TERMINATED 0 5 -"],
    );
    let r = host.rpc("dlg.end_dlg", json!([d["h_entry"], d["h_id"]]));
    assert_eq!(r["error"]["code"], 404, "{r}");
}

/// 486 Busy Here: the dialog fails and is removed; the failure is counted.
#[test]
fn busy_callee_fails_the_dialog() {
    let host = proxy("dlg-busy", 43200);
    let port = e2e::free_port();
    let uas = callee(&host, "dlg_callee_busy", port, 0);
    let uac = caller(&host, "dlg_caller_busy", port, 0);
    finished(uac, "the caller", &host);
    finished(uas, "the callee", &host);
    wait_gone(&host);
    let (_, metrics) = e2e::http_request(host.http.unwrap(), "GET", "/metrics", "");
    assert!(metrics.contains("puahost_dialog_failed_dialogs_total 1"), "{metrics}");
    assert!(metrics.contains("puahost_dialog_processed_dialogs_total 1"), "{metrics}");
    wait_events(&host, &["CREATED 1 1 INVITE", "FAILED 2 5 486"]);
}

/// CANCEL while the callee rings: early, then gone once the 487 comes back.
#[test]
fn cancel_before_answer_ends_the_dialog() {
    let host = proxy("dlg-cancel", 43200);
    let port = e2e::free_port();
    let uas = callee(&host, "uas_ring_cancel", port, 0);
    let mut c = Client::udp(host.sip_addr());
    let invite = request(&c, "INVITE", &format!("sip:callee@127.0.0.1:{port}"), &[], "");
    c.send(invite.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while !got.contains(&180) && Instant::now() < deadline {
        if let Some(r) = c.recv(Duration::from_secs(1)) {
            got.push(status(&r));
        }
    }
    assert!(got.contains(&180), "{got:?}\n{}", host.log());
    let d = wait_state(&host, 2);
    assert_eq!(d["from_uri"], "sip:tester@sip.test", "{d}");

    let cancel = invite.replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    c.send(cancel.as_bytes());
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let r = c.recv(Duration::from_secs(3)).unwrap_or_else(|| panic!("got {finals:?}\n{}", host.log()));
        finals.push((status(&r), header(&r, "CSeq").unwrap_or_default()));
    }
    finals.sort();
    assert_eq!(finals, vec![(200, "1 CANCEL".to_string()), (487, "1 INVITE".to_string())]);
    let ack = invite.replacen("INVITE sip", "ACK sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    c.send(ack.as_bytes());
    wait_gone(&host);
    finished(uas, "the callee", &host);
    wait_events(&host, &["CREATED 1 1 INVITE", "EARLY 2 2 180", "FAILED 2 5 487"]);
}

/// `default_timeout`: a confirmed dialog is removed when its lifetime runs out (no BYE is
/// sent); the late BYE is still relayed.
#[test]
fn dialog_expires_after_default_timeout() {
    let host = proxy("dlg-expire", 2);
    let port = e2e::free_port();
    let uas = callee(&host, "dlg_callee", port, 0);
    let uac = caller(&host, "dlg_caller", port, 5000);
    let d = wait_state(&host, 4);
    assert_eq!(d["lifetime"], 2, "{d}");
    wait_gone(&host);
    let (_, metrics) = e2e::http_request(host.http.unwrap(), "GET", "/metrics", "");
    assert!(metrics.contains("puahost_dialog_expired_dialogs_total 1"), "{metrics}");
    wait_events(
        &host,
        &["CREATED 1 1 INVITE", "EARLY 2 2 180", "CONFIRMED_NA 2 3 200", "CONFIRMED 1 4 ACK", "EXPIRED 0 5 -"],
    );
    finished(uac, "the caller", &host);
    finished(uas, "the callee", &host);
}
