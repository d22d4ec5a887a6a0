//! One writer per model directory: an advisory lock held by every run that writes into it.
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on Windows, through
//! [`std::fs::File::try_lock`]) on the file `.seqlab-lock` of the directory. The system releases it when the
//! process ends, however it ends (a SIGKILL included), so a stale lock cannot outlive its run; the file's
//! contents (the holder's process id) only serve the message a second writer gets. Readers (`eval`,
//! `generate`, `predict`, `run`, a server) never take it: every file a run writes is renamed into place
//! whole, so they always read a complete model.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file's name in a model directory.
pub const LOCK_FILE: &str = ".seqlab-lock";

/// The lock of a model directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    dir: PathBuf,
    /// Whether taking the lock created the directory: then it is removed again on drop unless
    /// [`DirLock::keep`] was called, so that a run refused before writing anything leaves nothing behind.
    created: bool,
    kept: bool,
}

impl DirLock {
    /// Takes the lock of `dir` (created if missing), or fails at once with [`Error::InUse`] naming the
    /// directory and, where its lock file says, the process that holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(Error::write(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::write(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::InUse {
                    dir: dir.to_path_buf(),
                    pid: holder.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(error)) => return Err(Error::Write { path, error }),
        }
        // Who holds it, for the message of a second writer (best effort: the lock is what counts).
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(DirLock {
            file,
            dir: dir.to_path_buf(),
            created,
            kept: false,
        })
    }

    /// Keeps the directory when the lock is released, even if taking the lock created it: the run has
    /// written into it.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
        if self.created && !self.kept {
            // Only the lock file is in it: the run was refused before writing anything.
            let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}
