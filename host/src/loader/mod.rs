//! Finds module libraries, loads them with abi_stable's layout checks, and checks the config
//! against what each module declares (modparams, requirements, route functions).
//!
//! Each library is loaded with `lib_header_from_path(..).init_root_module()`, never with
//! `RootModule::load_from_file`: the latter caches one module per root-module *type* in a
//! static, so every plugin after the first would silently be the first one again. Libraries
//! are never unloaded (abi_stable leaks them; Kamailio does not unload modules either).

// `LoadError` is large, but it is built once per failed load, never on a hot path.
#![allow(clippy::result_large_err)]

mod params;

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, RawLibrary, RootModule, lib_header_from_path};
use abi_stable::std_types::{RErr, ROk};
use plugin_api::ffi::{FfiModuleInfo, FfiParam, PLUGIN_API_VERSION, PluginRootRef};

use crate::config::{Config, ConfigErrors, Diagnostic, did_you_mean};

pub use params::check_modparams;

/// A loaded module library.
pub struct LoadedModule {
    pub name: String,
    pub path: PathBuf,
    pub root: PluginRootRef,
    pub info: FfiModuleInfo,
    /// Validated modparams (configured values and defaults), ready for `init`.
    pub params: Vec<FfiParam>,
}

/// Why a module could not be loaded. Built once per failed load, so its size does not matter.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("module `{name}` not found (looked for {tried})")]
    NotFound { name: String, tried: String },
    #[error("cannot load module `{name}` from {}: {why}", path.display())]
    Open { name: String, path: PathBuf, why: String },
    #[error("{} is not a puahost module: it has no root module symbol (build it with plugin_api::export_module!)", path.display())]
    NotAModule { path: PathBuf },
    #[error(
        "module `{name}` ({}) was built against plugin-api {plugin_api} (ABI {plugin_abi}); this host has plugin-api {host_api} (ABI {host_abi}): rebuild the module against plugin-api {host_api}",
        path.display()
    )]
    IncompatibleAbi {
        name: String,
        path: PathBuf,
        plugin_api: String,
        plugin_abi: String,
        host_api: String,
        host_abi: String,
    },
    #[error(
        "module `{name}` ({}) was built against an incompatible plugin-api {plugin_api} (this host has plugin-api {host_api}); the type layouts differ: {detail}. Rebuild the module against plugin-api {host_api}",
        path.display()
    )]
    LayoutMismatch { name: String, path: PathBuf, plugin_api: String, host_api: String, detail: String },
    #[error("module `{name}` ({}) failed while loading: {why}", path.display())]
    Failed { name: String, path: PathBuf, why: String },
    #[error("{} holds module `{found}`, not `{name}`", path.display())]
    WrongName { name: String, path: PathBuf, found: String },
}

/// The library file for module `name`: `lib<name>.so` or `<name>.so` in the first directory of
/// `paths` that has one.
pub fn find_module(name: &str, paths: &[PathBuf]) -> Result<PathBuf, LoadError> {
    let mut tried = Vec::new();
    for dir in paths {
        for file in [format!("lib{name}.so"), format!("{name}.so")] {
            let p = dir.join(&file);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p.display().to_string());
        }
    }
    Err(LoadError::NotFound { name: name.to_string(), tried: tried.join(", ") })
}

/// The plugin-api version a library says it was built against (read from a symbol whose
/// layout never changes), for error messages.
fn plugin_api_version_of(path: &Path) -> String {
    let Ok(lib) = RawLibrary::load_at(path) else { return "unknown".into() };
    // SAFETY: the symbol, when present, is a `[u8; 32]` static written by `export_module!`;
    // a symbol's value is its address, so it is read as a pointer to the array.
    let version = unsafe { lib.get::<*const [u8; 32]>(b"puahost_plugin_api_version\0") }
        .ok()
        .and_then(|sym| CStr::from_bytes_until_nul(unsafe { &**sym }).ok().map(|c| c.to_string_lossy().into_owned()));
    std::mem::forget(lib);
    version.unwrap_or_else(|| "unknown (a version older than this check)".into())
}

