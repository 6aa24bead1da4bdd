//! Modules built outside the workspace: the example template loads into an already built
//! host; a module built against a changed ABI is refused with a message, not a crash.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{Host, TempDir, cli, puahost, root, text};
use serde_json::json;

/// Where the out-of-tree builds go: a target dir of their own (the outer `cargo test` holds
/// the workspace's build lock while tests run), shared between the tests so dependencies
/// build once.
fn template_target() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    base.join("plugin-template")
}

/// Builds the cargo project at `dir` in release mode; returns its .so.
fn build(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--release", "--offline", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", template_target())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "building {} failed:\n{}", dir.display(), text(&out));
    template_target().join("release").join("libhello.so")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "target" {
            continue;
        }
        let dst = to.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst)
        } else {
            std::fs::copy(e.path(), &dst).map(drop).unwrap()
        }
    }
}

/// Serialises the tests of this file that build into the shared template target dir.
static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn out_of_tree_template_loads() {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let so = build(&root().join("examples/plugin-template"));
    let dir = TempDir::new("template");
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::copy(&so, modules.join("libhello.so")).unwrap();

    let out = cli(&["params", "hello", "-L", modules.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let params = text(&out);
    for expected in ["module hello 0.1.0", "greeting", "default \"Hello\"", "hello_log(1 args)", "hello.say"] {
        assert!(params.contains(expected), "{expected} missing from:\n{params}");
    }

    let config = format!(
        "loadmodule = [\"hello\"]\n[core]\nmodules_path = [\"{}\"]\n[rpc]\nhttp = \"127.0.0.1:@HTTP@\"\n[modparam.hello]\ngreeting = \"Good morning\"\n",
        modules.display()
    );
    let host = Host::start_in(dir, &config);
    assert_eq!(host.result("hello.say", json!(["Alice"])), json!("Good morning, Alice!"));
    let (_, metrics) = e2e::http_request(host.http.unwrap(), "GET", "/metrics", "");
    assert!(metrics.contains("puahost_hello_said_total 1"), "{metrics}");
}

/// Copies plugin-api and the template, applies `edit` to the copy of plugin-api, builds the
/// template against it, and returns what `puahost check` says when loading the result.
fn refused_after(name: &str, edit: impl Fn(&Path)) -> String {
    let dir = TempDir::new(name);
    let api = dir.join("plugin-api");
    copy_dir(&root().join("plugin-api"), &api);
    // The copy is no longer in the workspace: give it concrete versions instead of workspace ones.
    let manifest = std::fs::read_to_string(api.join("Cargo.toml")).unwrap();
    let host_version = env!("CARGO_PKG_VERSION");
    let manifest = manifest
        .replace("rust-version.workspace = true", "")
        .replace("version.workspace = true", "version = \"0.1.1-abitest\"")
        .replace("edition.workspace = true", "edition = \"2024\"")
        .replace("license.workspace = true", "")
        .replace("abi_stable.workspace = true", "abi_stable = { version = \"=0.11.3\", default-features = false }")
        .replace("serde_json.workspace = true", "serde_json = \"1\"")
        .replace("tracing.workspace = true", "tracing = \"0.1\"")
        .replace(
            "sip-message.workspace = true",
            &format!("sip-message = {{ path = {:?} }}", root().join("lib/sip-message")),
        );
    std::fs::write(api.join("Cargo.toml"), manifest).unwrap();
    edit(&api);
    let template = dir.join("template");
    copy_dir(&root().join("examples/plugin-template"), &template);
    let m = std::fs::read_to_string(template.join("Cargo.toml")).unwrap().replace("../../plugin-api", "../plugin-api");
    std::fs::write(template.join("Cargo.toml"), m).unwrap();
    let so = build(&template);
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::copy(&so, modules.join("libhello.so")).unwrap();
    let cfg = dir
        .write("abi.toml", &format!("loadmodule = [\"hello\"]\n[core]\nmodules_path = [\"{}\"]\n", modules.display()));
    let out = cli(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "an incompatible module was accepted:\n{}", text(&out));
    let run = Command::new(puahost()).args(["run", "-c", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "run must refuse too:\n{}", text(&run));
    let said = text(&out);
    assert!(said.contains("module `hello`"), "{said}");
    assert!(
        said.contains("plugin-api 0.1.1-abitest") && said.contains(&format!("this host has plugin-api {host_version}")),
        "{said}"
    );
    said
}

#[test]
fn module_built_against_a_changed_abi_is_refused() {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    // Two fields that are not the last one swap places: the code still compiles, the layout
    // differs, and the load-time check must catch it.
    let said = refused_after("abi-layout", |api| {
        let p = api.join("src/ffi/root.rs");
        let src = std::fs::read_to_string(&p).unwrap();
        let child_init = "    /// Called on each worker thread before it takes work, with the worker's rank (1-based).\n    pub child_init: extern \"C\" fn(rank: u32) -> FfiStatus,\n";
        let destroy = "    /// Called once at shutdown, in reverse load order (flush state to the database here).\n    pub destroy: extern \"C\" fn() -> FfiStatus,\n";
        let changed = src.replacen(&format!("{child_init}{destroy}"), &format!("{destroy}{child_init}"), 1);
        assert_ne!(src, changed, "the edit did not apply");
        std::fs::write(&p, changed).unwrap();
    });
    assert!(said.contains("type layouts differ"), "{said}");

    // A new ABI major: refused by the version check, naming both ABI generations.
    let said = refused_after("abi-major", |api| {
        let p = api.join("src/ffi/root.rs");
        let src = std::fs::read_to_string(&p).unwrap();
        let changed = src.replace(
            "pub(crate) const ABI_VERSION_STRING: &str = \"1.0.0\";",
            "pub(crate) const ABI_VERSION_STRING: &str = \"2.0.0\";",
        );
        assert_ne!(src, changed, "the edit did not apply");
        std::fs::write(&p, changed).unwrap();
    });
    assert!(said.contains("(ABI 2)") && said.contains("(ABI 1)"), "{said}");
}

#[test]
fn params_are_read_from_the_plugin() {
    let out = cli(&["params", "testmod", "-L", e2e::release_dir().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let s = text(&out);
    for expected in [
        "module testmod",
        "tick_ms",
        "int, 0..=60000; default 0",
        "tags",
        "str, repeatable; default none",
        "test_ok(0..2 args)",
        "testmod.later (replies when done)",
        "exports API: echo",
    ] {
        assert!(s.contains(expected), "{expected} missing from:\n{s}");
    }
    let out = cli(&["params", "testbind", "-L", e2e::release_dir().to_str().unwrap()]);
    assert!(text(&out).contains("requires: testmod"), "{}", text(&out));
    let out = cli(&["params", "nosuch", "-L", e2e::release_dir().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("module `nosuch` not found"), "{}", text(&out));
}

/// A file that is a shared library but not a module is refused by name.
#[test]
fn a_library_that_is_not_a_module_is_refused() {
    let dir = TempDir::new("notamodule");
    let libc = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libm");
    std::fs::copy(libc, dir.join("libm.so")).unwrap();
    let cfg =
        dir.write("c.toml", &format!("loadmodule = [\"m\"]\n[core]\nmodules_path = [\"{}\"]\n", dir.path().display()));
    let out = cli(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("is not a puahost module"), "{}", text(&out));
}
