//! The running host: start-up in a fixed order and an orderly shutdown.
//!
//! Start-up: logging → load modules and check the config against them → runtime, workers,
//! services → `init` of each module in load order (on this thread, outside the runtime, so
//! modules may use the database) → workers start and run `child_init` → listeners. Any failure
//! stops the start-up with a message naming the module. Shutdown (SIGTERM/SIGINT): listeners
//! and timers stop, queued work drains, `destroy` runs in reverse load order, pools close.

use std::sync::Arc;

use abi_stable::std_types::{RErr, ROk};
use anyhow::{Context, bail};

use crate::config::Config;
use crate::db::DbService;
use crate::loader::{self, LoadedModule};
use crate::logging::LogControl;
use crate::rpc::{self, Rpc};
use crate::services::metrics::Metrics;
use crate::services::timers::Timers;
use crate::services::workers::WorkerPool;
use crate::services::{self, ApiRegistry, HostCounters, HostState};

/// Loads the modules of `config` and checks the whole config; nothing is started.
pub fn check(config: &Config) -> Result<Vec<LoadedModule>, Box<crate::config::ConfigErrors>> {
    loader::load_all(config)
}

fn io_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// Runs the host until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let log = LogControl::init(&config.core.log_level, config.core.log_target)?;
    let modules = match check(&config) {
        Ok(m) => m,
        Err(errors) => {
            eprintln!("{errors}");
            bail!("the config has errors");
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads())
        .thread_name("io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let metrics = Metrics::new();
    let counters = HostCounters::register(&metrics);
    let workers = Arc::new(WorkerPool::new());
    let state = services::install(Arc::new(HostState {
        runtime: runtime.handle().clone(),
        sip: std::sync::OnceLock::new(),
        workers: workers.clone(),
        timers: Timers::new(runtime.handle().clone(), workers.clone()),
        metrics,
        apis: ApiRegistry::new(services::declared_exports(&modules)),
        rpc: Rpc::new(&modules).map_err(|e| anyhow::anyhow!(e))?,
        db: DbService::new(runtime.handle().clone(), config.dir.clone(), config.core.children as u32 + 2),
        log,
        config_dir: config.dir.clone(),
        counters,
    }));
    let roots: Vec<(String, plugin_api::ffi::PluginRootRef)> =
        modules.iter().map(|m| (m.name.clone(), m.root)).collect();
    {
        let roots = roots.clone();
        state.log.on_change(move |level| {
            for (_, root) in &roots {
                (root.set_log_level())(level);
            }
        });
    }
    rpc::builtin_mark_started();

    // The SIP side binds before modules initialise, so they can ask for the local addresses;
    // requests arriving now wait in the worker queue until the workers start below.
    if !config.core.listen.is_empty() {
        let sip = runtime.block_on(crate::sip::start(&config, &modules, workers.clone(), &state.metrics))?;
        let _ = state.sip.set(sip);
    }

    // init, in load order.
    let mut initialised: Vec<&LoadedModule> = Vec::new();
    for m in &modules {
        match (m.root.init())(services::vtable(), m.params.clone().into()) {
            ROk(()) => {
                tracing::info!(module = %m.name, version = %m.info.version, "module initialised");
                initialised.push(m);
            }
            RErr(e) => {
                let what = if e.kind == plugin_api::ffi::FfiError::PANIC {
                    "panicked in init"
                } else {
                    "failed to initialise"
                };
                tracing::error!(module = %m.name, "{what}: {}", e.message);
                destroy(&initialised);
                bail!("module {} {what}: {}", m.name, e.message);
            }
        }
    }

    // Workers: each runs child_init before taking work; start-up waits for all of them.
    let (init_tx, init_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let init_roots = roots.clone();
    workers.start(config.core.children, move |rank| {
        let mut result = Ok(());
        for (name, root) in &init_roots {
            if let RErr(e) = (root.child_init())(rank) {
                result = Err(format!("module {name} failed in child_init({rank}): {}", e.message));
                break;
            }
        }
        let _ = init_tx.send(result);
    })?;
    for _ in 0..config.core.children {
        if let Ok(Err(e)) = init_rx.recv() {
            tracing::error!("{e}");
            shutdown(&state, &initialised, &config);
            bail!(e);
        }
    }

    // UDP receivers run routes themselves, so they start after child_init.
    if let Some(sip) = state.sip.get()
        && let Err(e) = sip.start_receivers(config.core.udp_workers.unwrap_or(config.core.children))
    {
        shutdown(&state, &initialised, &config);
        return Err(e);
    }

    // Listeners.
    let started: anyhow::Result<Vec<tokio::task::JoinHandle<()>>> = runtime.block_on(async {
        let mut tasks = Vec::new();
        if let Some(addr) = config.rpc.http {
            tasks.push(
                rpc::serve_http(state.clone(), addr, config.rpc.token.clone())
                    .await
                    .with_context(|| format!("cannot listen for RPC on {addr}"))?,
            );
        }
        if let Some(fifo) = &config.rpc.fifo {
            tasks.push(rpc::serve_fifo(state.clone(), fifo.clone(), config.rpc.fifo_reply_dir.clone())?);
        }
        Ok(tasks)
    });
    let tasks = match started {
        Ok(t) => t,
        Err(e) => {
            shutdown(&state, &initialised, &config);
            return Err(e);
        }
    };
    tracing::info!(modules = modules.len(), children = config.core.children, "puahost {} ready", crate::VERSION);
    // systemd's Type=notify (the packaged unit): started means listening and initialised, not
    // merely forked. Without NOTIFY_SOCKET this does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    runtime.block_on(wait_for_signal());
    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    for t in tasks {
        t.abort();
    }
    shutdown(&state, &initialised, &config);
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
        _ = async { if let Some(i) = int.as_mut() { i.recv().await; } else { std::future::pending::<()>().await } } => {}
    }
}

fn destroy(modules: &[&LoadedModule]) {
    for m in modules.iter().rev() {
        if let RErr(e) = (m.root.destroy())() {
            tracing::error!(module = %m.name, "destroy failed: {}", e.message);
        }
    }
}

fn shutdown(state: &Arc<HostState>, initialised: &[&LoadedModule], config: &Config) {
    if let Some(sip) = state.sip.get() {
        sip.stop_receivers();
    }
    state.timers.cancel_all();
    state.workers.stop();
    destroy(initialised);
    state.db.close();
    if let Some(fifo) = &config.rpc.fifo {
        let _ = std::fs::remove_file(fifo);
    }
}
