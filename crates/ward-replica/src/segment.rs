//! The objects of a replica, and their names.
//!
//! ```text
//! <db>/<generation>/snapshot.db        the encrypted file as it was when the generation began
//! <db>/<generation>/meta.json          when, how large, its SHA-256
//! <db>/<generation>/wal/<seq>.seg      WAL bytes in order, with their commits' times
//! ```
//!
//! `<db>` is `control` or a clinic's id; a generation's name starts with its time, so
//! names sort in time order. A segment is `WARDSEG1`, a 4-byte header length, a JSON
//! header, then the WAL bytes it carries (ciphertext pages, plaintext frame headers).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ReplicaError;

const MAGIC: &[u8; 8] = b"WARDSEG1";

/// A generation's description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The database (`control` or a clinic id).
    pub db: String,
    /// The generation's name.
    pub generation: String,
    /// When the snapshot was taken (milliseconds since the epoch, UTC).
    pub created_at_ms: i64,
    /// The snapshot's size in bytes.
    pub size: u64,
    /// The snapshot's SHA-256, hex.
    pub sha256: String,
}

/// One commit a segment carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Commit {
    /// Offset in the WAL just past the commit's last frame.
    pub end: u64,
    /// When it was committed (milliseconds since the epoch, UTC).
    pub at_ms: i64,
}

/// What a segment says of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// The database.
    pub db: String,
    /// Its generation.
    pub generation: String,
    /// Its place in the generation, from 0.
    pub seq: u64,
    /// The salts of the WAL the bytes come from.
    pub salt: [u32; 2],
    /// Offset in that WAL of the first byte carried (0: the WAL begins here).
    pub from: u64,
    /// Offset just past the last byte carried.
    pub to: u64,
    /// The commits that end inside the bytes, in order.
    pub commits: Vec<Commit>,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

/// Encodes a segment.
pub fn encode(header: &SegmentHeader, body: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).unwrap_or_default();
    let mut out = Vec::with_capacity(12 + json.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(body);
    out
}

/// The SHA-256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Decodes and checks a segment read from `name`.
pub fn decode(name: &str, bytes: &[u8]) -> Result<(SegmentHeader, Vec<u8>), ReplicaError> {
    let damaged = |why: &str| ReplicaError::Damaged(format!("{name}: {why}"));
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(damaged("not a segment"));
    }
    let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let json = bytes
        .get(12..12 + len)
        .ok_or_else(|| damaged("cut short"))?;
    let header: SegmentHeader =
        serde_json::from_slice(json).map_err(|_| damaged("unreadable header"))?;
    let body = &bytes[12 + len..];
    if digest(body) != header.sha256 || header.to - header.from != body.len() as u64 {
        return Err(damaged("checksum does not match its contents"));
    }
    Ok((header, body.to_vec()))
}

/// The object name of segment `seq` of `generation` of `db`.
pub fn segment_name(db: &str, generation: &str, seq: u64) -> String {
    format!("{db}/{generation}/wal/{seq:012}.seg")
}

/// A new generation's name: its time, then random characters.
pub fn new_generation(now_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    format!(
        "{}-{:08x}",
        t.format("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u32>()
    )
}

/// When the generation named `name` began, read from its name (milliseconds since the
/// epoch), or `None` if the name is not one [`new_generation`] makes.
pub fn generation_time(name: &str) -> Option<i64> {
    let (stamp, rest) = name.split_once('-')?;
    if rest.len() != 8 || !rest.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_round_trips_and_a_changed_byte_is_named_damage() {
        let body = b"0123456789abcdef".to_vec();
        let h = SegmentHeader {
            db: "control".into(),
            generation: "g".into(),
            seq: 3,
            salt: [1, 2],
            from: 32,
            to: 48,
            commits: vec![Commit { end: 48, at_ms: 7 }],
            sha256: digest(&body),
        };
        let mut bytes = encode(&h, &body);
        let (back, got) = decode("x", &bytes).unwrap();
        assert_eq!((back.seq, got), (3, body));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(decode("x", &bytes), Err(ReplicaError::Damaged(_))));
        assert!(new_generation(0).starts_with("19700101T000000.000Z-"));
        let at = 1_780_000_000_123;
        assert_eq!(generation_time(&new_generation(at)), Some(at));
        assert_eq!(generation_time("lease.json"), None);
        assert_eq!(generation_time("20260101T000000.000Z-notahex!"), None);
    }
}
