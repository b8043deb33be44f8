//! The module layers written in `src/lib.rs` hold: no module of `src/` refers to a module above
//! its own layer (`crate::…` in code or in a doc link), so no two top-level modules import each
//! other; and every top-level module has a layer.
//!
//! The order is read from the numbered "Layout" list in `src/lib.rs` itself, so the document and
//! the check cannot drift apart. Unit tests (`#[cfg(test)]` tails, `*_tests.rs` files) may reach
//! wherever they need and are not checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Top-level module → its layer (1 is the bottom), from the numbered list in `lib.rs`.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        .collect();
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let Some(item) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((number, rest)) = item.split_once(". ") else {
            continue;
        };
        let Ok(layer) = number.parse::<usize>() else {
            continue;
        };
        for module in &modules {
            if rest.contains(&format!("[`{module}`]")) {
                layers.entry(module.to_string()).or_insert(layer);
            }
        }
    }
    for module in modules {
        assert!(
            layers.contains_key(module),
            "src/lib.rs: module `{module}` has no place in the Layout list"
        );
    }
    layers
}

/// The checked text of a file: what comes before its `#[cfg(test)]` part.
fn checked_part(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or("")
}

/// Every `crate::module` reference in `text` that points above `layer`, as `line: text`.
fn back_references(text: &str, layer: usize, layers: &BTreeMap<String, usize>) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in checked_part(text).lines().enumerate() {
        let above = line.match_indices("crate::").any(|(at, _)| {
            referenced(&line[at + "crate::".len()..])
                .iter()
                .any(|name| layers.get(name).is_some_and(|&target| target > layer))
        });
        if above {
            found.push(format!("{}: {}", number + 1, line.trim()));
        }
    }
    found
}

/// The top-level modules named right after `crate::`: one (`crate::smtp::…`) or a group
/// (`crate::{clock, smtp::reply}`).
fn referenced(after: &str) -> Vec<String> {
    let name = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect()
    };
    match after.strip_prefix('{') {
        Some(group) => group
            .split('}')
            .next()
            .unwrap_or("")
            .split(',')
            .map(name)
            .collect(),
        None => vec![name(after)],
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each file's violations, as `file:line: text (module layer N -> target)`.
fn violations(layers: &BTreeMap<String, usize>) -> Vec<String> {
    let src = Path::new(SRC);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src/");
        let name = relative.to_string_lossy();
        if name.ends_with("_tests.rs") || name == "lib.rs" || name == "main.rs" {
            continue;
        }
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs").to_owned())
            .expect("a first component");
        let Some(&layer) = layers.get(&top) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a source file");
        for hit in back_references(&text, layer, layers) {
            found.push(format!("src/{name}:{hit} (`{top}` is layer {layer})"));
        }
    }
    found
}

#[test]
fn no_module_refers_to_a_module_above_it() {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).expect("src/lib.rs");
    let layers = layers(&lib);
    assert!(
        layers.len() >= 9,
        "the Layout list names the modules: {layers:?}"
    );
    let found = violations(&layers);
    assert!(
        found.is_empty(),
        "modules refer to modules above them (see the Layout list in src/lib.rs):\n{}",
        found.join("\n")
    );
}

/// The check itself: a back-import, in code or a doc link, is found; one in a unit test is not.
#[test]
fn a_back_import_is_found() {
    let layers: BTreeMap<String, usize> = [("smtp", 2), ("server", 6), ("clock", 1)]
        .into_iter()
        .map(|(m, l)| (m.to_owned(), l))
        .collect();
    let text = "use crate::clock::Clock;\nuse crate::server::Shared;\n/// See [`crate::server`].\n\
                #[cfg(test)]\nmod tests { use crate::server::X; }\n";
    assert_eq!(
        back_references(text, 2, &layers),
        [
            "2: use crate::server::Shared;",
            "3: /// See [`crate::server`]."
        ]
    );
    assert!(back_references("use crate::{clock, smtp};", 2, &layers).is_empty());
    assert_eq!(
        back_references("use crate::{clock, server::Shared};", 2, &layers),
        ["1: use crate::{clock, server::Shared};"]
    );
}
