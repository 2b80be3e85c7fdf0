//! The operator lock: a file beside the clinic's database that says "maintenance".
//!
//! A file rather than memory because the operator's commands (`ward restore`, `ward
//! purge`) run in another process than `ward serve`; the server checks for it on every
//! use of a clinic (one `stat`). The file holds the holder's pid, so a lock left by a
//! process that died is recognised as stale and cleared instead of blocking forever.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Held while an operator works on one clinic; released (file removed) on drop.
#[derive(Debug)]
pub struct OperatorLock {
    path: PathBuf,
}

impl OperatorLock {
    /// Takes the lock at `path`, clearing a stale one. `Ok(None)` if a live process holds it.
    pub(crate) fn acquire(path: &Path, reason: &str) -> std::io::Result<Option<Self>> {
        for _ in 0..2 {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            match options.open(path) {
                Ok(mut f) => {
                    let reason: String = reason
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(200)
                        .collect();
                    writeln!(f, "{}\n{}", std::process::id(), reason)?;
                    f.sync_all()?;
                    return Ok(Some(Self {
                        path: path.to_owned(),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if is_held(path) {
                        return Ok(None);
                    }
                    // Stale: its process is gone. Remove and try once more.
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

impl Drop for OperatorLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::error!(path = %self.path.display(), error = %e, "could not release an operator lock");
        }
    }
}

/// Whether a lock file exists and its holder is alive.
pub(crate) fn is_held(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let pid = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok());
    match pid {
        // /proc/<pid> exists while the process does (Linux, where Ward runs).
        Some(pid) => {
            Path::new("/proc").join(pid.to_string()).exists() || !Path::new("/proc/self").exists()
        }
        // Unreadable content: treat as held rather than risk two operators at once.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_and_released_on_drop() {
        let (_dir, path) = crate::test_files::temp_file("x.lock");
        let lock = OperatorLock::acquire(&path, "restore").unwrap().unwrap();
        assert!(is_held(&path));
        assert!(OperatorLock::acquire(&path, "again").unwrap().is_none());
        drop(lock);
        assert!(!path.exists());
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_cleared() {
        let (_dir, path) = crate::test_files::temp_file("x.lock");
        // pid_max on Linux is at most 2^22, so this pid cannot be alive.
        std::fs::write(&path, "999999999\nrestore\n").unwrap();
        assert!(!is_held(&path));
        assert!(OperatorLock::acquire(&path, "mine").unwrap().is_some());
    }
}
