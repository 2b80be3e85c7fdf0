//! Pins: which processes have a database file open, across processes.
//!
//! Every connection to a clinic file (the cached handle, a backup's side connection) is
//! opened under a *shared* `flock` on a small companion file `<uuid>.pin`; a restore
//! swaps the file only under an *exclusive* one. So a restore knows that no process has
//! the old file open when it renames the new one into place (a connection left on the
//! old file would keep serving it, and on close would delete the new file's WAL by name).
//!
//! The pin is a separate file, never the database itself: closing any descriptor of a
//! file drops every POSIX lock the process holds on it, which would silently release
//! SQLite's own locks. `flock` locks die with their process, so a `kill -9` never leaves
//! a clinic pinned.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// A held pin; released on drop.
#[derive(Debug)]
pub struct Pin {
    _file: File,
}

fn open_pin_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

impl Pin {
    /// A shared pin, unless someone holds it exclusively (`Ok(None)`).
    pub fn shared(path: &Path) -> std::io::Result<Option<Self>> {
        let file = open_pin_file(path)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// The exclusive pin, waiting up to `wait` for other holders to let go
    /// (`Ok(None)` if they did not).
    pub fn exclusive(path: &Path, wait: Duration) -> std::io::Result<Option<Self>> {
        let file = open_pin_file(path)?;
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(Self { _file: file })),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    // Holders close when they notice the operator lock (within about a
                    // second in `ward serve`); polling is simpler than a wake-up channel
                    // between processes.
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_pins_coexist_and_exclude_the_exclusive_one() {
        let (_dir, path) = crate::test_files::temp_file("x.pin");
        let a = Pin::shared(&path).unwrap().unwrap();
        let b = Pin::shared(&path).unwrap().unwrap();
        assert!(Pin::exclusive(&path, Duration::ZERO).unwrap().is_none());
        drop((a, b));
        let x = Pin::exclusive(&path, Duration::ZERO).unwrap().unwrap();
        assert!(Pin::shared(&path).unwrap().is_none());
        drop(x);
        assert!(Pin::shared(&path).unwrap().is_some());
    }
}
