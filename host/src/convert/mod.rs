//! `puahost convert kamailio.cfg > puahost.toml`: a Kamailio config into a puahost config.
//!
//! The config is preprocessed as kamailio does ([`preprocess`]), parsed into its statements
//! ([`cfg`]), and written back as TOML: `loadmodule` for the modules puahost has, `modparam`
//! typed by the modules' own declarations, `listen`/`children`/`alias`/... into `[core]`, and
//! request_route into `[[route]]` entries ([`routes`]). Whatever is not translated is listed on
//! stderr as `FILE:LINE: reason`.

pub mod cfg;
pub mod preprocess;
pub mod routes;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plugin_api::ffi::FfiParamKind;

use self::cfg::{Expr, Item};
use self::preprocess::Origin;
use self::routes::{FnInfo, OutRoute, Translator};

/// Kamailio modules whose work puahost's core does (or that it needs no counterpart of): their
/// loadmodule lines are dropped with this reason.
const CORE_MODULES: &[(&str, &str)] = &[
    ("sl", "stateless replies are the core's (sl_send_reply)"),
    ("tm", "transactions are the core's (t_relay, t_reply)"),
    ("tmx", "transactions are the core's"),
    ("rr", "record_route() and loose routing are the core's"),
    ("maxfwd", "mf_process_maxfwd_header() is the core's"),
    ("pv", "pseudo-variables are the core's"),
    ("xlog", "xlog() is the core's"),
    ("kex", "the core's"),
    ("corex", "the core's"),
    ("textops", "header functions of the core cover presence configs"),
    ("textopsx", "not needed"),
    ("siputils", "has_totag() becomes a route condition"),
    ("sanity", "the core's parser rejects malformed requests"),
    ("ctl", "RPC is the core's ([rpc])"),
    ("jsonrpcs", "JSON-RPC is the core's ([rpc])"),
    ("xhttp", "the RPC HTTP server is the core's ([rpc] http)"),
    ("cfg_rpc", "not needed"),
    ("counters", "statistics are the core's (/metrics)"),
    ("mi_fifo", "RPC is the core's ([rpc] fifo)"),
    ("mi_rpc", "RPC is the core's"),
    ("db_sqlite", "database drivers are built in (db_url sqlite://)"),
    ("db_postgres", "database drivers are built in (db_url postgres://)"),
    ("db_mysql", "database drivers are built in (db_url mysql://)"),
    ("signaling", "replies are the core's"),
];

/// Options of `puahost convert`.
pub struct Options {
    pub file: PathBuf,
    /// `-D NAME[=VALUE]`.
    pub defines: Vec<String>,
    /// Where to find the modules (their declarations type the modparams).
    pub modules_path: Vec<PathBuf>,
}

/// A modparam value for the TOML output.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Int(i64),
    Str(String),
    List(Vec<Val>),
}

impl Val {
    fn toml(&self) -> String {
        match self {
            Val::Int(n) => n.to_string(),
            Val::Str(s) => toml_str(s),
            Val::List(items) => format!("[{}]", items.iter().map(Val::toml).collect::<Vec<_>>().join(", ")),
        }
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        toml_str(k)
    }
}

/// A module of ours: its declared modparams and functions.
struct Ours {
    name: String,
    line: usize,
    params: HashMap<String, (bool, bool)>,
    /// Modparams the module cannot start without.
    required: Vec<String>,
    functions: Vec<(String, FnInfo)>,
}

/// The converted config and what was not translated.
pub struct Converted {
    pub toml: String,
    pub reports: BTreeMap<Origin, String>,
}

