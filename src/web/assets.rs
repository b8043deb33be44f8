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
    asset!("js/transcript.js", JS),
    asset!("js/vlist.js", JS),
    asset!("js/refetch.js", JS),
    asset!("js/views/registry.js", JS),
    asset!("js/views/sessions.js", JS),
    asset!("js/views/messages.js", JS),
    asset!("js/views/bounces.js", JS),
    asset!("js/views/report.js", JS),
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

    /// What turns a string into markup. The page builds every element with the DOM (`h()` in
    /// `js/dom.js`, text through `textContent` and text nodes), so none of these is used at
    /// all, not even with a constant string: a client's text could never reach one.
    const MARKUP_SINKS: [&str; 9] = [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "createContextualFragment",
        "DOMParser",
        "setHTMLUnsafe",
        "parseHTMLUnsafe",
        "srcdoc",
    ];

    /// The one exception: a message's HTML part goes into a sandboxed frame's `srcdoc`
    /// (`sandboxedFrame` in this file), which runs no script and loads nothing remote.
    const SANDBOXED_FRAME: &str = "js/views/messages.js";

    #[test]
    fn no_code_of_the_page_writes_markup_from_a_string() {
        let mut frames = 0;
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for (number, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") || code.starts_with('*') || code.starts_with("/*") {
                    continue;
                }
                for sink in MARKUP_SINKS {
                    if !code.contains(sink) {
                        continue;
                    }
                    let at = format!("{}:{}: {code}", asset.path, number + 1);
                    assert!(
                        sink == "srcdoc" && asset.path == SANDBOXED_FRAME,
                        "{at}: {sink} inserts markup; build elements with h() instead"
                    );
                    assert!(
                        code.starts_with(
                            "frame.srcdoc = `<meta http-equiv=\"Content-Security-Policy\""
                        ),
                        "{at}: the frame's HTML must start with its own policy"
                    );
                    frames += 1;
                }
            }
        }
        assert_eq!(frames, 1, "one sandboxed frame shows a message's HTML");
        let frame = std::str::from_utf8(find(SANDBOXED_FRAME).unwrap().bytes).unwrap();
        assert!(
            frame.contains("sandbox: '',"),
            "the frame is sandboxed without exceptions"
        );
        assert!(frame.contains("const FRAME_POLICY = \"default-src 'none'; img-src data:;"));
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
