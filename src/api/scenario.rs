//! `/api/scenario`: the live scenario, replacing it with new TOML, reloading its file.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::error::{json, ApiError};
use super::ApiState;
use crate::scenario::error::ScenarioError;
use crate::scenario::live::Reloader;

/// The origin given to scenarios sent with `PUT /api/scenario` (shown in their errors).
pub(crate) const API_ORIGIN: &str = "<api>";

/// The media types `PUT /api/scenario` takes.
pub(crate) const MEDIA_TYPES: [&str; 2] = ["application/toml", "text/plain"];

#[derive(Serialize)]
struct ScenarioView {
    origin: String,
    source: Option<String>,
    rules: usize,
    flavor: &'static str,
    file: Option<String>,
}

fn reloader(state: &ApiState) -> Result<&Reloader, ApiError> {
    state.scenario.as_ref().ok_or_else(|| {
        ApiError::conflict("this server runs without a scenario").hint(
            "a server started as a plain sink (AppConfig::scenario = None) has none; the failmail \
             command always has one",
        )
    })
}

fn view(reloader: &Reloader) -> Result<Response, ApiError> {
    let live = reloader.live();
    let scenario = live.policy.engine().scenario();
    Ok(json(
        StatusCode::OK,
        &ScenarioView {
            origin: scenario.origin.clone(),
            source: live.source.clone(),
            rules: scenario.rules.len(),
            flavor: scenario.server.flavor.as_str(),
            file: reloader
                .options()
                .path
                .as_ref()
                .map(|p| p.display().to_string()),
        },
    ))
}

/// A scenario that did not load: 400 with where and why.
fn invalid(error: ScenarioError) -> ApiError {
    let mut api = ApiError::bad_request(format!(
        "{}:{}:{}: {}",
        error.origin, error.line, error.column, error.message
    ))
    .with("line", error.line)
    .with("column", error.column);
    api.hint = error.hint;
    api
}

/// `GET /api/scenario`: the live scenario.
pub(crate) async fn get(State(state): State<ApiState>) -> Result<Response, ApiError> {
    view(reloader(&state)?)
}

/// `PUT /api/scenario`: checks the TOML body and makes it live for new sessions; on error the
/// old scenario stays live.
pub(crate) async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !content_type
        .as_deref()
        .is_some_and(|t| MEDIA_TYPES.contains(&t))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            match content_type {
                Some(t) => format!("a scenario is TOML, not {t}"),
                None => "a scenario is TOML: the Content-Type header is missing".to_owned(),
            },
        )
        .hint("send the file with Content-Type: application/toml (or text/plain)"));
    }
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::bad_request(format!("the scenario is not UTF-8: {e}"))
            .hint("scenario files are UTF-8 TOML")
    })?;
    let reloader = reloader(&state)?;
    reloader
        .replace_text(API_ORIGIN, text.to_owned())
        .await
        .map_err(invalid)?;
    view(reloader)
}

/// `POST /api/scenario/reload`: loads the scenario file again (as SIGHUP does).
pub(crate) async fn reload(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let reloader = reloader(&state)?;
    if reloader.options().path.is_none() {
        return Err(
            ApiError::conflict("this server has no scenario file to reload")
                .hint("start it with --scenario FILE, or send the scenario with PUT /api/scenario"),
        );
    }
    reloader.reload_file().await.map_err(invalid)?;
    view(reloader)
}
