//! The objects of a replica, and their names.
//!
//! ```text
//! <db>/<generation>/snapshot.db        the encrypted file as it was when the generation began
//! <db>/<generation>/meta.json          when, how large, its SHA-256
//! <db>/<generation>/wal/<seq>.seg      WAL bytes in order, with their commits' times
//! <db>/<generation>/wal/<seq>-<last>.seg segments seq..=last joined into one (compaction)
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
    /// For a compacted segment, the last place it stands for (it replaces segments
    /// `seq..=through`); absent for a segment as shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<u64>,
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

/// The object name of the segment that joins segments `first..=last` of `generation`.
pub fn compacted_name(db: &str, generation: &str, first: u64, last: u64) -> String {
    format!("{db}/{generation}/wal/{first:012}-{last:012}.seg")
}

/// The places a segment's object name stands for: `(seq, seq)` for a segment as shipped,
/// `(first, last)` for a compacted one; `None` if the name is neither.
pub fn segment_span(name: &str) -> Option<(u64, u64)> {
    let stem = name.rsplit('/').next()?.strip_suffix(".seg")?;
    let number = |n: &str| (n.len() == 12).then(|| n.parse::<u64>().ok()).flatten();
    match stem.split_once('-') {
        None => number(stem).map(|n| (n, n)),
        Some((a, b)) => {
            let (a, b) = (number(a)?, number(b)?);
            (a < b).then_some((a, b))
        }
    }
}

/// The segments a restore reads, in order, from the object names under a generation's
/// `wal/` folder.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chain<'a> {
    /// From place 0 on, at each place the object that stands for the most (a compacted
    /// one over the segments it joined, which compaction deletes later), up to the first
    /// place nothing stands for.
    pub used: Vec<&'a str>,
    /// Objects a compacted one stands in for.
    pub superseded: Vec<&'a str>,
    /// The first place nothing stands for although some object lies beyond it: a
    /// missing segment, past which nothing can be replayed.
    pub missing: Option<u64>,
}

/// The [`Chain`] of the segment names `listed`.
pub fn chain<'a>(listed: &[&'a str]) -> Chain<'a> {
    let mut spans: Vec<(u64, u64, &str)> = listed
        .iter()
        .filter_map(|n| segment_span(n).map(|(a, b)| (a, b, *n)))
        .collect();
    // At each first place, the widest first.
    spans.sort_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
    let mut out = Chain::default();
    let mut next = 0u64;
    for (first, last, name) in spans {
        if first == next {
            out.used.push(name);
            next = last + 1;
        } else if first < next {
            out.superseded.push(name);
        } else {
            out.missing = Some(next);
            break;
        }
    }
    out
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
            through: None,
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

    #[test]
    fn a_restore_reads_compacted_segments_in_place_of_what_they_join_and_stops_at_a_gap() {
        let n = |first: u64, last: u64| {
            if first == last {
                segment_name("d", "g", first)
            } else {
                compacted_name("d", "g", first, last)
            }
        };
        assert_eq!(segment_span(&n(7, 7)), Some((7, 7)));
        assert_eq!(segment_span(&n(2, 9)), Some((2, 9)));
        assert_eq!(segment_span("d/g/wal/000000000009-000000000002.seg"), None);
        assert_eq!(segment_span("d/g/wal/7.seg"), None);
        // 0..=3 joined (its parts not yet deleted), then 4 and 5 as shipped.
        let names: Vec<String> = [(0, 0), (0, 3), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
            .iter()
            .map(|&(a, b)| n(a, b))
            .collect();
        let listed: Vec<&str> = names.iter().map(String::as_str).collect();
        let got = chain(&listed);
        let want = |v: &[(u64, u64)]| v.iter().map(|&(a, b)| n(a, b)).collect::<Vec<_>>();
        assert_eq!(got.used, want(&[(0, 3), (4, 4), (5, 5)]));
        assert_eq!(got.superseded, want(&[(0, 0), (1, 1), (2, 2), (3, 3)]));
        assert_eq!(got.missing, None);
        // Without segment 4, nothing past place 4 is read.
        let gap: Vec<&str> = listed.iter().copied().filter(|s| *s != n(4, 4)).collect();
        let got = chain(&gap);
        assert_eq!(got.used, want(&[(0, 3)]));
        assert_eq!(got.missing, Some(4));
        assert_eq!(chain(&[]), Chain::default());
    }
}
