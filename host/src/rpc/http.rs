//! JSON-RPC over HTTP (`POST /RPC`, as Kamailio's xhttp + jsonrpcs) and Prometheus metrics
//! (`GET /metrics`) on one listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
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

/// Whether `presented` equals `token`, in time independent of where they differ.
fn token_matches(presented: &[u8], token: &[u8]) -> bool {
    presented.len() == token.len() && presented.iter().zip(token).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `[rpc] token`: every request carries `Authorization: Bearer <token>`, or gets 401.
async fn require_token(token: Arc<str>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|t| token_matches(t, token.as_bytes()));
    if !presented {
        let body = r#"{"jsonrpc": "2.0", "error": {"code": 401, "message": "Unauthorized"}, "id": null}"#;
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
    }
    next.run(request).await
}

/// Binds `addr` and serves until the process ends; with `token`, only requests that carry it.
pub async fn serve_http(
    state: Arc<HostState>,
    addr: SocketAddr,
    token: Option<String>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut app = Router::new().route("/RPC", post(rpc)).route("/metrics", get(metrics)).with_state(state);
    if let Some(token) = token {
        let token: Arc<str> = token.into();
        app = app.layer(middleware::from_fn(move |req: Request, next: Next| require_token(token.clone(), req, next)));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "RPC listening on http://{addr}/RPC (metrics at /metrics)");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("RPC HTTP server stopped: {e}");
        }
    }))
}
