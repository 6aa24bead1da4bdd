//! Entry points of the fuzz targets (`entry.rs`, shared with the corpus replay test).

/// The host's pure decoders (`host/src/lib.rs`), compiled from the host's sources: depending
/// on the `puahost` package would build its whole dependency tree (sqlx, axum, tokio) with
/// the sanitizer for nothing.
#[path = "../../host/src/lib.rs"]
pub mod puahost;

#[path = "entry.rs"]
pub mod entry;
