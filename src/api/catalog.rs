//! `GET /api/catalog`: the reply catalog, every failure with the wording of each flavor that has
//! its own and the public source of that wording (what `failmail catalog --format json` prints,
//! for every flavor at once); and the styles later bounces are written in, each with its flavors
//! and its source (what `failmail catalog --styles --format json` prints).

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::error::json;
use crate::bounces::view::StyleView;
use crate::scenario::catalog::Catalog;

#[derive(Serialize)]
struct VariantView<'a> {
    flavor: &'static str,
    code: u16,
    status: String,
    text: &'a [String],
    source: &'a str,
    note: Option<&'a str>,
}

#[derive(Serialize)]
struct EntryView<'a> {
    name: &'a str,
    summary: &'a str,
    phase: &'static str,
    variants: Vec<VariantView<'a>>,
}

#[derive(Serialize)]
struct CatalogView<'a> {
    entries: Vec<EntryView<'a>>,
    styles: Vec<StyleView>,
}

/// `GET /api/catalog`: every entry, in catalog order, each with its flavors' wordings (generic
/// first), then the notification styles.
pub(crate) async fn get() -> Response {
    let catalog = Catalog::builtin();
    let entries = catalog
        .entries()
        .iter()
        .map(|entry| EntryView {
            name: &entry.name,
            summary: &entry.summary,
            phase: entry.phase.as_str(),
            variants: entry
                .flavors()
                .map(|flavor| {
                    let (variant, _) = entry.variant(flavor);
                    VariantView {
                        flavor: flavor.as_str(),
                        code: variant.code,
                        status: variant.status.to_string(),
                        text: &variant.text,
                        source: &variant.source,
                        note: variant.note.as_deref(),
                    }
                })
                .collect(),
        })
        .collect();
    let styles = StyleView::all();
    json(StatusCode::OK, &CatalogView { entries, styles })
}
