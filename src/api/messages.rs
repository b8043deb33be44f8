//! `/api/messages`: the captured messages, their envelope and their exact bytes.

use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{json, ApiError, PathParam, QueryParams};
use super::ApiState;
use crate::journal::StoredMessage;

/// One captured message, as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct MessageView<'a> {
    id: u64,
    received_at_ms: u64,
    session: u64,
    queue_id: &'a str,
    peer: String,
    helo: Option<&'a str>,
    auth_user: Option<&'a str>,
    tls: bool,
    mail_from: &'a str,
    recipients: &'a [String],
    size: usize,
    /// For a notification failmail made (a DSN, a complaint, an auto-reply): its bounce id.
    #[serde(skip_serializing_if = "Option::is_none")]
    bounce: Option<u64>,
    subject: Option<String>,
    /// The top-level media type (`multipart/report` for a DSN, whoever made it).
    content_type: Option<String>,
    /// A report's `report-type` (`delivery-status` for a DSN).
    #[serde(skip_serializing_if = "Option::is_none")]
    report_type: Option<String>,
}

impl<'a> From<&'a StoredMessage> for MessageView<'a> {
    fn from(stored: &'a StoredMessage) -> Self {
        let m = &stored.message;
        let headline = super::parts::headline(&m.data);
        Self {
            id: stored.id,
            received_at_ms: stored
                .received_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            session: m.session_id,
            queue_id: &m.queue_id,
            peer: m.peer.to_string(),
            helo: m.helo.as_deref(),
            auth_user: m.auth_user.as_deref(),
            tls: m.tls,
            mail_from: &m.mail_from,
            recipients: &m.recipients,
            size: m.data.len(),
            bounce: stored.bounce,
            subject: headline.subject,
            content_type: headline.content_type,
            report_type: headline.report_type,
        }
    }
}

#[derive(Serialize)]
struct List<'a> {
    messages: Vec<MessageView<'a>>,
    accepted: u64,
    dropped: u64,
}

/// `GET /api/messages` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only messages with a larger id (what a reader has not seen yet).
    #[serde(default)]
    since: u64,
}

/// `GET /api/messages`: the kept messages, oldest first.
pub(crate) async fn list(
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Response {
    let store = state.journal.messages();
    let kept = store.list();
    json(
        StatusCode::OK,
        &List {
            messages: kept
                .iter()
                .filter(|m| m.id > query.since)
                .map(|m| MessageView::from(&**m))
                .collect(),
            accepted: store.accepted(),
            dropped: store.dropped(),
        },
    )
}

pub(crate) fn find(state: &ApiState, id: u64) -> Result<std::sync::Arc<StoredMessage>, ApiError> {
    state
        .journal
        .messages()
        .list()
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!("no message {id}")).hint(
                "GET /api/messages lists the kept messages; old ones fall out of the ring \
                 (--keep-messages) and DELETE /api/messages or POST /api/reset forgets them",
            )
        })
}

/// `GET /api/messages/{id}`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    PathParam(id): PathParam<u64>,
) -> Result<Response, ApiError> {
    let stored = find(&state, id)?;
    Ok(json(StatusCode::OK, &MessageView::from(&*stored)))
}

/// `GET /api/messages/{id}/raw`: the message exactly as received.
pub(crate) async fn raw(
    State(state): State<ApiState>,
    PathParam(id): PathParam<u64>,
) -> Result<Response, ApiError> {
    let stored = find(&state, id)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("message/rfc822"),
        )],
        stored.message.data.clone(),
    )
        .into_response())
}

/// `DELETE /api/messages`: forgets every kept message.
pub(crate) async fn clear(State(state): State<ApiState>) -> StatusCode {
    state.journal.messages().clear();
    StatusCode::NO_CONTENT
}
