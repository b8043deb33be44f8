//! The Prometheus text format 0.0.4, parsed strictly enough to catch a broken exposition: what
//! the API tests read `/metrics` with.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Prometheus text format 0.0.4, parsed strictly enough to catch a broken exposition.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    pub(crate) types: HashMap<String, String>,
    pub(crate) samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    /// Parses `text`, failing the test on anything the format forbids.
    pub(crate) fn parse(text: &str) -> Self {
        let mut parsed = Self::default();
        let mut helped = BTreeSet::new();
        assert!(text.ends_with('\n'), "the exposition ends with a newline");
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(valid_name(name) && !help.is_empty(), "{line}");
                assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(valid_name(name), "{line}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                assert!(
                    !parsed.samples.iter().any(|(n, ..)| family(n, kind) == name),
                    "TYPE after samples of {name}"
                );
                assert!(
                    parsed
                        .types
                        .insert(name.to_owned(), kind.to_owned())
                        .is_none(),
                    "TYPE twice for {name}"
                );
            } else {
                assert!(!line.starts_with('#'), "unknown comment {line}");
                parsed.samples.push(sample(line));
            }
        }
        for (name, ..) in &parsed.samples {
            let declared = parsed
                .types
                .iter()
                .any(|(family_name, kind)| family(name, kind) == family_name);
            assert!(declared, "sample {name} has no TYPE line");
        }
        parsed
    }

    /// The value of the sample `name` with exactly `labels`.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == labels)
            .map(|(.., v)| *v)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to (histogram samples carry suffixes).
fn family<'a>(sample: &'a str, kind: &str) -> &'a str {
    if kind == "histogram" {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                return base;
            }
        }
    }
    sample
}

fn sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("sample {line}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "{line}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let close = inner
            .find('}')
            .unwrap_or_else(|| panic!("labels of {line}"));
        for pair in inner[..close].split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').expect("label=value");
            assert!(valid_name(key), "{line}");
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("quoted label value in {line}"));
            assert!(labels.insert(key.to_owned(), value.to_owned()).is_none());
        }
        rest = &inner[close + 1..];
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("space before the value in {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
    };
    (name.to_owned(), labels, value)
}
