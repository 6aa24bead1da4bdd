//! `puahost rpc`: a JSON-RPC client that reads its arguments as `kamctl rpc` does.
//!
//! Arguments that are numbers go as JSON numbers; `s:` forces a string and `i:` a number. With
//! `puahost rpc = <method> ...`, `=CRLF=` in every parameter but the first becomes CRLF
//! (kamctl's convention for header blocks and bodies).

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::framing::{Frame, JsonFramer};

/// Converts command-line arguments to JSON-RPC parameters; `expand` is kamctl's `=` mode.
pub fn params_from_args(args: &[String], expand: bool) -> anyhow::Result<Vec<Value>> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            let a = if expand && i > 0 { a.replace("=CRLF=", "\r\n") } else { a.clone() };
            if let Some(s) = a.strip_prefix("s:") {
                Ok(Value::String(s.to_string()))
            } else if let Some(n) = a.strip_prefix("i:") {
                serde_json::from_str::<serde_json::Number>(n.trim())
                    .map(Value::Number)
                    .with_context(|| format!("argument `{a}`: `i:` must be followed by a number"))
            } else {
                Ok(serde_json::from_str::<serde_json::Number>(&a).map(Value::Number).unwrap_or(Value::String(a)))
            }
        })
        .collect()
}

fn request(method: &str, params: Vec<Value>, id: u32) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
}

/// Sends a request over HTTP and returns the response document.
pub fn call_http(url: &str, method: &str, params: Vec<Value>) -> anyhow::Result<Value> {
    let body = request(method, params, std::process::id()).to_string();
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut post = agent.post(url).header("Content-Type", "application/json");
    // `[rpc] token` of the host, when it has one.
    if let Some(token) = std::env::var("PUAHOST_RPC_TOKEN").ok().filter(|t| !t.is_empty()) {
        post = post.header("Authorization", &format!("Bearer {token}"));
    }
    let mut resp = post.send(body.as_bytes()).with_context(|| format!("cannot reach {url}"))?;
    let text = resp.body_mut().read_to_string().context("reading the reply")?;
    serde_json::from_str(&text).with_context(|| format!("the reply is not JSON: {text}"))
}

/// Sends a request over the FIFO at `fifo` and reads the reply from a FIFO of its own in
/// `reply_dir`, as kamctl does.
pub fn call_fifo(fifo: &Path, reply_dir: &Path, method: &str, params: Vec<Value>) -> anyhow::Result<Value> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let name = format!("puahost_receiver_{}", std::process::id());
    let reply_path = reply_dir.join(&name);
    let _ = std::fs::remove_file(&reply_path);
    nix::unistd::mkfifo(&reply_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .with_context(|| format!("cannot create the reply FIFO {}", reply_path.display()))?;
    struct Cleanup<'a>(&'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _cleanup = Cleanup(&reply_path);
    // Read-write: opening does not wait for the server, and we frame the reply ourselves.
    let mut reply = std::fs::OpenOptions::new().read(true).write(true).open(&reply_path)?;

    let mut req = request(method, params, std::process::id());
    req["reply_name"] = Value::String(name);
    let mut server =
        std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(fifo).with_context(|| {
            format!("cannot open the RPC FIFO {} (is puahost running with [rpc] fifo set?)", fifo.display())
        })?;
    server.write_all(format!("{req}\n").as_bytes())?;

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut framer = JsonFramer::new(16 << 20);
        let mut buf = [0u8; 8192];
        loop {
            match reply.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    for f in framer.push(&buf[..n]) {
                        if let Frame::Document(d) = f {
                            let _ = tx.send(d);
                            return;
                        }
                    }
                }
            }
        }
    });
    let doc = rx.recv_timeout(Duration::from_secs(120)).context("no reply on the FIFO within 120 s")?;
    serde_json::from_slice(&doc).context("the reply is not JSON")
}

/// Prints a response as kamctl does (pretty JSON) and says whether it was a fault.
pub fn print_response(resp: &Value) -> bool {
    println!("{}", serde_json::to_string_pretty(resp).unwrap_or_else(|_| resp.to_string()));
    resp.get("error").is_none()
}

/// The HTTP URL from `[rpc] http` of a config.
pub fn url_for(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/RPC")
}

/// Checks that `method` looks like an RPC name before sending anything.
pub fn check_method(method: &str) -> anyhow::Result<()> {
    if method.is_empty() || method.starts_with('-') {
        bail!("give an RPC command name, e.g. `puahost rpc core.version`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn kamctl_argument_rules() {
        let p = params_from_args(&s(&["sip:a@b", "3600", "-1", "s:3600", "i:7", "1.5", "0x10"]), false).unwrap();
        assert_eq!(
            p,
            vec![json!("sip:a@b"), json!(3600), json!(-1), json!("3600"), json!(7), json!(1.5), json!("0x10")]
        );
        assert!(params_from_args(&s(&["i:abc"]), false).is_err());
        let p = params_from_args(&s(&["a=CRLF=b", "X: y=CRLF="]), true).unwrap();
        assert_eq!(p, vec![json!("a=CRLF=b"), json!("X: y\r\n")]);
    }
}
