//! Decoding of JSON-RPC requests, free of I/O and host state: the JSON-RPC 2.0 envelope
//! checks, and the FIFO's repairs of what `kamctl` writes. Shared by the transports and
//! reachable from the host's library target, so `fuzz/` and the corpus replay test exercise
//! exactly what a request goes through.

use serde_json::{Map, Value};

/// A checked request: the method and its positional parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<'a> {
    pub method: &'a str,
    pub params: Vec<Value>,
}

/// Checks one request object's envelope: `jsonrpc` absent or `"2.0"`, a string `method`,
/// `params` absent, null, an array, or an object (taken in key order, as jsonrpcs does).
/// `Err` holds the JSON-RPC fault code and message.
pub fn decode_call(request: &Map<String, Value>) -> Result<Call<'_>, (i32, &'static str)> {
    match request.get("jsonrpc") {
        None => {}
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return Err((-32600, "Invalid Request")),
    }
    let Some(Value::String(method)) = request.get("method") else {
        return Err((-32600, "Invalid Request"));
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(o)) => o.values().cloned().collect(),
        Some(_) => return Err((-32602, "Invalid params")),
    };
    Ok(Call { method, params })
}

/// Whether `name` may be used as a reply FIFO name: a bare file name, nothing that could
/// walk out of the reply directory.
pub fn valid_reply_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Raw control characters inside JSON strings, escaped. `kamctl rpc =` turns `=CRLF=` into
/// a real CR LF inside its quoted arguments; Kamailio's JSON parser takes that, strict JSON does
/// not.
pub fn escape_raw_controls(doc: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut in_string = false;
    let mut escaped = false;
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in doc.iter().enumerate() {
        let raw_control = in_string && b < 0x20;
        if raw_control && out.is_none() {
            out = Some(doc[..i].to_vec());
        }
        if let Some(o) = out.as_mut() {
            if raw_control {
                o.extend_from_slice(format!("\\u{b:04x}").as_bytes());
            } else {
                o.push(b);
            }
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        }
    }
    out.map_or(std::borrow::Cow::Borrowed(doc), std::borrow::Cow::Owned)
}

/// The `"reply_name": "..."` of a request that is not valid JSON, read from its text.
pub fn salvage_reply_name(doc: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(doc);
    let at = text.rfind("\"reply_name\"")? + "\"reply_name\"".len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let name = &rest[..rest.find('"')?];
    valid_reply_name(name).then(|| name.to_string())
}
