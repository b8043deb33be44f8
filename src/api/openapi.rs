//! `GET /api/openapi.json`: the hand-written OpenAPI 3.0 description of every route.
//!
//! The tests check it against [`super::ROUTES`] and validate real responses against its schemas.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The document as written (its `info.version` is replaced by the crate's version).
pub const SOURCE: &str = include_str!("openapi.json");

/// The document, with `info.version` set to this build's version.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document: Value =
            serde_json::from_str(SOURCE).expect("src/api/openapi.json is valid JSON");
        document["info"]["version"] = Value::from(env!("CARGO_PKG_VERSION"));
        document
    })
}

/// `GET /api/openapi.json`.
pub async fn get() -> Response {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| serde_json::to_vec_pretty(document()).unwrap_or_default());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes.as_slice(),
    )
        .into_response()
}
