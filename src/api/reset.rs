//! `POST /api/reset`: the server back to how it started, for test isolation.
//!
//! Without a body (or with `{}`) everything is reset: the journal (captured messages and events),
//! the limits (limit uses, greylisting, sequence attempts, rule counters), the clock (its offset
//! back to zero, on every instance sharing it through Redis), the scenario (the command line's
//! file or the built-in one again, if `PUT /api/scenario` replaced it) and the later
//! notifications (pending and sent). A JSON body keeps parts:
//! `{"clock": false}` resets all but the clock.

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::{ApiError, JsonBody};
use super::{clock, limits, scenario, ApiState};

/// The largest body taken: the four flags fit in far less.
const MAX_BODY: usize = 4096;

/// What to reset; every part is reset unless the body says `false` for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Parts {
    /// Captured messages and events.
    #[serde(default = "yes")]
    journal: bool,
    /// Limit uses, greylisting, sequence attempts and rule counters.
    #[serde(default = "yes")]
    limits: bool,
    /// The clock's offset.
    #[serde(default = "yes")]
    clock: bool,
    /// A scenario set through `PUT /api/scenario`.
    #[serde(default = "yes")]
    scenario: bool,
    /// Later notifications, pending and sent.
    #[serde(default = "yes")]
    bounces: bool,
}

fn yes() -> bool {
    true
}

impl Default for Parts {
    fn default() -> Self {
        Self {
            journal: true,
            limits: true,
            clock: true,
            scenario: true,
            bounces: true,
        }
    }
}

/// `POST /api/reset`.
pub(crate) async fn reset(
    State(state): State<ApiState>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let parts = parts(request).await?;
    // The scenario first: the limits reset below is then the restored scenario's.
    if parts.scenario {
        if let Some(reloader) = &state.scenario {
            reloader.restore().await.map_err(|error| {
                let mut api = scenario::invalid(error);
                api.status = StatusCode::CONFLICT;
                api.hint(
                    "the command line's scenario file no longer loads: fix it, or reset with \
                     {\"scenario\": false}",
                )
            })?;
        }
    }
    if parts.limits {
        if let Some(engine) = limits::engine(&state) {
            engine.reset().await.map_err(limits::unavailable)?;
        }
    }
    if parts.clock {
        state.clock.reset().await.map_err(clock::unavailable)?;
    }
    if parts.journal {
        state.journal.clear();
    }
    if parts.bounces {
        if let Some(bounces) = &state.bounces {
            bounces.clear();
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The parts the body names; all of them without a body.
async fn parts(request: Request) -> Result<Parts, ApiError> {
    let (head, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
        .hint("send {} or nothing to reset everything, e.g. {\"clock\": false} to keep the clock")
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Parts::default());
    }
    let request = Request::from_parts(head, Body::from(bytes));
    let JsonBody(parts) = JsonBody::<Parts>::from_request(request, &()).await?;
    Ok(parts)
}
