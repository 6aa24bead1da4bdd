//! auth + auth_db end to end: REGISTER challenged 401 then accepted with the right password,
//! a wrong password or an unknown user answered 403, a replayed nonce count refused (stale
//! challenge), an expired nonce answered 401 `stale=true`, a PUBLISH for someone else's From
//! refused with 403 (auth_check flag 1) and the owner's accepted after a 407; subscribers with
//! HA1 columns (ha1 and, for `user@domain` usernames, ha1b) and with plain passwords
//! (calculate_ha1 = 1, MD5 and SHA-256) on SQLite, PostgreSQL and MariaDB; malformed credentials never
//! hurt the host; sipp's `[authentication]` (MD5 digest) registers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use auth::digest::{Algorithm, Qop, ha1, response};
use e2e::dbs::Database;
use e2e::sip::{Client, header, status};
use e2e::{Host, database_tests, text};

const REALM: &str = "sip.test";

/// A host with usrloc, registrar, auth and auth_db on `db`; `auth` and `auth_db` are extra
/// modparam lines.
fn host(name: &str, db: &Database, auth: &str, auth_db: &str) -> Host {
    let config = format!(
        r#"loadmodule = ["usrloc", "registrar", "auth", "auth_db"]
[core]
children = 2
modules_path = ["@MODULES@"]
listen = ["udp:127.0.0.1:@SIP@"]
[rpc]
http = "127.0.0.1:@HTTP@"
[modparam.auth]
secret = "e2e-secret"
{auth}
[modparam.auth_db]
db_url = "{url}"
{auth_db}
[[route]]
method = "REGISTER"
do = ["auth_require(\"\", \"subscriber\", \"1\")", "save(\"location\")"]
[[route]]
method = "PUBLISH"
do = ["auth_require(\"\", \"subscriber\", \"1\")"]
reply = "200 OK"
[[route]]
method = "MESSAGE"
hdr.X-Check = "www"
do = ["www_authorize(\"sip.test\", \"subscriber\")", "append_to_reply(\"X-Au: $au $aU $ar\\r\\n\")"]
on_fail = "403 Forbidden"
reply = "200 OK"
[[route]]
method = "MESSAGE"
hdr.X-Check = "subscriber"
do = ["is_subscriber(\"$ru\", \"subscriber\", \"0\")"]
on_fail = "404 Not Found"
reply = "200 OK"
[[route]]
method = "MESSAGE"
hdr.X-Check = "proxy"
do = ["has_credentials(\"sip.test\")", "proxy_authorize(\"\", \"subscriber\")"]
on_fail = "403 Forbidden"
reply = "200 OK"
[[route]]
method = "MESSAGE"
hdr.X-Check = "relay"
do = ["proxy_authorize(\"\", \"subscriber\")", "consume_credentials()", "t_relay()"]
on_fail = "403 Forbidden"
[[route]]
method = "OPTIONS"
do = ["www_challenge(\"\", \"1\")"]
[[route]]
method = "SUBSCRIBE"
do = ["proxy_challenge(\"\", \"0\")"]
[[route]]
method = "NOTIFY"
do = ["auth_challenge(\"\", \"0\")"]
"#,
        url = db.url
    );
    Host::start(name, &config)
}

/// Runs `sql` in `db` (python3's sqlite3 for SQLite: no sqlite3 CLI on the test machines).
fn sql(db: &Database, stmt: &str) {
    if db.kind == "sqlite" {
        let path = db.url.strip_prefix("sqlite://").expect("a SQLite URL");
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.commit()",
            ])
            .arg(path)
            .arg(stmt)
            .output()
            .expect("python3");
        assert!(out.status.success(), "{stmt}: {}", text(&out));
    } else {
        db.exec(stmt);
    }
}

/// alice (password "wonderland") and bob ("builder") with HA1 in `ha1` and, for the
/// `user@domain` username form, in `ha1b`; `password` holds the plain passwords.
fn add_subscribers(db: &Database, alg: Algorithm) {
    for (user, pw) in [("alice", "wonderland"), ("bob", "builder")] {
        let h = ha1(alg, user, REALM, pw);
        let hb = ha1(alg, &format!("{user}@{REALM}"), REALM, pw);
        sql(
            db,
            &format!(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ('{user}', '{REALM}', '{pw}', '{h}', '{hb}')"
            ),
        );
    }
}

