//! The page's files, compiled into the binary from `src/web/page/`: the list below is the one
//! place a new file is added (a test fails when a file of that folder is missing from it, or when
//! a module imports a file that is not listed).

use std::hash::{DefaultHasher, Hasher};

/// One file of the page.
pub(crate) struct Asset {
    /// Its path under `/assets/` (and under `src/web/page/`).
    pub(crate) path: &'static str,
    /// Its media type.
    pub(crate) content_type: &'static str,
    /// Its bytes.
    pub(crate) bytes: &'static [u8],
}

impl Asset {
    /// A strong ETag: a hash of the bytes (a fraction of a millisecond for the largest file,
    /// and the page asks for each file once per load).
    pub(crate) fn etag(&self) -> String {
        let mut hasher = DefaultHasher::new();
        hasher.write(self.bytes);
        format!("\"{:016x}\"", hasher.finish())
    }
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("page/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page, served at `/`.
pub(crate) static INDEX: &Asset = &asset!("index.html", "text/html; charset=utf-8");

/// Every other file, served at `/assets/{path}`.
pub(crate) static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/sse.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/sessions-model.js", JS),
    asset!("js/vlist.js", JS),
    asset!("js/views/registry.js", JS),
    asset!("js/views/sessions.js", JS),
    asset!("js/views/messages.js", JS),
    asset!("js/views/limits.js", JS),
    asset!("js/views/catalog.js", JS),
    asset!("js/views/scenario.js", JS),
    asset!("js/views/clock.js", JS),
    asset!("vendor/uPlot.esm.js", JS),
    asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
];

/// The asset at `path` under `/assets/`.
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn page_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/page")
    }

    fn files(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else {
                let relative = path.strip_prefix(page_dir()).unwrap();
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_of_the_page_is_served_and_every_import_resolves() {
        let mut on_disk = Vec::new();
        files(&page_dir(), &mut on_disk);
        for file in &on_disk {
            assert!(
                file == INDEX.path || find(file).is_some(),
                "src/web/page/{file} is not listed in src/web/assets.rs"
            );
        }
        for asset in ASSETS {
            assert!(on_disk.contains(&asset.path.to_owned()), "{}", asset.path);
            if !asset.path.ends_with(".js") {
                continue;
            }
            let text = std::str::from_utf8(asset.bytes).unwrap();
            let base = Path::new(asset.path).parent().unwrap();
            for line in text.lines() {
                let Some(rest) = line.split(" from '").nth(1) else {
                    continue;
                };
                let target = rest.split('\'').next().unwrap();
                let mut resolved = base.to_path_buf();
                for part in target.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            resolved.pop();
                        }
                        other => resolved.push(other),
                    }
                }
                let resolved = resolved.to_string_lossy().into_owned();
                assert!(
                    find(&resolved).is_some(),
                    "{} imports {target}, which is not an asset",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_handler() {
        let html = std::str::from_utf8(INDEX.bytes)
            .unwrap()
            .to_ascii_lowercase();
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap();
            assert!(tag.contains("src="), "an inline <script>: {tag}");
        }
        assert!(!html.contains(" onclick=") && !html.contains(" onload="));
        assert!(!html.contains("style="), "inline styles belong in app.css");
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
