//! request_route (and the named routes it calls) into `[[route]]` entries.
//!
//! puahost's routes are a flat list, the first whose conditions match handles the request. The
//! translation walks request_route once per method with the method known, following every
//! branch whose condition routes can express (the Request-URI against a regex or `myself`, a
//! header against a regex) and taking the documented assumption for the rest (each reported).
//! Every path through the script becomes a route: its conditions, the functions it calls, the
//! reply it ends with. A branch on an expressible condition emits the paths of the true side
//! first (with the condition) and those of the false side after them (without it), so the
//! first-match order gives the false side exactly the requests the true side left.

use std::collections::{BTreeMap, HashMap};

use super::cfg::{Call, Cfg, Expr, Item, Stmt};
use super::preprocess::Origin;

/// What a function is to the translation.
#[derive(Debug, Clone, Copy)]
pub struct FnInfo {
    pub min_args: usize,
    pub max_args: usize,
}

/// A `[[route]]` to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRoute {
    pub methods: Vec<String>,
    pub ruri: Option<String>,
    pub myself: Option<bool>,
    pub headers: Vec<(String, String)>,
    pub actions: Vec<String>,
    pub on_fail: Option<String>,
    pub reply: Option<String>,
    /// The script line the path ends at (its `exit`, or its last call).
    pub from: Option<Origin>,
}

#[derive(Debug, Clone, Default)]
struct St {
    ruri: Option<String>,
    myself: Option<bool>,
    headers: Vec<(String, String)>,
    actions: Vec<String>,
    on_fail: Option<String>,
    flags: u64,
    relayed: bool,
    depth: usize,
    /// Preprocessed line of the last statement run.
    last: Option<usize>,
}

#[derive(Clone, Copy)]
struct Frame<'a> {
    stmts: &'a [Stmt],
    pos: usize,
    /// The body of a named route: `return` ends here.
    boundary: bool,
}

enum Guard {
    Ruri(String),
    Myself(bool),
    Hdr(String, String),
}

enum Atom {
    Known(bool),
    Guard(Guard),
}

/// The translator's state for one config.
pub struct Translator<'a> {
    cfg: &'a Cfg,
    named: HashMap<&'a str, &'a [Stmt]>,
    functions: &'a HashMap<String, FnInfo>,
    /// Untranslated lines and why, first reason per line.
    pub reports: BTreeMap<Origin, String>,
    paths: Vec<OutRoute>,
    method: String,
    truncated: bool,
}

/// Paths per method beyond this are not followed (a script this branchy is reported).
const MAX_PATHS: usize = 512;
/// route() calls nested deeper than this are taken for a loop.
const MAX_DEPTH: usize = 32;
/// Methods walked besides those the script names; CANCEL is the core's (it matches the INVITE
/// transaction and answers itself).
const BASE_METHODS: &[&str] =
    &["REGISTER", "PUBLISH", "SUBSCRIBE", "NOTIFY", "INVITE", "ACK", "BYE", "OPTIONS", "MESSAGE"];

/// Functions Kamailio scripts call for things puahost's core does by itself.
const CORE_DOES: &[(&str, &str)] = &[
    ("t_newtran", "the core creates the transaction"),
    ("t_release", "the core ends the transaction"),
    ("t_check_trans", "the core matches retransmissions and CANCELs to transactions"),
    ("t_precheck_trans", "the core matches retransmissions to transactions"),
    ("msg_apply_changes", "not needed: functions see the message as received"),
    ("force_rport", "the core always replies to the source address and port"),
    ("set_reply_no_connect", "not applicable"),
    ("set_forward_no_connect", "not applicable"),
    ("remove_hf", "the core pops its own Route headers when it relays"),
    ("t_on_branch", "branch routes are not translated"),
    ("t_on_reply", "reply routes are not translated"),
    ("t_on_failure", "failure routes are not translated"),
    ("consume_credentials", "not provided: the credentials go on with the request"),
    ("xdbg", "debug logging is not translated"),
    ("xinfo", "logging is not translated"),
    ("xnotice", "logging is not translated"),
    ("xwarn", "logging is not translated"),
    ("xerr", "logging is not translated"),
];

/// Unknown functions in conditions: the value assumed, and why.
const ASSUMED: &[(&str, bool, &str)] = &[
    ("t_check_trans", false, "the core handles retransmissions and CANCEL"),
    ("t_precheck_trans", false, "the core handles retransmissions"),
    ("t_newtran", true, "the core creates the transaction"),
    ("t_is_set", false, "transaction routes are not translated"),
    ("sanity_check", true, "the core's parser rejects malformed requests"),
    ("pike_check_req", true, "flood detection (pike) is not provided"),
    ("allow_source_address", false, "permissions is not provided"),
    ("auth_check", true, "authentication is not provided: requests are accepted without it"),
    ("www_authorize", true, "authentication is not provided: requests are accepted without it"),
    ("proxy_authorize", true, "authentication is not provided: requests are accepted without it"),
    ("nat_uac_test", false, "NAT traversal (nathelper) is not provided"),
    ("is_first_hop", false, "not provided"),
    ("isdsturiset", false, "not provided"),
    ("is_request", true, "request_route sees requests"),
    ("is_reply", false, "request_route sees requests"),
    ("t_is_branch_route", false, "request_route is no branch route"),
    ("sd_lookup", false, "speeddial is not provided"),
    ("alias_db_lookup", false, "alias_db is not provided"),
    ("is_from_local", false, "domain is not provided"),
    ("is_uri_host_local", true, "domain is not provided; taken for local"),
];

