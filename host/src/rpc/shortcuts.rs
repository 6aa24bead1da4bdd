//! Named-option forms of RPC commands whose positional lists are long and easy to get wrong:
//!
//! ```text
//! puahost rpc pua.publish --uri sip:a@b --event presence --body-file x.xml --expires 3600
//! puahost rpc pua.subscribe --uri sip:a@b --watcher sip:me@host:5060 --expires 600
//! ```
//!
//! The options are turned into the positional list the command takes (pua_rpc's order, `.`
//! for what is not given), so the server sees exactly what `kamctl rpc` would send.

use anyhow::{Context, bail};
use serde_json::Value;

struct Spec {
    /// Option name (without `--`), default (None: required); in positional order.
    options: &'static [(&'static str, Option<&'static str>)],
    /// A trailing optional parameter taken from `--body` or the file named by `--body-file`.
    body: bool,
}

const PUBLISH: Spec = Spec {
    options: &[
        ("uri", None),
        ("expires", Some("3600")),
        ("event", Some("presence")),
        ("content-type", Some(".")),
        ("id", Some(".")),
        ("etag", Some(".")),
        ("outbound-proxy", Some(".")),
        ("extra-headers", Some(".")),
    ],
    body: true,
};

const SUBSCRIBE: Spec = Spec {
    options: &[("uri", None), ("watcher", None), ("event", Some("presence")), ("expires", Some("3600"))],
    body: false,
};

fn spec(method: &str) -> Option<&'static Spec> {
    match method {
        "pua.publish" | "pua.send_publish" => Some(&PUBLISH),
        "pua.subscribe" => Some(&SUBSCRIBE),
        _ => None,
    }
}

/// The positional parameters for `method` from `--name value` options, or None when the
/// arguments are not in that form (or the command has none).
pub fn params(method: &str, args: &[String]) -> Option<anyhow::Result<Vec<Value>>> {
    let spec = spec(method)?;
    if !args.first().is_some_and(|a| a.starts_with("--")) {
        return None;
    }
    Some(build(method, spec, args))
}

fn build(method: &str, spec: &Spec, args: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut given: Vec<(String, String)> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else { bail!("`{a}`: expected an option (--name value)") };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (name.to_string(), it.next().with_context(|| format!("--{name} needs a value"))?.clone()),
        };
        let known =
            spec.options.iter().any(|(o, _)| *o == name) || (spec.body && (name == "body" || name == "body-file"));
        if !known {
            let names: Vec<String> = spec
                .options
                .iter()
                .map(|(o, _)| format!("--{o}"))
                .chain(spec.body.then(|| "--body, --body-file".to_string()))
                .collect();
            bail!("{method} has no option --{name} (it takes {})", names.join(", "));
        }
        given.push((name, value));
    }
    let get = |name: &str| given.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut out = Vec::new();
    for (name, default) in spec.options {
        let v = match (get(name), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => bail!("{method} needs --{name}"),
        };
        // pua.subscribe's expires is a number; everything of pua.publish is a string.
        out.push(if method == "pua.subscribe" && *name == "expires" {
            Value::Number(v.trim().parse::<i64>().with_context(|| format!("--expires `{v}` is not a number"))?.into())
        } else {
            Value::String(v)
        });
    }
    if spec.body {
        let body = match (get("body"), get("body-file")) {
            (Some(_), Some(_)) => bail!("give --body or --body-file, not both"),
            (Some(b), None) => Some(b),
            (None, Some(f)) => Some(std::fs::read_to_string(&f).with_context(|| format!("reading --body-file {f}"))?),
            (None, None) => None,
        };
        if let Some(b) = body {
            out.push(Value::String(b));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn publish_options_become_the_positional_list() {
        let p = params("pua.publish", &args(&["--uri", "sip:a@b", "--body", "<x/>", "--expires=60"])).unwrap().unwrap();
        assert_eq!(
            p,
            json!(["sip:a@b", "60", "presence", ".", ".", ".", ".", ".", "<x/>"]).as_array().unwrap().clone()
        );
        let dir = std::env::temp_dir().join(format!("puahost-shortcut-{}", std::process::id()));
        std::fs::write(&dir, "<file/>").unwrap();
        let p = params(
            "pua.send_publish",
            &args(&["--uri", "sip:a@b", "--body-file", dir.to_str().unwrap(), "--etag", "e1"]),
        )
        .unwrap()
        .unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(p[5], "e1");
        assert_eq!(p[8], "<file/>");
    }

    #[test]
    fn subscribe_and_errors() {
        let p = params("pua.subscribe", &args(&["--uri", "sip:a@b", "--watcher", "sip:w@h", "--expires", "0"]))
            .unwrap()
            .unwrap();
        assert_eq!(p, json!(["sip:a@b", "sip:w@h", "presence", 0]).as_array().unwrap().clone());
        assert!(
            params("pua.subscribe", &args(&["--uri", "sip:a@b"]))
                .unwrap()
                .unwrap_err()
                .to_string()
                .contains("--watcher")
        );
        assert!(
            params("pua.publish", &args(&["--uri", "sip:a@b", "--bogus", "1"]))
                .unwrap()
                .unwrap_err()
                .to_string()
                .contains("no option --bogus")
        );
        assert!(params("pua.publish", &args(&["sip:a@b", "3600"])).is_none(), "positional form untouched");
        assert!(params("core.version", &args(&["--x", "1"])).is_none());
    }
}