/// The gist of abi_stable's layout report: each `Error:` with the expected and found field or
/// type, and the type they are in. The whole report is logged at debug level.
pub fn summarize_layout_report(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let mut out = Vec::new();
    let mut in_type = None;
    for (i, line) in lines.iter().enumerate() {
        if *line == "Layout of expected type:" {
            in_type = lines[i + 1..].iter().find_map(|l| l.strip_prefix("type:"));
        }
        let Some(error) = line.strip_prefix("Error:") else { continue };
        // The first `field_name:` (else `type:`) after `Expected:` and after `Found:`.
        let item_after = |label: &str| {
            let start = lines[i..].iter().position(|l| *l == label)? + i + 1;
            let block =
                lines[start..].iter().take_while(|l| !l.is_empty() && **l != "Found:" && !l.starts_with("Error:"));
            let block: Vec<&&str> = block.collect();
            block
                .iter()
                .find_map(|l| l.strip_prefix("field_name:"))
                .or_else(|| block.iter().find_map(|l| l.strip_prefix("type:")))
                .map(str::to_string)
        };
        let (expected, found) = (item_after("Expected:"), item_after("Found:"));
        let mut s = match in_type {
            Some(t) => format!("in {t}: {error}"),
            None => error.to_string(),
        };
        if let (Some(e), Some(f)) = (expected, found) {
            s += &format!(" (expected `{e}`, found `{f}`)");
        }
        out.push(s);
    }
    if out.is_empty() {
        "the layouts differ (run with RUST_LOG=debug for abi_stable's report)".into()
    } else {
        out.join("; ")
    }
}

fn abi_of(version: &str) -> String {
    version.split('.').next().unwrap_or(version).to_string()
}

/// Loads module `name` from `path` and reads its declaration.
pub fn load_module(name: &str, path: &Path) -> Result<LoadedModule, LoadError> {
    let header = lib_header_from_path(path).map_err(|e| match e {
        LibraryError::GetSymbolError { .. } => LoadError::NotAModule { path: path.to_path_buf() },
        other => LoadError::Open { name: name.into(), path: path.into(), why: other.to_string() },
    })?;
    let root = header.init_root_module::<PluginRootRef>().map_err(|e| {
        let host_api = PLUGIN_API_VERSION.to_string();
        match e {
            LibraryError::IncompatibleVersionNumber { actual_version, expected_version, .. } => {
                LoadError::IncompatibleAbi {
                    name: name.into(),
                    path: path.into(),
                    plugin_api: plugin_api_version_of(path),
                    plugin_abi: actual_version.major.to_string(),
                    host_api,
                    host_abi: expected_version.major.to_string(),
                }
            }
            LibraryError::AbiInstability(detail) => {
                let detail = detail.to_string();
                tracing::debug!(module = name, "abi_stable layout report:\n{detail}");
                let detail = summarize_layout_report(&detail);
                LoadError::LayoutMismatch {
                    name: name.into(),
                    path: path.into(),
                    plugin_api: plugin_api_version_of(path),
                    host_api,
                    detail,
                }
            }
            LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => LoadError::IncompatibleAbi {
                name: name.into(),
                path: path.into(),
                plugin_api: plugin_api_version_of(path),
                plugin_abi: "built with another abi_stable".into(),
                host_api,
                host_abi: abi_of(<PluginRootRef as RootModule>::VERSION_STRINGS.version.as_str()),
            },
            other => LoadError::Failed { name: name.into(), path: path.into(), why: other.to_string() },
        }
    })?;
    let info = match (root.info())() {
        ROk(info) => info,
        RErr(e) => {
            return Err(LoadError::Failed { name: name.into(), path: path.into(), why: e.message.into_string() });
        }
    };
    if info.name.as_str() != name {
        return Err(LoadError::WrongName {
            name: name.into(),
            path: path.into(),
            found: info.name.clone().into_string(),
        });
    }
    Ok(LoadedModule { name: name.to_string(), path: path.to_path_buf(), root, info, params: Vec::new() })
}

/// Loads every module of `config` in loadmodule order and checks the config against them.
/// Returns every error found, each pointing at its place in the file.
pub fn load_all(config: &Config) -> Result<Vec<LoadedModule>, Box<ConfigErrors>> {
    let mut errors = Vec::new();
    let mut modules = Vec::new();
    for entry in &config.loadmodule {
        let loaded = find_module(&entry.value, &config.core.modules_path).and_then(|p| load_module(&entry.value, &p));
        match loaded {
            Ok(m) => modules.push(m),
            Err(e) => {
                let mut d = Diagnostic::new(e.to_string(), Some(entry.span.clone()));
                if matches!(e, LoadError::NotFound { .. }) {
                    d = d.help("set [core] modules_path, or build the modules (cargo build --workspace --release)");
                }
                errors.push(d);
            }
        }
    }
    check_requirements(config, &modules, &mut errors);
    for m in &mut modules {
        let table = config.modparams.iter().find(|t| t.module.value == m.name);
        let span = config.loadmodule.iter().find(|e| e.value == m.name).map(|e| e.span.clone());
        m.params = check_modparams(&m.name, &m.info, table, span, &mut errors);
    }
    check_routes(config, &modules, &mut errors);
    if errors.is_empty() { Ok(modules) } else { Err(config.errors(errors)) }
}

