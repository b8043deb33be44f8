//! Accepted messages written to a Maildir, synced to disk before the 250 is sent, so that a
//! message the client saw accepted survives even a SIGKILL right after.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A Maildir (`tmp/`, `new/`, `cur/`).
#[derive(Debug)]
pub(crate) struct Maildir {
    root: PathBuf,
    counter: AtomicU64,
}

impl Maildir {
    /// Opens (and creates) the Maildir at `root`.
    pub(crate) fn open(root: &Path) -> std::io::Result<Self> {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Self {
            root: root.to_owned(),
            counter: AtomicU64::new(0),
        })
    }

    /// Writes one message: to `tmp/`, fsync, rename into `new/`, fsync the directory.
    /// Returns the file's path in `new/`. On any failure (a full disk, `new/` not writable) the
    /// client is told 451 and nothing of the message is left behind, in `tmp/` or in `new/`.
    pub(crate) fn write(&self, queue_id: &str, data: &[u8]) -> std::io::Result<PathBuf> {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let safe_id: String = queue_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let name = format!(
            "{seconds}.P{}Q{}_{safe_id}.failmail",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let temporary = self.root.join("tmp").join(&name);
        let final_path = self.root.join("new").join(&name);
        let written = File::create(&temporary).and_then(|mut file| {
            file.write_all(data)?;
            file.sync_all()
        });
        if let Err(error) = written.and_then(|()| fs::rename(&temporary, &final_path)) {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        if let Err(error) = File::open(self.root.join("new")).and_then(|dir| dir.sync_all()) {
            // Not known to be on disk: the client retries after its 451, so no copy stays.
            let _ = fs::remove_file(&final_path);
            return Err(error);
        }
        Ok(final_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lands_in_new_with_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open(dir.path()).unwrap();
        let path = maildir.write("ABC-1", b"Subject: x\r\n\r\nhi\r\n").unwrap();
        assert!(path.starts_with(dir.path().join("new")));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let second = maildir.write("ABC-1", b"x").unwrap();
        assert_ne!(path, second);
    }

    /// `new/` that cannot take the message (here not a directory at all, which fails the rename
    /// even for root, like a read-only `new/` for anyone else): an error, and nothing left in
    /// `tmp/`.
    #[test]
    fn a_failed_write_leaves_nothing_in_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open(dir.path()).unwrap();
        fs::remove_dir(dir.path().join("new")).unwrap();
        fs::write(dir.path().join("new"), b"").unwrap();
        assert!(maildir.write("ABC-2", b"Subject: x\r\n\r\nhi\r\n").is_err());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
