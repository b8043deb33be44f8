//! `/api/limits` (configured limits, current usage, reset) and `POST /api/reset`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::error::{json, ApiError};
use super::ApiState;
use crate::limits::{keys, Window};
use crate::limits::{StoreError, Usage};
use crate::scenario::engine::Engine;

/// The engine of the live scenario, if a scenario is attached.
pub(crate) fn engine(state: &ApiState) -> Option<Arc<Engine>> {
    state.scenario.as_ref().map(|reloader| reloader.engine())
}

fn unavailable(error: StoreError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        .hint("the limit store (--state) did not answer; check that Redis is up and reachable")
}

#[derive(Serialize)]
struct WindowView {
    max: u64,
    per_seconds: f64,
}

impl From<Window> for WindowView {
    fn from(window: Window) -> Self {
        Self {
            max: window.max,
            per_seconds: window.per.as_secs_f64(),
        }
    }
}

#[derive(Serialize)]
struct LimitsView {
    per_account: Option<WindowView>,
    per_ip: Option<WindowView>,
    connections_per_ip: Option<u32>,
    messages_per_connection: Option<u32>,
}

/// One key's use, with its window: how full it is and when it frees its next use.
#[derive(Serialize)]
struct UsageView {
    key: String,
    used: u64,
    max: Option<u64>,
    /// When the oldest use leaves the window (ms since the epoch, on the server's clock).
    frees_next_at_ms: Option<u64>,
}

impl UsageView {
    fn new(usage: Usage, windows: &LimitsView) -> Self {
        let window = if usage.key.starts_with(keys::ACCOUNT_PREFIX) {
            windows.per_account.as_ref()
        } else if usage.key.starts_with(keys::IP_PREFIX) {
            windows.per_ip.as_ref()
        } else {
            None
        };
        Self {
            frees_next_at_ms: window.map(|w| {
                usage
                    .oldest_ms
                    .saturating_add((w.per_seconds * 1000.0) as u64)
            }),
            max: window.map(|w| w.max),
            key: usage.key,
            used: usage.used,
        }
    }
}

#[derive(Serialize)]
struct Limits {
    limits: Option<LimitsView>,
    usage: Vec<UsageView>,
}

/// `GET /api/limits`: the live scenario's limits and the use of every key.
pub(crate) async fn get(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(engine) = engine(&state) else {
        return Ok(json(
            StatusCode::OK,
            &Limits {
                limits: None,
                usage: Vec::new(),
            },
        ));
    };
    let settings = engine.scenario().limits.as_ref();
    let limits = LimitsView {
        per_account: settings.and_then(|l| l.per_account).map(WindowView::from),
        per_ip: settings.and_then(|l| l.per_ip).map(WindowView::from),
        connections_per_ip: settings.and_then(|l| l.connections_per_ip),
        messages_per_connection: settings.and_then(|l| l.messages_per_connection),
    };
    let usage = engine
        .usage()
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|u| UsageView::new(u, &limits))
        .collect();
    Ok(json(
        StatusCode::OK,
        &Limits {
            limits: Some(limits),
            usage,
        },
    ))
}

/// `DELETE /api/limits`: forgets limit uses, greylisting, sequence attempts and rule counters.
pub(crate) async fn reset(State(state): State<ApiState>) -> Result<StatusCode, ApiError> {
    if let Some(engine) = engine(&state) {
        engine.reset().await.map_err(unavailable)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/reset`: everything at once, for test isolation: messages, events, limits,
/// greylisting and sequences.
pub(crate) async fn reset_all(State(state): State<ApiState>) -> Result<StatusCode, ApiError> {
    state.journal.clear();
    reset(State(state)).await
}
