//! RPC over HTTP, over the FIFO (Kamailio jsonrpcs protocol) and through `puahost rpc` and the
//! real `kamctl`: same answers, JSON-RPC errors for bad input, and a host that keeps serving
//! after a module's handler panics.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use e2e::{Host, cli, eventually, fifo_call, text};
use serde_json::{Value, json};

fn host_with_fifo(name: &str, children: u32) -> Host {
    let dir = e2e::TempDir::new(name);
    let reply_dir = dir.path().to_path_buf();
    host_with_fifo_replies(dir, children, &reply_dir)
}

/// A host whose FIFO replies go to `reply_dir` (kamctl always reads its reply in /tmp).
fn host_with_fifo_replies(dir: e2e::TempDir, children: u32, reply_dir: &std::path::Path) -> Host {
    let fifo = dir.join("puahost_rpc.fifo");
    let config = format!(
        r#"loadmodule = ["testmod", "testbind"]
[core]
children = {children}
modules_path = ["@MODULES@"]
[rpc]
http = "127.0.0.1:@HTTP@"
fifo = "{}"
fifo_reply_dir = "{}"
[modparam.testmod]
tick_ms = 20
"#,
        fifo.display(),
        reply_dir.display()
    );
    Host::start_in(dir, &config)
}

fn fifo(host: &Host) -> std::path::PathBuf {
    host.dir.join("puahost_rpc.fifo")
}

