//! `GET /api/info`: what this failmail is and where it listens, for a reader that needs the SMTP
//! address (the web page shows it and writes it into the swaks lines of the catalog).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::error::json;
use super::ApiState;

#[derive(Serialize)]
struct Info {
    version: &'static str,
    smtp: Option<String>,
    smtps: Option<String>,
    records_events: bool,
}

/// `GET /api/info`.
pub(crate) async fn get(State(state): State<ApiState>) -> Response {
    let listening = state.listening.as_ref();
    json(
        StatusCode::OK,
        &Info {
            version: env!("CARGO_PKG_VERSION"),
            smtp: listening.map(|l| l.smtp.to_string()),
            smtps: listening.and_then(|l| l.smtps).map(|a| a.to_string()),
            records_events: state.journal.events().is_some(),
        },
    )
}
