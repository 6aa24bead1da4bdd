//! The SIP core: transports, transactions, routes, the stateful relay and the requests modules
//! send. See docs/architecture.md ("SIP core").

pub mod context;
pub mod core;
mod edit;
mod limits;
pub mod proxy;
pub mod router;
pub mod transport;
pub mod uac;

use std::sync::Arc;

use self::core::{CoreSink, SipConfig, SipCore};
use self::router::Router;
use self::transport::{StreamLimits, Transports};
use crate::config::Config;
use crate::loader::LoadedModule;
use crate::services::workers::WorkerPool;

/// Builds the SIP core, compiles the routes and binds the listen addresses. UDP is read once
/// [`SipCore::start_receivers`] is called (after the modules' `child_init`), since its
/// receivers run routes themselves.
pub async fn start(
    config: &Config,
    modules: &[LoadedModule],
    workers: Arc<WorkerPool>,
    metrics: &crate::services::metrics::Metrics,
) -> anyhow::Result<Arc<SipCore>> {
    let c = &config.core;
    let core = SipCore::new(
        SipConfig {
            aliases: c.alias.clone(),
            t1: c.t1,
            t2: c.t2,
            t4: c.t4,
            max_transactions: c.max_transactions,
            dns_servers: c.dns_servers.clone(),
            max_message_size: c.max_message_size,
            max_headers: c.max_headers,
            max_requests_per_source: c.max_requests_per_source,
        },
        workers,
        tokio::runtime::Handle::current(),
        metrics,
    )?;
    let router = Router::compile(&config.routes, modules, c.default_reply.clone()).map_err(|e| anyhow::anyhow!(e))?;
    let _ = core.router.set(router);
    let limits = StreamLimits {
        max_message: c.tcp_max_message_size,
        max_connections: c.tcp_max_connections,
        lifetime: c.tcp_connection_lifetime,
        open_gauge: metrics.gauge("sip", "tcp_connections", "open TCP connections").map_err(|e| anyhow::anyhow!(e))?,
    };
    let transports = Transports::bind(&c.listen, limits, Arc::new(CoreSink(core.clone()))).await?;
    let _ = core.transports.set(transports);
    core.start_timers();
    Ok(core)
}
