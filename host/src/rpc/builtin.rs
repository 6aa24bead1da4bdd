//! The host's own RPC commands.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Fault;
use crate::logging::{kamailio_level_to_filter, module_level_to_kamailio};
use crate::services::HostState;

type Command = (&'static str, &'static str, fn(&HostState, &[Value]) -> Result<Value, Fault>);

/// When the host started (for core.uptime).
static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Records the start time; called once at startup.
pub fn mark_started() {
    let _ = STARTED.set(SystemTime::now());
}

pub const COMMANDS: &[Command] = &[
    ("core.version", "Returns the version string of the server.", version),
    ("core.uptime", "Returns the current time, the start time and the uptime in seconds.", uptime),
    ("core.modules", "Returns the loaded modules, in load order.", modules),
    ("system.listMethods", "Lists the RPC commands.", list_methods),
    ("system.methodHelp", "Returns the documentation of an RPC command: system.methodHelp <name>.", method_help),
    ("corex.debug", "Gets or sets the log level as Kamailio's numeric debug level (-5..3; 4 = trace).", debug_level),
    (
        "log.level",
        "Gets or sets the log filter (error, warn, info, debug, trace, or a filter such as \"info,puahost::rpc=debug\").",
        log_level,
    ),
];

pub fn version_string() -> String {
    format!("puahost {} ({}/{})", crate::VERSION, std::env::consts::ARCH, std::env::consts::OS)
}

fn version(_: &HostState, _: &[Value]) -> Result<Value, Fault> {
    Ok(Value::String(version_string()))
}

fn ctime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    crate::db::dialect::epoch_to_local(secs).format("%a %b %e %H:%M:%S %Y").to_string()
}

fn uptime(_: &HostState, _: &[Value]) -> Result<Value, Fault> {
    let now = SystemTime::now();
    let started = *STARTED.get_or_init(SystemTime::now);
    let up = now.duration_since(started).map_or(0, |d| d.as_secs());
    Ok(json!({"now": ctime(now), "up_since": ctime(started), "uptime": up}))
}

fn modules(state: &HostState, _: &[Value]) -> Result<Value, Fault> {
    Ok(Value::Array(state.rpc.modules().iter().map(|m| Value::String(m.clone())).collect()))
}

fn list_methods(state: &HostState, _: &[Value]) -> Result<Value, Fault> {
    Ok(Value::Array(state.rpc.names().map(|n| Value::String(n.to_string())).collect()))
}

fn method_help(state: &HostState, params: &[Value]) -> Result<Value, Fault> {
    let Some(Value::String(name)) = params.first() else {
        return Err(Fault::new(400, "Too few or wrong type of parameters (give the command name)"));
    };
    state.rpc.doc(name).map(|d| Value::String(d.to_string())).ok_or_else(|| Fault::new(400, "command not found"))
}

fn debug_level(state: &HostState, params: &[Value]) -> Result<Value, Fault> {
    match params.first() {
        None => Ok(json!(module_level_to_kamailio(state.log.module_level()))),
        Some(v) => {
            let level = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| Fault::new(400, "Invalid debug level (an integer from -5 to 4)"))?;
            state.log.set_filter(kamailio_level_to_filter(level)).map_err(|e| Fault::new(500, e))?;
            Ok(json!(module_level_to_kamailio(state.log.module_level())))
        }
    }
}

fn log_level(state: &HostState, params: &[Value]) -> Result<Value, Fault> {
    match params.first() {
        None => Ok(Value::String(state.log.filter())),
        Some(Value::String(spec)) => {
            state.log.set_filter(spec).map_err(|e| Fault::new(400, e))?;
            Ok(Value::String(state.log.filter()))
        }
        Some(_) => Err(Fault::new(400, "Invalid log filter (a string such as \"debug\")")),
    }
}
