//! Reading the scenario file of a running server: regular files only, read once, at most
//! [`MAX_SCENARIO_BYTES`], and, from the event loop, on a blocking thread within a time limit.
//!
//! A server reloads its file on SIGHUP, on change and on request; whatever is at the path then
//! must not hang it. A FIFO (or a device, a socket, a directory) is refused without waiting for a
//! writer: the file is opened non-blocking and its type checked on the open descriptor (no window
//! between a check and the open). A read that hangs in the kernel (a dead network filesystem) runs
//! out its time limit on its own thread, one such thread at a time; the old scenario stays live.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::error::ScenarioError;

/// The largest scenario file a server reads (about 300,000 rules).
pub const MAX_SCENARIO_BYTES: u64 = 32 * 1024 * 1024;

/// How long a read of the scenario file may take before the reload gives up on it.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

fn error(path: &Path, message: String, hint: &str) -> ScenarioError {
    ScenarioError {
        origin: path.display().to_string(),
        line: 1,
        column: 1,
        message,
        hint: Some(hint.to_owned()),
    }
}

/// What a file that is not a regular file is, for the error.
fn kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Reads the scenario file at `path` on this thread: a regular file (symbolic links followed)
/// of at most [`MAX_SCENARIO_BYTES`], UTF-8.
pub fn read_file(path: &Path) -> Result<String, ScenarioError> {
    let cannot = |e: std::io::Error| {
        error(
            path,
            format!("cannot read the file: {e}"),
            "check the path and its permissions",
        )
    };
    // Non-blocking: opening a FIFO would otherwise wait for a writer.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(error(
            path,
            format!(
                "{} is {}, not a regular file: not read",
                path.display(),
                kind(metadata.file_type())
            ),
            "a scenario is a regular file; write the new one next to it and rename it over the \
             old one to replace it at once",
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len().min(MAX_SCENARIO_BYTES) as usize + 1);
    file.take(MAX_SCENARIO_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(error(
            path,
            format!(
                "the file is larger than {} MiB",
                MAX_SCENARIO_BYTES / (1024 * 1024)
            ),
            "a scenario file may be up to 32 MiB (about 300,000 rules); use globs or regexes to \
             match many addresses with one rule",
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        error(
            path,
            format!("the file is not UTF-8: {}", e.utf8_error()),
            "scenario files are UTF-8 TOML",
        )
    })
}

/// One read of the scenario file at a time: held by the blocking thread that reads, so that a
/// read stuck in the kernel keeps later ones from starting more stuck threads.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadGate(Arc<Mutex<()>>);

impl ReadGate {
    /// Reads `path` like [`read_file`], on a blocking thread, within `limit` (waiting for an
    /// earlier read included): never blocks the calling task's thread.
    pub(crate) async fn read(
        &self,
        path: PathBuf,
        limit: Duration,
    ) -> Result<String, ScenarioError> {
        self.read_with(path, limit, read_file).await
    }

    /// [`ReadGate::read`] with the blocking read given: the tests hold a read back on purpose,
    /// as a file system that stopped answering would.
    async fn read_with(
        &self,
        path: PathBuf,
        limit: Duration,
        read: fn(&Path) -> Result<String, ScenarioError>,
    ) -> Result<String, ScenarioError> {
        let late = |what: &str| {
            error(
                &path,
                format!("{what} did not finish within {} s", limit.as_secs()),
                "the file system does not answer; the previous scenario stays live",
            )
        };
        let deadline = tokio::time::Instant::now() + limit;
        let turn = tokio::time::timeout_at(deadline, self.0.clone().lock_owned())
            .await
            .map_err(|_| late("an earlier read of the file"))?;
        let target = path.clone();
        let reading = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            read(&target)
        });
        match tokio::time::timeout_at(deadline, reading).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(error(
                &path,
                format!("reading the file failed: {join}"),
                "the previous scenario stays live",
            )),
            Err(_) => Err(late("reading the file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "[server]\n").unwrap();
        assert_eq!(read_file(&file).unwrap(), "[server]\n");

        let error = read_file(dir.path()).unwrap_err();
        assert!(error.message.contains("a directory"), "{error}");

        let missing = read_file(&dir.path().join("missing.toml")).unwrap_err();
        assert!(
            missing.message.starts_with("cannot read the file"),
            "{missing}"
        );

        std::fs::write(&file, [0xFF, 0xFE]).unwrap();
        assert!(read_file(&file).unwrap_err().message.contains("not UTF-8"));
    }

    #[test]
    fn refuses_a_fifo_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("live.toml");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let error = read_file(&fifo).unwrap_err();
        assert!(
            error.message.contains("is a FIFO, not a regular file"),
            "{error}"
        );
    }

    #[test]
    fn refuses_a_file_over_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.toml");
        let handle = File::create(&file).unwrap();
        // Sparse: no disk space used.
        handle.set_len(MAX_SCENARIO_BYTES + 1).unwrap();
        let error = read_file(&file).unwrap_err();
        assert!(error.message.contains("larger than 32 MiB"), "{error}");
    }

    /// A read held back until the test lets it go, as a read stuck in the kernel would be.
    static HELD: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>> =
        std::sync::Mutex::new(None);

    fn held_read(path: &Path) -> Result<String, ScenarioError> {
        let release = HELD.lock().unwrap().take().expect("a held read was set up");
        let _ = release.recv();
        read_file(path)
    }

    #[tokio::test]
    async fn a_stuck_read_gives_up_at_its_limit_and_blocks_the_next_read_not_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "[server]\n").unwrap();
        let (release, held) = std::sync::mpsc::channel();
        *HELD.lock().unwrap() = Some(held);
        let gate = ReadGate::default();
        let limit = Duration::from_millis(200);

        // The stuck read: the caller gets the error at its limit, the thread stays stuck.
        let stuck = gate.read_with(file.clone(), limit, held_read).await;
        let error = stuck.unwrap_err();
        assert!(
            error
                .message
                .contains("reading the file did not finish within"),
            "{error}"
        );
        assert!(error
            .hint
            .as_deref()
            .unwrap()
            .contains("previous scenario stays live"));

        // While that thread is stuck, a second read starts no second thread: it waits for its
        // turn, and gives up at its own limit.
        let waiting = gate.read(file.clone(), limit).await.unwrap_err();
        assert!(
            waiting
                .message
                .contains("an earlier read of the file did not finish within"),
            "{waiting}"
        );

        // Once the file system answers, the stuck thread ends and reads work again.
        release.send(()).unwrap();
        let again = gate.read(file, Duration::from_secs(30)).await;
        assert_eq!(again.unwrap(), "[server]\n");
    }
}
