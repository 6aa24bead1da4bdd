//! Packaging: the .deb packaging/build-deb.sh makes from the release build holds the binary,
//! every module the project ships (loadable after stripping), the configs (the installed one
//! passing `puahost check`) and the systemd unit, whose Type=notify rests on puahost telling
//! systemd it is ready.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", e2e::text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deb_holds_the_binary_every_module_the_configs_and_the_unit() {
    let printed = run(Command::new(e2e::root().join("packaging/build-deb.sh")).current_dir(e2e::root()));
    let deb = e2e::root().join(printed.lines().last().expect("build-deb.sh prints the .deb").trim());
    assert!(deb.is_file(), "{} was not written", deb.display());

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: Vec<&str> =
        listing.lines().filter_map(|l| l.split_whitespace().nth(5)).map(|p| p.trim_start_matches('.')).collect();
    let has = |p: &str| files.contains(&p);
    assert!(has("/usr/bin/puahost"), "no binary in:\n{listing}");
    assert!(has("/etc/puahost/puahost.toml"), "no config in:\n{listing}");
    assert!(has("/usr/lib/systemd/system/puahost.service"), "no unit in:\n{listing}");
    for m in e2e::shipped_modules() {
        assert!(has(&format!("/usr/lib/puahost/modules/lib{m}.so")), "module {m} missing from:\n{listing}");
        assert!(has(&format!("/usr/share/doc/puahost/modules/{m}.md")), "reference of {m} missing");
    }
    for c in std::fs::read_dir(e2e::root().join("configs")).unwrap() {
        let name = c.unwrap().file_name().to_string_lossy().into_owned();
        assert!(has(&format!("/usr/share/doc/puahost/examples/{name}")), "example {name} missing");
    }
    assert!(!files.iter().any(|f| f.contains("libtest")), "test modules are not shipped:\n{listing}");
    let conffiles = run(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("conffiles"));
    assert!(conffiles.lines().any(|l| l == "/etc/puahost/puahost.toml"), "conffiles: {conffiles}");

    // Unpacked: the stripped modules still load, and the installed config passes check once
    // pointed at them (installed, the binary finds them in /usr/lib/puahost/modules itself).
    let root = e2e::TempDir::new("deb");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root.path()));
    let bin = root.join("usr/bin/puahost");
    let modules = root.join("usr/lib/puahost/modules");
    for m in e2e::shipped_modules() {
        let out = run(Command::new(&bin).args(["params", &m, "-L"]).arg(&modules));
        assert!(out.starts_with(&format!("module {m} ")), "{m}: {out}");
    }
    let config = std::fs::read_to_string(root.join("etc/puahost/puahost.toml")).unwrap();
    assert!(config.contains("sqlite:///var/lib/puahost/presence.sqlite"), "database under /var/lib:\n{config}");
    assert!(config.contains("/run/puahost/rpc.fifo"), "RPC FIFO under /run:\n{config}");
    let local = config.replacen("[core]\n", &format!("[core]\nmodules_path = [{:?}]\n", modules.display()), 1);
    let checked = root.write("check.toml", &local);
    run(Command::new(&bin).args(["check", "-c"]).arg(&checked));

    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/puahost.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecStartPre=/usr/bin/puahost check -c /etc/puahost/puahost.toml",
        "ExecStart=/usr/bin/puahost run -c /etc/puahost/puahost.toml",
        "StateDirectory=puahost",
        "User=puahost",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}:\n{unit}");
    }
    let control = e2e::TempDir::new("deb-control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(control.path()));
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "postinst creates the user:\n{postinst}");
    assert!(postinst.contains("deb-systemd-helper"), "postinst enables the unit:\n{postinst}");
    assert!(!postinst.contains("#DEBHELPER#"), "the systemd snippet replaced the token");
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_and_stopping_are_sent_to_systemd() {
    let dir = e2e::TempDir::new("sd-notify");
    let socket_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let port = e2e::free_port();
    let config = dir.write(
        "puahost.toml",
        &format!(
            "loadmodule = [\"presence\"]\n[core]\nlisten = [\"udp:127.0.0.1:{}\"]\nmodules_path = [{:?}]\n",
            port,
            e2e::release_dir().display()
        ),
    );
    let mut child = Command::new(e2e::puahost())
        .args(["run", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn puahost");
    let ready = recv(&sock);
    // READY only once SIP answers: systemd starts dependants after it.
    let mut client = e2e::sip::Client::udp(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let options = e2e::sip::request(&client, "OPTIONS", &format!("sip:127.0.0.1:{port}"), &[], "");
    assert!(e2e::sip::status(&client.transact(&options)) > 0);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = recv(&sock);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(child.wait().unwrap().success());
}
