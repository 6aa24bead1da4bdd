//! Forwards the plugin's `tracing` events to the host.
//!
//! A cdylib carries its own copy of `tracing` and with it its own global dispatcher, which has
//! no subscriber: without this forwarder a module's log lines would vanish. The forwarder is
//! installed as this copy's global default at init; it filters by the host's current level
//! (pushed to every plugin when it changes) and hands each event's text to the host.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::host::Host;

/// 0 = error .. 4 = trace.
static LEVEL: AtomicU8 = AtomicU8::new(2);

pub(crate) fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

pub(crate) fn install(host: Host) {
    LEVEL.store((host.vtable().log_level())(), Ordering::Relaxed);
    // Fails only if the module installed its own subscriber first; then that one wins.
    let _ = tracing::subscriber::set_global_default(Forwarder { host });
}

pub(crate) fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

struct Forwarder {
    host: Host,
}

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let text = format!("{value:?}");
            self.0.insert_str(0, &text);
        } else {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }
}

impl Subscriber for Forwarder {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level changes at run time, so ask `enabled` each time (an atomic load).
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_number(metadata.level()) <= LEVEL.load(Ordering::Relaxed)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(match LEVEL.load(Ordering::Relaxed) {
            0 => tracing::level_filters::LevelFilter::ERROR,
            1 => tracing::level_filters::LevelFilter::WARN,
            2 => tracing::level_filters::LevelFilter::INFO,
            3 => tracing::level_filters::LevelFilter::DEBUG,
            _ => tracing::level_filters::LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut visitor = MessageVisitor(String::new());
        event.record(&mut visitor);
        let meta = event.metadata();
        (self.host.vtable().log())(
            self.host.module_name().into(),
            level_number(meta.level()),
            meta.target().into(),
            visitor.0.as_str().into(),
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
