//! `pua_mi` end to end against Kamailio's presence server (Debian's kamailio 5.6, started per
//! test): `pua.publish` over HTTP, over the FIFO and through the real `kamctl`, `pua.subscribe`
//! with `pua.last_notify`, the MI-era forms, `pua_rpc` as the module's other name, the
//! `puahost rpc` named options, the example script, and every fault of reference §3.

use std::process::Command;
use std::time::Duration;

use e2e::kamailio::Kamailio;
use e2e::{Host, TempDir, eventually, fifo_call, text};
use serde_json::{Value, json};

const PIDF_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="t1"><status><basic>open</basic></status><note>at the desk</note></tuple></presence>"#;

/// A host with pua + pua_mi (or `module`, e.g. "pua_rpc") publishing to `kam`; its FIFO
/// answers in `reply_dir` (kamctl reads its reply in /tmp).
fn host(name: &str, module: &str, kam: &Kamailio, reply_dir: Option<&std::path::Path>) -> Host {
    let dir = TempDir::new(name);
    let replies = reply_dir.map_or_else(|| dir.path().to_path_buf(), std::path::Path::to_path_buf);
    let config = format!(
        r#"loadmodule = ["pua", "{module}"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
fifo = "{fifo}"
fifo_reply_dir = "{replies}"
[modparam.pua]
db_url = "sqlite://pua.sqlite"
update_period = 10
outbound_proxy = "{proxy}"
[[route]]
method = "NOTIFY"
do = ["pua_update_contact()", "pua_mi_notify()"]
on_fail = "481 Call/Transaction Does Not Exist"
"#,
        fifo = dir.join("rpc.fifo").display(),
        replies = replies.display(),
        proxy = kam.uri(),
    );
    Host::start_in(dir, &config)
}

fn kamailio() -> Kamailio {
    Kamailio::start_presence_with("children=1")
}

fn fault(r: &Value) -> (i64, String) {
    (r["error"]["code"].as_i64().unwrap_or(0), r["error"]["message"].as_str().unwrap_or("").to_string())
}

fn publish_params(uri: &str, expires: &str, etag: &str, body: Option<&str>) -> Value {
    let mut p = vec![
        json!(uri),
        json!(expires),
        json!("presence"),
        json!("."),
        json!("."),
        json!(etag),
        json!("."),
        json!("."),
    ];
    if let Some(b) = body {
        p.push(json!(b));
    }
    Value::Array(p)
}

/// pua.publish over HTTP: the body lands in presentity and the ETag comes back; a publish
/// with that ETag modifies the same row; expires 0 removes it. Over the FIFO too.
#[test]
fn publish_modify_remove_over_http_and_fifo() {
    let kam = kamailio();
    let host = host("puami-publish", "pua_mi", &kam, None);
    let alice = "sip:alice@example.com";

    let r = host.result("pua.publish", publish_params(alice, "3600", ".", Some(PIDF_OPEN)));
    let rows = kam.presentity();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].body.contains("at the desk"), "{}", rows[0].body);
    assert_eq!(r["SIP-ETag"], rows[0].etag.as_str(), "{r}");
    assert_eq!(r["Expires"], 3601, "the server's Expires (pua asks for expires + 1): {r}");

    // Modify with the ETag we got: same row, new body.
    let etag = r["SIP-ETag"].as_str().unwrap().to_string();
    let busy = PIDF_OPEN.replace("at the desk", "in a meeting");
    let r2 = host.result("pua.publish", publish_params(alice, "3600", &etag, Some(&busy)));
    let rows = kam.presentity();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].body.contains("in a meeting"));
    assert_eq!(r2["SIP-ETag"], rows[0].etag.as_str());

    // Over the FIFO: pua.publish waits for its reply there too (Kamailio: fault 500).
    let fifo = host.dir.join("rpc.fifo");
    let lunch = PIDF_OPEN.replace("at the desk", "at lunch");
    let req = json!({"jsonrpc": "2.0", "method": "pua.publish", "params": publish_params(alice, "3600", ".", Some(&lunch)), "reply_name": "puami_reply", "id": 7});
    let r3 = fifo_call(&fifo, host.dir.path(), &req.to_string(), "puami_reply");
    assert!(r3["result"]["SIP-ETag"].is_string(), "{r3}");
    assert!(kam.presentity()[0].body.contains("at lunch"));

    // Remove.
    let r4 = host.result("pua.publish", publish_params(alice, "0", ".", None));
    assert_eq!(r4["Expires"], 0, "{r4}");
    assert!(eventually(Duration::from_secs(5), || kam.presentity().is_empty()), "{:?}", kam.presentity());
    // Removing what is not there answers at once (Kamailio leaves the call waiting).
    assert_eq!(host.result("pua.publish", publish_params(alice, "0", ".", None)), Value::Null);
}

