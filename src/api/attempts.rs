//! `GET /api/attempts` (the attempt history: every transaction with how it ended for each
//! recipient) and `GET /api/report` (the retry report with its verdicts).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::error::{json, ApiError, QueryParams};
use super::events::page_limit;
use super::ApiState;
use crate::journal::attempts::report::{AttemptFacts, EndingView};
use crate::journal::attempts::{AttemptBook, AttemptFilter, ReportSettings};

/// `GET /api/attempts` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only attempts for this recipient (case ignored).
    rcpt: Option<String>,
    /// Only attempts of the message with this `Message-ID`.
    message_id: Option<String>,
    /// Only attempts with a larger id.
    #[serde(default)]
    since: u64,
    /// At most this many (1 to 10000, default 1000).
    limit: Option<usize>,
}

/// One attempt as the API shows it (its id is `attempt`).
#[derive(Serialize)]
struct AttemptView {
    /// The key of the message it was joined to.
    message: u64,
    message_id: Option<Arc<str>>,
    #[serde(flatten)]
    facts: AttemptFacts,
    sender: Arc<str>,
    recipients: Vec<EndingView>,
}

#[derive(Serialize)]
struct Page {
    attempts: Vec<AttemptView>,
    dropped: u64,
}

/// The attempt history, or 409 when the server follows none.
fn book(state: &ApiState) -> Result<&Arc<AttemptBook>, ApiError> {
    state.journal.attempts().ok_or_else(|| {
        ApiError::conflict("this server follows no attempts")
            .hint("it was started with --no-attempts or --no-store; start it without them")
    })
}

/// `GET /api/attempts`: kept attempts, oldest first.
pub(crate) async fn list(
    State(state): State<ApiState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit, "attempt")?;
    let book = book(&state)?;
    let listed = book.attempts(&AttemptFilter {
        rcpt: query.rcpt.as_deref(),
        message_id: query.message_id.as_deref(),
        since: query.since,
        limit,
    });
    let attempts = listed
        .into_iter()
        .map(|listed| {
            let attempt = &listed.attempt;
            let recipients = match &attempt.mail_ending {
                Some(ending) => vec![EndingView::new(None, ending)],
                None => attempt
                    .recipients
                    .iter()
                    .map(|(rcpt, ending)| EndingView::new(Some(rcpt), ending))
                    .collect(),
            };
            AttemptView {
                message: listed.message,
                message_id: listed.message_id,
                facts: AttemptFacts::new(attempt),
                sender: attempt.sender.clone(),
                recipients,
            }
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &Page {
            attempts,
            dropped: book.attempts_dropped(),
        },
    ))
}

/// `GET /api/report`: the retry report, judged now on the server's clock.
pub(crate) async fn report(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let book = book(&state)?;
    let engine = super::limits::engine(&state);
    let settings = ReportSettings::new(book.config(), engine.as_ref().map(|e| &**e.scenario()));
    Ok(json(
        StatusCode::OK,
        &book.report(state.clock.now_ms(), &settings),
    ))
}
