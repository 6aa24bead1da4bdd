//! JSON-RPC over a FIFO, as Kamailio's jsonrpcs: a client writes one JSON request with an
//! extra `"reply_name"` field to the server FIFO, and reads the reply from the FIFO of that
//! name in the reply directory (`/tmp` by default, where kamctl creates it).
//!
//! The server FIFO is opened read-write, so it never reads EOF (and never spins) when the last
//! writer goes away; requests are framed by complete JSON documents, not by `read()`; replies
//! are written without blocking and with a deadline, because the client may be gone.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::envelope::valid_reply_name;
use super::envelope::{escape_raw_controls, salvage_reply_name};
use super::framing::{Frame, JsonFramer};
use super::jsonrpc;
use crate::services::HostState;

/// Largest request accepted over the FIFO.
const MAX_REQUEST: usize = 1 << 20;
/// How long a reply waits for its reader to open the reply FIFO and drain it.
const REPLY_DEADLINE: Duration = Duration::from_secs(3);

/// Creates the FIFO at `path` (replacing a stale one) and serves requests from it.
pub fn serve_fifo(
    state: Arc<HostState>,
    path: PathBuf,
    reply_dir: PathBuf,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_fifo() => std::fs::remove_file(&path)?,
        Ok(_) => anyhow::bail!("{} exists and is not a FIFO; refusing to replace it", path.display()),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o660))
        .map_err(|e| anyhow::anyhow!("cannot create the RPC FIFO {}: {e}", path.display()))?;
    let mut rx = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the RPC FIFO {}: {e}", path.display()))?;
    tracing::info!(fifo = %path.display(), reply_dir = %reply_dir.display(), "RPC listening on FIFO");
    Ok(tokio::spawn(async move {
        let mut framer = JsonFramer::new(MAX_REQUEST);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match rx.read(&mut buf).await {
                Ok(0) => continue,
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("RPC FIFO read failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            for frame in framer.push(&buf[..n]) {
                match frame {
                    Frame::Document(doc) => {
                        let (state, reply_dir) = (state.clone(), reply_dir.clone());
                        tokio::spawn(async move { handle(&state, &doc, &reply_dir).await });
                    }
                    Frame::Garbage(why) => tracing::warn!("RPC FIFO: {why}"),
                }
            }
        }
    }))
}

async fn handle(state: &Arc<HostState>, doc: &[u8], reply_dir: &Path) {
    let doc = escape_raw_controls(doc);
    let (reply_name, body) = match serde_json::from_slice::<Value>(&doc) {
        Ok(value) => {
            let reply_name = match &value {
                Value::Object(o) => o.get("reply_name").and_then(Value::as_str).map(str::to_string),
                _ => None,
            };
            (reply_name, jsonrpc::handle_value(state, value).await.body)
        }
        Err(e) => {
            // kamctl writes its arguments between double quotes without escaping them, so an
            // argument with a `"` (an XML body) makes invalid JSON. Kamailio leaves kamctl
            // waiting forever; when the reply_name can still be read, answer with the error.
            tracing::warn!("RPC FIFO: request is not valid JSON ({e})");
            let error = json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": format!(
                "Parse error: the request is not valid JSON ({e}); kamctl does not escape double quotes in arguments, use single quotes in XML"
            )}, "id": null});
            (salvage_reply_name(&doc), error)
        }
    };
    let Some(name) = reply_name else {
        tracing::debug!("RPC FIFO: request without reply_name; reply dropped");
        return;
    };
    if !valid_reply_name(&name) {
        tracing::warn!(reply_name = %name, "RPC FIFO: reply_name must be a bare file name; reply dropped");
        return;
    }
    let path = reply_dir.join(&name);
    // Pretty-printed, as jsonrpcs's default `pretty_format=1`: kamctl's output filter expects
    // one member per line.
    let mut text = serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string());
    text.push('\n');
    if let Err(e) = write_reply(&path, text.as_bytes()).await {
        tracing::warn!(reply = %path.display(), "RPC FIFO: cannot write the reply: {e}");
    }
}

/// Writes `data` to the reply FIFO at `path` without ever blocking a thread: the open is
/// non-blocking (retried while the client has not opened its end yet), the write is async,
/// and both are bounded by [`REPLY_DEADLINE`]. Regular files are refused.
async fn write_reply(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + REPLY_DEADLINE;
    let mut tx = loop {
        match pipe::OpenOptions::new().open_sender(path) {
            Ok(tx) => break tx,
            // ENXIO: no reader yet (kamctl starts its reader in the background).
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e),
        }
    };
    tokio::time::timeout_at(deadline, tx.write_all(data))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the reader did not drain the reply in time"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_crlf_in_strings_is_accepted() {
        let doc = b"{\"params\": [\"X-A: 1\r\n\", \"a\\\"b\"], \"id\": 1}\n";
        let fixed = escape_raw_controls(doc);
        let v: Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(v["params"][0], "X-A: 1\r\n");
        assert_eq!(v["params"][1], "a\"b");
        assert!(
            matches!(escape_raw_controls(b"{\"a\": 1}\n"), std::borrow::Cow::Borrowed(_)),
            "outside strings: untouched"
        );
    }

    #[test]
    fn reply_name_of_broken_json() {
        let doc = br#"{"jsonrpc": "2.0", "method": "pua.publish", "params": ["<x a="1"/>"], "reply_name": "kamailio_receiver_42", "id": 42}"#;
        assert!(serde_json::from_slice::<Value>(doc).is_err());
        assert_eq!(salvage_reply_name(doc).as_deref(), Some("kamailio_receiver_42"));
        assert_eq!(salvage_reply_name(br#"{"reply_name": "../etc/passwd"}"#), None, "still a bare name only");
        assert_eq!(salvage_reply_name(b"{garbage"), None);
    }

    #[test]
    fn reply_names() {
        assert!(valid_reply_name("kamailio_receiver_1234"));
        for bad in ["", ".", "..", "../etc/passwd", "a/b", "x\0y"] {
            assert!(!valid_reply_name(bad), "{bad:?}");
        }
    }
}