/// Runs `puahost convert`: the TOML on stdout, reports on stderr. Errors that stop the
/// conversion (bad syntax, a missing include) come back as `Err`.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let converted = convert(opts)?;
    print!("{}", converted.toml);
    for (origin, why) in &converted.reports {
        eprintln!("{origin}: {why}");
    }
    eprintln!(
        "puahost convert: {} line{} not translated (listed above); check the result with `puahost check -c FILE`",
        converted.reports.len(),
        if converted.reports.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Converts the config of `opts`.
pub fn convert(opts: &Options) -> anyhow::Result<Converted> {
    let defines: Vec<(String, String)> = opts
        .defines
        .iter()
        .map(|d| match d.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (d.clone(), String::new()),
        })
        .collect();
    let pp = preprocess::preprocess(&opts.file, &defines)?;
    let mut reports: BTreeMap<Origin, String> = BTreeMap::new();
    for (o, n) in pp.notes {
        reports.entry(o).or_insert(n);
    }
    let cfg = cfg::parse(pp.lines)?;
    let mut report = |line: usize, why: String| {
        reports.entry(cfg.origin(line)).or_insert(why);
    };

    // Modules.
    let mut ours: Vec<Ours> = Vec::new();
    let mut loaded_kamailio: Vec<String> = Vec::new();
    for item in &cfg.items {
        let Item::LoadModule { name, line } = item else { continue };
        let base = Path::new(name).file_name().map_or(name.clone(), |f| f.to_string_lossy().into_owned());
        let base = base.strip_suffix(".so").unwrap_or(&base).to_string();
        loaded_kamailio.push(base.clone());
        let canonical = crate::config::canonical_module_name(&base).map_or(base.clone(), str::to_string);
        if ours.iter().any(|o| o.name == canonical) {
            continue;
        }
        if let Some((_, why)) = CORE_MODULES.iter().find(|(n, _)| *n == base) {
            report(*line, format!("loadmodule {base} dropped: {why}"));
            continue;
        }
        match crate::loader::find_module(&canonical, &opts.modules_path)
            .map_err(|e| e.to_string())
            .and_then(|f| crate::loader::load_module(&canonical, &f).map_err(|e| e.to_string()))
        {
            Ok(m) => {
                if canonical != base {
                    report(*line, format!("loadmodule {base}: puahost calls this module {canonical}"));
                }
                ours.push(Ours {
                    name: canonical,
                    line: *line,
                    params: m
                        .info
                        .params
                        .iter()
                        .map(|p| (p.name.to_string(), (p.kind == FfiParamKind::INT, p.repeatable)))
                        .collect(),
                    required: m.info.params.iter().filter(|p| p.required).map(|p| p.name.to_string()).collect(),
                    functions: m
                        .info
                        .functions
                        .iter()
                        .map(|f| {
                            (
                                f.name.to_string(),
                                FnInfo { min_args: f.min_args as usize, max_args: f.max_args as usize },
                            )
                        })
                        .collect(),
                });
            }
            Err(_) => report(*line, format!("module {base} is not provided by puahost")),
        }
    }

    // Global parameters.
    let mut core: Vec<(String, Val)> = Vec::new();
    let mut listens: Vec<(String, usize)> = Vec::new();
    let mut aliases: Vec<Val> = Vec::new();
    let mut port = 5060u16;
    let mut tcp = true;
    for item in &cfg.items {
        let Item::Global { name, value, line } = item else { continue };
        let unquoted = value.trim_matches('"').to_string();
        let yes = matches!(unquoted.to_ascii_lowercase().as_str(), "yes" | "on" | "true" | "1");
        match name.as_str() {
            "listen" => listens.push((unquoted, *line)),
            "port" => match unquoted.parse() {
                Ok(p) => port = p,
                Err(_) => report(*line, format!("port={value} is not a port number")),
            },
            "disable_tcp" => tcp = !yes,
            "children" | "tcp_connection_lifetime" | "tcp_max_connections" => match unquoted.parse::<i64>() {
                Ok(n) => core.push((name.clone(), Val::Int(n))),
                Err(_) => report(*line, format!("{name}={value} is not a number")),
            },
            "alias" => {
                // `alias=udp:example.com:5060`: puahost aliases are host names.
                let a = unquoted
                    .split_once(':')
                    .filter(|(p, _)| matches!(*p, "udp" | "tcp" | "tls"))
                    .map_or(unquoted.as_str(), |(_, rest)| rest);
                let host = a.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).map_or(a, |(h, _)| h);
                aliases.push(Val::Str(host.to_string()));
            }
            "debug" => {
                let level = match unquoted.parse::<i64>() {
                    Ok(n) if n >= 3 => "debug",
                    Ok(n) if n >= 1 => "info",
                    Ok(0) => "warn",
                    Ok(_) => "error",
                    Err(_) => {
                        report(*line, format!("debug={value} is not a number"));
                        continue;
                    }
                };
                core.push(("log_level".into(), Val::Str(level.into())));
            }
            "log_stderror" => {
                core.push(("log_target".into(), Val::Str(if yes { "stderr" } else { "syslog" }.into())));
            }
            "mpath" | "loadpath" => {
                report(*line, format!("{name} dropped: puahost finds its modules in [core] modules_path"));
            }
            _ => report(*line, format!("global parameter {name} has no puahost equivalent; dropped")),
        }
    }
    let mut listen_vals = Vec::new();
    for (l, line) in &listens {
        match kamailio_listen(l, port, tcp) {
            Ok(addrs) => listen_vals.extend(addrs.into_iter().map(Val::Str)),
            Err(why) => report(*line, format!("listen={l}: {why}")),
        }
    }
    let listen_note = listen_vals.is_empty();
    if listen_note {
        // Kamailio listens on every address when no listen= is given.
        listen_vals.push(Val::Str(format!("udp:0.0.0.0:{port}")));
        if tcp {
            listen_vals.push(Val::Str(format!("tcp:0.0.0.0:{port}")));
        }
    }

    // Modparams.
    let mut modparams: Vec<(String, Vec<(String, Val)>)> = ours.iter().map(|o| (o.name.clone(), Vec::new())).collect();
    let mut rpc_fifo: Option<String> = None;
    for item in &cfg.items {
        let Item::ModParam { module, param, value, line } = item else { continue };
        for m in module.split('|') {
            let canonical = crate::config::canonical_module_name(m).unwrap_or(m);
            if m == "jsonrpcs" && param == "fifo_name" {
                if let Expr::Str(s) = value {
                    rpc_fifo = Some(s.clone());
                }
                continue;
            }
            let Some(o) = ours.iter().find(|o| o.name == canonical) else {
                let why = if CORE_MODULES.iter().any(|(n, _)| *n == m) {
                    format!("modparam {m} {param} dropped: module {m} is the core's; no such setting")
                } else if loaded_kamailio.iter().any(|l| l == m) {
                    format!("modparam {m} {param} dropped: module {m} is not provided by puahost")
                } else {
                    format!("modparam {m} {param} dropped: module {m} is not loaded")
                };
                report(*line, why);
                continue;
            };
            let Some(&(int, repeatable)) = o.params.get(param.as_str()) else {
                report(*line, format!("modparam {m} {param} dropped: puahost's {canonical} has no such modparam"));
                continue;
            };
            let v = match (value, int) {
                (Expr::Int(n), true) => Val::Int(*n),
                (Expr::Int(n), false) => Val::Str(n.to_string()),
                (Expr::Str(s), true) => match s.trim().parse::<i64>() {
                    Ok(n) => Val::Int(n),
                    Err(_) => {
                        report(*line, format!("modparam {m} {param}: \"{s}\" is not a number"));
                        continue;
                    }
                },
                (Expr::Str(s), false) => Val::Str(s.clone()),
                (Expr::Word(w), true) if matches!(w.as_str(), "yes" | "on" | "true") => Val::Int(1),
                (Expr::Word(w), true) if matches!(w.as_str(), "no" | "off" | "false") => Val::Int(0),
                (Expr::Word(w), _) => {
                    report(*line, format!("modparam {m} {param}: `{w}` is not defined (a missing -D or #!define?)"));
                    continue;
                }
                _ => {
                    report(*line, format!("modparam {m} {param}: the value is an expression; not translated"));
                    continue;
                }
            };
            if param == "db_url"
                && let Val::Str(url) = &v
                && !["sqlite://", "postgres://", "postgresql://", "mysql://"].iter().any(|s| url.starts_with(s))
            {
                report(
                    *line,
                    format!("modparam {m} db_url: {url} is no database puahost has (sqlite, postgres, mysql)"),
                );
                continue;
            }
            let list = &mut modparams.iter_mut().find(|(n, _)| *n == canonical).expect("one per module").1;
            match (list.iter_mut().find(|(n, _)| n == param), repeatable) {
                (Some((_, Val::List(items))), true) => items.push(v),
                (Some((_, old)), false) => {
                    report(*line, format!("modparam {m} {param} set again; the last value counts"));
                    *old = v;
                }
                (Some(_), true) => unreachable!("repeatable params are lists"),
                (None, true) => list.push((param.clone(), Val::List(vec![v]))),
                (None, false) => list.push((param.clone(), v)),
            }
        }
    }

    // Kamailio's xcap_server answers through xhttp on the SIP port; ours has its own address.
    if let Some(o) = ours.iter().find(|o| o.name == "xcap_server") {
        let params = &mut modparams.iter_mut().find(|(n, _)| n == "xcap_server").expect("one per module").1;
        if !params.iter().any(|(n, _)| n == "http") {
            let ip = match listen_vals.first() {
                Some(Val::Str(l)) => crate::config::parse_listen(l).map(|a| a.addr.ip().to_string()).ok(),
                _ => None,
            }
            .unwrap_or_else(|| "127.0.0.1".into());
            let addr = if ip.contains(':') { format!("[{ip}]:5081") } else { format!("{ip}:5081") };
            report(
                o.line,
                format!(
                    "xcap_server: puahost serves XCAP on its own address, not through xhttp: http = \"{addr}\" added"
                ),
            );
            params.push(("http".into(), Val::Str(addr)));
        }
    }

    for o in &ours {
        let set = &modparams.iter().find(|(n, _)| *n == o.name).expect("one per module").1;
        for r in o.required.iter().filter(|r| !set.iter().any(|(n, _)| n == *r)) {
            report(
                o.line,
                format!("module {} needs modparam {r}, which the config does not set; add it to the result", o.name),
            );
        }
    }

    // Routes.
    let mut functions: HashMap<String, FnInfo> = crate::sip::router::builtins::BUILTINS
        .iter()
        .map(|b| (b.name.to_string(), FnInfo { min_args: b.min_args as usize, max_args: b.max_args as usize }))
        .collect();
    for o in &ours {
        for (n, f) in &o.functions {
            functions.entry(n.clone()).or_insert(*f);
        }
    }
    let mut t = Translator::new(&cfg, &functions);
    let out_routes = t.translate();
    for (o, why) in std::mem::take(&mut t.reports) {
        reports.entry(o).or_insert(why);
    }

    // The TOML.
    let mut s = String::new();
    let _ = writeln!(s, "# Converted from {} by `puahost convert`.", opts.file.display());
    if !opts.defines.is_empty() {
        let _ = writeln!(s, "# Defines: {}", opts.defines.join(" "));
    }
    let _ = writeln!(
        s,
        "# {} line{} of the Kamailio config were not translated: `puahost convert` lists them on stderr.\n",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(s, "loadmodule = [{}]\n", ours.iter().map(|o| toml_str(&o.name)).collect::<Vec<_>>().join(", "));
    s += "[core]\n";
    if listen_note {
        s += "# Kamailio listens on every address without listen=; name the addresses here.\n";
    }
    let _ = writeln!(s, "listen = {}", Val::List(listen_vals).toml());
    if !aliases.is_empty() {
        let _ = writeln!(s, "alias = {}", Val::List(aliases).toml());
    }
    for (k, v) in &core {
        let _ = writeln!(s, "{k} = {}", v.toml());
    }
    let rpc = loaded_kamailio.iter().any(|m| matches!(m.as_str(), "jsonrpcs" | "ctl" | "xhttp" | "mi_fifo"));
    if rpc {
        s += "\n[rpc]\nhttp = \"127.0.0.1:5080\"\n";
        if let Some(f) = &rpc_fifo {
            let _ = writeln!(s, "fifo = {}", toml_str(f));
        }
    }
    for (module, params) in &modparams {
        if params.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n[modparam.{module}]");
        for (k, v) in params {
            let _ = writeln!(s, "{} = {}", toml_key(k), v.toml());
        }
    }
    for r in &out_routes {
        s += &route_toml(r);
    }
    Ok(Converted { toml: s, reports })
}

