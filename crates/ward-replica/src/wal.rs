//! SQLite's write-ahead log, read as bytes.
//!
//! A WAL file is a 32-byte header and then frames: a 24-byte frame header (page number,
//! the database size in pages for the last frame of a transaction, the header's two
//! salts, a running checksum) and one page. Under SQLCipher the pages are ciphertext and
//! the headers are not, so the log can be read, checked and shipped without the key.
//! A frame belongs to the log only while its salts match the header's and the running
//! checksum, carried from the header through every earlier frame, matches: that is how
//! SQLite itself tells live frames from stale ones after the log was restarted.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes in the WAL header.
pub const HEADER: usize = 32;
/// Bytes in a frame header.
pub const FRAME_HEADER: usize = 24;

const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn le32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// What a WAL header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// Page size in bytes.
    pub page_size: u32,
    /// The two salts every live frame repeats.
    pub salt: [u32; 2],
    /// The checksum of the header, where the frames' running checksum starts.
    pub checksum: [u32; 2],
    /// Whether checksum words are big-endian.
    pub big_endian: bool,
}

/// Why bytes are not a usable WAL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalError {
    /// The header is not a WAL header or its checksum is wrong.
    #[error("the log's header is not valid")]
    BadHeader,
    /// A frame does not continue the log (wrong salt or checksum).
    #[error("the log breaks at byte {0}")]
    Broken(u64),
}

/// Reads a header from the first 32 bytes of `bytes`.
pub fn header(bytes: &[u8]) -> Result<Header, WalError> {
    if bytes.len() < HEADER {
        return Err(WalError::BadHeader);
    }
    let word = |i: usize| be32(bytes, i);
    let big_endian = match word(0) {
        MAGIC_LE => false,
        MAGIC_BE => true,
        _ => return Err(WalError::BadHeader),
    };
    let page_size = word(8);
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(WalError::BadHeader);
    }
    let checksum = [word(24), word(28)];
    if checksum_of([0, 0], &bytes[..24], big_endian) != checksum {
        return Err(WalError::BadHeader);
    }
    Ok(Header {
        page_size,
        salt: [word(16), word(20)],
        checksum,
        big_endian,
    })
}

/// SQLite's WAL checksum of `data` (a multiple of 8 bytes), continuing from `start`.
pub fn checksum_of(start: [u32; 2], data: &[u8], big_endian: bool) -> [u32; 2] {
    let (mut s1, mut s2) = (start[0], start[1]);
    for pair in data.chunks_exact(8) {
        let (a, b) = if big_endian {
            (be32(pair, 0), be32(pair, 4))
        } else {
            (le32(pair, 0), le32(pair, 4))
        };
        s1 = s1.wrapping_add(a).wrapping_add(s2);
        s2 = s2.wrapping_add(b).wrapping_add(s1);
    }
    [s1, s2]
}

/// One frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The page this frame holds.
    pub page: u32,
    /// For the last frame of a transaction, the database's size in pages; else 0.
    pub commit: u32,
    /// Offset of the frame's header in the log.
    pub offset: u64,
}

/// Where a scan of a log stands: the offset after the last frame checked, and the running
/// checksum there. A scan can be resumed from a cursor without reading earlier frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// Offset just past the last checked frame (32 for an empty log).
    pub offset: u64,
    /// Running checksum at `offset`.
    pub checksum: [u32; 2],
}

impl Cursor {
    /// The start of a log with this header.
    pub fn start(header: &Header) -> Self {
        Self {
            offset: HEADER as u64,
            checksum: header.checksum,
        }
    }
}

/// The committed frames found after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every frame up to and including the last commit frame.
    pub frames: Vec<Frame>,
    /// The cursor after the last commit frame (unchanged when there is none).
    pub end: Cursor,
}

impl Scan {
    /// The commit frames, each ending a transaction.
    pub fn commits(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter().filter(|f| f.commit != 0)
    }
}

/// Checks the frames of `log` (the whole log, header included, or a prefix of it) that
/// follow `from`, and returns those up to the last complete transaction. Frames after it
/// (a transaction being written, or stale frames of an earlier log) are not returned.
pub fn scan(log: &[u8], header: &Header, from: Cursor) -> Scan {
    scan_at(log, 0, header, from)
}

/// [`scan`] over `tail`, the bytes of the log from offset `base` on (`base <=
/// from.offset`): a pass need not read what it has already checked.
pub fn scan_at(tail: &[u8], base: u64, header: &Header, from: Cursor) -> Scan {
    let frame_len = FRAME_HEADER + header.page_size as usize;
    let log = tail;
    let base = base as usize;
    let mut at = from.offset as usize - base;
    let mut sum = from.checksum;
    let mut frames = Vec::new();
    let mut end = from;
    let mut committed = 0;
    while at + frame_len <= log.len() {
        let f = &log[at..at + frame_len];
        let word = |i: usize| be32(f, i);
        if [word(8), word(12)] != header.salt {
            break;
        }
        let s = checksum_of(sum, &f[..8], header.big_endian);
        let s = checksum_of(s, &f[FRAME_HEADER..], header.big_endian);
        if s != [word(16), word(20)] {
            break;
        }
        sum = s;
        let page = word(0);
        if page == 0 {
            break;
        }
        let frame = Frame {
            page,
            commit: word(4),
            offset: (base + at) as u64,
        };
        frames.push(frame);
        at += frame_len;
        if frame.commit != 0 {
            committed = frames.len();
            end = Cursor {
                offset: (base + at) as u64,
                checksum: sum,
            };
        }
    }
    frames.truncate(committed);
    Scan { frames, end }
}

/// Reads the WAL at `path` from `offset` to its end (empty when it is missing or
/// shorter).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len <= offset {
        return Ok(Vec::new());
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity((len - offset) as usize);
    file.read_to_end(&mut out)?;
    Ok(out)
}