/// A request from `c`: `from` is the From/To user (To = From for REGISTER), `auth` an
/// `Authorization`/`Proxy-Authorization` line or "".
fn req(c: &Client, method: &str, from: &str, to: &str, cseq: u32, call_id: &str, auth: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let local = c.local();
    let (ruri, body, extra) = match method {
        "REGISTER" => {
            (format!("sip:{REALM}"), String::new(), format!("Contact: <sip:{from}@{local}>\r\nExpires: 60\r\n"))
        }
        "PUBLISH" => {
            let b = format!(
                "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:{to}@{REALM}\"><tuple id=\"t\"><status><basic>open</basic></status></tuple></presence>"
            );
            (
                format!("sip:{to}@{REALM}"),
                b,
                "Event: presence\r\nExpires: 60\r\nContent-Type: application/pidf+xml\r\n".into(),
            )
        }
        _ => (format!("sip:{to}@{REALM}"), String::new(), String::new()),
    };
    let mut m = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-auth-{pid}-{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@{REALM}>;tag=a{n}\r\nTo: <sip:{to}@{REALM}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}"
    );
    if !auth.is_empty() {
        m.push_str(auth);
        m.push_str("\r\n");
    }
    m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    m
}

/// A parameter of a challenge (`nonce`, `realm`, `qop`, `stale`, `algorithm`).
fn param(challenge: &str, name: &str) -> Option<String> {
    challenge.trim_start_matches("Digest").split(',').find_map(|p| {
        let (n, v) = p.split_once('=')?;
        (n.trim() == name).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Credentials answering `challenge` for `method ruri`.
#[allow(clippy::too_many_arguments)]
fn answer(
    hname: &str,
    challenge: &str,
    alg: Algorithm,
    user: &str,
    pw: &str,
    method: &str,
    ruri: &str,
    nc: u32,
) -> String {
    let nonce = param(challenge, "nonce").expect("nonce");
    let realm = param(challenge, "realm").expect("realm");
    let nc = format!("{nc:08x}");
    let h = ha1(alg, user, &realm, pw);
    let qop = if param(challenge, "qop").is_some() { Qop::Auth } else { Qop::None };
    let r = response(alg, &h, &nonce, &nc, "0a4f113b", qop, method, ruri, b"");
    let mut v = format!(
        "{hname}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{ruri}\", response=\"{r}\", algorithm={}",
        alg.name()
    );
    if qop == Qop::Auth {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"0a4f113b\""));
    }
    v
}

fn ruri_of(msg: &str) -> String {
    msg.split_whitespace().nth(1).expect("request line").to_string()
}

/// REGISTER as `user` with password `pw`: the 401, then the final reply to the answer.
fn register_with(c: &mut Client, user: &str, pw: &str, alg: Algorithm) -> (String, String) {
    let call_id = format!("reg-{user}-{}", std::process::id());
    let first = req(c, "REGISTER", user, user, 1, &call_id, "");
    let r = c.transact(&first);
    assert_eq!(status(&r), 401, "{r}");
    let ch = header(&r, "WWW-Authenticate").expect("WWW-Authenticate");
    let auth = answer("Authorization", &ch, alg, user, pw, "REGISTER", &ruri_of(&first), 1);
    let second = req(c, "REGISTER", user, user, 2, &call_id, &auth);
    (ch, c.transact(&second))
}

fn registered(h: &Host) -> String {
    h.rpc("ul.dump", serde_json::json!([])).to_string()
}

/// The 401, the right password (200, contact saved), a wrong password and an unknown user
/// (403, nothing saved), a replayed nonce count (stale challenge) and the next nc (200).
fn register_flow(db: &Database) {
    let mut h = host("auth-register", db, "qop = \"auth\"\nnonce_count = 1", "");
    add_subscribers(db, Algorithm::Md5);
    let mut c = Client::udp(h.sip_addr());

    let (ch, ok) = register_with(&mut c, "alice", "wonderland", Algorithm::Md5);
    assert_eq!(param(&ch, "realm").as_deref(), Some(REALM), "empty realm: the To host: {ch}");
    assert_eq!(param(&ch, "qop").as_deref(), Some("auth"), "{ch}");
    assert_eq!(param(&ch, "stale"), None, "{ch}");
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(registered(&h).contains("alice"), "{}", registered(&h));

    let (_, wrong) = register_with(&mut c, "bob", "not-the-password", Algorithm::Md5);
    assert_eq!(status(&wrong), 403, "{wrong}");
    let (_, unknown) = register_with(&mut c, "mallory", "x", Algorithm::Md5);
    assert_eq!(status(&unknown), 403, "{unknown}");
    assert!(!registered(&h).contains("bob") && !registered(&h).contains("mallory"), "{}", registered(&h));

    // Replay: the same credentials (nonce, nc) on a new request are refused with a stale
    // challenge; the next nc with the same nonce is accepted.
    let call_id = format!("replay-{}", std::process::id());
    let first = req(&c, "REGISTER", "bob", "bob", 1, &call_id, "");
    let ch = header(&c.transact(&first), "WWW-Authenticate").expect("challenge");
    let auth = answer("Authorization", &ch, Algorithm::Md5, "bob", "builder", "REGISTER", &ruri_of(&first), 1);
    let r = c.transact(&req(&c, "REGISTER", "bob", "bob", 2, &call_id, &auth));
    assert_eq!(status(&r), 200, "{r}");
    let replay = c.transact(&req(&c, "REGISTER", "bob", "bob", 3, &call_id, &auth));
    assert_eq!(status(&replay), 401, "a replayed nonce count: {replay}");
    let again = header(&replay, "WWW-Authenticate").expect("challenge");
    assert_eq!(param(&again, "stale").as_deref(), Some("true"), "{again}");
    assert_ne!(param(&again, "nonce"), param(&ch, "nonce"), "a fresh nonce");
    let next = answer("Authorization", &ch, Algorithm::Md5, "bob", "builder", "REGISTER", &ruri_of(&first), 2);
    let r = c.transact(&req(&c, "REGISTER", "bob", "bob", 4, &call_id, &next));
    assert_eq!(status(&r), 200, "nc 2 with the same nonce: {r}");

    // A nonce we never issued (another secret) and a forged response: no way in.
    let foreign = auth.replace(&param(&ch, "nonce").unwrap(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let r = c.transact(&req(&c, "REGISTER", "bob", "bob", 5, &call_id, &foreign));
    assert_eq!(status(&r), 401, "{r}");
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// PUBLISH: 407 without credentials, 403 "Forbidden auth ID" when alice publishes bob's
/// presence (From bob, credentials alice), 200 for her own.
fn publish_identity(db: &Database) {
    let mut h = host("auth-publish", db, "", "");
    add_subscribers(db, Algorithm::Md5);
    let mut c = Client::udp(h.sip_addr());
    let call_id = format!("pub-{}", std::process::id());
    let first = req(&c, "PUBLISH", "bob", "bob", 1, &call_id, "");
    let r = c.transact(&first);
    assert_eq!(status(&r), 407, "{r}");
    let ch = header(&r, "Proxy-Authenticate").expect("Proxy-Authenticate");
    assert_eq!(param(&ch, "qop"), None, "Kamailio's default qop: none: {ch}");
    // alice's credentials on bob's PUBLISH.
    let auth =
        answer("Proxy-Authorization", &ch, Algorithm::Md5, "alice", "wonderland", "PUBLISH", &ruri_of(&first), 1);
    let r = c.transact(&req(&c, "PUBLISH", "bob", "bob", 2, &call_id, &auth));
    assert_eq!(status(&r), 403, "{r}");
    assert!(r.contains("Forbidden auth ID"), "{r}");
    // Her own.
    let first = req(&c, "PUBLISH", "alice", "alice", 3, &call_id, "");
    let ch = header(&c.transact(&first), "Proxy-Authenticate").expect("challenge");
    let auth =
        answer("Proxy-Authorization", &ch, Algorithm::Md5, "alice", "wonderland", "PUBLISH", &ruri_of(&first), 1);
    let r = c.transact(&req(&c, "PUBLISH", "alice", "alice", 4, &call_id, &auth));
    assert_eq!(status(&r), 200, "{r}");
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// calculate_ha1 = 1: the `password` column holds plain passwords; with SHA-256 challenges.
fn plain_passwords(db: &Database, alg: Algorithm) {
    let extra = if alg == Algorithm::Sha256 { "algorithm = \"SHA-256\"" } else { "" };
    let mut h = host("auth-plain", db, extra, "calculate_ha1 = 1\npassword_column = \"password\"");
    // The HA1 columns hold garbage: only the plain password can work.
    for (user, pw) in [("alice", "wonderland"), ("bob", "builder")] {
        sql(
            db,
            &format!(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ('{user}', '{REALM}', '{pw}', 'x', 'x')"
            ),
        );
    }
    let mut c = Client::udp(h.sip_addr());
    let (ch, ok) = register_with(&mut c, "alice", "wonderland", alg);
    if alg == Algorithm::Sha256 {
        assert_eq!(param(&ch, "algorithm").as_deref(), Some("SHA-256"), "{ch}");
    }
    assert_eq!(status(&ok), 200, "{ok}");
    let (_, wrong) = register_with(&mut c, "bob", "wonderland", alg);
    assert_eq!(status(&wrong), 403, "{wrong}");
    if alg == Algorithm::Sha256 {
        // An MD5 answer to a SHA-256 challenge (a downgrade) is not accepted: a new challenge.
        let (_, md5) = register_with(&mut c, "bob", "builder", Algorithm::Md5);
        assert_eq!(status(&md5), 401, "{md5}");
        let (_, ok) = register_with(&mut c, "bob", "builder", alg);
        assert_eq!(status(&ok), 200, "{ok}");
    }
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

database_tests! {
    register_sqlite: "sqlite", register_flow;
    register_postgres: "postgres", register_flow;
    register_mariadb: "mariadb", register_flow;
    publish_identity_sqlite: "sqlite", publish_identity;
    publish_identity_postgres: "postgres", publish_identity;
    plain_passwords_sqlite: "sqlite", |db| plain_passwords(db, Algorithm::Md5);
    plain_passwords_postgres: "postgres", |db| plain_passwords(db, Algorithm::Md5);
    plain_passwords_mariadb: "mariadb", |db| plain_passwords(db, Algorithm::Md5);
    plain_passwords_sha256_sqlite: "sqlite", |db| plain_passwords(db, Algorithm::Sha256);
}

/// An expired nonce is answered with a fresh challenge saying `stale=true`; the same answer
/// before expiry works.
#[test]
fn expired_nonce_is_stale() {
    let db = e2e::dbs::sqlite();
    let mut h = host("auth-stale", &db, "nonce_expire = 1", "");
    add_subscribers(&db, Algorithm::Md5);
    let mut c = Client::udp(h.sip_addr());
    let call_id = format!("stale-{}", std::process::id());
    let first = req(&c, "REGISTER", "alice", "alice", 1, &call_id, "");
    let ch = header(&c.transact(&first), "WWW-Authenticate").expect("challenge");
    std::thread::sleep(Duration::from_millis(2500));
    let auth = answer("Authorization", &ch, Algorithm::Md5, "alice", "wonderland", "REGISTER", &ruri_of(&first), 1);
    let r = c.transact(&req(&c, "REGISTER", "alice", "alice", 2, &call_id, &auth));
    assert_eq!(status(&r), 401, "{r}");
    let again = header(&r, "WWW-Authenticate").expect("challenge");
    assert_eq!(param(&again, "stale").as_deref(), Some("true"), "{again}");
    // www_challenge sees the stale nonce too.
    let opt = req(&c, "OPTIONS", "alice", "alice", 3, &call_id, &auth);
    let r = c.transact(&opt);
    assert_eq!(status(&r), 401, "{r}");
    let ch = header(&r, "WWW-Authenticate").expect("challenge");
    assert_eq!(param(&ch, "stale").as_deref(), Some("true"), "{ch}");
    assert_eq!(param(&ch, "qop").as_deref(), Some("auth"), "www_challenge flag 1: {ch}");
    // Answered at once, the fresh nonce works.
    let auth = answer("Authorization", &again, Algorithm::Md5, "alice", "wonderland", "REGISTER", &ruri_of(&first), 1);
    let r = c.transact(&req(&c, "REGISTER", "alice", "alice", 4, &call_id, &auth));
    assert_eq!(status(&r), 200, "{r}");
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// Kamailio's return codes reach routes: www_authorize's failure takes `on_fail`; a
/// `user@domain` username is checked against `ha1b`; is_subscriber finds rows.
#[test]
fn return_codes_and_ha1b() {
    let db = e2e::dbs::sqlite();
    let mut h = host("auth-codes", &db, "", "");
    add_subscribers(&db, Algorithm::Md5);
    let mut c = Client::udp(h.sip_addr());
    let call_id = format!("codes-{}", std::process::id());
    // No credentials: -5, on_fail.
    let m = req(&c, "MESSAGE", "alice", "bob", 1, &call_id, "").replace("Max-Forwards", "X-Check: www\r\nMax-Forwards");
    assert_eq!(status(&c.transact(&m)), 403);
    // alice@sip.test as the username: HA1 from ha1b.
    let first = req(&c, "REGISTER", "alice", "alice", 2, &call_id, "");
    let ch = header(&c.transact(&first), "WWW-Authenticate").expect("challenge");
    let auth =
        answer("Authorization", &ch, Algorithm::Md5, "alice@sip.test", "wonderland", "MESSAGE", "sip:bob@sip.test", 1);
    let m =
        req(&c, "MESSAGE", "alice", "bob", 3, &call_id, &auth).replace("Max-Forwards", "X-Check: www\r\nMax-Forwards");
    let r = c.transact(&m);
    assert_eq!(status(&r), 200, "ha1b: {r}\n{}", h.log());
    assert_eq!(header(&r, "X-Au").as_deref(), Some("alice alice@sip.test sip.test"), "$au $aU $ar: {r}");
    // The same with a wrong ha1b row fails: it is ha1b that was used.
    sql(&db, "UPDATE subscriber SET ha1b = '00000000000000000000000000000000' WHERE username = 'alice'");
    let ch = header(
        &c.transact(&first.replace("CSeq: 2", "CSeq: 4").replace("branch=z9hG4bK-", "branch=z9hG4bK-x")),
        "WWW-Authenticate",
    )
    .expect("challenge");
    let auth =
        answer("Authorization", &ch, Algorithm::Md5, "alice@sip.test", "wonderland", "MESSAGE", "sip:bob@sip.test", 1);
    let m =
        req(&c, "MESSAGE", "alice", "bob", 5, &call_id, &auth).replace("Max-Forwards", "X-Check: www\r\nMax-Forwards");
    assert_eq!(status(&c.transact(&m)), 403);
    // is_subscriber.
    let sub = |to: &str, c: &mut Client| {
        let m = req(c, "MESSAGE", "alice", to, 6, &call_id, "")
            .replace("Max-Forwards", "X-Check: subscriber\r\nMax-Forwards");
        status(&c.transact(&m))
    };
    assert_eq!(sub("bob", &mut c), 200);
    assert_eq!(sub("nobody", &mut c), 404);
    // proxy_challenge, auth_challenge (not a REGISTER: 407), has_credentials, proxy_authorize.
    let r = c.transact(&req(&c, "NOTIFY", "bob", "alice", 7, &call_id, ""));
    assert_eq!(status(&r), 407, "auth_challenge on a NOTIFY: {r}");
    let r = c.transact(&req(&c, "SUBSCRIBE", "bob", "alice", 8, &call_id, ""));
    assert_eq!(status(&r), 407, "{r}");
    let ch = header(&r, "Proxy-Authenticate").expect("Proxy-Authenticate");
    assert_eq!(param(&ch, "realm").as_deref(), Some(REALM), "the From host: {ch}");
    assert_eq!(param(&ch, "qop"), None, "flags 0, qop unset: {ch}");
    let proxy = |c: &mut Client, auth: &str, cseq: u32| {
        let m = req(c, "MESSAGE", "bob", "alice", cseq, &call_id, auth)
            .replace("Max-Forwards", "X-Check: proxy\r\nMax-Forwards");
        status(&c.transact(&m))
    };
    assert_eq!(proxy(&mut c, "", 9), 403, "has_credentials: none");
    let www = answer("Authorization", &ch, Algorithm::Md5, "bob", "builder", "MESSAGE", "sip:alice@sip.test", 1);
    assert_eq!(proxy(&mut c, &www, 10), 403, "Authorization is not Proxy-Authorization");
    let p = answer("Proxy-Authorization", &ch, Algorithm::Md5, "bob", "builder", "MESSAGE", "sip:alice@sip.test", 1);
    assert_eq!(proxy(&mut c, &p, 11), 200, "{}", h.log());
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// Malformed or hostile credentials get a challenge (or 403), never crash the host or let
/// anyone in.
#[test]
fn malformed_credentials() {
    let db = e2e::dbs::sqlite();
    let mut h = host("auth-malformed", &db, "", "");
    add_subscribers(&db, Algorithm::Md5);
    let mut c = Client::udp(h.sip_addr());
    let call_id = format!("bad-{}", std::process::id());
    let bad = [
        "Authorization: Digest",
        "Authorization: Digest username=\"alice",
        "Authorization: Digest username=alice, realm=sip.test",
        "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==",
        "Authorization: Digest username=\"alice\", realm=\"sip.test\", nonce=\"\u{1}\u{2}\", uri=\"sip:sip.test\", response=\"0\"",
        "Authorization: Digest username=\"alice\", realm=\"sip.test\", nonce=\"x\", uri=\"sip:sip.test\", response=\"0\", qop=auth",
        "Authorization: Digest username=\"alice\", realm=\"sip.test\", nonce=\"x\", uri=\"sip:sip.test\", response=\"0\", algorithm=MD5-sess",
        "Authorization: Digest ,,,,=,=\"\"\"",
    ];
    for (i, line) in bad.iter().enumerate() {
        let r = c.transact(&req(&c, "REGISTER", "alice", "alice", 10 + i as u32, &call_id, line));
        assert!(matches!(status(&r), 401 | 400), "{line}: {r}");
    }
    assert!(!registered(&h).contains("alice"));
    let (_, ok) = register_with(&mut c, "alice", "wonderland", Algorithm::Md5);
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// sipp's `[authentication]` keyword (MD5 digest, qop=auth) registers after the 401.
#[test]
fn sipp_registers_with_digest() {
    if std::process::Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("SKIPPED: sipp is not installed");
        return;
    }
    let db = e2e::dbs::sqlite();
    let mut h = host("auth-sipp", &db, "qop = \"auth\"\nnonce_count = 1", "");
    add_subscribers(&db, Algorithm::Md5);
    let scenario = h.dir.write(
        "register_auth.xml",
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with digest">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@sip.test>;tag=[call_number]
      To: <sip:[service]@sip.test>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Expires: 60
      Content-Length: 0
    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@sip.test>;tag=[call_number]
      To: <sip:[service]@sip.test>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      [authentication username=alice password=wonderland]
      Max-Forwards: 70
      Expires: 60
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#,
    );
    let status = std::process::Command::new("sipp")
        .args(["-sf"])
        .arg(&scenario)
        .args(["-s", "alice", "-m", "1", "-i", "127.0.0.1", "-timeout", "10s", "-timeout_error", "-nostdin"])
        .arg(h.sip_addr().to_string())
        .stdout(std::process::Stdio::null())
        .output()
        .expect("sipp");
    assert!(status.status.success(), "sipp: {}\n{}", text(&status), h.log());
    assert!(registered(&h).contains("alice"), "{}", registered(&h));
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// baresip (Debian's baresip-core) as a real phone with `user@sip.test` and `password`,
/// registering through `h`; quits after `quit_after` seconds.
fn baresip(dir: &std::path::Path, h: &Host, user: &str, password: &str, quit_after: u32) -> std::process::Child {
    let account = format!(
        "<sip:{user}@{REALM}>;auth_pass={password};outbound=\"sip:127.0.0.1:{}\";regint=600;answermode=manual",
        h.sip
    );
    e2e::baresip(dir, &account, quit_after)
}

/// baresip answers the 401 with its password and registers; with a wrong password it gets
/// 403 and stays unregistered.
#[test]
fn baresip_registers_with_its_password() {
    if std::process::Command::new("baresip").arg("-h").output().is_err() {
        eprintln!("SKIPPED: baresip is not installed (Debian package baresip-core)");
        return;
    }
    let db = e2e::dbs::sqlite();
    let mut h = host("auth-baresip", &db, "qop = \"auth\"\nnonce_count = 1", "");
    add_subscribers(&db, Algorithm::Md5);
    let dir = h.dir.join("baresip-alice");
    let mut alice = baresip(&dir, &h, "alice", "wonderland", 30);
    let dir_bob = h.dir.join("baresip-bob");
    let mut bob = baresip(&dir_bob, &h, "bob", "wrong", 30);
    let ok = e2e::eventually(Duration::from_secs(10), || registered(&h).contains("alice"));
    let log = |d: &std::path::Path| std::fs::read_to_string(d.join("baresip.log")).unwrap_or_default();
    assert!(ok, "{}\n{}", log(&dir), h.log());
    assert!(e2e::eventually(Duration::from_secs(10), || log(&dir_bob).contains("403")), "{}", log(&dir_bob));
    assert!(!registered(&h).contains("bob"), "{}", registered(&h));
    for phone in [&mut alice, &mut bob] {
        let _ = phone.kill();
        let _ = phone.wait();
    }
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// one_time_nonce = 1 (no qop): each nonce authenticates one request; the same credentials
/// again get a stale challenge.
#[test]
fn one_time_nonce_refuses_a_second_use() {
    let db = e2e::dbs::sqlite();
    let mut h = host("auth-otn", &db, "one_time_nonce = 1", "");
    add_subscribers(&db, Algorithm::Md5);
    let mut c = Client::udp(h.sip_addr());
    let call_id = format!("otn-{}", std::process::id());
    let first = req(&c, "REGISTER", "alice", "alice", 1, &call_id, "");
    let ch = header(&c.transact(&first), "WWW-Authenticate").expect("challenge");
    assert_eq!(param(&ch, "qop"), None, "{ch}");
    let auth = answer("Authorization", &ch, Algorithm::Md5, "alice", "wonderland", "REGISTER", &ruri_of(&first), 1);
    let r = c.transact(&req(&c, "REGISTER", "alice", "alice", 2, &call_id, &auth));
    assert_eq!(status(&r), 200, "{r}");
    let r = c.transact(&req(&c, "REGISTER", "alice", "alice", 3, &call_id, &auth));
    assert_eq!(status(&r), 401, "the nonce was used: {r}");
    let again = header(&r, "WWW-Authenticate").expect("challenge");
    assert_eq!(param(&again, "stale").as_deref(), Some("true"), "{again}");
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// consume_credentials(): the relayed request no longer carries the credentials checked here
/// (a nonce of this server), while credentials for another server stay.
#[test]
fn consume_credentials_keeps_them_from_the_next_hop() {
    let db = e2e::dbs::sqlite();
    let mut h = host("auth-consume", &db, "", "");
    add_subscribers(&db, Algorithm::Md5);
    let mut c = Client::udp(h.sip_addr());
    let mut downstream = Client::udp(h.sip_addr());
    let target = format!("sip:alice@{}", downstream.local());
    let call_id = format!("consume-{}", std::process::id());
    let relayed = |c: &Client, auth: &str, cseq: u32| {
        req(c, "MESSAGE", "bob", "alice", cseq, &call_id, auth)
            .replacen("sip:alice@sip.test SIP/2.0", &format!("{target} SIP/2.0"), 1)
            .replace("Max-Forwards", "X-Check: relay\r\nMax-Forwards")
    };
    let first = relayed(&c, "", 1);
    let r = c.transact(&c_subscribe(&c, &call_id));
    assert_eq!(status(&r), 407, "{r}");
    let ch = header(&r, "Proxy-Authenticate").expect("challenge");
    let ours = answer("Proxy-Authorization", &ch, Algorithm::Md5, "bob", "builder", "MESSAGE", &target, 1);
    let theirs = "Proxy-Authorization: Digest username=\"bob\", realm=\"other.test\", nonce=\"abc\", uri=\"sip:x\", response=\"0\"";
    assert_eq!(status(&c.transact(&first)), 403, "no credentials");
    let m = relayed(&c, &format!("{ours}\r\n{theirs}"), 2);
    c.send(m.as_bytes());
    let got = downstream.recv(Duration::from_secs(5)).expect("the relayed MESSAGE");
    assert!(got.starts_with("MESSAGE "), "{got}");
    let creds = e2e::sip::headers(&got, "Proxy-Authorization");
    assert_eq!(creds.len(), 1, "ours removed, theirs kept: {got}");
    assert!(creds[0].contains("other.test"), "{got}");
    assert!(got.contains("X-Check: relay"), "the rest is as sent: {got}");
    downstream.answer(&got, &e2e::kamailio::reply(&got, 200, "OK"));
    let r = loop {
        let r = c.recv(Duration::from_secs(5)).expect("the 200 upstream");
        if status(&r) >= 200 {
            break r;
        }
    };
    assert_eq!(status(&r), 200, "{r}");
    assert!(h.stop().is_some_and(|s| s.success()), "{}", h.log());
}

/// A SUBSCRIBE (answered with a proxy challenge by the test config).
fn c_subscribe(c: &Client, call_id: &str) -> String {
    req(c, "SUBSCRIBE", "bob", "alice", 9, call_id, "")
}
