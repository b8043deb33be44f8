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
use crate::scenario::history::ReloadRecord;
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
    reloads: Vec<ReloadRecord>,
}

/// The answer of `POST /api/scenario/check`.
#[derive(Serialize)]
struct Check {
    valid: bool,
    rules: Option<usize>,
    flavor: Option<&'static str>,
    error: Option<CheckError>,
}

/// Where a checked scenario fails.
#[derive(Serialize)]
struct CheckError {
    message: String,
    line: usize,
    column: usize,
    hint: Option<String>,
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
            reloads: reloader.history(),
        },
    ))
}

/// A scenario that did not load: 400 with where and why.
pub(crate) fn invalid(error: ScenarioError) -> ApiError {
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

/// The TOML text of a request body sent as `application/toml` or `text/plain`.
fn toml_text(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
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
    String::from_utf8(body.to_vec()).map_err(|e| {
        ApiError::bad_request(format!("the scenario is not UTF-8: {}", e.utf8_error()))
            .hint("scenario files are UTF-8 TOML")
    })
}

/// `PUT /api/scenario`: checks the TOML body and makes it live for new sessions; on error the
/// old scenario stays live.
pub(crate) async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let text = toml_text(&headers, body)?;
    let reloader = reloader(&state)?;
    reloader
        .replace_text(API_ORIGIN, text)
        .await
        .map_err(invalid)?;
    view(reloader)
}

/// `POST /api/scenario/check`: compiles the TOML body as `PUT` would, without making it live;
/// answers whether it is valid and, if not, its first error with line and column (what the web
/// page's editor shows as you type).
pub(crate) async fn check(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let text = toml_text(&headers, body)?;
    let reloader = reloader(&state)?;
    let answer = match reloader.check(API_ORIGIN, text).await {
        Ok(scenario) => Check {
            valid: true,
            rules: Some(scenario.rules.len()),
            flavor: Some(scenario.server.flavor.as_str()),
            error: None,
        },
        Err(error) => Check {
            valid: false,
            rules: None,
            flavor: None,
            error: Some(CheckError {
                message: error.message,
                line: error.line,
                column: error.column,
                hint: error.hint,
            }),
        },
    };
    Ok(json(StatusCode::OK, &answer))
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
