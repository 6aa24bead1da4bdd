//! JSON-RPC over HTTP (`POST /RPC`, as Kamailio's xhttp + jsonrpcs) and Prometheus metrics
//! (`GET /metrics`) on one listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::jsonrpc;
use crate::services::HostState;

async fn rpc(State(state): State<Arc<HostState>>, body: Bytes) -> Response {
    let r = jsonrpc::handle_bytes(&state, &body).await;
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], r.body.to_string()).into_response()
}

async fn metrics(State(state): State<Arc<HostState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// Binds `addr` and serves until the process ends.
pub async fn serve_http(state: Arc<HostState>, addr: SocketAddr) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new().route("/RPC", post(rpc)).route("/metrics", get(metrics)).with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "RPC listening on http://{addr}/RPC (metrics at /metrics)");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("RPC HTTP server stopped: {e}");
        }
    }))
}
