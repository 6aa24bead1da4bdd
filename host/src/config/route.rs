//! `[[route]]` entries: what a request must match and what to do with it.
//!
//! ```toml
//! [[route]]
//! method = ["PUBLISH"]           # one method or a list
//! ruri = "^sip:.*@example\\.com" # regex on the Request-URI
//! hdr.Event = "^presence"        # regex on a header's value
//! do = ["handle_publish()"]      # functions, in order
//! on_fail = "404 Not Found"      # reply when a function returns a negative value
//! reply = "200 OK"               # reply when every function succeeded
//! relay = true                   # forward statefully
//! ```
//!
//! This module checks the shape, compiles the regexes and parses the function calls; which
//! functions exist is checked by the loader against the loaded modules.

use std::ops::Range;

use regex::Regex;

use super::diagnostic::{Diagnostic, did_you_mean};
use super::value::{Spanned, Table, Value};

const ROUTE_KEYS: &[&str] = &["name", "method", "ruri", "myself", "hdr", "do", "on_fail", "reply", "relay"];

/// A reply written as `"404 Not Found"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyDef {
    pub code: u16,
    pub reason: String,
}

/// A function call written in `do = [...]`: `name(arg, "quoted arg", $ru)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCallDef {
    pub name: String,
    /// Arguments as written, unquoted; pseudo-variables (`$ru`, `$hdr(Event)`) are expanded
    /// when the route runs.
    pub args: Vec<String>,
    pub span: Range<usize>,
}

/// A checked `[[route]]` entry.
#[derive(Debug, Clone)]
pub struct RouteDef {
    pub name: String,
    pub span: Range<usize>,
    /// Upper-case methods; empty = any.
    pub methods: Vec<String>,
    pub ruri: Option<Regex>,
    /// The Request-URI must (true) or must not (false) point at this host.
    pub myself: Option<bool>,
    pub headers: Vec<(String, Regex)>,
    pub actions: Vec<FunctionCallDef>,
    pub on_fail: Option<ReplyDef>,
    pub reply: Option<ReplyDef>,
    pub relay: bool,
}

fn error(errors: &mut Vec<Diagnostic>, message: impl Into<String>, span: &Range<usize>) -> usize {
    errors.push(Diagnostic::new(message, Some(span.clone())));
    errors.len() - 1
}

fn string(errors: &mut Vec<Diagnostic>, v: &Spanned<Value>, what: &str) -> Option<String> {
    match &v.value {
        Value::Str(s) => Some(s.clone()),
        other => {
            error(errors, format!("{what} must be a string, found {}", other.kind()), &v.span);
            None
        }
    }
}

fn regex(errors: &mut Vec<Diagnostic>, v: &Spanned<Value>, what: &str) -> Option<Regex> {
    let s = string(errors, v, what)?;
    match Regex::new(&s) {
        Ok(r) => Some(r),
        Err(e) => {
            let msg = e.to_string();
            let first = msg.lines().last().unwrap_or(&msg).trim().to_string();
            error(errors, format!("bad regex in {what}: {first}"), &v.span);
            None
        }
    }
}

fn reply(errors: &mut Vec<Diagnostic>, v: &Spanned<Value>, what: &str) -> Option<ReplyDef> {
    let s = string(errors, v, what)?;
    let (code, reason) = s.trim().split_once(' ').unwrap_or((s.trim(), ""));
    match code.parse::<u16>() {
        Ok(code) if (100..700).contains(&code) && !reason.trim().is_empty() => {
            Some(ReplyDef { code, reason: reason.trim().to_string() })
        }
        _ => {
            let i = error(errors, format!("{what} must be a status code and a reason, found `{s}`"), &v.span);
            errors[i].help = Some("for example \"404 Not Found\"".into());
            None
        }
    }
}

