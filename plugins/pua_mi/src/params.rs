//! The positional parameters of the commands (reference §3), checked into what the pua API
//! takes. Two forms: pua_rpc's (`pua.publish`, `pua.send_publish`, `pua.subscribe`) and the
//! MI-era pua_mi's (`pua_publish`, `pua_subscribe`), which differ in parameter lists and fault
//! texts. Pure functions, so every fault has a unit test.

use plugin_api::api::pua::event;
use plugin_api::rpc::Value;
use plugin_api::sip::SipUri;
use plugin_api::{RpcCall, RpcFault};

/// Which command family a call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// pua_rpc (Kamailio 5.x).
    Rpc,
    /// pua_mi (Kamailio 4.x MI); `with_ob_proxy` is the `publish_with_ob_proxy` modparam.
    Mi { with_ob_proxy: bool },
}

/// A checked publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub pres_uri: String,
    /// < 0: pua's default_expires; 0: remove.
    pub expires: i32,
    pub event: i32,
    /// "" = the event's default.
    pub content_type: String,
    /// "" = no id (any series).
    pub id: String,
    pub etag: Option<String>,
    pub outbound_proxy: Option<String>,
    /// Header lines, each ending in CRLF.
    pub extra_headers: Option<String>,
    pub body: Option<String>,
}

/// A checked subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pres_uri: String,
    pub watcher_uri: String,
    pub event: i32,
    pub expires: i32,
}

/// The event flag for a name: pua's events, and those other modules added (`lookup`).
pub fn event_flag(name: &str, lookup: impl Fn(&str) -> Option<i32>) -> Option<i32> {
    event::flag_by_name(name).or_else(|| lookup(name))
}

/// Parameter `i` as text: a JSON string, or a number's text (kamctl sends numeric-looking
/// arguments as numbers). Anything else is a wrong type.
fn text(call: &RpcCall, i: usize) -> Option<String> {
    match call.params().get(i)? {
        Value::String(_) | Value::Number(_) => call.str(i),
        _ => None,
    }
}

/// `.` means "none" in these commands.
fn dot(s: String) -> Option<String> {
    (s != ".").then_some(s)
}

fn valid_uri(s: &str) -> bool {
    SipUri::parse(s).is_ok()
}

/// A decimal with an optional leading `-` (Kamailio's `str2sint`), or a JSON number.
fn expires_value(v: &str) -> Option<i32> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Extra headers: complete `Name: value` lines; a missing final CRLF is added.
fn extra_headers(raw: &str) -> Option<String> {
    let mut out = raw.to_string();
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    let ok = out.split("\r\n").filter(|l| !l.is_empty()).all(|l| {
        l.split_once(':').is_some_and(|(name, _)| {
            let n = name.trim();
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
        })
    });
    ok.then_some(out)
}

/// Fault texts per form.
struct Faults(Form);

impl Faults {
    fn too_few(&self, n: usize) -> RpcFault {
        match self.0 {
            Form::Rpc => RpcFault::new(400, format!("Too few or wrong type of parameters ({n})")),
            Form::Mi { .. } => RpcFault::new(400, "Too few or too many arguments"),
        }
    }
    fn empty(&self, name: &str, n: usize) -> RpcFault {
        match self.0 {
            Form::Rpc => self.too_few(n),
            Form::Mi { .. } => RpcFault::new(400, format!("Empty {name} parameter")),
        }
    }

    fn pres_uri(&self, uri: &str) -> RpcFault {
        match self.0 {
            Form::Rpc => RpcFault::new(400, format!("Invalid presentity uri '{uri}'")),
            Form::Mi { .. } => RpcFault::new(404, "Bad presentity URI"),
        }
    }
    fn expires(&self, v: &str) -> RpcFault {
        match self.0 {
            Form::Rpc => RpcFault::new(400, format!("Invalid expires value '{v}'")),
            Form::Mi { .. } => RpcFault::new(400, "Bad expires"),
        }
    }
    fn uri(&self, what: &str, v: &str) -> RpcFault {
        match self.0 {
            Form::Rpc => RpcFault::new(400, format!("Invalid {what} uri '{v}'")),
            Form::Mi { .. } => RpcFault::new(400, "Bad uri"),
        }
    }
}

