//! The TOML config: `loadmodule`, `[core]`, `[rpc]`, `[modparam.<module>]` and `[[route]]`.
//!
//! Loading happens in two steps. [`Config::load`] checks everything the host itself defines
//! (syntax, known keys, types, listen addresses, regexes, function-call syntax). After the
//! modules are loaded, [`crate::loader`] checks what only the modules can tell: modparam names,
//! types and ranges, and the functions routes call. Every error of both steps points at its
//! file, line and column, and the host refuses to start while there is one.

mod diagnostic;
pub mod route;
mod value;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

pub use diagnostic::{ConfigErrors, Diagnostic, Source, did_you_mean};
pub use route::RouteDef;
pub use value::{Spanned, Table, Value};

/// Transport of a listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One `[core] listen` entry: `udp:HOST:PORT`, optionally followed by `advertise HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The address to put in Via/Contact/Record-Route instead of `addr` (host behind NAT).
    pub advertise: Option<(String, u16)>,
}

/// Where log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Syslog,
    Journald,
}

/// `[core]`.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub listen: Vec<ListenAddr>,
    pub children: usize,
    /// Receiver threads per UDP listener (Kamailio's `udp_workers`); `None`: `children`.
    pub udp_workers: Option<usize>,
    /// Searched in order for `lib<module>.so` / `<module>.so`.
    pub modules_path: Vec<PathBuf>,
    pub log_level: String,
    pub log_target: LogTarget,
    /// Other names of this host, for `uri == myself`.
    pub alias: Vec<String>,
    /// Reply to requests no route handles (`None`: no reply).
    pub default_reply: Option<(u16, String)>,
    /// RFC 3261 timers.
    pub t1: std::time::Duration,
    pub t2: std::time::Duration,
    pub t4: std::time::Duration,
    /// Completed server transactions kept to absorb retransmissions (oldest evicted first).
    pub max_transactions: usize,
    pub tcp_max_message_size: usize,
    pub tcp_max_connections: usize,
    /// An idle TCP connection is closed after this long.
    pub tcp_connection_lifetime: std::time::Duration,
    /// DNS servers for next-hop resolution (empty: /etc/resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
    /// Largest SIP message processed, any transport: a larger request gets 513 Message Too
    /// Large, a larger reply is dropped.
    pub max_message_size: usize,
    /// Most header lines a message may have (Via lines included): a request with more gets
    /// 400 Too Many Headers, a reply is dropped.
    pub max_headers: usize,
    /// Requests accepted per second from one source IP address (0: no limit); the rest of
    /// that second's requests from it are dropped.
    pub max_requests_per_source: u32,
}

/// `[rpc]`.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// JSON-RPC over HTTP (`POST /RPC`) and Prometheus metrics (`GET /metrics`).
    pub http: Option<SocketAddr>,
    /// JSON-RPC over a FIFO, as Kamailio's jsonrpcs (kamctl's transport).
    pub fifo: Option<PathBuf>,
    /// Where FIFO replies are written (`reply_name` is a file name in it).
    pub fifo_reply_dir: PathBuf,
    /// A bearer token every HTTP request (RPC and metrics) must carry
    /// (`Authorization: Bearer <token>`); required when `http` is not a loopback address.
    pub token: Option<String>,
}

/// One `[modparam.<module>]` table, checked against the module's declaration by the loader.
#[derive(Debug, Clone)]
pub struct ModparamTable {
    pub module: Spanned<String>,
    pub params: Table,
}

/// A loaded and host-checked config.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    /// The config file's directory: relative paths in the config are resolved against it.
    pub dir: PathBuf,
    pub loadmodule: Vec<Spanned<String>>,
    pub core: CoreConfig,
    pub rpc: RpcConfig,
    pub modparams: Vec<ModparamTable>,
    pub routes: Vec<RouteDef>,
}

const TOP_KEYS: &[&str] = &["loadmodule", "core", "rpc", "modparam", "route"];

/// Modules Kamailio has under another name than puahost: (Kamailio's name, ours). Kamailio 5.x
/// renamed pua_mi to pua_rpc when MI gave way to RPC; configs of either era load the module.
const MODULE_ALIASES: &[(&str, &str)] = &[("pua_rpc", "pua_mi")];

