//! The host's pure decoders as a library: the JSON-RPC envelope and FIFO framing, and the
//! TOML reading of the config with its diagnostics. Nothing here starts anything; it exists so
//! the fuzz targets (`fuzz/`) and the corpus replay test (`tests/tests/fuzz_corpus.rs`) reach
//! the same code a request or a config file goes through. The binary (`main.rs`) compiles
//! these files as its own modules.

#![allow(dead_code)]

#[path = "config/diagnostic.rs"]
pub mod config_diagnostic;
#[path = "config/value.rs"]
pub mod config_value;
#[path = "rpc/envelope.rs"]
pub mod rpc_envelope;
#[path = "rpc/framing.rs"]
pub mod rpc_framing;