fn route_toml(r: &OutRoute) -> String {
    let mut s = match &r.from {
        Some(o) => format!("\n[[route]]                             # {o}\n"),
        None => String::from("\n[[route]]\n"),
    };
    match r.methods.as_slice() {
        [] => {}
        [m] => {
            let _ = writeln!(s, "method = {}", toml_str(m));
        }
        ms => {
            let _ = writeln!(s, "method = [{}]", ms.iter().map(|m| toml_str(m)).collect::<Vec<_>>().join(", "));
        }
    }
    if let Some(re) = &r.ruri {
        let _ = writeln!(s, "ruri = {}", toml_str(re));
    }
    if let Some(m) = r.myself {
        let _ = writeln!(s, "myself = {m}");
    }
    for (h, re) in &r.headers {
        let _ = writeln!(s, "hdr.{} = {}", toml_key(h), toml_str(re));
    }
    if !r.actions.is_empty() {
        let _ = writeln!(s, "do = [{}]", r.actions.iter().map(|a| toml_str(a)).collect::<Vec<_>>().join(", "));
    }
    if let Some(f) = &r.on_fail {
        let _ = writeln!(s, "on_fail = {}", toml_str(f));
    }
    if let Some(f) = &r.reply {
        let _ = writeln!(s, "reply = {}", toml_str(f));
    }
    if r.actions.is_empty() && r.reply.is_none() {
        s += "# nothing: Kamailio leaves these requests unanswered too\n";
    }
    s
}