/// The name puahost ships module `name` under, when `name` is one of Kamailio's other names.
pub fn canonical_module_name(name: &str) -> Option<&'static str> {
    MODULE_ALIASES.iter().find(|(alias, _)| *alias == name).map(|(_, canonical)| *canonical)
}
const CORE_KEYS: &[&str] = &[
    "listen",
    "children",
    "udp_workers",
    "modules_path",
    "log_level",
    "log_target",
    "alias",
    "default_reply",
    "t1",
    "t2",
    "t4",
    "max_transactions",
    "tcp_max_message_size",
    "tcp_max_connections",
    "tcp_connection_lifetime",
    "dns_servers",
    "max_message_size",
    "max_headers",
    "max_requests_per_source",
];
const RPC_KEYS: &[&str] = &["http", "fifo", "fifo_reply_dir", "token"];
const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// Default modules path: next to the binary, then the system directory.
pub fn default_modules_path() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        paths.push(dir);
    }
    paths.push(PathBuf::from("/usr/lib/puahost/modules"));
    paths
}

/// Collects diagnostics while walking the document.
struct Checker {
    errors: Vec<Diagnostic>,
}

impl Checker {
    fn error(&mut self, message: impl Into<String>, span: &std::ops::Range<usize>) -> &mut Diagnostic {
        self.errors.push(Diagnostic::new(message, Some(span.clone())));
        self.errors.last_mut().expect("just pushed")
    }

    fn unknown_key(&mut self, key: &Spanned<String>, table: &str, known: &[&str]) {
        let d = self.error(format!("unknown key `{}` in {table}", key.value), &key.span);
        d.help = Some(match did_you_mean(&key.value, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of: {}", known.join(", ")),
        });
    }

    /// `loadmodule` written after a table header becomes a key of that table in TOML.
    fn misplaced_loadmodule(&mut self, key: &Spanned<String>, table: &str) -> bool {
        if key.value != "loadmodule" {
            return false;
        }
        self.error(format!("`loadmodule` ended up inside {table}"), &key.span).help =
            Some("TOML puts every key after a [table] header into that table: move the loadmodule line above the first [table] header".into());
        true
    }

    fn string(&mut self, v: &Spanned<Value>, what: &str) -> Option<String> {
        match &v.value {
            Value::Str(s) => Some(s.clone()),
            other => {
                self.error(format!("{what} must be a string, found {}", other.kind()), &v.span);
                None
            }
        }
    }

