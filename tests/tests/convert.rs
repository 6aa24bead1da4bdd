//! `puahost convert`: Kamailio configs into puahost configs that pass `puahost check`.
//!
//! (a) tests/kamailio/convert/*.cfg, Kamailio-style counterparts of configs/*.toml written for
//! these tests, convert with their modparams and routes, and one of them runs and answers SIP;
//! (b) Debian's stock /etc/kamailio/kamailio.cfg (package kamailio, installed by
//! scripts/install-test-deps.sh) converts with -D WITH_PRESENCE and other defines, every
//! untranslated line listed as FILE:LINE: reason; (c) broken configs stop with FILE:LINE.

use std::path::{Path, PathBuf};
use std::process::Output;

use e2e::sip::{Client, request, status};
use e2e::{Host, TempDir, cli, free_port, root, text};

fn cfg_dir() -> PathBuf {
    root().join("tests/kamailio/convert")
}

fn convert(args: &[&str]) -> Output {
    let mut all = vec!["convert"];
    all.extend_from_slice(args);
    cli(&all)
}

/// Converts `file` with `defines`; asserts exit 0 and that `puahost check` accepts the result.
/// Returns (the TOML, stderr).
fn convert_and_check(file: &Path, defines: &[&str]) -> (String, String) {
    let mut args = Vec::new();
    for d in defines {
        args.push("-D");
        args.push(d);
    }
    let f = file.to_str().unwrap();
    args.push(f);
    let out = convert(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "convert {f} {defines:?} failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = TempDir::new("convert");
    let toml = dir.write("puahost.toml", &stdout);
    let check = cli(&["check", "-c", toml.to_str().unwrap()]);
    assert!(check.status.success(), "check of the converted {f} {defines:?} failed:\n{}\n{stdout}", text(&check));
    (stdout, stderr)
}

/// The 1-based number of the first line of `file` containing `needle`.
fn line_of(file: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in {}", file.display())) + 1
}

fn assert_has(toml: &str, expected: &[&str]) {
    for e in expected {
        assert!(toml.contains(e), "expected {e:?} in:\n{toml}");
    }
}

/// The `[[route]]` entry that contains `needle`, as text.
fn route_with<'a>(toml: &'a str, needle: &str) -> &'a str {
    toml.split("[[route]]")
        .skip(1)
        .find(|r| r.contains(needle))
        .unwrap_or_else(|| panic!("no route with {needle:?} in:\n{toml}"))
}

#[test]
fn presence_server() {
    let file = cfg_dir().join("presence-server.cfg");
    let (toml, stderr) = convert_and_check(&file, &[]);
    assert_has(
        &toml,
        &[
            "loadmodule = [\"presence\", \"presence_xml\", \"xcap_server\"]",
            // #!substdef in listen=
            "listen = [\"udp:127.0.0.1:5060\", \"tcp:127.0.0.1:5060\"]",
            "children = 4",
            // #!trydef in jsonrpcs' fifo_name
            "fifo = \"/tmp/puahost_rpc.fifo\"",
            // #!define in the modparams, typed by the modules' declarations
            "[modparam.presence]\ndb_url = \"sqlite://presence.sqlite\"\nsubs_db_mode = 2\ndb_update_period = 10",
            "integrated_xcap_server = 1",
            "[modparam.xcap_server]\ndb_url = \"sqlite://presence.sqlite\"\nhttp = \"127.0.0.1:5081\"",
        ],
    );
    assert!(route_with(&toml, "handle_publish()").contains("method = \"PUBLISH\""), "{toml}");
    assert!(route_with(&toml, "handle_subscribe()").contains("method = \"SUBSCRIBE\""), "{toml}");
    let options = route_with(&toml, "method = \"OPTIONS\"");
    assert_has(options, &["myself = true", "reply = \"200 OK\""]);
    // A modparam puahost's presence does not have: reported, not written.
    assert!(!toml.contains("fallback2db"), "{toml}");
    let name = file.display().to_string();
    for (needle, why) in [
        ("if (!t_newtran())", "t_newtran"),
        ("loadmodule \"tm.so\"", "loadmodule tm dropped"),
        ("\"fallback2db\"", "puahost's presence has no such modparam"),
    ] {
        let l = line_of(&file, needle);
        assert!(stderr.contains(&format!("{name}:{l}: ")), "no report for line {l} in:\n{stderr}");
        assert!(stderr.lines().any(|x| x.starts_with(&format!("{name}:{l}: ")) && x.contains(why)), "{stderr}");
    }
}

