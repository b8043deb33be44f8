//! `GET /metrics`: Prometheus text format 0.0.4.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::ApiState;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the server's counters plus the journal's.
pub async fn get(State(state): State<ApiState>) -> Response {
    let (recorded, dropped) = state
        .control
        .events()
        .map_or((0, 0), |log| (log.recorded(), log.dropped()));
    let messages_dropped = state.control.messages().dropped();
    let text = state.control.metrics().render(&[
        (
            "failmail_events_recorded_total",
            "Events recorded in the journal.",
            recorded,
        ),
        (
            "failmail_events_dropped_total",
            "Events that fell out of the journal's ring or could not be written.",
            dropped,
        ),
        (
            "failmail_messages_dropped_total",
            "Accepted messages that fell out of the message ring.",
            messages_dropped,
        ),
    ]);
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        text,
    )
        .into_response()
}