#[test]
fn version_is_the_same_over_every_transport() {
    let host = host_with_fifo("rpc-same", 2);
    let over_http = host.result("core.version", json!([]));
    assert!(over_http.as_str().unwrap().starts_with("puahost "), "{over_http}");

    let (status, raw) = host.post(r#"{"jsonrpc":"2.0","method":"core.version","id":7}"#);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), json!({"jsonrpc": "2.0", "result": over_http, "id": 7}));

    let via_fifo = fifo_call(
        &fifo(&host),
        host.dir.path(),
        r#"{"jsonrpc": "2.0", "method": "core.version", "reply_name": "e2e_receiver_1", "id": 8}"#,
        "e2e_receiver_1",
    );
    assert_eq!(via_fifo, json!({"jsonrpc": "2.0", "result": over_http, "id": 8}));

    let out = cli(&["rpc", "--url", &host.url(), "core.version"]);
    assert!(out.status.success(), "{}", text(&out));
    let cli_doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli_doc["result"], over_http);

    let out = cli(&[
        "rpc",
        "--fifo",
        fifo(&host).to_str().unwrap(),
        "--reply-dir",
        host.dir.path().to_str().unwrap(),
        "core.version",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["result"], over_http);

    let out = cli(&["rpc", "-c", host.config.to_str().unwrap(), "core.version"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["result"], over_http, "{}", text(&out));
}

/// The real kamctl from Debian's kamailio package, pointed at our FIFO.
#[test]
fn kamctl_rpc_works_unchanged() {
    let host = host_with_fifo_replies(e2e::TempDir::new("rpc-kamctl"), 2, std::path::Path::new("/tmp"));
    assert!(
        Command::new("kamctl").arg("version").output().is_ok(),
        "kamctl is missing: run scripts/install-test-deps.sh (Debian package kamailio)"
    );
    let run = |args: &[&str]| {
        // kamctl waits for its reply forever; a missing reply must fail the test, not hang it.
        let out = Command::new("timeout")
            .arg("20")
            .arg("kamctl")
            .args(args)
            .env("RPCFIFOPATH", fifo(&host))
            .output()
            .expect("run kamctl");
        assert!(out.status.success(), "kamctl {args:?} failed or timed out: {}\n{}", text(&out), host.log());
        text(&out)
    };
    let out = run(&["rpc", "core.version"]);
    assert!(out.contains("\"jsonrpc\": \"2.0\"") && out.contains("\"result\": \"puahost "), "{out}");
    // Numeric-looking arguments go as numbers, s: forces strings.
    let out = run(&["rpc", "testmod.echo", "3600", "s:3600", "sip:alice@example.com"]);
    assert!(out.contains("3600") && out.contains("\"3600\"") && out.contains("sip:alice@example.com"), "{out}");
    // A delayed reply over the FIFO (Kamailio only has those over HTTP).
    let out = run(&["rpc", "testmod.later", "30"]);
    assert!(out.contains("answered after 30 ms"), "{out}");
}

#[test]
fn bad_requests_get_jsonrpc_errors() {
    let host = host_with_fifo("rpc-bad", 2);
    let cases = [
        ("{not json", 500, -32700, "Parse error"),
        (r#"{"jsonrpc":"2.0","method":"no.such","id":1}"#, 500, 500, "Method Not Found"),
        (r#"{"jsonrpc":"2.0","params":[],"id":1}"#, 500, -32600, "Invalid Request"),
        (r#"{"jsonrpc":"1.0","method":"core.version","id":1}"#, 500, -32600, "Invalid Request"),
        (r#"{"jsonrpc":"2.0","method":"core.version","params":5,"id":1}"#, 500, -32602, "Invalid params"),
        (r#"[]"#, 500, -32600, "Invalid Request"),
        (r#"{"jsonrpc":"2.0","method":"testmod.fault","id":1}"#, 418, 418, "I'm a teapot"),
        (r#"{"jsonrpc":"2.0","method":"system.methodHelp","params":[],"id":1}"#, 400, 400, "Too few"),
    ];
    for (body, status, code, message) in cases {
        let (s, reply) = host.post(body);
        let doc: Value = serde_json::from_str(&reply).unwrap_or_else(|_| panic!("{body} -> {reply}"));
        assert_eq!(s, status, "{body} -> {reply}");
        assert_eq!(doc["error"]["code"], json!(code), "{body} -> {reply}");
        assert!(doc["error"]["message"].as_str().unwrap().contains(message), "{body} -> {reply}");
    }
    // A batch answers each request.
    let (_, reply) =
        host.post(r#"[{"jsonrpc":"2.0","method":"core.version","id":1},{"jsonrpc":"2.0","method":"x","id":2}, 3]"#);
    let doc: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(doc.as_array().unwrap().len(), 3);
    assert_eq!(doc[1]["error"]["message"], "Method Not Found");
    // Parameter names are ignored; their order is kept (as jsonrpcs).
    assert_eq!(host.result("testmod.echo", json!({"b": 1, "a": "x"})), json!([1, "x"]));
    // Wrong HTTP method / path.
    let (s, _) = e2e::http_request(host.http.unwrap(), "GET", "/RPC", "");
    assert_eq!(s, 405);

    // The FIFO: garbage and a malformed document are skipped, the next request is answered;
    // a reply_name that is a path is refused (nothing is written outside the reply dir).
    let mut f = std::fs::OpenOptions::new().write(true).open(fifo(&host)).unwrap();
    f.write_all(b"garbage line\n{\"broken\": \n}").unwrap();
    let evil = host.dir.join("evil");
    f.write_all(
        format!(
            r#"{{"jsonrpc":"2.0","method":"core.version","reply_name":"../{}/evil","id":1}}"#,
            host.dir.path().file_name().unwrap().to_str().unwrap()
        )
        .as_bytes(),
    )
    .unwrap();
    drop(f);
    let ok = fifo_call(
        &fifo(&host),
        host.dir.path(),
        r#"{"jsonrpc":"2.0","method":"testmod.echo","params":[1],"reply_name":"r2","id":3}"#,
        "r2",
    );
    assert_eq!(ok["result"], json!([1]));
    assert!(!evil.exists());
    assert_eq!(host.result("core.version", json!([])).as_str().map(|s| s.starts_with("puahost")), Some(true));
}

#[test]
fn a_panicking_handler_is_answered_and_the_host_goes_on() {
    let mut host = host_with_fifo("rpc-panic", 1);
    for _ in 0..3 {
        let r = host.rpc("testmod.panic", json!([]));
        assert_eq!(r["error"]["code"], 500, "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("module testmod"), "{r}");
        assert_eq!(host.result("testmod.echo", json!(["still here"])), json!(["still here"]));
    }
    let r = fifo_call(
        &fifo(&host),
        host.dir.path(),
        r#"{"jsonrpc":"2.0","method":"testmod.panic","reply_name":"p1","id":1}"#,
        "p1",
    );
    assert_eq!(r["error"]["code"], 500);
    // The exporter's API panicking inside another module's call is contained too.
    let r = host.rpc("testbind.echo", json!(["panic"]));
    assert!(r["error"]["message"].as_str().unwrap().contains("echo panicked"), "{r}");
    assert_eq!(host.result("testbind.echo", json!(["hi"])), json!("testmod says hi"));
    assert!(host.alive());
    let log = host.log();
    assert!(log.contains("testmod.panic was called"), "{log}");
    assert!(log.contains("module=testmod"), "{log}");
    let (_, metrics) = e2e::http_request(host.http.unwrap(), "GET", "/metrics", "");
    assert!(metrics.contains("puahost_module_errors_total 4"), "{metrics}");
}

/// Delayed replies over HTTP and FIFO with one worker: the handler returns at once and a timer
/// on the same single worker answers later; many such calls at once all complete.
#[test]
fn delayed_replies_with_one_worker() {
    let host = host_with_fifo("rpc-delayed", 1);
    assert_eq!(host.result("testmod.later", json!([50])), json!("answered after 50 ms"));
    let r = fifo_call(
        &fifo(&host),
        host.dir.path(),
        r#"{"jsonrpc":"2.0","method":"testmod.later","params":[20],"reply_name":"d1","id":1}"#,
        "d1",
    );
    assert_eq!(r["result"], "answered after 20 ms");
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let port = host.http.unwrap();
            std::thread::spawn(move || {
                e2e::http_post(
                    port,
                    "/RPC",
                    &json!({"jsonrpc": "2.0", "method": "testmod.later", "params": [100 + i], "id": i}).to_string(),
                )
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("answered after {} ms", 100 + i)), "{body}");
    }
    // A handler that drops its reply: the caller gets a fault instead of waiting forever.
    let r = host.rpc("testmod.drop", json!([]));
    assert!(r["error"]["message"].as_str().unwrap().contains("did not answer"), "{r}");
}

/// A panic on a module's own (supervised) thread is reported under the module's name and the
/// thread is restarted; the host is unaffected.
#[test]
fn a_panicking_module_thread_is_restarted() {
    let mut host = host_with_fifo("rpc-thread", 1);
    host.result("testmod.thread", json!(["start"]));
    assert!(
        eventually(Duration::from_secs(5), || host.result("testmod.thread", json!([])) == json!(2)),
        "{}",
        host.log()
    );
    let log = host.log();
    assert!(
        log.contains("thread flaky panicked")
            && log.contains("flaky thread dies on its first run")
            && log.contains("restarting in 1s"),
        "{log}"
    );
    assert!(log.contains("module=\"testmod\""), "{log}");
    assert!(host.alive());
}

#[test]
fn cli_arguments_follow_kamctl() {
    let host = host_with_fifo("rpc-cli", 2);
    let out = cli(&["rpc", "--url", &host.url(), "testmod.echo", "-5", "s:7", "i:8", "abc", "-x"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["result"], json!([-5, "7", 8, "abc", "-x"]));
    let out = cli(&["rpc", "--url", &host.url(), "=", "testmod.echo", "a=CRLF=b", "c=CRLF=d"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["result"], json!(["a=CRLF=b", "c\r\nd"]));
    let out = cli(&["rpc", "--url", &host.url(), "testmod.fault"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("I'm a teapot"));
}

#[test]
fn builtins_logs_timers_and_metrics() {
    let host = host_with_fifo("rpc-builtins", 2);
    let methods = host.result("system.listMethods", json!([]));
    for m in
        ["core.version", "core.uptime", "core.modules", "corex.debug", "log.level", "testmod.echo", "testbind.echo"]
    {
        assert!(methods.as_array().unwrap().contains(&json!(m)), "{m} missing from {methods}");
    }
    assert_eq!(host.result("system.methodHelp", json!(["testmod.echo"])), json!("returns its parameters"));
    assert_eq!(host.result("core.modules", json!([])), json!(["testmod", "testbind"]));
    assert!(host.result("core.uptime", json!([]))["uptime"].is_u64());

    // Module log lines reach the host's log with the module's name; the level changes at run time.
    host.result("testmod.log", json!([]));
    assert!(eventually(Duration::from_secs(5), || host.log().contains("testmod info line")));
    assert!(!host.log().contains("testmod debug line"));
    assert_eq!(host.result("corex.debug", json!([3])), json!(3));
    host.result("testmod.log", json!([]));
    assert!(eventually(Duration::from_secs(5), || host.log().contains("testmod debug line")), "{}", host.log());
    assert_eq!(host.result("log.level", json!(["warn"])), json!("warn"));
    assert_eq!(host.result("corex.debug", json!([])), json!(0));

    // The periodic timer runs on a worker.
    assert!(eventually(Duration::from_secs(5), || host.result("testmod.ticks", json!([])).as_u64().unwrap_or(0) >= 5));

    host.result("testmod.echo", json!([]));
    let (status, metrics) = e2e::http_request(host.http.unwrap(), "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(metrics.contains("puahost_testmod_echo_calls_total 1"), "{metrics}");
    assert!(metrics.contains("puahost_rpc_requests_total"), "{metrics}");
}