#[test]
fn converted_presence_server_runs() {
    // The converted config, on free ports, answers as the Kamailio script would: PUBLISH by
    // handle_publish, OPTIONS to itself 200, anything else 501 from the script's last line.
    let (toml, _) = convert_and_check(&cfg_dir().join("presence-server.cfg"), &[]);
    let xcap = free_port().to_string();
    let toml = toml
        .replace("127.0.0.1:5060", "127.0.0.1:@SIP@")
        .replace("127.0.0.1:5080", "127.0.0.1:@HTTP@")
        .replace("127.0.0.1:5081", &format!("127.0.0.1:{xcap}"))
        .replace("fifo = \"/tmp/puahost_rpc.fifo\"\n", "")
        .replace("[core]\n", "[core]\nmodules_path = [\"@MODULES@\"]\n");
    let mut h = Host::start("convert-run", &toml);
    let mut c = Client::udp(h.sip_addr());
    let ruri = format!("sip:alice@127.0.0.1:{}", h.sip);
    let pidf = r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="t"><status><basic>open</basic></status></tuple></presence>"#;
    let r = c.transact(&request(
        &c,
        "PUBLISH",
        &ruri,
        &["Event: presence", "Expires: 600", "Content-Type: application/pidf+xml"],
        pidf,
    ));
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(e2e::notify::publications(&h), 1);
    let r = c.transact(&request(&c, "OPTIONS", &format!("sip:127.0.0.1:{}", h.sip), &[], ""));
    assert_eq!(status(&r), 200, "{r}");
    let r = c.transact(&request(&c, "INFO", &ruri, &[], ""));
    assert_eq!(status(&r), 501, "{r}");
    h.stop();
}

#[test]
fn registrar_presence_follows_the_include() {
    let file = cfg_dir().join("registrar-presence.cfg");
    let (toml, stderr) = convert_and_check(&file, &[]);
    assert_has(
        &toml,
        &[
            "loadmodule = [\"usrloc\", \"registrar\", \"pua\", \"pua_usrloc\", \"presence\", \"presence_xml\"]",
            // DBURL is defined in the including file, used in the included one
            "[modparam.usrloc]\ndb_mode = 2\ndb_url = \"sqlite://registrar.sqlite\"\ntimer_interval = 10",
            "[modparam.pua_usrloc]\ndefault_domain = \"example.com\"",
            // "60" for an int modparam: a number, as the module declares it
            "[modparam.registrar]\ndefault_expires = 3600\nmin_expires = 60\n",
            "[modparam.presence_xml]\ndb_url = \"sqlite://registrar.sqlite\"\nforce_active = 1",
        ],
    );
    let register = route_with(&toml, "method = \"REGISTER\"");
    assert_has(register, &["pua_set_publish()", "save(\\\"location\\\")", "on_fail = \"500 Server Internal Error\""]);
    let calls = route_with(&toml, "lookup(");
    assert_has(calls, &["method = [\"INVITE\", \"MESSAGE\"]", "t_relay()", "on_fail = \"404 Not Found\""]);
    // `presence|presence_xml` sets presence's db_url a second time: reported at the include's line.
    let inc = cfg_dir().join("registrar-presence-modules.cfg");
    let l = line_of(&inc, "\"presence|presence_xml\"");
    assert!(stderr.contains(&format!("{}:{l}: modparam presence db_url set again", inc.display())), "{stderr}");
}

