//! Logging: `tracing` with a filter that RPC commands can change at run time, written to
//! stderr, syslog or journald.
//!
//! Modules log through the host: each plugin forwards its own `tracing` events (its copy of
//! `tracing` has no subscriber of its own) to [`module_record`], which re-emits them here with
//! the module's name. The level modules filter on is pushed to every plugin when it changes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogTarget;

type Output = Box<dyn Layer<Registry> + Send + Sync>;
/// Pushes a new module level to every plugin.
type LevelListener = Box<dyn Fn(u8) + Send + Sync>;
type FilterHandle = reload::Handle<EnvFilter, tracing_subscriber::layer::Layered<Output, Registry>>;

/// Changes the log filter at run time.
pub struct LogControl {
    handle: Option<FilterHandle>,
    current: Mutex<String>,
    /// The level modules filter on: 0 = error .. 4 = trace.
    module_level: AtomicU8,
    /// Called with the new module level, to push it to every plugin.
    on_change: Mutex<Option<LevelListener>>,
}

fn level_of(filter: &EnvFilter) -> u8 {
    use tracing::level_filters::LevelFilter;
    match filter.max_level_hint().unwrap_or(LevelFilter::TRACE) {
        LevelFilter::OFF | LevelFilter::ERROR => 0,
        LevelFilter::WARN => 1,
        LevelFilter::INFO => 2,
        LevelFilter::DEBUG => 3,
        _ => 4,
    }
}

/// Kamailio's numeric debug levels (`corex.debug`): -5 alert .. 3 debug.
pub fn kamailio_level_to_filter(level: i64) -> &'static str {
    match level {
        i64::MIN..=-1 => "error",
        0 => "warn",
        1 | 2 => "info",
        3 => "debug",
        _ => "trace",
    }
}

/// The Kamailio numeric level for a module level (0 = error .. 4 = trace).
pub fn module_level_to_kamailio(level: u8) -> i64 {
    match level {
        0 => -1,
        1 => 0,
        2 => 2,
        3 => 3,
        _ => 4,
    }
}

impl LogControl {
    /// Sets up the global subscriber. `RUST_LOG`, when set, overrides the config's level.
    pub fn init(level: &str, target: LogTarget) -> anyhow::Result<Self> {
        let spec = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| level.to_string());
        let filter = EnvFilter::try_new(&spec).map_err(|e| anyhow::anyhow!("bad log filter `{spec}`: {e}"))?;
        let module_level = level_of(&filter);
        let (filter, handle) = reload::Layer::new(filter);
        let output: Output = match target {
            LogTarget::Stderr => {
                let ansi =
                    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
                Box::new(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            }
            LogTarget::Journald => {
                Box::new(tracing_journald::layer().map_err(|e| anyhow::anyhow!("cannot reach journald: {e}"))?)
            }
            LogTarget::Syslog => {
                let identity = c"puahost";
                let syslog =
                    syslog_tracing::Syslog::new(identity, Default::default(), syslog_tracing::Facility::Daemon)
                        .ok_or_else(|| anyhow::anyhow!("cannot open syslog"))?;
                Box::new(tracing_subscriber::fmt::layer().with_ansi(false).without_time().with_writer(syslog))
            }
        };
        // `output` is a layer over `Registry`, so it goes on first and the reloadable filter
        // wraps the whole stack.
        Registry::default().with(output).with(filter).try_init()?;
        Ok(Self {
            handle: Some(handle),
            current: Mutex::new(spec),
            module_level: AtomicU8::new(module_level),
            on_change: Mutex::new(None),
        })
    }

    /// A control with no subscriber behind it.
    #[cfg(test)]
    pub fn detached() -> Self {
        Self {
            handle: None,
            current: Mutex::new("info".into()),
            module_level: AtomicU8::new(2),
            on_change: Mutex::new(None),
        }
    }

    /// Runs `f` with the new module level whenever the filter changes.
    pub fn on_change(&self, f: impl Fn(u8) + Send + Sync + 'static) {
        *self.on_change.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    /// The current filter, as given.
    pub fn filter(&self) -> String {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The level modules filter on.
    pub fn module_level(&self) -> u8 {
        self.module_level.load(Ordering::Relaxed)
    }

    /// Replaces the filter (`"debug"`, `"info,puahost::rpc=trace"`).
    pub fn set_filter(&self, spec: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(spec).map_err(|e| format!("bad log filter `{spec}`: {e}"))?;
        let level = level_of(&filter);
        if let Some(h) = &self.handle {
            h.reload(filter).map_err(|e| format!("cannot change the log filter: {e}"))?;
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = spec.to_string();
        self.module_level.store(level, Ordering::Relaxed);
        if let Some(f) = &*self.on_change.lock().unwrap_or_else(|e| e.into_inner()) {
            f(level);
        }
        tracing::info!(filter = spec, "log filter changed");
        Ok(())
    }
}

/// A record a module forwarded.
pub fn module_record(module: &str, level: u8, target: &str, message: &str) {
    let level = match level {
        0 => Level::ERROR,
        1 => Level::WARN,
        2 => Level::INFO,
        3 => Level::DEBUG,
        _ => Level::TRACE,
    };
    // `tracing` needs the level and target at compile time; the module's own target travels
    // as a field.
    macro_rules! emit {
        ($lvl:expr) => {
            tracing::event!(target: "module", $lvl, module, target = target, "{message}")
        };
    }
    match level {
        Level::ERROR => emit!(Level::ERROR),
        Level::WARN => emit!(Level::WARN),
        Level::INFO => emit!(Level::INFO),
        Level::DEBUG => emit!(Level::DEBUG),
        _ => emit!(Level::TRACE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_of(&EnvFilter::new("warn")), 1);
        assert_eq!(level_of(&EnvFilter::new("info,puahost::rpc=trace")), 4);
        assert_eq!(kamailio_level_to_filter(3), "debug");
        assert_eq!(kamailio_level_to_filter(-3), "error");
        let c = LogControl::detached();
        assert!(c.set_filter("debug").is_ok());
        assert_eq!(c.module_level(), 3);
        assert!(c.set_filter("=bad=").is_err());
    }
}
