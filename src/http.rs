//! The HTTP side: health now; the API, metrics and captured messages build on it.

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::server::ShutdownState;

/// The HTTP routes.
fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" }))
}

/// Serves HTTP on `listener` until shutdown starts.
pub(crate) async fn serve(listener: TcpListener, mut shutdown: watch::Receiver<ShutdownState>) {
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(error) = axum::serve(listener, router())
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(%error, "HTTP server stopped");
    }
}
