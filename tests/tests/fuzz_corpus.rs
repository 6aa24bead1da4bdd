//! The fuzz corpora under plain `cargo test`: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same entry point as the cargo-fuzz target
//! (`fuzz/src/entry.rs`), so CI replays them without cargo-fuzz or a nightly toolchain. An
//! input that panics fails the test with its file name.

use std::path::Path;
use std::time::Instant;

/// What `entry.rs` calls `super::puahost`: the host's library target.
mod puahost {
    pub use ::puahost::*;
}

#[path = "../../fuzz/src/entry.rs"]
mod entry;

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let t = Instant::now();
    let mut total = 0;
    for (name, target) in entry::TARGETS {
        let mut n = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(files) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
            for file in files.flatten() {
                let data = std::fs::read(file.path()).expect("read corpus file");
                if std::panic::catch_unwind(|| target(&data)).is_err() {
                    panic!("fuzz target {name} panicked on {}", file.path().display());
                }
                n += 1;
            }
        }
        assert!(n > 0, "no corpus for {name}");
        total += n;
    }
    eprintln!("{total} inputs replayed in {:?}", t.elapsed());
}
