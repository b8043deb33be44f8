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
    /// Returns the file's path in `new/`.
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
        let mut file = File::create(&temporary)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, &final_path)?;
        File::open(self.root.join("new"))?.sync_all()?;
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
}