/// Debian's kamctl, pointed at our FIFO, publishes unchanged (expires as `s:3600`, kamctl's
/// `=` mode for CRLF), and the historic MI command and pua_rpc module name work.
#[test]
fn kamctl_and_the_mi_form_and_pua_rpc() {
    let kam = kamailio();
    let host = host("puami-kamctl", "pua_rpc", &kam, Some(std::path::Path::new("/tmp")));
    let run = |args: &[&str]| {
        let out = Command::new("timeout")
            .arg("20")
            .arg("kamctl")
            .args(args)
            .env("RPCFIFOPATH", host.dir.join("rpc.fifo"))
            .output()
            .expect("kamctl is missing: run scripts/install-test-deps.sh (Debian package kamailio)");
        assert!(out.status.success(), "kamctl {args:?}: {}\n{}", text(&out), host.log());
        text(&out)
    };
    // kamctl writes arguments between double quotes without escaping them: XML for kamctl
    // uses single quotes.
    let body = PIDF_OPEN.replace("alice", "bob").replace('"', "'");
    let out = run(&[
        "rpc",
        "=",
        "pua.publish",
        "sip:bob@example.com",
        "s:3600",
        "presence",
        ".",
        ".",
        ".",
        ".",
        "X-Script: kamctl=CRLF=",
        &body,
    ]);
    assert!(out.contains("\"SIP-ETag\""), "{out}");
    // With double quotes the request is not JSON: kamctl gets a parse error instead of waiting
    // forever (as it does with Kamailio).
    let broken = PIDF_OPEN.replace("alice", "bob");
    let out =
        run(&["rpc", "pua.publish", "sip:bob@example.com", "s:3600", "presence", ".", ".", ".", ".", ".", &broken]);
    assert!(out.contains("-32700") && out.contains("single quotes"), "{out}");
    assert_eq!(kam.presentity().len(), 1, "{:?}", kam.presentity());
    assert!(kam.log().contains("REQ PUBLISH sip:bob@example.com"), "{}", kam.log());

    // pua_publish (MI form: no outbound_proxy parameter by default).
    let mi = host.result(
        "pua_publish",
        json!(["sip:carol@example.com", "3600", "presence", ".", ".", ".", ".", PIDF_OPEN.replace("alice", "carol")]),
    );
    assert_eq!(mi["status"], "200 OK", "{mi}");
    assert_eq!(kam.presentity().len(), 2);
    let r = host.rpc("pua_subscribe", json!(["sip:carol@example.com", "not a uri", "presence", 60]));
    assert_eq!(fault(&r), (400, "Bad uri".into()));
}

/// pua.subscribe gets Kamailio's NOTIFY, which pua.last_notify shows; expires 0 ends that
/// subscription (Kamailio's pua_rpc cannot: check_remote_contact).
#[test]
fn subscribe_last_notify_and_unsubscribe() {
    let kam = kamailio();
    let host = host("puami-subscribe", "pua_mi", &kam, None);
    host.result("pua.publish", publish_params("sip:alice@example.com", "3600", ".", Some(PIDF_OPEN)));
    // The presentity is on Kamailio: subscribe to it there (pua.subscribe has no proxy
    // parameter, so the R-URI carries Kamailio's address).
    let pres = format!("sip:alice@127.0.0.1:{}", kam.sip_port);
    let watcher = format!("sip:watcher@127.0.0.1:{}", host.sip);
    let none = host.rpc("pua.last_notify", json!([pres]));
    assert_eq!(fault(&none).0, 404);
    assert_eq!(host.result("pua.subscribe", json!([pres, watcher, "presence", 600])), Value::Null);
    let got =
        eventually(Duration::from_secs(10), || host.rpc("pua.last_notify", json!([pres])).get("result").is_some());
    assert!(got, "{}\n{}", host.log(), kam.log());
    let last = host.result("pua.last_notify", json!([pres, watcher]));
    assert_eq!(last[0]["event"], "presence", "{last}");
    assert!(last[0]["subscription_state"].as_str().unwrap().starts_with("active"), "{last}");
    assert_eq!(kam.active_watchers().len(), 1);

    // Unsubscribe: the same dialog ends on Kamailio's side.
    assert_eq!(host.result("pua.subscribe", json!([pres, watcher, "presence", "0"])), Value::Null);
    let ended = eventually(Duration::from_secs(10), || {
        kam.active_watchers().is_empty()
            || host.result("pua.last_notify", json!([pres]))[0]["subscription_state"]
                .as_str()
                .unwrap_or("")
                .starts_with("terminated")
    });
    assert!(ended, "{:?}\n{}", kam.active_watchers(), host.log());
    let subs: Vec<Value> = host
        .result("pua.list", json!([]))
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "subscribe")
        .cloned()
        .collect();
    assert!(subs.is_empty(), "no dialog left behind: {subs:?}");
}