/// Replies for functions whose failure branch cannot be read as one reply.
const DEFAULT_FAIL: &[(&str, &str)] = &[("lookup", "404 Not Found"), ("save", "500 Server Internal Error")];

fn is_reply_fn(name: &str) -> bool {
    matches!(name, "sl_send_reply" | "send_reply" | "t_reply")
}

/// A failure branch that challenges and stops: `auth_challenge(...); exit;`.
fn is_challenge(stmts: &[Stmt]) -> bool {
    let mut challenged = false;
    for s in stmts {
        match s {
            Stmt::Call(c) if is_log_fn(&c.name) => {}
            Stmt::Call(c) if matches!(c.name.as_str(), "auth_challenge" | "www_challenge" | "proxy_challenge") => {
                challenged = true;
            }
            Stmt::Exit(_) | Stmt::Drop(_) => return challenged,
            _ => return false,
        }
    }
    false
}

fn is_log_fn(name: &str) -> bool {
    matches!(name, "xlog" | "xdbg" | "xinfo" | "xnotice" | "xwarn" | "xerr" | "xalert" | "xcrit")
}

fn regex_escape(s: &str) -> String {
    regex::escape(s)
}

/// Kamailio's regex on the user part (`$rU =~ "^[0-9]+$"`) as a regex on the whole URI.
fn user_regex(re: &str) -> Option<String> {
    let body = re.strip_prefix('^')?;
    let body = body.strip_suffix('$')?;
    Some(format!("^[a-zA-Z]+:(?:{body})@"))
}

