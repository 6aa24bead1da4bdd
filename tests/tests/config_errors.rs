//! Bad configs: one clear message with file:line, a non-zero exit, and nothing started.

use std::net::TcpStream;
use std::time::Duration;

use e2e::{TempDir, cli, free_port, puahost, release_dir, text};

/// Writes `config` and runs `puahost check` on it; returns (exit ok, output).
fn check(config: &str) -> (bool, String) {
    let dir = TempDir::new("cfg");
    let path = dir.write("bad.toml", &config.replace("@MODULES@", &release_dir().display().to_string()));
    let out = cli(&["check", "-c", path.to_str().unwrap()]);
    (out.status.success(), text(&out))
}

fn assert_error(config: &str, expected: &[&str], line: usize) {
    let (ok, out) = check(config);
    assert!(!ok, "config was accepted:\n{config}");
    for e in expected {
        assert!(out.contains(e), "expected {e:?} in:\n{out}");
    }
    assert!(out.contains(&format!("bad.toml:{line}:")), "expected bad.toml:{line}: in:\n{out}");
}

const HEAD: &str = "[core]\nmodules_path = [\"@MODULES@\"]\n";

#[test]
fn valid_config_checks_fast() {
    let (ok, out) = check(&format!(
        "loadmodule = [\"testmod\", \"testbind\"]\n{HEAD}[modparam.testmod]\ntick_ms = 100\ntags = [\"a\"]\n"
    ));
    assert!(ok, "{out}");
    assert!(out.contains("config OK (2 modules"), "{out}");
}

#[test]
fn unknown_module() {
    assert_error(
        &format!("loadmodule = [\"testmod\", \"nosuch\"]\n{HEAD}"),
        &["module `nosuch` not found", "libnosuch.so"],
        1,
    );
}

#[test]
fn unknown_modparam_suggests() {
    assert_error(
        &format!("loadmodule = [\"testmod\"]\n{HEAD}[modparam.testmod]\ntick_m = 100\n"),
        &["unknown modparam `tick_m` for module testmod", "did you mean `tick_ms`?"],
        5,
    );
}

#[test]
fn wrong_modparam_type_and_range() {
    assert_error(
        &format!("loadmodule = [\"testmod\"]\n{HEAD}[modparam.testmod]\ntick_ms = \"100\"\n"),
        &["modparam testmod.tick_ms must be an integer, found a string", "without quotes"],
        5,
    );
    assert_error(
        &format!("loadmodule = [\"testmod\"]\n{HEAD}[modparam.testmod]\ntick_ms = -5\n"),
        &["between 0 and 60000, found -5"],
        5,
    );
    assert_error(
        &format!("loadmodule = [\"testmod\"]\n{HEAD}[modparam.testmod]\ndb_url = [\"a\"]\n"),
        &["takes one value, found an array"],
        5,
    );
}

#[test]
fn missing_required_module() {
    assert_error(
        &format!("loadmodule = [\"testbind\"]\n{HEAD}"),
        &["module testbind requires testmod, which is not loaded"],
        1,
    );
    assert_error(
        &format!("loadmodule = [\"testbind\", \"testmod\"]\n{HEAD}"),
        &["module testbind requires testmod, which is loaded after it"],
        1,
    );
}

#[test]
fn bad_listen_address() {
    assert_error(
        "[core]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:1.2.3:5060\"]\n",
        &["bad listen address `udp:1.2.3:5060`"],
        2,
    );
    assert_error("[core]\nlisten = \"sctp:127.0.0.1:5060\"\n", &["not supported yet"], 2);
}

#[test]
fn loadmodule_under_a_table() {
    assert_error(
        "[core]\nchildren = 2\nloadmodule = [\"testmod\"]\n",
        &["`loadmodule` ended up inside [core]", "move the loadmodule line above"],
        3,
    );
}

#[test]
fn unknown_keys_and_syntax() {
    assert_error("[core]\nchilren = 2\n", &["unknown key `chilren` in [core]", "did you mean `children`?"], 2);
    assert_error("[rpc]\nhttp = \"localhost\"\n", &["bad HTTP listen address"], 2);
    assert_error("loadmodule = [\"testmod\"\n", &["TOML syntax"], 1);
    assert_error(
        "loadmodule = []\n[modparam.pua]\nx = 1\n",
        &["[modparam.pua] configures module `pua`, which is not in loadmodule"],
        2,
    );
}

#[test]
fn route_errors() {
    let base = format!("loadmodule = [\"testmod\"]\n{HEAD}");
    assert_error(
        &format!("{base}[[route]]\nmethod = \"OPTIONS\"\ndo = [\"test_okk()\"]\n"),
        &["unknown function `test_okk`", "did you mean `test_ok`?"],
        6,
    );
    assert_error(&format!("{base}[[route]]\ndo = [\"test_fail(1)\"]\n"), &["takes 0 argument(s), 1 given"], 5);
    assert_error(&format!("{base}[[route]]\nruri = \"(unclosed\"\n"), &["bad regex in ruri"], 5);
    assert_error(&format!("{base}[[route]]\ndo = [\"test_ok(\"]\n"), &["cannot read action"], 5);
    assert_error(
        &format!("{base}[[route]]\non_fail = \"Not Found\"\n"),
        &["on_fail must be a status code and a reason"],
        5,
    );
}

/// `run` with a bad config starts nothing: no RPC listener, no FIFO, exit status 1.
#[test]
fn run_refuses_to_start() {
    let dir = TempDir::new("cfg-run");
    let port = free_port();
    let fifo = dir.join("rpc.fifo");
    let cfg = format!(
        "loadmodule = [\"testmod\"]\n{}[rpc]\nhttp = \"127.0.0.1:{port}\"\nfifo = \"{}\"\n[modparam.testmod]\ntick_ms = \"x\"\n",
        HEAD.replace("@MODULES@", &release_dir().display().to_string()),
        fifo.display()
    );
    let path = dir.write("bad.toml", &cfg);
    let out = std::process::Command::new(puahost()).args(["run", "-c", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("bad.toml:8:11"), "{}", text(&out));
    assert!(TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_err());
    assert!(!fifo.exists());
}

/// A module whose init fails or panics stops the start-up with a message naming it; the host
/// process exits normally (status 1), it does not crash.
#[test]
fn init_failure_and_panic() {
    for (mode, expected) in
        [(1, "module testmod failed to initialise: fail_init is set"), (2, "module testmod panicked in init")]
    {
        let dir = TempDir::new("cfg-init");
        let cfg = format!("loadmodule = [\"testmod\"]\n{HEAD}[modparam.testmod]\nfail_init = {mode}\n")
            .replace("@MODULES@", &release_dir().display().to_string());
        let path = dir.write("init.toml", &cfg);
        let out = std::process::Command::new(puahost()).args(["run", "-c", path.to_str().unwrap()]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
    }
}

#[test]
fn version_flag() {
    let out = cli(&["--version"]);
    assert!(out.status.success());
    assert_eq!(text(&out).trim(), format!("puahost {}", env!("CARGO_PKG_VERSION")));
}
