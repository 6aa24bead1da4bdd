//! `puahost`: a SIP presence server that loads Kamailio-style modules as plugins.

mod config;
mod convert;
mod db;
mod docs;
mod loader;
mod logging;
mod rpc;
mod server;
mod services;
mod sip;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// The host's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Parser)]
#[command(
    name = "puahost",
    version,
    about = "SIP presence server with Kamailio-compatible modules",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    Run {
        /// The config file.
        #[arg(short = 'c', long = "config", default_value = "/etc/puahost/puahost.toml")]
        config: PathBuf,
    },
    /// Checks a config file and the modules it loads, then exits (0 when it is valid).
    Check {
        /// The config file.
        #[arg(short = 'c', long = "config", default_value = "/etc/puahost/puahost.toml")]
        config: PathBuf,
    },
    /// Prints a module's modparams, functions and RPC commands, read from the module itself
    /// (`core`: the functions and pseudo-variables the core gives routes).
    Params {
        /// The module name (as in loadmodule), or `core`.
        module: String,
        #[command(flatten)]
        path: ModulesPath,
    },
    /// Calls an RPC command, as `kamctl rpc` does.
    ///
    /// Numeric arguments go as numbers; `s:` forces a string, `i:` a number. Write
    /// `puahost rpc = METHOD ...` to turn `=CRLF=` into CRLF in every parameter but the first.
    /// pua.publish, pua.send_publish and pua.subscribe also take named options
    /// (`--uri sip:a@b --event presence --body-file x.xml --expires 3600`).
    Rpc {
        /// Server URL (default: [rpc] http of --config, else http://127.0.0.1:5080/RPC).
        #[arg(long, conflicts_with = "fifo")]
        url: Option<String>,
        /// Talk over this FIFO instead of HTTP.
        #[arg(long)]
        fifo: Option<PathBuf>,
        /// Directory for the reply FIFO.
        #[arg(long, default_value = "/tmp")]
        reply_dir: PathBuf,
        /// Take the server address from this config file.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The command, then its parameters.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Writes the module reference (one Markdown page per module, from the modules' own
    /// declarations, plus core.md and an index) into a directory, or checks it is up to date.
    Docs {
        /// Where the pages go.
        #[arg(long, default_value = "docs/modules")]
        out: PathBuf,
        /// Only compare: list the pages that differ and exit 1 when any does.
        #[arg(long)]
        check: bool,
        /// The modules to document (names as in loadmodule).
        #[arg(required = true, num_args = 1..)]
        modules: Vec<String>,
        #[command(flatten)]
        path: ModulesPath,
    },
    /// Converts a kamailio.cfg into a puahost config on stdout; every line it does not
    /// translate is listed on stderr as FILE:LINE: reason.
    Convert {
        /// Defines for the preprocessor, as kamailio's `-A NAME[=VALUE]` (repeatable).
        #[arg(short = 'D', long = "define", visible_short_alias = 'A')]
        defines: Vec<String>,
        /// The Kamailio config.
        file: PathBuf,
        #[command(flatten)]
        path: ModulesPath,
    },
    /// Creates or checks Kamailio's database tables.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Args)]
struct ModulesPath {
    /// Directory to find modules in (repeatable).
    #[arg(short = 'L', long = "modules-path")]
    dirs: Vec<PathBuf>,
    /// Take [core] modules_path from this config file.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
}

impl ModulesPath {
    /// The directories to search: `-L`, else the config's modules_path, else the default.
    /// `None` when the config is invalid (its errors are printed).
    fn resolve(self) -> anyhow::Result<Option<Vec<PathBuf>>> {
        if !self.dirs.is_empty() {
            return Ok(Some(self.dirs));
        }
        let Some(c) = &self.config else { return Ok(Some(config::default_modules_path())) };
        match load_config(c)? {
            Ok(c) => Ok(Some(c.core.modules_path)),
            Err(errors) => {
                eprintln!("{errors}");
                Ok(None)
            }
        }
    }
}

#[derive(Args)]
struct DbArgs {
    /// Database URL (sqlite://FILE, postgres://..., mysql://...).
    #[arg(long)]
    url: String,
    /// Tables or groups (standard, presence, usrloc, dialog, auth_db); default: all.
    #[arg(long, num_args = 1..)]
    tables: Vec<String>,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Creates the tables that do not exist yet, with their version rows.
    Create(DbArgs),
    /// Checks that each table's version row matches what the modules expect.
    Check(DbArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("puahost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Result<Config, Box<config::ConfigErrors>>> {
    Ok(Config::load(path))
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => match load_config(&config)? {
            Ok(c) => server::run(c).map(|()| ExitCode::SUCCESS),
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Check { config } => {
            let started = std::time::Instant::now();
            let cfg = match load_config(&config)? {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            match server::check(&cfg) {
                Ok(modules) => {
                    println!(
                        "{}: config OK ({} module{}, {} route{}; checked in {} ms)",
                        config.display(),
                        modules.len(),
                        if modules.len() == 1 { "" } else { "s" },
                        cfg.routes.len(),
                        if cfg.routes.len() == 1 { "" } else { "s" },
                        started.elapsed().as_millis()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Docs { out, check, modules, path } => {
            let Some(dirs) = path.resolve()? else { return Ok(ExitCode::FAILURE) };
            let modules: Vec<String> =
                modules.iter().map(|m| config::canonical_module_name(m).map_or(m.clone(), str::to_string)).collect();
            let done = docs::run(&modules, &dirs, &out, check)?;
            if check {
                for f in &done.files {
                    eprintln!("stale: {} (run scripts/module-docs.sh)", f.display());
                }
                return Ok(if done.files.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            println!("wrote {} pages into {}", done.files.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Params { module, path } => {
            let Some(dirs) = path.resolve()? else { return Ok(ExitCode::FAILURE) };
            if module == "core" {
                print!("{}", describe_core());
                return Ok(ExitCode::SUCCESS);
            }
            let module = config::canonical_module_name(&module).map_or(module, str::to_string);
            let file = loader::find_module(&module, &dirs)?;
            let m = loader::load_module(&module, &file)?;
            print!("{}", describe(&m));
            Ok(ExitCode::SUCCESS)
        }
        Command::Rpc { url, fifo, reply_dir, config, command } => {
            let (method, rest, expand) = match command.first().map(String::as_str) {
                Some("=") => {
                    (command.get(1).cloned().unwrap_or_default(), command.get(2..).unwrap_or(&[]).to_vec(), true)
                }
                _ => (command[0].clone(), command[1..].to_vec(), false),
            };
            rpc::client::check_method(&method)?;
            let params = match rpc::shortcuts::params(&method, &rest) {
                Some(named) => named?,
                None => rpc::client::params_from_args(&rest, expand)?,
            };
            let (mut url, mut fifo, mut reply_dir) = (url, fifo, reply_dir);
            if url.is_none()
                && fifo.is_none()
                && let Some(c) = config
            {
                let c = load_config(&c)?.map_err(|e| anyhow::anyhow!("{e}"))?;
                match (c.rpc.http, c.rpc.fifo) {
                    (Some(addr), _) => url = Some(rpc::client::url_for(addr)),
                    (None, Some(f)) => {
                        fifo = Some(f);
                        reply_dir = c.rpc.fifo_reply_dir;
                    }
                    (None, None) => anyhow::bail!("the config sets neither [rpc] http nor [rpc] fifo"),
                }
            }
            let resp = match fifo {
                Some(f) => rpc::client::call_fifo(&f, &reply_dir, &method, params)?,
                None => rpc::client::call_http(url.as_deref().unwrap_or("http://127.0.0.1:5080/RPC"), &method, params)?,
            };
            Ok(if rpc::client::print_response(&resp) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Convert { defines, file, path } => {
            let Some(modules_path) = path.resolve()? else { return Ok(ExitCode::FAILURE) };
            convert::run(&convert::Options { file, defines, modules_path })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Db { command } => db_command(command),
    }
}

fn db_command(command: DbCommand) -> anyhow::Result<ExitCode> {
    // Multi-thread: `Handle::block_on` does not drive a current-thread runtime's I/O.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let cwd = std::env::current_dir()?;
    let service = db::DbService::new(runtime.handle().clone(), cwd, 2);
    match command {
        DbCommand::Create(args) => {
            let tables = db::admin::select_tables(&args.tables).map_err(|e| anyhow::anyhow!(e))?;
            let done =
                db::admin::create(&service, &args.url, &tables).map_err(|e| anyhow::anyhow!(e)).context("db create")?;
            for (table, created) in done {
                println!("{table:<16} {}", if created { "created" } else { "exists, kept" });
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Check(args) => {
            let explicit = !args.tables.is_empty();
            let tables = db::admin::select_tables(&args.tables).map_err(|e| anyhow::anyhow!(e))?;
            let states =
                db::admin::check(&service, &args.url, &tables).map_err(|e| anyhow::anyhow!(e)).context("db check")?;
            let mut ok = true;
            for (table, expected, state) in states {
                let line = match state {
                    db::admin::TableState::Ok => format!("ok (version {expected})"),
                    db::admin::TableState::Missing => {
                        ok &= !explicit && table != "version";
                        "missing".to_string()
                    }
                    db::admin::TableState::WrongVersion { found } => {
                        ok = false;
                        format!("version {found}, expected {expected}")
                    }
                };
                println!("{table:<16} {line}");
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// `puahost params core`: the functions the core gives routes.
fn describe_core() -> String {
    let mut out = format!("core {}\n  functions every route can call\n\nfunctions:\n", VERSION);
    for b in sip::router::builtins::BUILTINS {
        let arity = if b.min_args == b.max_args {
            format!("{}", b.min_args)
        } else {
            format!("{}..{}", b.min_args, b.max_args)
        };
        out += &format!("  {}({arity} args)\n      {}\n", b.name, b.doc);
    }
    out += &format!("\npseudo-variables in arguments:\n  {}\n", sip::router::pv::KNOWN);
    out
}

/// `puahost params` output.
fn describe(m: &loader::LoadedModule) -> String {
    use plugin_api::ffi::{FfiParamKind, FfiParamValue};
    let info = &m.info;
    let mut out = format!("module {} {}\n", info.name, info.version);
    if !info.doc.is_empty() {
        out += &format!("  {}\n", info.doc);
    }
    out += &format!("  file: {}\n", m.path.display());
    if !info.requires.is_empty() {
        out += &format!("  requires: {}\n", info.requires.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "));
    }
    if !info.exports.is_empty() {
        out += &format!("  exports API: {}\n", info.exports.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "));
    }
    out += "\nmodparams:\n";
    if info.params.is_empty() {
        out += "  (none)\n";
    }
    for p in info.params.iter() {
        let ty = match (p.kind, p.repeatable) {
            (FfiParamKind::INT, false) => "int",
            (FfiParamKind::INT, true) => "int, repeatable",
            (_, false) => "str",
            (_, true) => "str, repeatable",
        };
        let default = match p.default.clone().into_option() {
            _ if p.required => "required".to_string(),
            None => "unset".to_string(),
            Some(FfiParamValue::Int(i)) => format!("default {i}"),
            Some(FfiParamValue::Str(s)) => format!("default {:?}", s.as_str()),
            Some(FfiParamValue::IntList(l)) if l.is_empty() => "default none".to_string(),
            Some(FfiParamValue::StrList(l)) if l.is_empty() => "default none".to_string(),
            Some(FfiParamValue::IntList(l)) => format!("default {:?}", l.as_slice()),
            Some(FfiParamValue::StrList(l)) => {
                format!("default {:?}", l.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            }
        };
        let range = match (p.min.into_option(), p.max.into_option()) {
            (Some(a), Some(b)) => format!(", {a}..={b}"),
            (Some(a), None) => format!(", >= {a}"),
            (None, Some(b)) => format!(", <= {b}"),
            (None, None) => String::new(),
        };
        out += &format!("  {:<28} {ty}{range}; {default}\n      {}\n", p.name.as_str(), p.doc);
    }
    out += "\nfunctions:\n";
    if info.functions.is_empty() {
        out += "  (none)\n";
    }
    for f in info.functions.iter() {
        let arity = if f.min_args == f.max_args {
            format!("{}", f.min_args)
        } else {
            format!("{}..{}", f.min_args, f.max_args)
        };
        out += &format!("  {}({arity} args)\n      {}\n", f.name, f.doc);
    }
    out += "\nRPC commands:\n";
    if info.rpcs.is_empty() {
        out += "  (none)\n";
    }
    for r in info.rpcs.iter() {
        out += &format!("  {}{}\n      {}\n", r.name, if r.delayed { " (replies when done)" } else { "" }, r.doc);
    }
    out
}