    /// A string or an array of strings.
    fn strings(&mut self, v: &Spanned<Value>, what: &str) -> Vec<Spanned<String>> {
        match &v.value {
            Value::Str(s) => vec![Spanned::new(s.clone(), v.span.clone())],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| {
                    self.string(i, &format!("each entry of {what}")).map(|s| Spanned::new(s, i.span.clone()))
                })
                .collect(),
            other => {
                self.error(format!("{what} must be a string or an array of strings, found {}", other.kind()), &v.span);
                Vec::new()
            }
        }
    }

    fn table<'a>(&mut self, v: &'a Spanned<Value>, what: &str) -> Option<&'a Table> {
        match &v.value {
            Value::Table(t) => Some(t),
            other => {
                self.error(format!("{what} must be a table, found {}", other.kind()), &v.span);
                None
            }
        }
    }
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, Box<ConfigErrors>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Box::new(ConfigErrors {
                source: Source::new(path, String::new()),
                errors: vec![Diagnostic::new(format!("cannot read the config file: {e}"), None)],
            })
        })?;
        Self::from_str(path, text)
    }

    /// Checks config `text` as if read from `path`.
    pub fn from_str(path: &Path, text: String) -> Result<Config, Box<ConfigErrors>> {
        let source = Source::new(path, text);
        let fail = |source: Source, errors| Box::new(ConfigErrors { source, errors });
        let doc = match value::parse(&source.text) {
            Ok(doc) => doc,
            Err((message, span)) => {
                let message = message.trim_end().to_string();
                return Err(fail(source, vec![Diagnostic::new(format!("TOML syntax: {message}"), span)]));
            }
        };
        let dir = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(|| path.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));

        let mut c = Checker { errors: Vec::new() };
        let mut loadmodule = Vec::new();
        let mut core = None;
        let mut rpc = None;
        let mut modparams = Vec::new();
        let mut routes = Vec::new();

        for (key, value) in &doc {
            match key.value.as_str() {
                "loadmodule" => loadmodule = c.strings(value, "loadmodule"),
                "core" => {
                    if let Some(t) = c.table(value, "[core]") {
                        core = Some(check_core(&mut c, t, &dir));
                    }
                }
                "rpc" => {
                    if let Some(t) = c.table(value, "[rpc]") {
                        rpc = Some(check_rpc(&mut c, t, &dir));
                    }
                }
                "modparam" => {
                    if let Some(t) = c.table(value, "[modparam]") {
                        for (module, params) in t {
                            let table_name = format!("[modparam.{}]", module.value);
                            if let Some(p) = c.table(params, &table_name) {
                                for (k, _) in p {
                                    c.misplaced_loadmodule(k, &table_name);
                                }
                                modparams.push(ModparamTable { module: module.clone(), params: p.clone() });
                            }
                        }
                    }
                }
                "route" => match &value.value {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if let Some(t) = c.table(item, "each [[route]]")
                                && let Some(r) = route::check(&mut c.errors, t, i, item.span.clone())
                            {
                                routes.push(r);
                            }
                        }
                    }
                    other => {
                        c.error(
                            format!("`route` must be written as [[route]] tables, found {}", other.kind()),
                            &value.span,
                        );
                    }
                },
                _ => c.unknown_key(key, "the top level", TOP_KEYS),
            }
        }

        // Kamailio's other names for a module: the config may use either.
        for name in loadmodule.iter_mut().chain(modparams.iter_mut().map(|t| &mut t.module)) {
            if let Some(canonical) = canonical_module_name(&name.value) {
                tracing::info!("module {} is called {canonical} in puahost; loading {canonical}", name.value);
                name.value = canonical.to_string();
            }
        }

        // Modules named in modparam tables must be loaded.
        let loaded: Vec<&str> = loadmodule.iter().map(|m| m.value.as_str()).collect();
        for t in &modparams {
            if !loaded.contains(&t.module.value.as_str()) {
                let d = c.error(
                    format!(
                        "[modparam.{}] configures module `{}`, which is not in loadmodule",
                        t.module.value, t.module.value
                    ),
                    &t.module.span,
                );
                d.help = Some(match did_you_mean(&t.module.value, loaded.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("add \"{}\" to loadmodule", t.module.value),
                });
            }
        }
        for (i, m) in loadmodule.iter().enumerate() {
            if loadmodule[..i].iter().any(|p| p.value == m.value) {
                c.error(format!("module `{}` is loaded twice", m.value), &m.span);
            }
        }

        if !c.errors.is_empty() {
            return Err(fail(source, c.errors));
        }
        Ok(Config {
            source,
            dir: dir.clone(),
            loadmodule,
            core: core.unwrap_or_else(|| default_core(&dir)),
            rpc: rpc.unwrap_or_else(default_rpc),
            modparams,
            routes,
        })
    }

    /// A diagnostic bundle for errors found after loading (by the module loader).
    pub fn errors(&self, errors: Vec<Diagnostic>) -> Box<ConfigErrors> {
        Box::new(ConfigErrors { source: self.source.clone(), errors })
    }
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { dir.join(p) }
}

fn default_core(_dir: &Path) -> CoreConfig {
    CoreConfig {
        listen: Vec::new(),
        children: 4,
        udp_workers: None,
        modules_path: default_modules_path(),
        log_level: "info".into(),
        log_target: LogTarget::Stderr,
        alias: Vec::new(),
        default_reply: Some((501, "Not Implemented".into())),
        t1: std::time::Duration::from_millis(500),
        t2: std::time::Duration::from_millis(4000),
        t4: std::time::Duration::from_millis(5000),
        max_transactions: 200_000,
        tcp_max_message_size: 256 * 1024,
        tcp_max_connections: 2048,
        tcp_connection_lifetime: std::time::Duration::from_secs(120),
        dns_servers: Vec::new(),
        max_message_size: 256 * 1024,
        max_headers: 256,
        max_requests_per_source: 0,
    }
}

/// An integer `[core]` key within `range`.
fn int_in(
    c: &mut Checker,
    value: &Spanned<Value>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    unit: &str,
) -> Option<i64> {
    match value.value {
        Value::Int(n) if range.contains(&n) => Some(n),
        Value::Int(n) => {
            c.error(
                format!("{key} must be between {} and {}{unit}, found {n}", range.start(), range.end()),
                &value.span,
            );
            None
        }
        ref other => {
            c.error(format!("{key} must be an integer{unit}, found {}", other.kind()), &value.span);
            None
        }
    }
}

