//! The web page: one page at `/`, made of plain HTML, CSS and JavaScript modules compiled into
//! the binary (no build step), which watches and steers failmail only through the HTTP API under
//! `/api` — the same routes, with the same token, as any other client.
//!
//! This layer serves nothing but those files: no route here reads the server's state, so nothing
//! a client sent is ever served from here, and the page itself needs no token (it asks for the
//! token, keeps it for the tab, and sends it with every API call, the event stream included).
//! Every answer carries a Content-Security-Policy that allows scripts and styles from this
//! server only (no inline script), no remote load of any kind, and no framing of the page.
//!
//! The composition root (`app`) merges [`router`] with the API's router, so that the layers
//! `api::serve` adds wrap the page and the API alike.

pub(crate) mod assets;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use assets::Asset;

/// The page's Content-Security-Policy. Scripts only from this server (modules, no inline code,
/// no `eval`); API calls and the event stream only to it; no font, media, object or remote image
/// at all. Captured HTML is shown in a sandboxed `srcdoc` frame, which inherits this policy: so
/// its scripts are blocked twice (the sandbox has no `allow-scripts`, and no inline script is
/// allowed), and its remote images, styles and fonts are never fetched. Inline styles are
/// allowed for that frame's sake only: a message's own `<style>` and `style=` need them, and the
/// page itself never inserts markup from clients, so they give an attacker nothing to style.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes: `/` and `/assets/…`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(assets::INDEX, &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match assets::find(&path) {
        Some(asset) => serve(asset, &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no asset {path}\n"),
        )
            .into_response(),
    }
}

/// An asset with the page's security headers, revalidated by its ETag on every use (a new
/// binary may bring new files under the same names).
fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag.as_str()));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}
