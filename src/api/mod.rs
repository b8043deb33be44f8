//! The HTTP API: health, events, captured messages, limits, clock, scenario, metrics.
//!
//! Served on `--http` (loopback by default). Handlers only read and steer what the server
//! already keeps; see README "API reference" and `/api/openapi.json`.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::scenario::live::Reloader;
use crate::server::{ServerControl, ShutdownState};

/// What the handlers work with.
#[derive(Clone)]
pub struct ApiState {
    /// The server: messages, events, metrics, clock.
    pub control: ServerControl,
    /// The live scenario, once a [`Reloader`] is attached (absent for a plain sink).
    pub scenario: Arc<ArcSwapOption<Reloader>>,
}

/// The HTTP routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

/// Serves HTTP on `listener` until shutdown starts.
pub(crate) async fn serve(
    listener: TcpListener,
    state: ApiState,
    mut shutdown: watch::Receiver<ShutdownState>,
) {
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(error) = axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(%error, "HTTP server stopped");
    }
}
