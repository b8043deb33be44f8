//! The subcommands that print what failmail knows (`catalog`, its `--styles` and `--domains`,
//! `report`): the binary's own module, kept out of `main.rs` so that it holds only the command
//! line and the serving. Everything they print comes from the library; this only formats it.

use std::path::Path;
use std::sync::Arc;

use failmail::journal::attempts::Report;
use failmail::scenario::catalog::{Catalog, Entry};
use failmail::scenario::compile::Scenario;
use failmail::scenario::domains::DomainFlavors;
use failmail::scenario::flavor::Flavor;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
/// How `failmail catalog` prints: a table for people, JSON for programs.
pub(crate) enum CatalogFormat {
    Table,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
/// How `failmail report` prints: a table for people, JSON for programs.
pub(crate) enum ReportFormat {
    Table,
    Json,
}

/// `failmail catalog`: every entry in one flavor's words, and in JSON every flavor's.
pub(crate) fn catalog(flavor: Flavor, format: CatalogFormat) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    match format {
        CatalogFormat::Json => {
            let entries: Vec<serde_json::Value> = catalog
                .entries()
                .iter()
                .map(|entry| {
                    let (variant, used) = entry.variant(flavor);
                    serde_json::json!({
                        "name": entry.name,
                        "summary": entry.summary,
                        "phase": entry.phase.as_str(),
                        "flavor": used.as_str(),
                        "code": variant.code,
                        "status": variant.status.to_string(),
                        "text": variant.text,
                        "source": variant.source,
                        "note": variant.note,
                        "flavors": entry.flavors().map(|f| f.as_str()).collect::<Vec<_>>(),
                        "variants": variants(entry),
                    })
                })
                .collect();
            print_out(&(serde_json::to_string_pretty(&entries)? + "\n"))?;
        }
        CatalogFormat::Table => {
            use std::fmt::Write as _;
            let mut table = format!(
                "{:<28} {:<9} {:<4} {:<8} {:<8} TEXT\n",
                "NAME", "PHASE", "CODE", "STATUS", "FLAVOR"
            );
            for entry in catalog.entries() {
                let (variant, used) = entry.variant(flavor);
                writeln!(
                    table,
                    "{:<28} {:<9} {:<4} {:<8} {:<8} {}",
                    entry.name,
                    entry.phase.as_str(),
                    variant.code,
                    variant.status.to_string(),
                    used.as_str(),
                    variant.text.join(" / ")
                )?;
            }
            print_out(&table)?;
        }
    }
    Ok(())
}

/// `failmail catalog --styles`: the notification styles, their flavors and sources.
pub(crate) fn style_table(format: CatalogFormat) -> anyhow::Result<()> {
    let styles = failmail::bounces::view::StyleView::all();
    match format {
        CatalogFormat::Json => print_out(&(serde_json::to_string_pretty(&styles)? + "\n")),
        CatalogFormat::Table => {
            let mut table = String::new();
            for style in styles {
                table.push_str(&format!(
                    "{}: from {}, \"{}\"\n  source: {}\n",
                    style.name, style.from, style.subjects.failed, style.source
                ));
                for f in style.flavors {
                    table.push_str(&format!("  {:<9} {}\n", f.flavor, f.evidence));
                }
            }
            print_out(&table)
        }
    }
}

/// Every flavor's own wording of an entry, by flavor name.
fn variants(entry: &Entry) -> serde_json::Value {
    entry
        .flavors()
        .map(|flavor| {
            let (variant, _) = entry.variant(flavor);
            let wording = serde_json::json!({
                "code": variant.code,
                "status": variant.status.to_string(),
                "text": variant.text,
                "source": variant.source,
                "note": variant.note,
            });
            (flavor.as_str().to_owned(), wording)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `failmail catalog --domains`: which recipient domains answer in which voice.
pub(crate) fn domain_table(scenario: Option<&Path>, format: CatalogFormat) -> anyhow::Result<()> {
    let table = match scenario {
        Some(path) => Scenario::load(path)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .server
            .domains
            .clone(),
        None => Arc::new(DomainFlavors::builtin()),
    };
    let text = match format {
        CatalogFormat::Json => {
            let rows: Vec<serde_json::Value> = table
                .entries()
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "domain": e.domain,
                        "flavor": e.flavor.as_str(),
                        "origin": e.origin.as_str(),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&rows)? + "\n"
        }
        CatalogFormat::Table => {
            let mut text = format!("{:<24} {:<9} FROM\n", "DOMAIN", "FLAVOR");
            for e in table.entries() {
                text += &format!(
                    "{:<24} {:<9} {}\n",
                    e.domain,
                    e.flavor.as_str(),
                    e.origin.as_str()
                );
            }
            text
        }
    };
    print_out(&text)
}

/// `failmail report`: prints the report; the exit status is 0 when nothing failed, 1 when a
/// verdict failed, 2 when the report could not be read.
pub(crate) fn report(http: &str, format: ReportFormat, token: Option<&str>) -> i32 {
    let read = failmail::api::client::get(http, "/api/report", token)
        .map_err(|e| e.to_string())
        .and_then(|body| {
            let value: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("not a report: {e}"))?;
            let report: Report =
                serde_json::from_value(value.clone()).map_err(|e| format!("not a report: {e}"))?;
            Ok((value, report))
        });
    let (value, report) = match read {
        Ok(read) => read,
        Err(error) => {
            eprintln!("failmail report: {error}");
            return 2;
        }
    };
    let text = match format {
        ReportFormat::Table => report.table(),
        ReportFormat::Json => serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
    };
    if let Err(error) = print_out(&text) {
        eprintln!("failmail report: {error}");
        return 2;
    }
    i32::from(!report.ok)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
