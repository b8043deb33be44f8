//! `GET /healthz`: whether the server is up, and whether it offers TLS.
//!
//! The body is one line, `ok tls=on` or `ok tls=off`: a health check that only looks at the
//! status (200) or at the first word (`ok`) goes on working, and a person (or a test) sees whether
//! STARTTLS is offered to new sessions now. It is the one route open without the token.

use axum::extract::State;

use super::ApiState;

/// `GET /healthz`.
pub(crate) async fn get(State(state): State<ApiState>) -> &'static str {
    if state.server.tls_on() {
        "ok tls=on\n"
    } else {
        "ok tls=off\n"
    }
}