/// `pua.publish` / `pua.send_publish`: presentity_uri, expires, event, content_type, id, etag,
/// outbound_proxy, extra_headers [, body]. `pua_publish` (MI): the same without
/// outbound_proxy unless `publish_with_ob_proxy` is set.
pub fn publish(call: &RpcCall, form: Form, events: impl Fn(&str) -> Option<i32>) -> Result<Publish, RpcFault> {
    let f = Faults(form);
    let with_proxy = match form {
        Form::Rpc => true,
        Form::Mi { with_ob_proxy } => with_ob_proxy,
    };
    let required = if with_proxy { 8 } else { 7 };
    let n = call.len();
    if n < required || n > required + 1 {
        return Err(f.too_few(n));
    }
    let names: &[&str] = if with_proxy {
        &["presentity_uri", "expires", "event", "content_type", "id", "ETag", "outbound_proxy", "extra_headers"]
    } else {
        &["presentity_uri", "expires", "event", "content_type", "id", "ETag", "extra_headers"]
    };
    let mut values = Vec::with_capacity(required);
    for (i, name) in names.iter().enumerate() {
        let v = text(call, i).ok_or_else(|| f.too_few(n))?;
        if v.is_empty() && matches!(form, Form::Mi { .. }) {
            return Err(f.empty(name, n));
        }
        values.push(v);
    }
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or_default();
    let pres_uri = next();
    if !valid_uri(&pres_uri) {
        return Err(f.pres_uri(&pres_uri));
    }
    let expires_text = next();
    let expires = expires_value(&expires_text).ok_or_else(|| f.expires(&expires_text))?;
    let event = event_flag(&next(), &events).ok_or_else(|| RpcFault::new(400, "Unknown event"))?;
    let content_type = next();
    let id = dot(next()).unwrap_or_default();
    let etag = dot(next());
    let outbound_proxy = if with_proxy { dot(next()) } else { None };
    if let Some(p) = &outbound_proxy
        && !valid_uri(p)
    {
        return Err(f.uri("outbound_proxy", p));
    }
    let extra = match dot(next()) {
        None => None,
        Some(raw) => {
            Some(extra_headers(&raw).ok_or_else(|| RpcFault::new(400, format!("Invalid extra headers '{raw}'")))?)
        }
    };
    let body = match call.params().get(required) {
        None => None,
        Some(_) => text(call, required).ok_or_else(|| f.too_few(n))?.into(),
    }
    .filter(|b: &String| !b.is_empty());
    // Any one-character content type (normally ".") means the event's default; without a body
    // there must be none.
    let content_type = if content_type.chars().count() <= 1 { String::new() } else { content_type };
    if body.is_none() && !content_type.is_empty() {
        return Err(RpcFault::new(400, "Body is missing"));
    }
    Ok(Publish { pres_uri, expires, event, content_type, id, etag, outbound_proxy, extra_headers: extra, body })
}