/// Kamailio matches `=~` case-insensitively (POSIX extended, REG_ICASE).
fn icase(re: &str) -> String {
    format!("(?i){re}")
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl<'a> Translator<'a> {
    /// A translator for `cfg`, with the functions the converted config will have.
    pub fn new(cfg: &'a Cfg, functions: &'a HashMap<String, FnInfo>) -> Self {
        let mut named = HashMap::new();
        for item in &cfg.items {
            if let Item::Route { kind, name: Some(n), body, .. } = item
                && kind == "route"
            {
                named.insert(n.as_str(), body.as_slice());
            }
        }
        Translator {
            cfg,
            named,
            functions,
            reports: BTreeMap::new(),
            paths: Vec::new(),
            method: String::new(),
            truncated: false,
        }
    }

    fn report(&mut self, line: usize, why: impl Into<String>) {
        self.reports.entry(self.cfg.origin(line)).or_insert_with(|| why.into());
    }

    /// The routes for the config's request_route, and the other route blocks reported.
    pub fn translate(&mut self) -> Vec<OutRoute> {
        let mut request: Option<&'a [Stmt]> = None;
        let mut request_line = 0;
        for item in &self.cfg.items {
            if let Item::Route { kind, name, body, line } = item {
                match (kind.as_str(), name) {
                    ("request_route", _) => {
                        request = Some(body);
                        request_line = *line;
                    }
                    ("route", Some(_)) => {}
                    (k, n) => {
                        let what = match n {
                            Some(n) => format!("{k}[{n}]"),
                            None => k.to_string(),
                        };
                        self.report(*line, format!("{what} is not translated (puahost routes handle requests only)"));
                    }
                }
            }
        }
        let Some(request) = request else { return Vec::new() };

        let mut methods: Vec<String> = BASE_METHODS.iter().map(|m| m.to_string()).collect();
        for m in self.script_methods() {
            if !methods.contains(&m) && m != "CANCEL" {
                methods.push(m);
            }
        }
        let mut lists: Vec<(String, Vec<OutRoute>)> = Vec::new();
        for m in methods.iter().map(String::as_str).chain([""]) {
            self.method = m.to_string();
            self.paths.clear();
            self.truncated = false;
            self.walk(vec![Frame { stmts: request, pos: 0, boundary: false }], St::default());
            if self.truncated {
                self.report(
                    request_line,
                    format!("request_route has more than {MAX_PATHS} paths for {m}; the rest are not translated"),
                );
            }
            lists.push((m.to_string(), simplify(std::mem::take(&mut self.paths))));
        }
        // A method's last routes that do what the routes for any method do (one route without
        // conditions) are not needed: the requests come to that route. ACKs that get nothing
        // need no route either (an ACK is never answered).
        let (other, method_lists) = lists.split_last_mut().expect("the other methods' list is there");
        let fallback = match other.1.as_slice() {
            [r] if r.ruri.is_none() && r.myself.is_none() && r.headers.is_empty() => Some(r.clone()),
            _ => None,
        };
        for (m, list) in method_lists.iter_mut() {
            while let Some(last) = list.last() {
                let same = fallback.as_ref().is_some_and(|f| f.same_body(last));
                if same || (m == "ACK" && last.does_nothing()) {
                    list.pop();
                } else {
                    break;
                }
            }
        }
        // Methods with the same routes share them.
        let mut groups: Vec<(Vec<String>, Vec<OutRoute>)> = Vec::new();
        for (m, list) in lists {
            if list.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(_, l)| *l == list) {
                Some((ms, _)) if !m.is_empty() => ms.push(m),
                _ => groups.push((if m.is_empty() { Vec::new() } else { vec![m] }, list)),
            }
        }
        let mut out = Vec::new();
        for (ms, list) in groups {
            for mut r in list {
                r.methods = ms.clone();
                out.push(r);
            }
        }
        out
    }

    /// Methods named by `is_method("A|B")` and `$rm == "A"` anywhere in the script.
    fn script_methods(&self) -> Vec<String> {
        fn expr(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::Call(c) if c.name == "is_method" => {
                    if let Some(Expr::Str(s)) = c.args.first() {
                        out.extend(s.split('|').map(|m| m.trim().to_ascii_uppercase()));
                    }
                }
                Expr::Cmp(l, _, r) => {
                    if let (Expr::Pv(p), Expr::Str(s)) = (&**l, &**r)
                        && p == "$rm"
                    {
                        out.push(s.to_ascii_uppercase());
                    }
                }
                Expr::Not(a) => expr(a, out),
                Expr::And(a, b) | Expr::Or(a, b) => {
                    expr(a, out);
                    expr(b, out);
                }
                _ => {}
            }
        }
        fn stmts(s: &[Stmt], out: &mut Vec<String>) {
            for st in s {
                if let Stmt::If { cond, then, els, .. } = st {
                    expr(cond, out);
                    stmts(then, out);
                    stmts(els, out);
                }
            }
        }
        let mut out = Vec::new();
        for item in &self.cfg.items {
            if let Item::Route { body, .. } = item {
                stmts(body, &mut out);
            }
        }
        out.retain(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_alphabetic()));
        out
    }

    fn emit(&mut self, st: St) {
        if self.paths.len() >= MAX_PATHS {
            self.truncated = true;
            return;
        }
        let mut actions = st.actions;
        let mut reply = None;
        if !st.relayed
            && let Some(last) = actions.last()
            && let Ok((name, args)) = crate::config::route::parse_call(last)
            && is_reply_fn(&name)
            && args.len() == 2
            && args[0].parse::<u16>().is_ok()
        {
            reply = Some(format!("{} {}", args[0], args[1]));
            actions.pop();
        }
        self.paths.push(OutRoute {
            methods: Vec::new(),
            ruri: st.ruri,
            myself: st.myself,
            headers: st.headers,
            actions,
            on_fail: st.on_fail,
            reply,
            from: st.last.map(|l| self.cfg.origin(l)),
        });
    }

    fn walk(&mut self, mut frames: Vec<Frame<'a>>, mut st: St) {
        loop {
            if self.truncated {
                return;
            }
            let Some(top) = frames.last_mut() else {
                self.emit(st);
                return;
            };
            if top.pos >= top.stmts.len() {
                if top.boundary {
                    st.depth -= 1;
                }
                frames.pop();
                continue;
            }
            let stmt = &top.stmts[top.pos];
            top.pos += 1;
            match stmt {
                Stmt::Exit(line) | Stmt::Drop(line) => {
                    st.last = Some(*line);
                    self.emit(st);
                    return;
                }
                Stmt::Return(_) => {
                    while let Some(f) = frames.pop() {
                        if f.boundary {
                            st.depth -= 1;
                            break;
                        }
                    }
                }
                Stmt::Break(line) => self.report(*line, "break outside a switch is not translated"),
                Stmt::Assign { lhs, line } => {
                    self.report(*line, format!("assignment to {lhs} is not translated"));
                }
                Stmt::Switch { line } => self.report(*line, "switch is not translated; its cases are skipped"),
                Stmt::While { line } => self.report(*line, "while is not translated; the loop is skipped"),
                Stmt::If { cond, then, els, line } => {
                    self.branch(cond, then, els, *line, frames, st);
                    return;
                }
                Stmt::Call(c) => {
                    st.last = Some(c.line);
                    if c.name == "route" {
                        let target = match c.args.first() {
                            Some(Expr::Word(n)) | Some(Expr::Str(n)) => n.clone(),
                            _ => {
                                self.report(c.line, "route() takes a route name");
                                continue;
                            }
                        };
                        match self.named.get(target.as_str()) {
                            Some(body) if st.depth < MAX_DEPTH => {
                                st.depth += 1;
                                frames.push(Frame { stmts: body, pos: 0, boundary: true });
                            }
                            Some(_) => self.report(c.line, format!("route({target}) nested too deep (a loop?)")),
                            None => self.report(c.line, format!("route[{target}] is not defined")),
                        }
                        continue;
                    }
                    self.call_stmt(c, &mut st);
                }
            }
        }
    }

    /// A function called as a statement.
    fn call_stmt(&mut self, c: &Call, st: &mut St) {
        if let Some((_, why)) = CORE_DOES.iter().find(|(n, _)| *n == c.name) {
            self.report(c.line, format!("{}() dropped: {why}", c.name));
            return;
        }
        if c.name == "sl_reply_error" {
            st.actions.push("sl_send_reply(\"500\", \"Server Internal Error\")".into());
            return;
        }
        if let Some(action) = self.action(c) {
            if action.starts_with("t_relay(") {
                st.relayed = true;
            }
            if c.name == "setflag"
                && let Some(Expr::Int(n)) = c.args.first()
                && (0..64).contains(n)
            {
                st.flags |= 1 << n;
            }
            st.actions.push(action);
        }
    }

    /// The action text for a call of one of our functions, or `None` (reported).
    fn action(&mut self, c: &Call) -> Option<String> {
        let Some(info) = self.functions.get(&c.name).copied() else {
            self.report(c.line, format!("{}() is not provided by the converted config's modules", c.name));
            return None;
        };
        if c.args.len() < info.min_args || c.args.len() > info.max_args {
            self.report(c.line, format!("{}() takes {}..{} arguments here", c.name, info.min_args, info.max_args));
            return None;
        }
        let mut args = Vec::new();
        for a in &c.args {
            let text = match a {
                Expr::Str(s) => quote(s),
                Expr::Int(n) => n.to_string(),
                Expr::Pv(p) => p.clone(),
                Expr::Word(w) if c.name == "xlog" => quote(w),
                _ => {
                    self.report(c.line, format!("an argument of {}() is an expression; not translated", c.name));
                    return None;
                }
            };
            let plain = match a {
                Expr::Str(s) => s.clone(),
                _ => text.clone(),
            };
            if let Err(why) = crate::sip::router::pv::Template::parse(&plain) {
                self.report(c.line, format!("{}(): {why}", c.name));
                return None;
            }
            args.push(text);
        }
        Some(format!("{}({})", c.name, args.join(", ")))
    }

    fn branch(&mut self, cond: &Expr, then: &'a [Stmt], els: &'a [Stmt], line: usize, frames: Vec<Frame<'a>>, st: St) {
        // `if (f())` / `if (!f())` with f one of ours: f runs; its failure side becomes on_fail.
        let (call, negated) = match cond {
            Expr::Call(c) => (Some(c), false),
            Expr::Not(inner) => match &**inner {
                Expr::Call(c) => (Some(c), true),
                _ => (None, false),
            },
            _ => (None, false),
        };
        if let Some(c) = call
            && self.is_action_fn(&c.name)
        {
            let (ok, fail) = if negated { (els, then) } else { (then, els) };
            let mut st = st;
            // `if (!auth_check(...)) { auth_challenge(...); exit; }` is auth_db's auth_require.
            if matches!(c.name.as_str(), "auth_check" | "www_authorize" | "proxy_authorize")
                && self.functions.contains_key("auth_require")
                && is_challenge(fail)
            {
                let require = Call { name: "auth_require".into(), args: c.args.clone(), line: c.line };
                if let Some(action) = self.action(&require) {
                    self.report(
                        line,
                        format!("{}() with a challenge on failure: auth_require() (challenges, or 403 for a wrong password)", c.name),
                    );
                    st.actions.push(action);
                    st.last = Some(c.line);
                    let mut frames = frames;
                    frames.push(Frame { stmts: ok, pos: 0, boundary: false });
                    return self.walk(frames, st);
                }
            }
            let Some(action) = self.action(c) else {
                return self.cases_walk(cond, then, els, line, frames, st);
            };
            let relay = action.starts_with("t_relay(");
            st.relayed |= relay;
            st.actions.push(action);
            if !relay {
                match self.failure_reply(fail) {
                    Ok(Some(reply)) => self.set_on_fail(&mut st, reply, c.line),
                    Ok(None) => {}
                    Err(()) => match DEFAULT_FAIL.iter().find(|(n, _)| *n == c.name) {
                        Some((_, reply)) => {
                            self.report(
                                line,
                                format!("what follows a failing {}() is not translated; it replies {reply}", c.name),
                            );
                            self.set_on_fail(&mut st, reply.to_string(), c.line);
                        }
                        None => self.report(
                            line,
                            format!("what follows a failing {}() is not translated; the route goes on", c.name),
                        ),
                    },
                }
            }
            let mut frames = frames;
            frames.push(Frame { stmts: ok, pos: 0, boundary: false });
            return self.walk(frames, st);
        }
        self.cases_walk(cond, then, els, line, frames, st)
    }

    fn cases_walk(
        &mut self,
        cond: &Expr,
        then: &'a [Stmt],
        els: &'a [Stmt],
        line: usize,
        frames: Vec<Frame<'a>>,
        st: St,
    ) {
        for (st, outcome) in self.cases(cond, st, line) {
            let mut f = frames.clone();
            f.push(Frame { stmts: if outcome { then } else { els }, pos: 0, boundary: false });
            self.walk(f, st);
        }
    }

    fn set_on_fail(&mut self, st: &mut St, reply: String, line: usize) {
        match &st.on_fail {
            None => st.on_fail = Some(reply),
            Some(r) if *r == reply => {}
            // One failure reply per route: the later function's (lookup's 404 rather than
            // mf_process_maxfwd_header's 483) answers the failures that matter more often.
            Some(r) => {
                let r = r.clone();
                self.report(
                    line,
                    format!("a route has one failure reply: {reply} replaces {r} for the route's earlier functions"),
                );
                st.on_fail = Some(reply);
            }
        }
    }

    fn is_action_fn(&self, name: &str) -> bool {
        !matches!(name, "is_myself" | "isflagset" | "isbflagset") && self.functions.contains_key(name)
    }

    /// The reply a failure branch sends, `Ok(None)` when it does nothing, `Err` when it does
    /// more than reply and stop.
    fn failure_reply(&self, stmts: &[Stmt]) -> Result<Option<String>, ()> {
        let mut reply = None;
        for s in stmts {
            match s {
                Stmt::Call(c) if is_log_fn(&c.name) => {}
                Stmt::Call(c) if c.name == "sl_reply_error" && reply.is_none() => {
                    reply = Some("500 Server Internal Error".to_string());
                }
                Stmt::Call(c) if is_reply_fn(&c.name) && reply.is_none() => match (c.args.first(), c.args.get(1)) {
                    (Some(Expr::Str(code)), Some(Expr::Str(reason))) if code.parse::<u16>().is_ok() => {
                        reply = Some(format!("{code} {reason}"));
                    }
                    (Some(Expr::Int(code)), Some(Expr::Str(reason))) => reply = Some(format!("{code} {reason}")),
                    _ => return Err(()),
                },
                Stmt::Exit(_) | Stmt::Drop(_) | Stmt::Return(_) if reply.is_some() => return Ok(reply),
                _ => return Err(()),
            }
        }
        Ok(reply)
    }

    /// The ways `e` can come out, in first-match order, each with the path state it adds.
    fn cases(&mut self, e: &Expr, st: St, line: usize) -> Vec<(St, bool)> {
        match e {
            Expr::Not(a) => self.cases(a, st, line).into_iter().map(|(s, o)| (s, !o)).collect(),
            // `a != b` is `!(a == b)`: the guard goes on the side where they are equal.
            Expr::Cmp(l, op @ ("!=" | "!~"), r) => {
                let positive = if *op == "!=" { "==" } else { "=~" };
                let e = Expr::Cmp(l.clone(), positive, r.clone());
                self.cases(&e, st, line).into_iter().map(|(s, o)| (s, !o)).collect()
            }
            Expr::And(a, b) => {
                let mut out = Vec::new();
                for (s, o) in self.cases(a, st, line) {
                    if o {
                        out.extend(self.cases(b, s, line));
                    } else {
                        out.push((s, false));
                    }
                }
                out
            }
            Expr::Or(a, b) => {
                let mut out = Vec::new();
                for (s, o) in self.cases(a, st, line) {
                    if o {
                        out.push((s, true));
                    } else {
                        out.extend(self.cases(b, s, line));
                    }
                }
                out
            }
            _ => match self.atom(e, &st, line) {
                Atom::Known(b) => vec![(st, b)],
                Atom::Guard(g) => match self.add_guard(&st, g, line) {
                    Ok(with) => vec![(with, true), (st, false)],
                    Err(known) => vec![(st, known)],
                },
            },
        }
    }

    /// `st` with `g` added, or the guard's known value on this path.
    fn add_guard(&mut self, st: &St, g: Guard, line: usize) -> Result<St, bool> {
        if let Guard::Ruri(re) | Guard::Hdr(_, re) = &g
            && let Err(e) = regex::Regex::new(re)
        {
            let first = e.to_string().lines().last().unwrap_or_default().trim().to_string();
            self.report(line, format!("the regex `{re}` is not one puahost reads ({first}); assumed true"));
            return Err(true);
        }
        let mut s = st.clone();
        match g {
            Guard::Myself(b) => match st.myself {
                Some(have) => return Err(have == b),
                None => s.myself = Some(b),
            },
            Guard::Ruri(re) => match &st.ruri {
                Some(have) if *have == re => return Err(true),
                Some(_) => {
                    self.report(line, "a second Request-URI condition on one path is not translated; assumed true");
                    return Err(true);
                }
                None => s.ruri = Some(re),
            },
            Guard::Hdr(name, re) => {
                if st.headers.iter().any(|(n, r)| n.eq_ignore_ascii_case(&name) && *r == re) {
                    return Err(true);
                }
                s.headers.push((name, re));
            }
        }
        Ok(s)
    }

    fn atom(&mut self, e: &Expr, st: &St, line: usize) -> Atom {
        let m = self.method.clone();
        match e {
            Expr::Int(n) => Atom::Known(*n != 0),
            Expr::Call(c) => match c.name.as_str() {
                "is_method" => match c.args.first() {
                    Some(Expr::Str(s)) => Atom::Known(s.split('|').any(|x| x.trim().eq_ignore_ascii_case(&m))),
                    _ => {
                        self.report(line, "is_method() with a variable is not translated; assumed false");
                        Atom::Known(false)
                    }
                },
                "has_totag" => Atom::Guard(Guard::Hdr("To".into(), ";\\s*tag=".into())),
                "loose_route" => {
                    self.report(line, "loose_route(): taken as \"the request has a Route header\"; relaying pops ours");
                    Atom::Guard(Guard::Hdr("Route".into(), String::new()))
                }
                "is_present_hf" => match c.args.first() {
                    Some(Expr::Str(h)) => Atom::Guard(Guard::Hdr(h.clone(), String::new())),
                    _ => self.assume(line, e, true, "not translated"),
                },
                "isflagset" => match c.args.first() {
                    Some(Expr::Int(n)) if (0..64).contains(n) => Atom::Known(st.flags & (1 << n) != 0),
                    _ => self.assume(line, e, false, "a flag set outside the script"),
                },
                "is_myself" => match c.args.first() {
                    Some(Expr::Pv(p)) | Some(Expr::Str(p)) if p == "$ru" => Atom::Guard(Guard::Myself(true)),
                    _ => self.assume(line, e, true, "only is_myself(\"$ru\") is translated"),
                },
                name => {
                    if self.is_action_fn(name) {
                        self.report(line, format!("{name}() inside a compound condition is not called; assumed true"));
                        return Atom::Known(true);
                    }
                    match ASSUMED.iter().find(|(n, _, _)| *n == name) {
                        Some((_, v, why)) => self.assume(line, e, *v, why),
                        None => self.assume(line, e, true, "not provided"),
                    }
                }
            },
            Expr::Cmp(l, op, r) => self.compare(l, op, r, e, line),
            _ => self.assume(line, e, true, "not translated"),
        }
    }

    fn assume(&mut self, line: usize, e: &Expr, value: bool, why: &str) -> Atom {
        let what = match e {
            Expr::Call(c) => format!("{}()", c.name),
            _ => "this condition".to_string(),
        };
        self.report(line, format!("{what}: {why}; assumed {value}"));
        Atom::Known(value)
    }

    fn compare(&mut self, l: &Expr, op: &str, r: &Expr, e: &Expr, line: usize) -> Atom {
        let is_eq = matches!(op, "==" | "!=");
        let is_re = matches!(op, "=~" | "!~");
        let name = match l {
            Expr::Word(w) => w.as_str(),
            Expr::Pv(p) => p.as_str(),
            _ => "",
        };
        let atom = match (name, r) {
            ("uri" | "$ru", Expr::Word(w)) if is_eq && w == "myself" => Some(Atom::Guard(Guard::Myself(true))),
            ("uri" | "$ru", Expr::Str(re)) if is_re => Some(Atom::Guard(Guard::Ruri(icase(re)))),
            ("uri" | "$ru", Expr::Str(s)) if is_eq => Some(Atom::Guard(Guard::Ruri(format!("^{}$", regex_escape(s))))),
            ("$rm", Expr::Str(s)) if is_eq => Some(Atom::Known(s.eq_ignore_ascii_case(&self.method))),
            ("$rU", Expr::Pv(n)) if is_eq && n == "$null" => Some(Atom::Guard(Guard::Ruri("^[a-zA-Z]+:[^@]*$".into()))),
            ("$rU", Expr::Str(s)) if is_eq => {
                Some(Atom::Guard(Guard::Ruri(format!("^[a-zA-Z]+:{}@", regex_escape(s)))))
            }
            ("$rU", Expr::Str(re)) if is_re => user_regex(re).map(|r| Atom::Guard(Guard::Ruri(icase(&r)))),
            ("$ua", Expr::Str(re)) if is_re => Some(Atom::Guard(Guard::Hdr("User-Agent".into(), icase(re)))),
            (h, Expr::Str(v)) if h.starts_with("$hdr(") && h.ends_with(')') && (is_eq || is_re) => {
                let hn = h[5..h.len() - 1].to_string();
                let re = if is_eq { format!("^\\s*{}\\s*$", regex_escape(v)) } else { icase(v) };
                Some(Atom::Guard(Guard::Hdr(hn, re)))
            }
            _ => None,
        };
        match atom {
            Some(a) => a,
            None => {
                self.report(line, "this comparison cannot be expressed by a route; assumed true");
                let _ = e;
                Atom::Known(true)
            }
        }
    }
}