/// The header of the WAL at `path` and its 32 bytes, if it has a valid one.
pub fn read_header(path: &Path) -> std::io::Result<Option<(Header, Vec<u8>)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = vec![0u8; HEADER];
    match file.read_exact(&mut bytes) {
        Ok(()) => Ok(header(&bytes).ok().map(|h| (h, bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the frames of `log` (a whole log, header included) into the database file
/// `db`, in order, up to and including the commit frame at offset `last_commit`, as a
/// checkpoint would: each page at its place, and the file cut to the transaction's size
/// at every commit. Returns the number of frames written.
pub fn apply(
    db: &mut File,
    log: &[u8],
    frames: &[Frame],
    last_commit: u64,
) -> std::io::Result<usize> {
    let h = header(log).map_err(std::io::Error::other)?;
    let page_size = u64::from(h.page_size);
    let mut written = 0;
    for f in frames {
        if f.offset > last_commit {
            break;
        }
        let start = f.offset as usize + FRAME_HEADER;
        let page = &log[start..start + h.page_size as usize];
        db.seek(SeekFrom::Start(u64::from(f.page - 1) * page_size))?;
        db.write_all(page)?;
        written += 1;
        if f.commit != 0 {
            db.set_len(u64::from(f.commit) * page_size)?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `pages` frames of `size` bytes, transactions of `per_tx` frames.
    pub(crate) fn fake_log(size: u32, frames: u32, per_tx: u32, salt: [u32; 2]) -> Vec<u8> {
        let mut log = Vec::new();
        log.extend_from_slice(&MAGIC_LE.to_be_bytes());
        log.extend_from_slice(&3_007_000u32.to_be_bytes());
        log.extend_from_slice(&size.to_be_bytes());
        log.extend_from_slice(&0u32.to_be_bytes());
        log.extend_from_slice(&salt[0].to_be_bytes());
        log.extend_from_slice(&salt[1].to_be_bytes());
        let mut sum = checksum_of([0, 0], &log, false);
        log.extend_from_slice(&sum[0].to_be_bytes());
        log.extend_from_slice(&sum[1].to_be_bytes());
        for i in 1..=frames {
            let mut f = Vec::new();
            f.extend_from_slice(&i.to_be_bytes());
            let commit = if i % per_tx == 0 { i } else { 0 };
            f.extend_from_slice(&commit.to_be_bytes());
            f.extend_from_slice(&salt[0].to_be_bytes());
            f.extend_from_slice(&salt[1].to_be_bytes());
            let page = vec![i as u8; size as usize];
            sum = checksum_of(sum, &f[..8], false);
            sum = checksum_of(sum, &page, false);
            f.extend_from_slice(&sum[0].to_be_bytes());
            f.extend_from_slice(&sum[1].to_be_bytes());
            f.extend_from_slice(&page);
            log.extend_from_slice(&f);
        }
        log
    }

    #[test]
    fn a_scan_stops_at_the_last_commit_and_resumes_from_its_cursor() {
        let log = fake_log(512, 7, 3, [1, 2]);
        let h = header(&log).unwrap();
        let s = scan(&log, &h, Cursor::start(&h));
        assert_eq!(
            s.frames.len(),
            6,
            "the 7th frame's transaction is unfinished"
        );
        assert_eq!(s.commits().count(), 2);
        assert_eq!(s.end.offset, (HEADER + 6 * (FRAME_HEADER + 512)) as u64);
        // Resuming finds nothing new; a prefix cut inside a frame ends at the last commit.
        assert!(scan(&log, &h, s.end).frames.is_empty());
        let cut = &log[..HEADER + 4 * (FRAME_HEADER + 512) + 100];
        assert_eq!(scan(cut, &h, Cursor::start(&h)).frames.len(), 3);
        // Scanning only the tail past a cursor finds the same frames at the same offsets.
        let first = scan(
            &log[..HEADER + 3 * (FRAME_HEADER + 512)],
            &h,
            Cursor::start(&h),
        );
        let rest = scan_at(
            &log[first.end.offset as usize..],
            first.end.offset,
            &h,
            first.end,
        );
        assert_eq!(rest.frames, s.frames[3..]);
        assert_eq!(rest.end, s.end);
    }

    #[test]
    fn a_flipped_byte_or_another_salt_ends_the_log_there() {
        let mut log = fake_log(512, 6, 2, [5, 6]);
        let h = header(&log).unwrap();
        let second_tx = HEADER + 2 * (FRAME_HEADER + 512);
        log[second_tx + FRAME_HEADER + 7] ^= 1;
        assert_eq!(scan(&log, &h, Cursor::start(&h)).frames.len(), 2);
        let other = fake_log(512, 6, 2, [5, 7]);
        let mut mixed = fake_log(512, 2, 2, [5, 6]);
        mixed.extend_from_slice(&other[mixed.len()..]);
        assert_eq!(scan(&mixed, &h, Cursor::start(&h)).frames.len(), 2);
        let mut bad = log.clone();
        bad[9] ^= 1;
        assert_eq!(header(&bad), Err(WalError::BadHeader));
    }

    #[test]
    fn apply_writes_pages_in_place_and_stops_at_the_chosen_commit() {
        let log = fake_log(512, 6, 2, [1, 1]);
        let h = header(&log).unwrap();
        let s = scan(&log, &h, Cursor::start(&h));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut db = File::create(&path).unwrap();
        let second_commit = s.commits().nth(1).unwrap().offset;
        assert_eq!(apply(&mut db, &log, &s.frames, second_commit).unwrap(), 4);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4 * 512);
        assert!(bytes[3 * 512..].iter().all(|b| *b == 4));
    }
}
