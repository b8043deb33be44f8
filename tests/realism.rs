//! An independent realism check of the reply catalog: every reply of every flavor (placeholders
//! filled as the server fills them) goes through Sisimai's reason matcher (Debian
//! `libsisimai-perl`, `Sisimai::Reason->match`, run by `tests/sisimai/reasons.pl`), and the reason
//! it reads is compared with the reason the catalog name intends (`tests/sisimai/reasons.toml`).
//! A disagreement must be listed there with Sisimai's reason and the reply's source (a reply
//! verified in public sources is kept as the provider sends it); a listed disagreement that no
//! longer holds fails too, and so does a README whose figure is not the current one.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::binary::run_tool_ok;
use serde::Deserialize;

const CATALOG_TOML: &str = include_str!("../src/scenario/catalog.toml");
const TABLE_TOML: &str = include_str!("sisimai/reasons.toml");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sisimai/reasons.pl");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// One catalog reply, read from the data with `toml::Value` (not the golden test's structs).
struct CatalogReply {
    entry: String,
    flavor: String,
    code: i64,
    status: String,
    text: Vec<String>,
    source: String,
}

/// Every reply of `catalog.toml`, in catalog order.
fn catalog_replies() -> Vec<CatalogReply> {
    let data: toml::Value = toml::from_str(CATALOG_TOML).expect("catalog.toml");
    let mut replies = Vec::new();
    for entry in data["entry"].as_array().expect("entries") {
        let name = entry["name"].as_str().expect("a name");
        for (flavor, variant) in entry["flavor"].as_table().expect("flavors") {
            let text = variant["text"].as_array().expect("text lines");
            replies.push(CatalogReply {
                entry: name.to_owned(),
                flavor: flavor.clone(),
                code: variant["code"].as_integer().expect("a code"),
                status: variant["status"].as_str().expect("a status").to_owned(),
                text: text
                    .iter()
                    .map(|l| l.as_str().unwrap_or("").to_owned())
                    .collect(),
                source: variant["source"].as_str().expect("a source").to_owned(),
            });
        }
    }
    replies
}

#[derive(Deserialize)]
struct Table {
    intended: BTreeMap<String, String>,
    #[serde(default)]
    disagreement: Vec<Disagreement>,
}

#[derive(Deserialize, Debug, PartialEq, Eq)]
struct Disagreement {
    entry: String,
    flavor: String,
    sisimai: String,
    own: bool,
    source: String,
}

/// The reply as it goes on the wire, on one line, placeholders filled as the server fills them.
fn wire_text(variant: &CatalogReply) -> String {
    let mut text = variant.text.join(" ");
    for (placeholder, value) in [
        ("{rcpt}", "bob@dest.example"),
        ("{sender}", "alice@client.example"),
        ("{ip}", "192.0.2.7"),
        ("{host}", "mx.failmail.test"),
        ("{domain}", "dest.example"),
        ("{sender_domain}", "client.example"),
        ("{id}", "x1"),
        ("{helo}", "client.example"),
    ] {
        text = text.replace(placeholder, value);
    }
    format!("{} {} {text}", variant.code, variant.status)
}

/// Sisimai's reason for every `(key, reply)`; `None` (the test skips) without Sisimai.
async fn sisimai_reasons(replies: &[(String, String)]) -> Option<BTreeMap<String, String>> {
    common::tools::need(&common::tools::SISIMAI)?;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("replies.tsv");
    let lines: String = replies.iter().map(|(k, r)| format!("{k}\t{r}\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let mut command = Command::new("/usr/bin/perl");
    command
        .arg(SCRIPT)
        .stdin(std::fs::File::open(&input).unwrap());
    let output = run_tool_ok(
        command,
        "the Sisimai reason matcher",
        Duration::from_secs(60),
    )
    .await;
    let reasons = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, r)| (k.to_owned(), r.to_owned()))
        .collect();
    Some(reasons)
}

/// The README sentence that carries the figure.
fn figure(agree: usize, total: usize, sourced_agree: usize, sourced: usize) -> String {
    format!(
        "Sisimai's reason matcher agrees with {agree} of {total} catalog replies ({}%); with \
         {sourced_agree} of the {sourced} provider replies verified in public sources ({}%)",
        agree * 100 / total,
        sourced_agree * 100 / sourced
    )
}

#[tokio::test]
async fn sisimai_reads_every_reply_as_its_name_intends_or_the_table_says_why_not() {
    let catalog = catalog_replies();
    let table: Table = toml::from_str(TABLE_TOML).expect("tests/sisimai/reasons.toml");
    let keyed: Vec<(String, String)> = catalog
        .iter()
        .map(|r| (format!("{}/{}", r.entry, r.flavor), wire_text(r)))
        .collect();
    let Some(read) = sisimai_reasons(&keyed).await else {
        return;
    };
    assert_eq!(read.len(), keyed.len(), "a reason for every reply");
    let (mut agree, mut sourced, mut sourced_agree) = (0, 0, 0);
    let mut problems = Vec::new();
    let mut listed: Vec<&Disagreement> = table.disagreement.iter().collect();
    for reply in &catalog {
        let Some(intended) = table.intended.get(&reply.entry) else {
            problems.push(format!(
                "reasons.toml: no intended reason for {}",
                reply.entry
            ));
            continue;
        };
        let reason = &read[&format!("{}/{}", reply.entry, reply.flavor)];
        let own = reply.flavor == "generic" || reply.source.contains("failmail wording");
        sourced += usize::from(!own);
        let position = listed
            .iter()
            .position(|d| d.entry == reply.entry && d.flavor == reply.flavor);
        let expected = Disagreement {
            entry: reply.entry.clone(),
            flavor: reply.flavor.clone(),
            sisimai: reason.clone(),
            own,
            source: reply.source.clone(),
        };
        match (reason == intended, position) {
            (true, None) => {
                agree += 1;
                sourced_agree += usize::from(!own);
            }
            (true, Some(_)) => problems.push(format!(
                "{}/{}: listed, but Sisimai now reads {reason} as intended",
                reply.entry, reply.flavor
            )),
            (false, None) => problems.push(format!(
                "{}/{}: Sisimai reads {reason:?} where {intended:?} is intended: list it \
                 (with its source) in tests/sisimai/reasons.toml: {expected:?}",
                reply.entry, reply.flavor
            )),
            (false, Some(at)) => {
                let record = listed.remove(at);
                if *record != expected {
                    problems.push(format!("{record:?} should read {expected:?}"));
                }
            }
        }
    }
    for stale in listed {
        problems.push(format!(
            "{}/{}: no such catalog reply",
            stale.entry, stale.flavor
        ));
    }
    let sentence = figure(agree, catalog.len(), sourced_agree, sourced);
    eprintln!("{sentence}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let readme = std::fs::read_to_string(README).expect("README.md");
    assert!(
        readme.contains(&sentence),
        "README's realism section should say: {sentence}"
    );
}

#[test]
fn the_figure_is_rounded_down() {
    assert!(figure(2, 3, 1, 3).contains("2 of 3 catalog replies (66%)"));
}