/// Checks route number `index` (0-based).
pub fn check(errors: &mut Vec<Diagnostic>, t: &Table, index: usize, span: Range<usize>) -> Option<RouteDef> {
    let before = errors.len();
    let mut route = RouteDef {
        name: format!("route #{}", index + 1),
        span,
        methods: Vec::new(),
        ruri: None,
        myself: None,
        headers: Vec::new(),
        actions: Vec::new(),
        on_fail: None,
        reply: None,
        relay: false,
    };
    for (key, value) in t {
        match key.value.as_str() {
            "name" => {
                if let Some(n) = string(errors, value, "name") {
                    route.name = n;
                }
            }
            "method" => match &value.value {
                Value::Str(m) => route.methods.push(m.to_ascii_uppercase()),
                Value::Array(items) => {
                    for i in items {
                        if let Some(m) = string(errors, i, "each method") {
                            route.methods.push(m.to_ascii_uppercase());
                        }
                    }
                }
                other => {
                    error(
                        errors,
                        format!("method must be a string or an array of strings, found {}", other.kind()),
                        &value.span,
                    );
                }
            },
            "ruri" => route.ruri = regex(errors, value, "ruri"),
            "myself" => match value.value {
                Value::Bool(b) => route.myself = Some(b),
                ref other => {
                    error(errors, format!("myself must be true or false, found {}", other.kind()), &value.span);
                }
            },
            "hdr" => match &value.value {
                Value::Table(headers) => {
                    for (name, re) in headers {
                        if let Some(r) = regex(errors, re, &format!("hdr.{}", name.value)) {
                            route.headers.push((name.value.clone(), r));
                        }
                    }
                }
                other => {
                    let i = error(
                        errors,
                        format!("hdr must be a table of header regexes, found {}", other.kind()),
                        &value.span,
                    );
                    errors[i].help = Some("write hdr.Event = \"^presence\"".into());
                }
            },
            "do" => match &value.value {
                Value::Array(items) => {
                    for i in items {
                        if let Some(text) = string(errors, i, "each action") {
                            match parse_call(&text) {
                                Ok((name, args)) => {
                                    for a in &args {
                                        if let Err(why) = crate::sip::router::pv::Template::parse(a) {
                                            error(errors, format!("in action `{text}`: {why}"), &i.span);
                                        }
                                    }
                                    route.actions.push(FunctionCallDef { name, args, span: i.span.clone() })
                                }
                                Err(why) => {
                                    let e = error(errors, format!("cannot read action `{text}`: {why}"), &i.span);
                                    errors[e].help = Some("write a call as name(arg, \"quoted arg\", $ru)".into());
                                }
                            }
                        }
                    }
                }
                other => {
                    error(
                        errors,
                        format!("do must be an array of function calls, found {}", other.kind()),
                        &value.span,
                    );
                }
            },
            "on_fail" => route.on_fail = reply(errors, value, "on_fail"),
            "reply" => route.reply = reply(errors, value, "reply"),
            "relay" => match value.value {
                Value::Bool(b) => route.relay = b,
                ref other => {
                    error(errors, format!("relay must be true or false, found {}", other.kind()), &value.span);
                }
            },
            _ => {
                let i = error(errors, format!("unknown key `{}` in [[route]]", key.value), &key.span);
                errors[i].help = Some(match did_you_mean(&key.value, ROUTE_KEYS.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("expected one of: {}", ROUTE_KEYS.join(", ")),
                });
            }
        }
    }
    if route.reply.is_some() && route.relay {
        let i = error(errors, format!("{} both replies and relays", route.name), &route.span);
        errors[i].help = Some("keep either `reply` or `relay = true`".into());
    }
    (errors.len() == before).then_some(route)
}

/// Parses `name(arg, "quoted, arg", $hdr(Event))` into the name and unquoted arguments.
pub fn parse_call(text: &str) -> Result<(String, Vec<String>), String> {
    let text = text.trim();
    let open = text.find('(');
    let name = open.map_or(text, |i| &text[..i]).trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("`{name}` is not a function name"));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("`{name}` is not a function name"));
    }
    let Some(open) = open else {
        return Err("missing `(`".into());
    };
    let inner = text[open + 1..].strip_suffix(')').ok_or("missing `)` at the end")?;
    let mut args = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut arg = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(ch) = chars.next() {
                match ch {
                    '\\' => match chars.next() {
                        Some('n') => arg.push('\n'),
                        Some('r') => arg.push('\r'),
                        Some('t') => arg.push('\t'),
                        Some(other) => arg.push(other),
                        None => return Err("a `\\` ends the arguments".into()),
                    },
                    q if q == c => {
                        closed = true;
                        break;
                    }
                    other => arg.push(other),
                }
            }
            if !closed {
                return Err("unterminated quoted argument".into());
            }
        } else {
            // A bare argument ends at a comma outside parentheses: `$hdr(Event)` stays whole.
            let mut depth = 0usize;
            while let Some(&ch) = chars.peek() {
                match ch {
                    '(' => depth += 1,
                    ')' if depth == 0 => return Err("unbalanced `)`".into()),
                    ')' => depth -= 1,
                    ',' if depth == 0 => break,
                    '"' | '\'' => return Err("a quote inside a bare argument".into()),
                    _ => {}
                }
                arg.push(ch);
                chars.next();
            }
            arg = arg.trim_end().to_string();
            if arg.is_empty() {
                return Err("an empty argument".into());
            }
        }
        args.push(arg);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => {
                if chars.clone().all(char::is_whitespace) {
                    return Err("a trailing comma".into());
                }
            }
            Some(other) => return Err(format!("unexpected `{other}` after an argument")),
        }
    }
    Ok((name.to_string(), args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls() {
        assert_eq!(parse_call("handle_publish()").unwrap(), ("handle_publish".into(), vec![]));
        assert_eq!(
            parse_call(r#"pres_check_basic("$ru", "open")"#).unwrap(),
            ("pres_check_basic".into(), vec!["$ru".into(), "open".into()])
        );
        assert_eq!(
            parse_call("handle_publish($hdr(Sender), 3, 'a,b')").unwrap().1,
            vec!["$hdr(Sender)".to_string(), "3".into(), "a,b".into()]
        );
        assert_eq!(parse_call(r#"f("a\"b")"#).unwrap().1, vec!["a\"b".to_string()]);
    }

    #[test]
    fn bad_calls() {
        for bad in ["handle_publish", "f(", "f(a,)", "f(\"x)", "1f()", "f(a b\"c)", "(x)", "f(a))"] {
            assert!(parse_call(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies() {
        let mut errors = Vec::new();
        let v = Spanned::new(Value::Str("404 Not Found".into()), 0..1);
        assert_eq!(reply(&mut errors, &v, "on_fail"), Some(ReplyDef { code: 404, reason: "Not Found".into() }));
        let v = Spanned::new(Value::Str("OK".into()), 0..1);
        assert_eq!(reply(&mut errors, &v, "reply"), None);
        assert_eq!(errors.len(), 1);
    }
}