fn check_requirements(config: &Config, modules: &[LoadedModule], errors: &mut Vec<Diagnostic>) {
    let order: Vec<&str> = config.loadmodule.iter().map(|e| e.value.as_str()).collect();
    for m in modules {
        let my_pos = order.iter().position(|n| *n == m.name).unwrap_or(0);
        let span = config.loadmodule[my_pos].span.clone();
        for req in m.info.requires.iter() {
            match order.iter().position(|n| *n == req.as_str()) {
                None => errors.push(
                    Diagnostic::new(
                        format!("module {} requires {req}, which is not loaded", m.name),
                        Some(span.clone()),
                    )
                    .help(format!("add \"{req}\" to loadmodule, before \"{}\"", m.name)),
                ),
                Some(pos) if pos > my_pos => errors.push(
                    Diagnostic::new(
                        format!("module {} requires {req}, which is loaded after it", m.name),
                        Some(span.clone()),
                    )
                    .help(format!("move \"{req}\" before \"{}\" in loadmodule", m.name)),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Every function a route calls must exist (in the core or a module), with a fitting number of
/// arguments.
fn check_routes(config: &Config, modules: &[LoadedModule], errors: &mut Vec<Diagnostic>) {
    use crate::sip::router::builtins::{BUILTINS, find};
    let all_names: Vec<&str> = BUILTINS
        .iter()
        .map(|b| b.name)
        .chain(modules.iter().flat_map(|m| m.info.functions.iter().map(|f| f.name.as_str())))
        .collect();
    let arity_error = |name: &str, owner: &str, min: u32, max: u32, n: u32| {
        let expected = if min == max { format!("{min}") } else { format!("{min} to {max}") };
        format!("function `{name}` of {owner} takes {expected} argument(s), {n} given")
    };
    for route in &config.routes {
        for call in &route.actions {
            let n = call.args.len() as u32;
            if let Some(b) = find(&call.name) {
                if n < b.min_args || n > b.max_args {
                    errors.push(Diagnostic::new(
                        arity_error(&call.name, "the core", b.min_args, b.max_args, n),
                        Some(call.span.clone()),
                    ));
                }
                continue;
            }
            let found = modules
                .iter()
                .find_map(|m| m.info.functions.iter().find(|f| f.name.as_str() == call.name).map(|f| (m, f)));
            match found {
                None => {
                    let mut d = Diagnostic::new(format!("unknown function `{}`", call.name), Some(call.span.clone()));
                    d = d.help(match did_you_mean(&call.name, all_names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "load the module that provides it (puahost params <module> lists a module's functions)"
                            .into(),
                    });
                    errors.push(d);
                }
                Some((m, f)) => {
                    if n < f.min_args || n > f.max_args {
                        let owner = format!("module {}", m.name);
                        errors.push(Diagnostic::new(
                            arity_error(&call.name, &owner, f.min_args, f.max_args, n),
                            Some(call.span.clone()),
                        ));
                    } else if f.route_kinds & plugin_api::RouteKinds::REQUEST.0 == 0 {
                        errors.push(Diagnostic::new(
                            format!(
                                "function `{}` of module {} cannot be called from a request route",
                                call.name, m.name
                            ),
                            Some(call.span.clone()),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_report_summary() {
        let report = "Compared <this>:\n...\nLayout of expected type:\n    --- Type Layout ---\n    type:PluginRoot\n    size:72\n\nError:unexpected field\nExpected:\n    field_name:child_init\n    type:AFunctionPointer\nFound:\n    field_name:destroy\n    type:AFunctionPointer\n\nError:mismatched size\nExpected:\n    type:u32\nFound:\n    type:u64\n";
        assert_eq!(
            summarize_layout_report(report),
            "in PluginRoot: unexpected field (expected `child_init`, found `destroy`); in PluginRoot: mismatched size (expected `u32`, found `u64`)"
        );
        assert!(summarize_layout_report("nothing useful").contains("RUST_LOG=debug"));
    }
}