/// Kamailio's `listen=[proto:]addr[:port] [advertise addr:port] [name "x"]` as puahost listen
/// entries (no transport: UDP and TCP, as Kamailio does).
fn kamailio_listen(value: &str, default_port: u16, tcp: bool) -> Result<Vec<String>, String> {
    let mut words = value.split_whitespace();
    let addr = words.next().ok_or("empty")?;
    let mut advertise = None;
    while let Some(w) = words.next() {
        match w {
            "advertise" => advertise = words.next().map(str::to_string),
            "name" => {
                words.next();
            }
            other => return Err(format!("`{other}` is not translated")),
        }
    }
    let (protos, rest): (Vec<&str>, &str) = match addr.split_once(':') {
        Some((p, rest)) if matches!(p, "udp" | "tcp" | "tls" | "sctp" | "ws" | "wss" | "any") => {
            if p == "any" {
                (if tcp { vec!["udp", "tcp"] } else { vec!["udp"] }, rest)
            } else {
                (vec![p], rest)
            }
        }
        _ => (if tcp { vec!["udp", "tcp"] } else { vec!["udp"] }, addr),
    };
    let with_port = if rest.starts_with('[') {
        if rest.contains("]:") { rest.to_string() } else { format!("{rest}:{default_port}") }
    } else if rest.contains(':') {
        rest.to_string()
    } else {
        format!("{rest}:{default_port}")
    };
    let mut out = Vec::new();
    for p in protos {
        let mut entry = format!("{p}:{with_port}");
        if let Some(a) = &advertise {
            entry += &format!(" advertise {a}");
        }
        crate::config::parse_listen(&entry)?;
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(kamailio_listen("udp:127.0.0.1:5070", 5060, true).unwrap(), ["udp:127.0.0.1:5070"]);
        assert_eq!(kamailio_listen("10.0.0.1", 5062, true).unwrap(), ["udp:10.0.0.1:5062", "tcp:10.0.0.1:5062"]);
        assert_eq!(kamailio_listen("10.0.0.1", 5060, false).unwrap(), ["udp:10.0.0.1:5060"]);
        assert_eq!(
            kamailio_listen("tcp:10.0.0.1:5060 advertise 1.2.3.4:5060", 5060, true).unwrap(),
            ["tcp:10.0.0.1:5060 advertise 1.2.3.4:5060"]
        );
        assert!(kamailio_listen("udp:eth0:5060", 5060, true).is_err());
        assert!(kamailio_listen("tls:10.0.0.1:5061", 5060, true).is_err());
    }

    #[test]
    fn toml_strings() {
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(toml_key("User-Agent"), "User-Agent");
        assert_eq!(toml_key("a.b"), "\"a.b\"");
    }
}
