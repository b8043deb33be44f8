//! Who may use the API: loopback only, unless a bearer token is configured.
//!
//! The API can read every captured message and steer the server, so it is never served on a
//! non-loopback address without a token ([`check_bind`]); with a token, every route but
//! `/healthz` needs `Authorization: Bearer <token>` ([`require_token`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The route left open with a token, for health checks.
pub(crate) const OPEN_PATH: &str = "/healthz";

/// Refuses to serve the API on a non-loopback address without a (non-empty) token.
pub fn check_bind(addr: SocketAddr, token: Option<&str>) -> Result<(), ApiError> {
    let loopback = addr.ip().to_canonical().is_loopback();
    let has_token = token.is_some_and(|t| !t.trim().is_empty());
    if loopback || has_token {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "refusing to serve the HTTP API on {addr}: it is not a loopback address and no API \
             token is set"
        ),
    )
    .hint(format!(
        "listen on 127.0.0.1:{port} (the default), or set --http-token TOKEN so that clients \
         must send `Authorization: Bearer TOKEN`",
        port = addr.port()
    )))
}

/// Middleware: with a token, every route but `/healthz` needs `Authorization: Bearer <token>`
/// (401 JSON otherwise).
pub(crate) async fn require_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if request.uri().path() == OPEN_PATH {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, credentials) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim())
        });
    match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "wrong API token")
            .hint("send the token the server was started with: Authorization: Bearer TOKEN")
            .into_response(),
        None => ApiError::new(StatusCode::UNAUTHORIZED, "this API needs a token")
            .hint("send the header Authorization: Bearer TOKEN (the server's --http-token)")
            .into_response(),
    }
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_always_allowed() {
        for addr in ["127.0.0.1:8025", "[::1]:8025", "[::ffff:127.0.0.1]:0"] {
            assert!(check_bind(addr.parse().unwrap(), None).is_ok(), "{addr}");
        }
    }

    #[test]
    fn other_addresses_need_a_token() {
        for addr in ["0.0.0.0:8025", "[::]:8025", "192.0.2.1:80"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert!(check_bind(addr, None).is_err(), "{addr}");
            assert!(check_bind(addr, Some("  ")).is_err(), "{addr}");
            assert!(check_bind(addr, Some("s3cret")).is_ok(), "{addr}");
        }
    }

    #[test]
    fn comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