fn default_rpc() -> RpcConfig {
    RpcConfig { http: None, fifo: None, fifo_reply_dir: PathBuf::from("/tmp"), token: None }
}

fn check_core(c: &mut Checker, t: &Table, dir: &Path) -> CoreConfig {
    let mut core = default_core(dir);
    for (key, value) in t {
        if c.misplaced_loadmodule(key, "[core]") {
            continue;
        }
        match key.value.as_str() {
            "listen" => {
                for entry in c.strings(value, "listen") {
                    match parse_listen(&entry.value) {
                        Ok(l) => core.listen.push(l),
                        Err(why) => {
                            c.error(format!("bad listen address `{}`: {why}", entry.value), &entry.span).help =
                                Some("write it as udp:HOST:PORT or tcp:HOST:PORT (IPv6: udp:[::1]:5060), optionally followed by ` advertise HOST:PORT`".into());
                        }
                    }
                }
            }
            "children" => match &value.value {
                Value::Int(n) if (1..=1024).contains(n) => core.children = *n as usize,
                Value::Int(n) => {
                    c.error(format!("children must be between 1 and 1024, found {n}"), &value.span);
                }
                other => {
                    c.error(format!("children must be an integer, found {}", other.kind()), &value.span);
                }
            },
            "udp_workers" => match &value.value {
                Value::Int(n) if (1..=1024).contains(n) => core.udp_workers = Some(*n as usize),
                Value::Int(n) => {
                    c.error(format!("udp_workers must be between 1 and 1024, found {n}"), &value.span);
                }
                other => {
                    c.error(format!("udp_workers must be an integer, found {}", other.kind()), &value.span);
                }
            },
            "modules_path" => {
                core.modules_path =
                    c.strings(value, "modules_path").into_iter().map(|s| resolve(dir, Path::new(&s.value))).collect();
            }
            "log_level" => {
                if let Some(level) = c.string(value, "log_level") {
                    if LOG_LEVELS.contains(&level.as_str())
                        || tracing_subscriber::EnvFilter::try_new(&level).is_ok() && level.contains('=')
                    {
                        core.log_level = level;
                    } else {
                        c.error(format!("unknown log_level `{level}`"), &value.span).help = Some(format!(
                            "use one of {}, or a filter such as \"info,puahost::rpc=debug\"",
                            LOG_LEVELS.join(", ")
                        ));
                    }
                }
            }
            "log_target" => {
                if let Some(target) = c.string(value, "log_target") {
                    core.log_target = match target.as_str() {
                        "stderr" => LogTarget::Stderr,
                        "syslog" => LogTarget::Syslog,
                        "journald" => LogTarget::Journald,
                        _ => {
                            c.error(format!("unknown log_target `{target}`"), &value.span).help =
                                Some("use \"stderr\", \"syslog\" or \"journald\"".into());
                            continue;
                        }
                    };
                }
            }
            "alias" => core.alias = c.strings(value, "alias").into_iter().map(|s| s.value).collect(),
            "default_reply" => {
                if let Some(text) = c.string(value, "default_reply") {
                    if text.trim().is_empty() {
                        core.default_reply = None;
                    } else {
                        match text.trim().split_once(' ').map(|(code, r)| (code.parse::<u16>(), r.trim())) {
                            Some((Ok(code), reason)) if (300..700).contains(&code) && !reason.is_empty() => {
                                core.default_reply = Some((code, reason.to_string()))
                            }
                            _ => {
                                c.error(
                                    format!("default_reply must be a final status code and a reason, found `{text}`"),
                                    &value.span,
                                )
                                .help = Some("for example \"501 Not Implemented\", or \"\" for no reply".into());
                            }
                        }
                    }
                }
            }
            "t1" => {
                core.t1 = int_in(c, value, "t1", 10..=10_000, " (ms)")
                    .map_or(core.t1, |n| std::time::Duration::from_millis(n as u64))
            }
            "t2" => {
                core.t2 = int_in(c, value, "t2", 10..=60_000, " (ms)")
                    .map_or(core.t2, |n| std::time::Duration::from_millis(n as u64))
            }
            "t4" => {
                core.t4 = int_in(c, value, "t4", 10..=60_000, " (ms)")
                    .map_or(core.t4, |n| std::time::Duration::from_millis(n as u64))
            }
            "max_transactions" => {
                core.max_transactions = int_in(c, value, "max_transactions", 1000..=100_000_000, "")
                    .map_or(core.max_transactions, |n| n as usize)
            }
            "tcp_max_message_size" => {
                core.tcp_max_message_size =
                    int_in(c, value, "tcp_max_message_size", 1024..=64 * 1024 * 1024, " (bytes)")
                        .map_or(core.tcp_max_message_size, |n| n as usize)
            }
            "tcp_max_connections" => {
                core.tcp_max_connections = int_in(c, value, "tcp_max_connections", 1..=1_000_000, "")
                    .map_or(core.tcp_max_connections, |n| n as usize)
            }
            "tcp_connection_lifetime" => {
                core.tcp_connection_lifetime = int_in(c, value, "tcp_connection_lifetime", 1..=86_400, " (seconds)")
                    .map_or(core.tcp_connection_lifetime, |n| std::time::Duration::from_secs(n as u64))
            }
            "dns_servers" => {
                let mut servers = Vec::new();
                for s in c.strings(value, "dns_servers") {
                    match s
                        .value
                        .parse::<SocketAddr>()
                        .or_else(|_| s.value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    {
                        Ok(a) => servers.push(a),
                        Err(_) => {
                            c.error(format!("bad DNS server `{}`", s.value), &s.span).help =
                                Some("write IP or IP:PORT".into());
                        }
                    }
                }
                core.dns_servers = servers;
            }
            "max_message_size" => {
                core.max_message_size = int_in(c, value, "max_message_size", 1024..=64 * 1024 * 1024, " (bytes)")
                    .map_or(core.max_message_size, |n| n as usize)
            }
            "max_headers" => {
                core.max_headers =
                    int_in(c, value, "max_headers", 16..=100_000, "").map_or(core.max_headers, |n| n as usize)
            }
            "max_requests_per_source" => {
                core.max_requests_per_source =
                    int_in(c, value, "max_requests_per_source", 0..=10_000_000, " (requests per second, 0: no limit)")
                        .map_or(core.max_requests_per_source, |n| n as u32)
            }
            _ => c.unknown_key(key, "[core]", CORE_KEYS),
        }
    }
    core
}

fn check_rpc(c: &mut Checker, t: &Table, dir: &Path) -> RpcConfig {
    let mut rpc = default_rpc();
    let mut http_span = None;
    for (key, value) in t {
        if c.misplaced_loadmodule(key, "[rpc]") {
            continue;
        }
        match key.value.as_str() {
            "http" => {
                if let Some(s) = c.string(value, "http") {
                    match s.parse::<SocketAddr>() {
                        Ok(a) => {
                            rpc.http = Some(a);
                            http_span = Some(value.span.clone());
                        }
                        Err(_) => {
                            c.error(format!("bad HTTP listen address `{s}`"), &value.span).help =
                                Some("write it as HOST:PORT with an IP address, e.g. \"127.0.0.1:5080\"".into());
                        }
                    }
                }
            }
            "fifo" => rpc.fifo = c.string(value, "fifo").map(|s| resolve(dir, Path::new(&s))),
            "fifo_reply_dir" => {
                if let Some(s) = c.string(value, "fifo_reply_dir") {
                    rpc.fifo_reply_dir = resolve(dir, Path::new(&s));
                }
            }
            "token" => {
                if let Some(token) = c.string(value, "token") {
                    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                        c.error("token must be at least 16 printable ASCII characters without spaces", &value.span)
                            .help = Some("for example the output of `openssl rand -hex 16`".into());
                    } else {
                        rpc.token = Some(token);
                    }
                }
            }
            _ => c.unknown_key(key, "[rpc]", RPC_KEYS),
        }
    }
    // RPC commands change state and read every presentity's body: on an address other hosts
    // can reach, only with a credential.
    if let (Some(addr), Some(span), None) = (rpc.http, &http_span, &rpc.token)
        && !addr.ip().is_loopback()
    {
        c.error(format!("the RPC listener on {addr} is reachable from other hosts and has no token"), span).help =
            Some("set [rpc] token (clients send `Authorization: Bearer <token>`; `puahost rpc` reads PUAHOST_RPC_TOKEN), or listen on 127.0.0.1".into());
    }
    rpc
}

