//! `/api/clock`: the server's clock, which tests move forward instead of waiting.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::error::{json, ApiError, JsonBody};
use super::ApiState;
use crate::clock::ClockError;

/// The most one call may advance: ten years, in seconds.
pub(crate) const MAX_ADVANCE_SECONDS: f64 = 315_576_000.0;

/// `POST /api/clock/advance` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Advance {
    /// Seconds to move forward (fractions allowed, milliseconds kept).
    seconds: f64,
}

#[derive(Serialize)]
struct Offset {
    offset_seconds: f64,
}

#[derive(Serialize)]
struct Now {
    now_ms: u64,
    offset_seconds: f64,
}

/// `POST /api/clock/advance`: moves the clock forward; answers the total offset.
pub(crate) async fn advance(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<Advance>,
) -> Result<Response, ApiError> {
    if !body.seconds.is_finite() || !(0.0..=MAX_ADVANCE_SECONDS).contains(&body.seconds) {
        return Err(ApiError::bad_request(format!(
            "seconds must be a number from 0 to {MAX_ADVANCE_SECONDS} (ten years), not {}",
            body.seconds
        ))
        .hint("the clock only moves forward: {\"seconds\": 3600} is one hour later"));
    }
    let offset = state
        .clock
        .advance(Duration::from_secs_f64(body.seconds))
        .await
        .map_err(unavailable)?;
    Ok(json(
        StatusCode::OK,
        &Offset {
            offset_seconds: offset.as_secs_f64(),
        },
    ))
}

/// The shared clock's store (`--state redis://…`) did not answer: 503.
pub(crate) fn unavailable(error: ClockError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        .hint("the clock's offset lives in the --state Redis; check that it is up and reachable")
}

/// `GET /api/clock`: the server's time and how far it was moved forward.
pub(crate) async fn get(State(state): State<ApiState>) -> Response {
    let clock = &state.clock;
    json(
        StatusCode::OK,
        &Now {
            now_ms: clock.now_ms(),
            offset_seconds: clock.offset().as_secs_f64(),
        },
    )
}
