//! `/api/limits`: configured limits, current usage, greylisting and sequences in progress
//! ([`super::limit_state`]), reset.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::error::{json, ApiError};
use super::limit_state::{self, InProgress};
use super::ApiState;
use crate::limits::{keys, Window};
use crate::limits::{StoreError, Usage};
use crate::scenario::engine::Engine;

/// The engine of the live scenario, if a scenario is attached.
pub(crate) fn engine(state: &ApiState) -> Option<Arc<Engine>> {
    state.scenario.as_ref().map(|reloader| reloader.engine())
}

pub(crate) fn unavailable(error: StoreError) -> ApiError {
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
    per_recipient: Option<WindowView>,
    per_recipient_domain: Option<WindowView>,
    connections_per_ip: Option<u32>,
    messages_per_connection: Option<u32>,
    greylisting: Option<GreylistingView>,
}

/// The live scenario's `[greylisting]`.
#[derive(Serialize)]
struct GreylistingView {
    delay_seconds: f64,
    retry_window_seconds: f64,
}

#[derive(Serialize)]
struct Limits {
    limits: Option<LimitsView>,
    usage: Vec<UsageView>,
    #[serde(flatten)]
    in_progress: InProgress,
}

/// One key's use, and when its window frees the next use.
#[derive(Serialize)]
struct UsageView {
    key: String,
    used: u64,
    /// The window's maximum.
    max: Option<u64>,
    /// Whether the key is at its maximum: the next use is refused until `frees_at_ms`.
    full: bool,
    /// When the oldest use in the window was taken.
    oldest_at_ms: u64,
    /// When that use leaves the window, which frees one use.
    frees_at_ms: u64,
    /// Seconds from now until `frees_at_ms`.
    frees_in_seconds: f64,
}

impl UsageView {
    fn new(usage: Usage, window: Option<Window>, now_ms: u64) -> Self {
        let per_ms = window.map_or(0, |w| w.per.as_millis() as u64);
        let frees_at_ms = usage.oldest_ms.saturating_add(per_ms);
        Self {
            full: window.is_some_and(|w| usage.used >= w.max),
            max: window.map(|w| w.max),
            oldest_at_ms: usage.oldest_ms,
            frees_at_ms,
            frees_in_seconds: frees_at_ms.saturating_sub(now_ms) as f64 / 1000.0,
            key: usage.key,
            used: usage.used,
        }
    }
}

/// `GET /api/limits`: the live scenario's limits and the use of every key.
pub(crate) async fn get(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(engine) = engine(&state) else {
        return Ok(json(
            StatusCode::OK,
            &Limits {
                limits: None,
                usage: Vec::new(),
                in_progress: InProgress::default(),
            },
        ));
    };
    let settings = engine.scenario().limits.as_ref();
    let limits = LimitsView {
        per_account: settings.and_then(|l| l.per_account).map(WindowView::from),
        per_ip: settings.and_then(|l| l.per_ip).map(WindowView::from),
        per_recipient: settings.and_then(|l| l.per_recipient).map(WindowView::from),
        per_recipient_domain: settings
            .and_then(|l| l.per_recipient_domain)
            .map(WindowView::from),
        connections_per_ip: settings.and_then(|l| l.connections_per_ip),
        messages_per_connection: settings.and_then(|l| l.messages_per_connection),
        greylisting: engine
            .scenario()
            .greylisting
            .as_ref()
            .map(|g| GreylistingView {
                delay_seconds: g.delay.as_secs_f64(),
                retry_window_seconds: g.retry_window.as_secs_f64(),
            }),
    };
    let now_ms = engine.clock().now_ms();
    let window_of = |key: &str| {
        let settings = settings?;
        if key.starts_with(keys::ACCOUNT_PREFIX) {
            settings.per_account
        } else if key.starts_with(keys::IP_PREFIX) {
            settings.per_ip
        } else if key.starts_with(keys::RECIPIENT_DOMAIN_PREFIX) {
            settings.per_recipient_domain
        } else if key.starts_with(keys::RECIPIENT_PREFIX) {
            settings.per_recipient
        } else {
            None
        }
    };
    let usage = engine.usage().await.map_err(unavailable)?;
    let usage = usage
        .into_iter()
        .map(|u| {
            let window = window_of(&u.key);
            UsageView::new(u, window, now_ms)
        })
        .collect();
    let in_progress = limit_state::read(&engine, now_ms)
        .await
        .map_err(unavailable)?;
    Ok(json(
        StatusCode::OK,
        &Limits {
            limits: Some(limits),
            usage,
            in_progress,
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
