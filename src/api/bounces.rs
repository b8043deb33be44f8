//! `/api/bounces`: the later notifications (DSNs, complaints, auto-replies), pending and sent,
//! and each sent one's exact bytes.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{json, ApiError, PathParam};
use super::ApiState;
use crate::bounces::view::BounceView;

#[derive(Serialize)]
struct List {
    /// Pending first (earliest due first), then the sent ones kept (oldest first).
    bounces: Vec<BounceView>,
    pending: usize,
}

/// `GET /api/bounces`.
pub(crate) async fn list(State(state): State<ApiState>) -> Response {
    let (pending, sent) = state.bounces.as_ref().map(|b| b.list()).unwrap_or_default();
    let mut bounces: Vec<BounceView> = pending.iter().map(BounceView::pending).collect();
    bounces.extend(sent.iter().map(|s| BounceView::sent(s)));
    json(
        StatusCode::OK,
        &List {
            pending: pending.len(),
            bounces,
        },
    )
}

/// `GET /api/bounces/{id}/raw`: the notification as sent (`message/rfc822`).
pub(crate) async fn raw(
    State(state): State<ApiState>,
    PathParam(id): PathParam<u64>,
) -> Result<Response, ApiError> {
    let bounces = state.bounces.as_ref();
    if let Some(sent) = bounces.and_then(|b| b.sent_by_id(id)) {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("message/rfc822"),
            )],
            sent.raw.clone(),
        )
            .into_response());
    }
    let error = if bounces.is_some_and(|b| b.is_pending(id)) {
        ApiError::not_found(format!("bounce {id} is not sent yet"))
            .hint("it is sent when the clock reaches its due_at_ms: POST /api/clock/advance")
    } else {
        ApiError::not_found(format!("no bounce {id}"))
            .hint("GET /api/bounces lists the pending and the kept sent bounces")
    };
    Err(error)
}