#[test]
fn blf_with_and_without_a_define() {
    let file = cfg_dir().join("blf.cfg");
    let (toml, _) = convert_and_check(&file, &[]);
    assert_has(
        &toml,
        &[
            "alias = [\"example.com\"]",
            "log_level = \"info\"",
            "[modparam.dialog]\ndefault_timeout = 43200",
            "[modparam.pua_dialoginfo]\ninclude_callid = 1\ninclude_tags = 1",
        ],
    );
    let initial = route_with(&toml, "record_route()");
    assert_has(
        initial,
        &[
            "method = \"INVITE\"",
            "\"record_route()\", \"dlg_manage()\", \"lookup(\\\"location\\\")\", \"t_relay()\"",
            "404",
        ],
    );
    let within = route_with(&toml, "method = [\"ACK\", \"BYE\"");
    assert_has(within, &["hdr.To = \";\\\\s*tag=\"", "\"dlg_manage()\", \"t_relay()\""]);
    let (debug, _) = convert_and_check(&file, &["WITH_DEBUG"]);
    assert!(debug.contains("log_level = \"debug\""), "{debug}");
}

#[test]
fn bla() {
    let (toml, _) = convert_and_check(&cfg_dir().join("bla.cfg"), &[]);
    assert_has(&toml, &["[modparam.pua_bla]\nserver_address", "header_name = \"Sender\"", "disable_bla = 0"]);
    let line = route_with(&toml, "bla_set_flag()");
    assert_has(line, &["method = \"REGISTER\"", "hdr.To = \"(?i)sip:line\"", "save(\\\"location\\\")"]);
    let notify = route_with(&toml, "bla_handle_notify()");
    assert_has(notify, &["method = \"NOTIFY\"", "hdr.Event = \"(?i)^dialog;sla\"", "reply = \"200 OK\""]);
    assert!(toml.contains("handle_publish(\\\"$hdr(Sender)\\\")"), "{toml}");
}

#[test]
fn xmpp_gateway() {
    let (toml, _) = convert_and_check(&cfg_dir().join("xmpp-gateway.cfg"), &[]);
    assert_has(
        &toml,
        &["loadmodule = [\"pua\", \"xmpp\", \"pua_xmpp\", \"presence\", \"presence_xml\"]", "xmpp_port = 5347"],
    );
    let winfo = route_with(&toml, "pua_xmpp_req_winfo");
    assert_has(
        winfo,
        &[
            "method = \"SUBSCRIBE\"",
            "ruri = \"(?i)^sips?:[^@;]+\\\\*\"",
            "hdr.Event = \"(?i)^presence\"",
            "handle_subscribe()",
        ],
    );
    let notify = route_with(&toml, "pua_xmpp_notify()");
    assert_has(notify, &["on_fail = \"481 Call/Transaction Does Not Exist\"", "reply = \"200 OK\""]);
}

#[test]
fn pua_rpc_becomes_pua_mi() {
    let file = cfg_dir().join("pua-mi.cfg");
    let (toml, stderr) = convert_and_check(&file, &[]);
    assert_has(
        &toml,
        &[
            "loadmodule = [\"pua\", \"pua_mi\"]",
            // listen=IP: UDP and TCP on 5060
            "listen = [\"udp:127.0.0.1:5060\", \"tcp:127.0.0.1:5060\"]",
            "update_period = 60",
        ],
    );
    let l = line_of(&file, "pua_rpc.so");
    assert!(stderr.contains(&format!("{}:{l}: loadmodule pua_rpc: puahost calls this module pua_mi", file.display())));
}

const DEBIAN: &str = "/etc/kamailio/kamailio.cfg";

