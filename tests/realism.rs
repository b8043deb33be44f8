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

use common::binary::run_tool;
use serde::Deserialize;

const CATALOG_TOML: &str = include_str!("../src/scenario/catalog.toml");
const TABLE_TOML: &str = include_str!("sisimai/reasons.toml");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sisimai/reasons.pl");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

#[derive(Deserialize)]
struct CatalogFile {
    entry: Vec<EntryFile>,
}

#[derive(Deserialize)]
struct EntryFile {
    name: String,
    flavor: BTreeMap<String, VariantFile>,
}

#[derive(Deserialize)]
struct VariantFile {
    code: u16,
    status: String,
    text: Vec<String>,
    source: String,
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
fn wire_text(variant: &VariantFile) -> String {
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

/// Sisimai's reason for every `(key, reply)`.
async fn sisimai_reasons(replies: &[(String, String)]) -> BTreeMap<String, String> {
    common::require_tool("/usr/bin/perl", "perl");
    common::require_tool("/usr/share/perl5/Sisimai/Reason.pm", "libsisimai-perl");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("replies.tsv");
    let lines: String = replies.iter().map(|(k, r)| format!("{k}\t{r}\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let mut command = Command::new("/usr/bin/perl");
    command
        .arg(SCRIPT)
        .stdin(std::fs::File::open(&input).unwrap());
    let output = run_tool(
        command,
        "the Sisimai reason matcher",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, r)| (k.to_owned(), r.to_owned()))
        .collect()
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
    let catalog: CatalogFile = toml::from_str(CATALOG_TOML).expect("catalog.toml");
    let table: Table = toml::from_str(TABLE_TOML).expect("tests/sisimai/reasons.toml");
    let mut replies = Vec::new();
    for entry in &catalog.entry {
        assert!(
            table.intended.contains_key(&entry.name),
            "reasons.toml: no intended reason for {}",
            entry.name
        );
        for (flavor, variant) in &entry.flavor {
            replies.push((format!("{}/{flavor}", entry.name), wire_text(variant)));
        }
    }
    let read = sisimai_reasons(&replies).await;
    assert_eq!(read.len(), replies.len(), "a reason for every reply");
    let (mut agree, mut sourced, mut sourced_agree) = (0, 0, 0);
    let mut problems = Vec::new();
    let mut listed: Vec<&Disagreement> = table.disagreement.iter().collect();
    for entry in &catalog.entry {
        let intended = &table.intended[&entry.name];
        for (flavor, variant) in &entry.flavor {
            let reason = &read[&format!("{}/{flavor}", entry.name)];
            let own = flavor == "generic" || variant.source.contains("failmail wording");
            if !own {
                sourced += 1;
            }
            let position = listed
                .iter()
                .position(|d| d.entry == entry.name && &d.flavor == flavor);
            match (reason == intended, position) {
                (true, None) => {
                    agree += 1;
                    sourced_agree += usize::from(!own);
                }
                (true, Some(_)) => problems.push(format!("{}/{flavor}: listed, but Sisimai now reads {reason} as intended", entry.name)),
                (false, None) => problems.push(format!(
                    "{}/{flavor}: Sisimai reads {reason:?}, {intended:?} is intended: list it with its source ({:?})",
                    entry.name, variant.source
                )),
                (false, Some(at)) => {
                    let record = listed.remove(at);
                    let expected = Disagreement {
                        entry: entry.name.clone(),
                        flavor: flavor.clone(),
                        sisimai: reason.clone(),
                        own,
                        source: variant.source.clone(),
                    };
                    if *record != expected {
                        problems.push(format!("{record:?} should read {expected:?}"));
                    }
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
    let sentence = figure(agree, replies.len(), sourced_agree, sourced);
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
