//! A look beneath the rows: every page of a database file and every frame of its WAL,
//! decrypted with a key, searched for some bytes. Rows show what a database holds now;
//! free pages, the free space inside pages and old WAL frames can still hold what was
//! deleted. Crypto-shredding is checked with this (docs/lifecycle.md): once a purged
//! clinic's wrapped key is gone from every copy's rows, it must be gone from their
//! bytes too.
//!
//! The layout is SQLCipher 4's as Ward configures it (the raw 32-byte key, 4096-byte
//! pages, 80 reserved bytes at the end of each page: a 16-byte IV and a 64-byte HMAC;
//! the first 16 bytes of the file are the salt), with AES-256-CBC over the rest of each
//! page. The HMAC is not checked: a page that does not decrypt to anything meaningful
//! simply holds nothing that matches.

use std::path::Path;

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::NoPadding};

use crate::keys::DataKey;

const PAGE: usize = 4096;
const RESERVE: usize = 80;
const IV: usize = 16;
const SALT: usize = 16;
/// A WAL file's header, and each frame's.
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

type Decryptor = cbc::Decryptor<aes::Aes256>;

/// Page `number` (1-based) of a file, decrypted with `key` (the salt of page 1 is
/// left out); `None` if it is not a whole page.
fn decrypt_page(number: u32, page: &[u8], key: &[u8; 32]) -> Option<Vec<u8>> {
    if page.len() != PAGE {
        return None;
    }
    let start = if number == 1 { SALT } else { 0 };
    let end = PAGE - RESERVE;
    let iv = &page[end..end + IV];
    let mut body = page[start..end].to_vec();
    Decryptor::new(key.into(), iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut body)
        .ok()?;
    Some(body)
}

/// Whether any page of the database file `path`, or any frame of `path-wal`, decrypted
/// with `key`, holds `needle`: the rows, the free space inside pages, free pages and
/// frames a checkpoint has copied already. A missing WAL is no frames.
pub fn pages_hold(path: &Path, key: &DataKey, needle: &[u8]) -> std::io::Result<bool> {
    let key = key.bytes();
    let holds = |body: &[u8]| !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle);
    let file = std::fs::read(path)?;
    for (i, page) in file.chunks(PAGE).enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if decrypt_page(number, page, key).is_some_and(|b| holds(&b)) {
            return Ok(true);
        }
    }
    let mut wal_path = path.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal = match std::fs::read(&wal_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut at = WAL_HEADER;
    while at + FRAME_HEADER + PAGE <= wal.len() {
        let number = u32::from_be_bytes([wal[at], wal[at + 1], wal[at + 2], wal[at + 3]]);
        let page = &wal[at + FRAME_HEADER..at + FRAME_HEADER + PAGE];
        if decrypt_page(number, page, key).is_some_and(|b| holds(&b)) {
            return Ok(true);
        }
        at += FRAME_HEADER + PAGE;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Durability, open_now};

    #[test]
    fn deleted_bytes_are_found_until_secure_delete_and_a_checkpoint_remove_them() {
        let (dir, path, key) = crate::test_files::temp_db("x.db");
        let needle = b"Zebediah-Quillfeather-0xC0FFEE";
        let text = String::from_utf8_lossy(needle).into_owned();
        {
            let db = open_now(&path, &key, true, Durability::Full).unwrap();
            db.conn
                .execute_batch_now("CREATE TABLE t (v TEXT); PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
            db.conn
                .execute_now("INSERT INTO t (v) VALUES (?1)", [text.clone()])
                .unwrap();
        }
        // Encrypted on disk, found once decrypted; a wrong key finds nothing.
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        assert!(pages_hold(&path, &key, needle).unwrap());
        assert!(!pages_hold(&path, &DataKey::random(), needle).unwrap());
        // Deleted without secure_delete: the row is gone, the bytes are not.
        {
            let db = open_now(&path, &key, false, Durability::Full).unwrap();
            db.conn
                .execute_batch_now(
                    "PRAGMA secure_delete = OFF; DELETE FROM t; PRAGMA wal_checkpoint(TRUNCATE);",
                )
                .unwrap();
            let n: i64 = db
                .conn
                .first_row_now("SELECT count(*) FROM t", ())
                .unwrap()
                .unwrap()
                .get(0)
                .unwrap();
            assert_eq!(n, 0);
        }
        assert!(
            pages_hold(&path, &key, needle).unwrap(),
            "a plain delete leaves the bytes in the page"
        );
        // The same with secure_delete, then checkpointed: the bytes are gone too.
        let path = dir.path().join("y.db");
        {
            let db = open_now(&path, &key, true, Durability::Full).unwrap();
            db.conn
                .execute_batch_now("PRAGMA secure_delete = ON; CREATE TABLE t (v TEXT);")
                .unwrap();
            db.conn
                .execute_now("INSERT INTO t (v) VALUES (?1)", [text])
                .unwrap();
            db.conn
                .execute_batch_now("PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
            assert!(pages_hold(&path, &key, needle).unwrap());
            db.conn
                .execute_batch_now("DELETE FROM t; PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
        }
        assert!(!pages_hold(&path, &key, needle).unwrap());
    }
}