/// `pua.subscribe` / `pua_subscribe`: presentity_uri, watcher_uri, event, expires.
pub fn subscribe(call: &RpcCall, form: Form, events: impl Fn(&str) -> Option<i32>) -> Result<Subscribe, RpcFault> {
    let mi = matches!(form, Form::Mi { .. });
    if call.len() < 4 {
        return Err(if mi {
            RpcFault::new(400, "Too few or too many arguments")
        } else {
            RpcFault::new(500, "Not enough parameters")
        });
    }
    let pres_uri = text(call, 0).unwrap_or_default();
    if !valid_uri(&pres_uri) {
        return Err(if mi {
            RpcFault::new(404, "Bad presentity URI")
        } else {
            RpcFault::new(400, "Invalid presentity URI")
        });
    }
    let watcher_uri = text(call, 1).unwrap_or_default();
    if !valid_uri(&watcher_uri) {
        return Err(if mi { RpcFault::new(400, "Bad uri") } else { RpcFault::new(400, "Invalid watcher URI") });
    }
    let event = event_flag(&text(call, 2).unwrap_or_default(), &events)
        .ok_or_else(|| if mi { RpcFault::new(400, "Unknown event") } else { RpcFault::new(404, "Unknown event") })?;
    // A number or a numeric string (Kamailio reads any string as 0, which unsubscribes).
    let expires = call
        .int(3)
        .and_then(|e| i32::try_from(e).ok())
        .ok_or_else(|| RpcFault::new(400, format!("Invalid expires value '{}'", text(call, 3).unwrap_or_default())))?;
    Ok(Subscribe { pres_uri, watcher_uri, event, expires })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(v: Value) -> RpcCall {
        RpcCall::new(v.as_array().unwrap().clone())
    }

    fn none(_: &str) -> Option<i32> {
        None
    }

    fn fault(r: Result<Publish, RpcFault>) -> (i32, String) {
        let f = r.unwrap_err();
        (f.code, f.message)
    }

    const PIDF: &str = "<presence/>";

    #[test]
    fn publish_with_placeholders_and_defaults() {
        let p =
            publish(&call(json!(["sip:a@ex.com", "3600", "presence", ".", ".", ".", ".", ".", PIDF])), Form::Rpc, none)
                .unwrap();
        assert_eq!(
            p,
            Publish {
                pres_uri: "sip:a@ex.com".into(),
                expires: 3600,
                event: event::PRESENCE,
                content_type: String::new(),
                id: String::new(),
                etag: None,
                outbound_proxy: None,
                extra_headers: None,
                body: Some(PIDF.into()),
            }
        );
        // Numbers where kamctl sends them, an explicit content type, an ETag, a proxy, headers.
        let p = publish(
            &call(json!([
                "sip:a@ex.com",
                -1,
                "dialog",
                "application/dialog-info+xml",
                "x1",
                "a.1.2",
                "sip:10.0.0.1:5070",
                "X-A: 1",
                "<d/>"
            ])),
            Form::Rpc,
            none,
        )
        .unwrap();
        assert_eq!((p.expires, p.event, p.content_type.as_str()), (-1, event::DIALOG, "application/dialog-info+xml"));
        assert_eq!((p.id.as_str(), p.etag.as_deref()), ("x1", Some("a.1.2")));
        assert_eq!(p.outbound_proxy.as_deref(), Some("sip:10.0.0.1:5070"));
        assert_eq!(p.extra_headers.as_deref(), Some("X-A: 1\r\n"), "a final CRLF is added");
        // A refresh or removal: no body, content type ".".
        let p = publish(&call(json!(["sip:a@ex.com", "0", "presence", ".", ".", "e1", ".", "."])), Form::Rpc, none)
            .unwrap();
        assert_eq!((p.expires, p.body, p.etag.as_deref()), (0, None, Some("e1")));
        // Events added by other modules are found through the lookup.
        let p = publish(&call(json!(["sip:a@ex.com", "60", "x-mine", "x", ".", ".", ".", ".", "b"])), Form::Rpc, |n| {
            (n == "x-mine").then_some(1 << 20)
        })
        .unwrap();
        assert_eq!(p.event, 1 << 20);
    }

    #[test]
    fn publish_faults() {
        let base = ["sip:a@ex.com", "3600", "presence", ".", ".", ".", ".", "."];
        let with = |i: usize, v: Value| {
            let mut p: Vec<Value> = base.iter().map(|s| json!(s)).collect();
            p[i] = v;
            p.push(json!(PIDF));
            call(Value::Array(p))
        };
        assert_eq!(
            fault(publish(&call(json!(["sip:a@ex.com", "3600"])), Form::Rpc, none)),
            (400, "Too few or wrong type of parameters (2)".into())
        );
        assert_eq!(
            fault(publish(&with(2, json!({"x": 1})), Form::Rpc, none)),
            (400, "Too few or wrong type of parameters (9)".into())
        );
        assert_eq!(
            fault(publish(&with(0, json!("not a uri")), Form::Rpc, none)),
            (400, "Invalid presentity uri 'not a uri'".into())
        );
        assert_eq!(
            fault(publish(&with(1, json!("12x")), Form::Rpc, none)),
            (400, "Invalid expires value '12x'".into())
        );
        assert_eq!(
            fault(publish(&with(1, json!("--1")), Form::Rpc, none)),
            (400, "Invalid expires value '--1'".into())
        );
        assert_eq!(fault(publish(&with(2, json!("nope")), Form::Rpc, none)), (400, "Unknown event".into()));
        assert_eq!(
            fault(publish(&with(6, json!("sip:")), Form::Rpc, none)),
            (400, "Invalid outbound_proxy uri 'sip:'".into())
        );
        assert_eq!(fault(publish(&with(7, json!("no colon here")), Form::Rpc, none)).0, 400);
        let no_body = call(json!(["sip:a@ex.com", "3600", "presence", "application/pidf+xml", ".", ".", ".", "."]));
        assert_eq!(fault(publish(&no_body, Form::Rpc, none)), (400, "Body is missing".into()));
    }

    #[test]
    fn mi_form() {
        let mi = Form::Mi { with_ob_proxy: false };
        let p =
            publish(&call(json!(["sip:a@ex.com", "3600", "presence", ".", ".", ".", ".", PIDF])), mi, none).unwrap();
        assert_eq!((p.outbound_proxy, p.body.as_deref()), (None, Some(PIDF)));
        let mi_proxy = Form::Mi { with_ob_proxy: true };
        let p = publish(
            &call(json!(["sip:a@ex.com", "3600", "presence", ".", ".", ".", "sip:p.ex.com", ".", PIDF])),
            mi_proxy,
            none,
        )
        .unwrap();
        assert_eq!(p.outbound_proxy.as_deref(), Some("sip:p.ex.com"));
        assert_eq!(
            fault(publish(&call(json!(["x", "3600", "presence", ".", ".", ".", ".", PIDF])), mi, none)),
            (404, "Bad presentity URI".into())
        );
        assert_eq!(
            fault(publish(&call(json!(["sip:a@ex.com", "", "presence", ".", ".", ".", ".", PIDF])), mi, none)),
            (400, "Empty expires parameter".into())
        );
        assert_eq!(
            fault(publish(&call(json!(["sip:a@ex.com"])), mi, none)),
            (400, "Too few or too many arguments".into())
        );
    }

    #[test]
    fn subscribe_params_and_faults() {
        let s = subscribe(&call(json!(["sip:a@ex.com", "sip:w@ex.com", "presence", 3600])), Form::Rpc, none).unwrap();
        assert_eq!(
            s,
            Subscribe {
                pres_uri: "sip:a@ex.com".into(),
                watcher_uri: "sip:w@ex.com".into(),
                event: event::PRESENCE,
                expires: 3600
            }
        );
        assert_eq!(
            subscribe(&call(json!(["sip:a@ex.com", "sip:w@ex.com", "presence", "0"])), Form::Rpc, none)
                .unwrap()
                .expires,
            0
        );
        let f = |v: Value, form| {
            let e = subscribe(&call(v), form, none).unwrap_err();
            (e.code, e.message)
        };
        assert_eq!(f(json!(["sip:a@ex.com"]), Form::Rpc), (500, "Not enough parameters".into()));
        assert_eq!(f(json!(["a", "sip:w@ex.com", "presence", 1]), Form::Rpc), (400, "Invalid presentity URI".into()));
        assert_eq!(f(json!(["sip:a@ex.com", "w", "presence", 1]), Form::Rpc), (400, "Invalid watcher URI".into()));
        assert_eq!(f(json!(["sip:a@ex.com", "sip:w@ex.com", "nope", 1]), Form::Rpc), (404, "Unknown event".into()));
        assert_eq!(
            f(json!(["sip:a@ex.com", "sip:w@ex.com", "presence", "soon"]), Form::Rpc),
            (400, "Invalid expires value 'soon'".into())
        );
        assert_eq!(
            f(json!(["a", "sip:w@ex.com", "presence", 1]), Form::Mi { with_ob_proxy: false }),
            (404, "Bad presentity URI".into())
        );
    }
}
