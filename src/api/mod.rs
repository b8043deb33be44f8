//! The HTTP API: health, events, captured messages, attempts and the retry report, later
//! bounces, limits, clock, scenario, catalog, metrics.
//!
//! Served on `--http` (loopback by default; elsewhere only with a token, see [`check_bind`]).
//! Handlers only read and steer what the server already keeps. Every route is listed once in
//! [`ROUTES`], which builds the router and is checked against `/api/openapi.json` by the tests.
//! Errors are JSON: `{"error": "...", "hint": "..." | null}`.

pub(crate) mod attempts;
pub(crate) mod auth;
pub(crate) mod bounces;
pub(crate) mod catalog;
pub mod client;
pub(crate) mod clock;
pub(crate) mod counters;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod guard;
pub(crate) mod health;
pub(crate) mod info;
pub(crate) mod limit_state;
pub(crate) mod limits;
pub(crate) mod messages;
pub(crate) mod metrics;
pub mod openapi;
pub(crate) mod parts;
pub(crate) mod reset;
pub(crate) mod scenario;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::check_bind;
pub use error::ApiError;

use crate::bounces::Bounces;
use crate::clock::SharedClock;
use crate::journal::Journal;
use crate::scenario::live::Reloader;
use crate::server::{Listening, ServerControl, ShutdownState};

/// What the handlers work with: handed over by the composition root (`app`).
#[derive(Clone)]
pub struct ApiState {
    /// What happened: messages, events, metrics.
    pub journal: Arc<Journal>,
    /// The clock every time-based behaviour reads.
    pub clock: SharedClock,
    /// The live scenario (absent for a plain sink).
    pub scenario: Option<Reloader>,
    /// The SMTP server, for what `/healthz` tells about it.
    pub server: ServerControl,
    /// The later notifications (absent: none are made).
    pub bounces: Option<Arc<Bounces>>,
    /// Where the SMTP listeners listen (shown by `GET /api/info`).
    pub listening: Option<Listening>,
}

/// One route of the API.
pub struct Route {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path, with `{param}` placeholders as in OpenAPI.
    pub path: &'static str,
    handler: fn() -> MethodRouter<ApiState>,
}

/// Every route, in the order of the documentation.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/healthz",
        handler: || get(health::get),
    },
    Route {
        method: "GET",
        path: "/api/info",
        handler: || get(info::get),
    },
    Route {
        method: "GET",
        path: "/api/events",
        handler: || get(events::list),
    },
    Route {
        method: "GET",
        path: "/api/events/stream",
        handler: || get(events::stream),
    },
    Route {
        method: "GET",
        path: "/api/messages",
        handler: || get(messages::list),
    },
    Route {
        method: "DELETE",
        path: "/api/messages",
        handler: || delete(messages::clear),
    },
    Route {
        method: "GET",
        path: "/api/messages/{id}",
        handler: || get(messages::get),
    },
    Route {
        method: "GET",
        path: "/api/messages/{id}/raw",
        handler: || get(messages::raw),
    },
    Route {
        method: "GET",
        path: "/api/messages/{id}/parts",
        handler: || get(parts::get),
    },
    Route {
        method: "GET",
        path: "/api/bounces",
        handler: || get(bounces::list),
    },
    Route {
        method: "GET",
        path: "/api/bounces/{id}/raw",
        handler: || get(bounces::raw),
    },
    Route {
        method: "GET",
        path: "/api/attempts",
        handler: || get(attempts::list),
    },
    Route {
        method: "GET",
        path: "/api/report",
        handler: || get(attempts::report),
    },
    Route {
        method: "GET",
        path: "/api/limits",
        handler: || get(limits::get),
    },
    Route {
        method: "DELETE",
        path: "/api/limits",
        handler: || delete(limits::reset),
    },
    Route {
        method: "GET",
        path: "/api/clock",
        handler: || get(clock::get),
    },
    Route {
        method: "POST",
        path: "/api/clock/advance",
        handler: || post(clock::advance),
    },
    Route {
        method: "GET",
        path: "/api/scenario",
        handler: || get(scenario::get),
    },
    Route {
        method: "PUT",
        path: "/api/scenario",
        handler: || put(scenario::put),
    },
    Route {
        method: "POST",
        path: "/api/scenario/reload",
        handler: || post(scenario::reload),
    },
    Route {
        method: "POST",
        path: "/api/scenario/check",
        handler: || post(scenario::check),
    },
    Route {
        method: "GET",
        path: "/api/catalog",
        handler: || get(catalog::get),
    },
    Route {
        method: "POST",
        path: "/api/reset",
        handler: || post(reset::reset),
    },
    Route {
        method: "GET",
        path: "/metrics",
        handler: || get(metrics::get),
    },
    Route {
        method: "GET",
        path: "/api/counters/stream",
        handler: || get(counters::stream),
    },
    Route {
        method: "GET",
        path: "/api/openapi.json",
        handler: || get(openapi::get),
    },
];

/// The HTTP routes, open to whoever can connect (loopback use).
pub fn router(state: ApiState) -> Router {
    router_with_token(state, None)
}

/// The HTTP routes; with a token, every route but `/healthz` needs `Authorization: Bearer
/// <token>`.
pub fn router_with_token(state: ApiState, token: Option<Arc<str>>) -> Router {
    let token = token.filter(|t| !t.trim().is_empty());
    ROUTES
        .iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, (route.handler)())
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}",
        request.method(),
        request.uri().path()
    ))
    .hint("GET /api/openapi.json lists every route")
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
    .hint("the Allow header lists the methods this route takes")
}

/// Serves `app` on `listener` until shutdown starts: the API's router, merged by the composition
/// root with whatever else it serves on the same listener (the web page). Event streams end when
/// shutdown starts.
///
/// The layers added here wrap every route, the API's and the page's alike: requests from other
/// sites and `Host`s that name neither the listener nor one of `hosts` are refused as `guard`
/// says (the `Host` check is off when `token_protected`, as the token then guards the API).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    hosts: Vec<String>,
    token_protected: bool,
    mut shutdown: watch::Receiver<ShutdownState>,
) {
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let guard = Arc::new(guard::Guard::new(local, &hosts, token_protected));
    let app = app
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .layer(Extension(events::ShutdownSignal(shutdown.clone())));
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(%error, "HTTP server stopped");
    }
}