/// Every stderr line but the summary is FILE:LINE: reason, and the line exists.
fn assert_reports_point_at_lines(stderr: &str) -> usize {
    let text = std::fs::read_to_string(DEBIAN).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut n = 0;
    for l in stderr.lines().filter(|l| !l.starts_with("puahost convert: ")) {
        let rest = l.strip_prefix(&format!("{DEBIAN}:")).unwrap_or_else(|| panic!("not FILE:LINE: {l}"));
        let (num, why) = rest.split_once(": ").unwrap_or_else(|| panic!("not FILE:LINE: reason: {l}"));
        let num: usize = num.parse().unwrap_or_else(|_| panic!("no line number: {l}"));
        assert!(num >= 1 && num <= lines.len() && !why.is_empty(), "{l}");
        n += 1;
    }
    n
}

#[test]
fn debian_stock_config() {
    // Installed by scripts/install-test-deps.sh (package kamailio); its absence is a failure.
    let file = Path::new(DEBIAN);
    assert!(file.exists(), "{DEBIAN} is missing: run scripts/install-test-deps.sh (package kamailio)");
    let (toml, stderr) = convert_and_check(file, &["WITH_PRESENCE"]);
    assert!(toml.contains("loadmodule = [\"usrloc\", \"registrar\", \"presence\", \"presence_xml\"]"), "{toml}");
    assert!(toml.contains("children = 8"), "{toml}");
    assert!(route_with(&toml, "handle_publish()").contains("method = \"PUBLISH\""), "{toml}");
    assert!(route_with(&toml, "handle_subscribe()").contains("method = \"SUBSCRIBE\""), "{toml}");
    assert!(route_with(&toml, "save(").contains("method = \"REGISTER\""), "{toml}");
    assert!(toml.contains("\"lookup(\\\"location\\\")\", \"t_relay()\""), "{toml}");
    let reported = assert_reports_point_at_lines(&stderr);
    assert!(reported > 20, "{stderr}");
    assert!(stderr.contains(&format!("puahost convert: {reported} lines not translated")), "{stderr}");
    // The reports name the right lines.
    let acc = line_of(file, "loadmodule \"acc.so\"");
    assert!(stderr.contains(&format!("{DEBIAN}:{acc}: module acc is not provided by puahost")), "{stderr}");
    let fr = line_of(file, "failure_route[MANAGE_FAILURE]");
    assert!(stderr.contains(&format!("{DEBIAN}:{fr}: failure_route[MANAGE_FAILURE] is not translated")), "{stderr}");
    // Without WITH_PRESENCE the presence modules and routes are not there.
    let (plain, _) = convert_and_check(file, &[]);
    assert!(!plain.contains("presence") && !plain.contains("handle_publish"), "{plain}");
}

