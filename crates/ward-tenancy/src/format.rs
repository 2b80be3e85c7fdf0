//! The on-disk format of a data directory, written once into `<data>/format`.
//!
//! Format 2 is SQLite + SQLCipher 4 with each database's raw 256-bit key. Files written
//! by an earlier Ward (format 1, a different cipher) do not open with this engine, and
//! no converter exists because no clinic data was ever kept in format 1; so a data
//! directory without the mark (but with a control plane) or with another mark is refused
//! with one sentence that says what to do, before any file is opened.

use std::io::Write as _;
use std::path::Path;

/// The format this build reads and writes.
pub const FORMAT: u32 = 2;

/// The marker file's name in the data directory.
pub const FILE: &str = "format";

fn marker_text() -> String {
    format!("{FORMAT} sqlcipher4-raw-key\n")
}

/// Checks that `data_dir` holds data in [`FORMAT`], or marks a new one (`fresh`: no
/// control plane exists yet). The error is a sentence for the operator.
pub fn check_or_mark(data_dir: &Path, fresh: bool) -> Result<(), String> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text.split_whitespace().next().unwrap_or("");
            if found == FORMAT.to_string() {
                Ok(())
            } else {
                Err(format!(
                    "the data directory {} holds data in format {found:?}, which this version of Ward does not read (it reads format {FORMAT}); run the Ward version that wrote it, or start with an empty data directory",
                    data_dir.display()
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && fresh => mark(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "the data directory {} was written by an earlier Ward whose database format this version cannot read, and there is no converter because no released data used it: move the directory aside (or delete it) and start with an empty one",
            data_dir.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn mark(path: &Path) -> Result<(), String> {
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(marker_text().as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_marked_and_an_unmarked_or_foreign_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        // An existing control plane without the mark: an old directory.
        let old = check_or_mark(dir.path(), false).unwrap_err();
        assert!(old.contains("earlier Ward"), "{old}");
        assert!(!dir.path().join(FILE).exists(), "refusing wrote nothing");
        check_or_mark(dir.path(), true).unwrap();
        check_or_mark(dir.path(), false).unwrap();
        std::fs::write(dir.path().join(FILE), "3 something-newer\n").unwrap();
        let newer = check_or_mark(dir.path(), false).unwrap_err();
        assert!(newer.contains("format \"3\""), "{newer}");
    }
}