/// Every fault of reference §3.1/§3.2, and a non-200 final reply as a fault with its SIP code;
/// nothing is stored for a failed call.
#[test]
fn faults() {
    let kam = kamailio();
    let host = host("puami-faults", "pua_mi", &kam, None);
    let f = |method: &str, params: Value| fault(&host.rpc(method, params));
    let alice = "sip:alice@example.com";
    assert_eq!(f("pua.publish", json!([alice, "3600"])), (400, "Too few or wrong type of parameters (2)".into()));
    assert_eq!(
        f("pua.publish", publish_params("alice", "3600", ".", Some(PIDF_OPEN))),
        (400, "Invalid presentity uri 'alice'".into())
    );
    assert_eq!(
        f("pua.publish", publish_params(alice, "soon", ".", Some(PIDF_OPEN))),
        (400, "Invalid expires value 'soon'".into())
    );
    let mut p = publish_params(alice, "3600", ".", Some(PIDF_OPEN));
    p[2] = json!("nonsense");
    assert_eq!(f("pua.publish", p), (400, "Unknown event".into()));
    let mut p = publish_params(alice, "3600", ".", None);
    p[3] = json!("application/pidf+xml");
    assert_eq!(f("pua.publish", p), (400, "Body is missing".into()));
    assert_eq!(f("pua.publish", publish_params(alice, "3600", ".", None)), (400, "Body is missing".into()));
    assert_eq!(
        f("pua.send_publish", publish_params(alice, "3600", "a.no.such.etag", Some(PIDF_OPEN))),
        (500, "Wrong ETag".into())
    );
    assert_eq!(f("pua.subscribe", json!([alice])), (500, "Not enough parameters".into()));
    assert_eq!(f("pua.subscribe", json!(["x", "sip:w@h", "presence", 60])), (400, "Invalid presentity URI".into()));
    assert_eq!(f("pua.subscribe", json!([alice, "w", "presence", 60])), (400, "Invalid watcher URI".into()));
    assert_eq!(f("pua.subscribe", json!([alice, "sip:w@h", "nonsense", 60])), (404, "Unknown event".into()));
    // A final reply other than 2xx comes back as a fault with its code and reason: Kamailio
    // answers 400 to a PUBLISH whose body is not XML.
    let (code, reason) = f("pua.publish", json!([alice, "3600", "presence", ".", ".", ".", ".", ".", "not xml"]));
    assert!(code >= 400, "{code} {reason}");
    assert!(kam.presentity().is_empty());
    assert!(host.result("pua.list", json!([])).as_array().unwrap().is_empty(), "nothing half-stored");
    let mut h = host;
    assert!(h.alive());
}

/// `puahost rpc` named options, and the example script publishing this machine's status.
#[test]
fn named_options_and_the_example_script() {
    let kam = kamailio();
    let host = host("puami-cli", "pua_mi", &kam, None);
    let body_file = host.dir.write("status.xml", &PIDF_OPEN.replace("alice", "dave"));
    let out = e2e::cli(&[
        "rpc",
        "--url",
        &host.url(),
        "pua.publish",
        "--uri",
        "sip:dave@example.com",
        "--event",
        "presence",
        "--body-file",
        body_file.to_str().unwrap(),
        "--expires",
        "600",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SIP-ETag"), "{}", text(&out));
    assert!(kam.presentity().iter().any(|p| p.username == "dave"), "{:?}", kam.presentity());

    let script = e2e::root().join("examples/publish-system-status.sh");
    let out = Command::new(&script)
        .args(["-d", "example.org", "-i", "1", "-n", "2", "--", "--url", &host.url()])
        .env("PUAHOST", e2e::puahost())
        .output()
        .expect("run the example script");
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<_> = kam.presentity().into_iter().filter(|p| p.username == "system").collect();
    assert_eq!(rows.len(), 1, "two publishes of one series: one row ({rows:?})\n{}", text(&out));
    assert_eq!(rows[0].domain, "example.org");
    assert!(rows[0].body.contains("load ") && rows[0].body.contains("% used"), "{}", rows[0].body);
}