#[test]
fn debian_stock_config_with_more_defines() {
    let file = Path::new(DEBIAN);
    assert!(file.exists(), "{DEBIAN} is missing: run scripts/install-test-deps.sh (package kamailio)");
    // WITH_MYSQL with DBURL given on the command line: #!trydef keeps ours.
    let (toml, _) = convert_and_check(
        file,
        &["WITH_PRESENCE", "WITH_MYSQL", "WITH_USRLOCDB", "DBURL=\"sqlite://kamailio.sqlite\""],
    );
    assert!(toml.contains("[modparam.presence]\ndb_url = \"sqlite://kamailio.sqlite\""), "{toml}");
    assert!(
        toml.contains(
            "[modparam.usrloc]\ntimer_interval = 60\nuse_domain = 0\ndb_url = \"sqlite://kamailio.sqlite\"\ndb_mode = 2"
        ),
        "{toml}"
    );
    // WITH_AUTH without a database: Kamailio's own config leaves DBURL undefined; the result
    // is written, and what it lacks is named.
    let out = convert(&["-D", "WITH_PRESENCE", "-D", "WITH_AUTH", DEBIAN]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let l = line_of(file, "loadmodule \"auth_db.so\"");
    assert!(stderr.contains(&format!("{DEBIAN}:{l}: module auth_db needs modparam db_url")), "{stderr}");
    // Everything on: nothing breaks, all that is not translated is reported.
    let all = [
        "WITH_PRESENCE",
        "WITH_MYSQL",
        "WITH_AUTH",
        "WITH_IPAUTH",
        "WITH_USRLOCDB",
        "WITH_NAT",
        "WITH_RTPENGINE",
        "WITH_ANTIFLOOD",
        "WITH_DEBUG",
        "WITH_TLS",
        "WITH_JSONRPC",
        "WITH_ALIASDB",
        "WITH_SPEEDDIAL",
        "WITH_MULTIDOMAIN",
        "WITH_PSTN",
        "WITH_VOICEMAIL",
        "WITH_ACCDB",
    ];
    let (toml, stderr) = convert_and_check(file, &all);
    assert!(toml.contains("db_url = \"mysql://kamailio:kamailiorw@localhost/kamailio\""), "{toml}");
    assert!(toml.contains("log_level = \"debug\""), "{toml}");
    assert_reports_point_at_lines(&stderr);
    let auth = line_of(file, "if (!auth_check(");
    // `if (!auth_check(...)) { auth_challenge(...); exit; }` is auth_db's auth_require.
    assert!(
        stderr.contains(&format!("{DEBIAN}:{auth}: auth_check() with a challenge on failure: auth_require()")),
        "{stderr}"
    );
    let register = route_with(&toml, "save(\\\"location\\\")");
    assert!(register.contains("\"auth_require(\\\"$fd\\\", \\\"subscriber\\\", \\\"1\\\")\", \"save("), "{register}");
    assert!(toml.contains("loadmodule = [\"usrloc\", \"registrar\", \"auth\", \"auth_db\","), "{toml}");
}

fn convert_fails(dir: &TempDir, name: &str, cfg: &str, expected: &str, line: usize) {
    let path = dir.write(name, cfg);
    let out = convert(&[path.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{name} was converted:\n{t}");
    assert!(out.stdout.is_empty(), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    let at = format!("{}:{line}: ", path.display());
    assert!(t.contains(&at) && t.contains(expected), "expected {at}...{expected} in:\n{t}");
}

#[test]
fn broken_configs_stop_with_file_and_line() {
    let dir = TempDir::new("convert-bad");
    convert_fails(&dir, "ifdef.cfg", "#!KAMAILIO\nchildren=2\n#!ifdef WITH_X\nchildren=4\n", "no #!endif", 3);
    convert_fails(&dir, "else.cfg", "children=2\n#!else\n", "#!else without #!ifdef", 2);
    convert_fails(
        &dir,
        "braces.cfg",
        "request_route {\n  if (is_method(\"PUBLISH\")) {\n    handle_publish();\n}\n",
        "never closed",
        1,
    );
    convert_fails(&dir, "close.cfg", "request_route {\n  exit;\n}\n}\n", "closes no block", 4);
    convert_fails(&dir, "include.cfg", "children=2\n\ninclude_file \"nosuch.cfg\"\n", "cannot include", 3);
    convert_fails(&dir, "string.cfg", "modparam(\"pua\", \"db_url\", \"sqlite://x)\n", "unterminated string", 1);
    convert_fails(&dir, "stmt.cfg", "request_route {\n  if (a() { exit; }\n}\n", "expected `)`", 2);
    // The error is in the included file: its name and line.
    dir.write("inner.cfg", "\n\n#!ifdef A\n");
    let path = dir.write("outer.cfg", "include_file \"inner.cfg\"\n");
    let t = text(&convert(&[path.to_str().unwrap()]));
    assert!(t.contains(&format!("{}:3: ", dir.join("inner.cfg").display())), "{t}");
    // A file that is not there.
    let out = convert(&[dir.join("none.cfg").to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("cannot read the config"), "{}", text(&out));
}
