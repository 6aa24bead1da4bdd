//! The committed module reference (docs/modules/) is what `puahost docs` renders from the
//! modules built now: a modparam, function or RPC command added, removed or re-documented
//! without running scripts/module-docs.sh fails here.

use std::process::Command;

fn docs(out: &std::path::Path, check: bool) -> std::process::Output {
    let mut cmd = Command::new(e2e::puahost());
    cmd.arg("docs").arg("-L").arg(e2e::release_dir()).arg("--out").arg(out);
    if check {
        cmd.arg("--check");
    }
    cmd.args(e2e::shipped_modules()).output().expect("running puahost docs")
}

#[test]
fn committed_module_reference_is_current() {
    let out = docs(&e2e::root().join("docs/modules"), true);
    assert!(
        out.status.success(),
        "docs/modules is stale; run scripts/module-docs.sh\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_changed_page_is_reported_stale() {
    let dir = e2e::TempDir::new("docs");
    let first = docs(dir.path(), false);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let page = dir.join("presence.md");
    let text = std::fs::read_to_string(&page).expect("presence.md written");
    assert!(text.contains("| `subs_db_mode` | int |"), "presence.md lists its modparams:\n{text}");
    assert!(text.contains("`handle_publish()`"), "presence.md lists its functions");
    assert!(text.contains("`presence.cleanup`"), "presence.md lists its RPC commands");
    assert!(docs(dir.path(), true).status.success(), "a fresh rendering checks clean");
    std::fs::write(&page, text.replace("subs_db_mode", "subs_db_mod")).unwrap();
    std::fs::remove_file(dir.join("pua.md")).unwrap();
    let stale = docs(dir.path(), true);
    assert!(!stale.status.success());
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(err.contains("presence.md") && err.contains("pua.md"), "both stale pages named:\n{err}");
    assert!(!err.contains("usrloc.md"), "unchanged pages are not named:\n{err}");
}
