//! `GET /metrics`: Prometheus text format 0.0.4.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::ApiState;

/// The content type of the Prometheus text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the server's counters plus the journal's.
pub(crate) async fn get(State(state): State<ApiState>) -> Response {
    let mut text = state.journal.metrics_text();
    if let Some(bounces) = &state.bounces {
        text.push_str(&bounces.metrics_text());
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        text,
    )
        .into_response()
}