/// Parses `udp:HOST:PORT[ advertise HOST:PORT]`.
pub fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    let mut words = s.split_whitespace();
    let addr = words.next().ok_or("it is empty")?;
    let advertise = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some("advertise"), Some(adv), None) => Some(parse_host_port(adv)?),
        _ => return Err("expected `advertise HOST:PORT` after the address".into()),
    };
    let (proto, rest) = addr.split_once(':').ok_or("no transport (udp: or tcp:)")?;
    let transport = match proto.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" | "sctp" | "ws" | "wss" => {
            return Err(format!("transport {proto} is not supported yet (udp and tcp are)"));
        }
        _ => return Err(format!("unknown transport `{proto}`")),
    };
    let (host, port) = parse_host_port(rest)?;
    let ip: IpAddr = host.parse().map_err(|_| format!("`{host}` is not an IP address"))?;
    Ok(ListenAddr { transport, addr: SocketAddr::new(ip, port), advertise })
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`; the port defaults to 5060.
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("missing `]` after an IPv6 address")?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err("an IPv6 address must be written in brackets: [::1]:5060".into()),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => 5060,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("bad port `{p}`"))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Box<ConfigErrors>> {
        Config::from_str(Path::new("/etc/puahost/test.toml"), text.to_string())
    }

    fn first_error(text: &str) -> String {
        let e = load(text).unwrap_err();
        e.source.render(&e.errors[0])
    }

    #[test]
    fn full_config_loads() {
        let c = load(
            r#"
loadmodule = ["pua", "pua_mi"]
[core]
listen = ["udp:127.0.0.1:5060", "tcp:[::1]:5061 advertise sip.example.com:5061"]
children = 2
log_level = "debug"
[rpc]
http = "127.0.0.1:5080"
fifo = "run/puahost.fifo"
[modparam.pua]
db_url = "sqlite://pua.sqlite"
xcap_server = ["a", "b"]
[[route]]
method = "PUBLISH"
do = ["handle_publish()"]
"#,
        )
        .unwrap();
        assert_eq!(c.loadmodule.len(), 2);
        assert_eq!(c.core.listen[1].addr, "[::1]:5061".parse().unwrap());
        assert_eq!(c.core.listen[1].advertise, Some(("sip.example.com".into(), 5061)));
        assert_eq!(c.core.children, 2);
        assert_eq!(c.rpc.fifo, Some(PathBuf::from("/etc/puahost/run/puahost.fifo")));
        assert_eq!(c.modparams[0].params.len(), 2);
        assert_eq!(c.routes.len(), 1);
    }

    #[test]
    fn loadmodule_after_a_table_is_pointed_out() {
        let out = first_error("[core]\nchildren = 1\nloadmodule = [\"pua\"]\n");
        assert!(out.contains("test.toml:3:1"), "{out}");
        assert!(out.contains("move the loadmodule line above"), "{out}");
    }

    #[test]
    fn bad_listen_address() {
        let out = first_error("[core]\nlisten = [\"udp:300.1.1.1:5060\"]\n");
        assert!(out.contains("bad listen address `udp:300.1.1.1:5060`"), "{out}");
        assert!(out.contains("test.toml:2:11"), "{out}");
        assert!(first_error("[core]\nlisten = \"foo:1.2.3.4\"\n").contains("unknown transport"));
        assert!(first_error("[core]\nlisten = \"udp:::1:5060\"\n").contains("brackets"));
    }

    #[test]
    fn unknown_keys_suggest() {
        let out = first_error("[core]\nchildrn = 2\n");
        assert!(out.contains("did you mean `children`?"), "{out}");
        let out = first_error("loadmodule = []\n[modparam.pua]\nx = 1\n");
        assert!(out.contains("not in loadmodule"), "{out}");
    }

    #[test]
    fn wrong_types() {
        assert!(first_error("[core]\nchildren = \"4\"\n").contains("children must be an integer, found a string"));
        assert!(first_error("loadmodule = 3\n").contains("loadmodule must be a string or an array"));
    }

    #[test]
    fn syntax_error_has_location() {
        let out = first_error("loadmodule = [\"pua\"\n[core]\n");
        assert!(out.contains("TOML syntax"), "{out}");
        assert!(out.contains("test.toml:"), "{out}");
    }

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("udp:10.0.0.1").unwrap().addr.port(), 5060);
        assert!(parse_listen("udp:10.0.0.1:0").is_err());
        assert!(parse_listen("udp:host.example:5060").is_err());
        assert!(parse_listen("tls:1.2.3.4:5061").unwrap_err().contains("not supported"));
    }
}