impl OutRoute {
    fn does_nothing(&self) -> bool {
        self.actions.is_empty() && self.reply.is_none()
    }

    fn same_body(&self, other: &OutRoute) -> bool {
        self.actions == other.actions && self.on_fail == other.on_fail && self.reply == other.reply
    }

    /// Every request `self` matches, `other` matches too (conditions a subset).
    fn covered_by(&self, other: &OutRoute) -> bool {
        (other.ruri.is_none() || other.ruri == self.ruri)
            && (other.myself.is_none() || other.myself == self.myself)
            && other.headers.iter().all(|h| self.headers.contains(h))
    }
}

/// Drops routes an earlier route shadows (conditions a superset of an earlier route's), and
/// routes the next route would handle the same way (same functions and replies, fewer
/// conditions).
fn simplify(paths: Vec<OutRoute>) -> Vec<OutRoute> {
    let mut out: Vec<OutRoute> = Vec::new();
    for p in paths {
        let shadowed = out.iter().any(|q| {
            (q.ruri.is_none() || q.ruri == p.ruri)
                && (q.myself.is_none() || q.myself == p.myself)
                && q.headers.iter().all(|h| p.headers.contains(h))
        });
        if !shadowed {
            out.push(p);
        }
    }
    let mut i = 0;
    while i + 1 < out.len() {
        if out[i].same_body(&out[i + 1]) && out[i].covered_by(&out[i + 1]) {
            out.remove(i);
            i = i.saturating_sub(1);
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::cfg::parse;
    use super::super::preprocess::preprocess_str;
    use super::*;

    fn functions() -> HashMap<String, FnInfo> {
        let mut f: HashMap<String, FnInfo> = crate::sip::router::builtins::BUILTINS
            .iter()
            .map(|b| (b.name.to_string(), FnInfo { min_args: b.min_args as usize, max_args: b.max_args as usize }))
            .collect();
        for (n, min, max) in [
            ("handle_publish", 0, 1),
            ("handle_subscribe", 0, 1),
            ("save", 1, 2),
            ("lookup", 1, 2),
            ("auth_check", 2, 3),
            ("auth_require", 2, 3),
            ("auth_challenge", 1, 2),
        ] {
            f.insert(n.into(), FnInfo { min_args: min, max_args: max });
        }
        f
    }

    /// The routes of `script` (a request_route and named routes), and the reported lines.
    fn translate(script: &str) -> (Vec<OutRoute>, Vec<(usize, String)>) {
        let cfg = parse(preprocess_str("t.cfg", script, &[]).unwrap().lines).unwrap();
        let f = functions();
        let mut t = Translator::new(&cfg, &f);
        let mut routes = t.translate();
        for r in &mut routes {
            r.from = None;
        }
        (routes, t.reports.into_iter().map(|(o, why)| (o.line, why)).collect())
    }

    fn r(methods: &[&str], actions: &[&str]) -> OutRoute {
        OutRoute {
            methods: methods.iter().map(|m| m.to_string()).collect(),
            ruri: None,
            myself: None,
            headers: Vec::new(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            on_fail: None,
            reply: None,
            from: None,
        }
    }

    #[test]
    fn methods_become_routes_and_the_rest_falls_through() {
        let (routes, reports) = translate(
            "request_route {\n if (is_method(\"PUBLISH\")) { handle_publish(); exit; }\n if (is_method(\"SUBSCRIBE\")) { handle_subscribe(); exit; }\n sl_send_reply(\"404\", \"Not here\");\n}",
        );
        let mut last = r(&[], &[]);
        last.reply = Some("404 Not here".into());
        assert_eq!(
            routes,
            vec![r(&["PUBLISH"], &["handle_publish()"]), r(&["SUBSCRIBE"], &["handle_subscribe()"]), last]
        );
        assert!(reports.is_empty(), "{reports:?}");
    }

    #[test]
    fn a_guard_puts_its_true_side_first() {
        // `if (!has_totag()) A else B`: B with the To-tag condition first, then A for the rest.
        let (routes, _) = translate(
            "request_route {\n if (!is_method(\"SUBSCRIBE\")) exit;\n if (!has_totag()) { record_route(); } else { t_relay(); exit; }\n handle_subscribe();\n}",
        );
        let mut within = r(&["SUBSCRIBE"], &["t_relay()"]);
        within.headers = vec![("To".into(), ";\\s*tag=".into())];
        assert_eq!(routes[0], within);
        assert_eq!(routes[1], r(&["SUBSCRIBE"], &["record_route()", "handle_subscribe()"]));
        // Other methods: exit, nothing.
        assert_eq!(routes[2], r(&[], &[]));
        assert_eq!(routes.len(), 3);
    }

    #[test]
    fn conditions_combine() {
        let (routes, _) = translate(
            "request_route {\n if (is_method(\"OPTIONS\") && uri == myself && $rU == $null) { sl_send_reply(\"200\", \"Keepalive\"); exit; }\n if ($ua =~ \"scanner\" || uri != myself) { sl_send_reply(\"403\", \"Forbidden\"); exit; }\n handle_publish();\n}",
        );
        let options = routes.iter().find(|x| x.methods == ["OPTIONS"]).expect("an OPTIONS route");
        assert_eq!(options.ruri.as_deref(), Some("^[a-zA-Z]+:[^@]*$"));
        assert_eq!((options.myself, options.reply.as_deref()), (Some(true), Some("200 Keepalive")));
        let rest: Vec<_> = routes.iter().filter(|x| x.methods.is_empty()).collect();
        assert_eq!(rest[0].headers, vec![("User-Agent".to_string(), "(?i)scanner".to_string())]);
        assert_eq!(rest[0].reply.as_deref(), Some("403 Forbidden"));
        // `uri != myself` is `!(uri == myself)`: the requests for this host go on first ...
        assert_eq!((rest[1].myself, rest[1].actions.as_slice()), (Some(true), &["handle_publish()".to_string()][..]));
        // ... and the others get the 403.
        assert_eq!((rest[2].myself, rest[2].reply.as_deref()), (None, Some("403 Forbidden")));
        assert_eq!(rest.len(), 3);
    }

    #[test]
    fn a_failing_function_replies_through_on_fail() {
        let (routes, reports) = translate(
            "request_route {\n if (is_method(\"REGISTER\")) {\n  if (!save(\"location\")) sl_reply_error();\n  exit;\n }\n if (!lookup(\"location\")) {\n  $var(x) = 1;\n  exit;\n }\n t_relay();\n}",
        );
        let reg = &routes[0];
        assert_eq!(reg.actions, ["save(\"location\")"]);
        assert_eq!(reg.on_fail.as_deref(), Some("500 Server Internal Error"));
        let rest = routes.last().unwrap();
        assert_eq!(rest.actions, ["lookup(\"location\")", "t_relay()"]);
        assert_eq!(rest.on_fail.as_deref(), Some("404 Not Found"));
        assert!(reports.iter().any(|(l, why)| *l == 6 && why.contains("failing lookup()")), "{reports:?}");
    }

    #[test]
    fn named_routes_return_to_the_caller_and_flags_are_followed() {
        let (routes, reports) = translate(
            "request_route {\n setflag(3);\n route(PRES);\n route(NOPE);\n sl_send_reply(\"404\", \"Not here\");\n}\nroute[PRES] {\n if (!is_method(\"PUBLISH\")) return;\n if (isflagset(3)) handle_publish(); else xlog(\"no\");\n exit;\n}",
        );
        assert_eq!(routes[0].methods, ["PUBLISH"]);
        assert_eq!(routes[0].actions, ["setflag(3)", "handle_publish()"]);
        assert_eq!(routes[1].reply.as_deref(), Some("404 Not here"));
        assert_eq!(reports, vec![(4, "route[NOPE] is not defined".to_string())]);
    }

    #[test]
    fn what_cannot_be_translated_is_reported_with_its_line() {
        let (routes, reports) = translate(concat!(
            "request_route {\n force_rport();\n if (nat_uac_test(\"19\")) { fix_nated_register(); }\n",
            " if (from_uri == myself) xlog(\"mine\");\n append_hf(\"X: y\\r\\n\");\n",
            " xlog(\"L_INFO\", \"$mt\\n\");\n handle_publish();\n}\nfailure_route[F] { exit; }"
        ));
        let lines: Vec<usize> = reports.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 9], "{reports:?}");
        assert!(reports[1].1.contains("assumed false"));
        assert!(reports[2].1.contains("assumed true"));
        assert!(reports[3].1.contains("append_hf() is not provided"), "{reports:?}");
        assert!(reports[4].1.contains("$mt"), "{reports:?}");
        // nat_uac_test false: no fix_nated_register (not reported: never reached); from_uri ==
        // myself assumed true: the xlog runs.
        assert_eq!(routes, vec![r(&[], &["xlog(\"mine\")", "handle_publish()"])]);
    }

    #[test]
    fn regexes_match_without_case_and_bad_ones_are_reported() {
        let (routes, reports) = translate(
            "request_route {\n if (uri =~ \"^sip:a(b\") exit;\n if ($rU =~ \"^[0-9]{2}$\") exit;\n handle_publish();\n}",
        );
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].0, 2);
        assert!(reports[0].1.contains("not one puahost reads"), "{reports:?}");
        // The bad regex is taken as true: every request exits there.
        assert_eq!(routes, vec![r(&[], &[])]);
        let (routes, _) = translate("request_route {\n if ($rU =~ \"^[0-9]{2}$\") exit;\n handle_publish();\n}");
        assert_eq!(routes[0].ruri.as_deref(), Some("(?i)^[a-zA-Z]+:(?:[0-9]{2})@"));
        assert_eq!(routes[1].actions, ["handle_publish()"]);
    }

    #[test]
    fn auth_check_with_a_challenge_is_auth_require() {
        let (routes, reports) = translate(
            "request_route {\n if (!auth_check(\"$fd\", \"subscriber\", \"1\")) {\n  auth_challenge(\"$fd\", \"0\");\n  exit;\n }\n handle_publish();\n}",
        );
        assert_eq!(routes, vec![r(&[], &["auth_require(\"$fd\", \"subscriber\", \"1\")", "handle_publish()"])]);
        assert_eq!(reports.len(), 1);
        assert!(reports[0].0 == 2 && reports[0].1.contains("auth_require()"), "{reports:?}");
        // A failure branch doing something else is not auth_require.
        let (routes, _) = translate(
            "request_route {\n if (!auth_check(\"$fd\", \"subscriber\")) { xlog(\"no\"); }\n handle_publish();\n}",
        );
        assert_eq!(routes[0].actions[0], "auth_check(\"$fd\", \"subscriber\")");
    }
}
