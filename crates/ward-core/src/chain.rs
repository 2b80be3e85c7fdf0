//! The hash chain shared by every append-only log Ward keeps (a clinic's audit log, the
//! platform's auth log): `hash = SHA-256(prev_hash || canonical encoding of the row)`.
//!
//! The canonical encoding is the row's fields, in the log's fixed column order, each as
//! one tag byte followed by its payload:
//!
//! | value   | tag    | payload                                        |
//! | ------- | ------ | ---------------------------------------------- |
//! | NULL    | `0x00` | none                                           |
//! | integer | `0x01` | 8 bytes, big-endian two's complement           |
//! | real    | `0x02` | 8 bytes, big-endian IEEE 754 bits              |
//! | text    | `0x03` | 4-byte big-endian length, then the UTF-8 bytes |
//! | blob    | `0x04` | 4-byte big-endian length, then the bytes       |
//!
//! Lengths make the encoding prefix-free, so no two different rows encode to the same
//! bytes; the type tag means a value cannot change type (text `'1'` for integer `1`, or
//! NULL for empty text) without changing the hash. `docs/audit.md` restates this for
//! anyone verifying a log without Ward.

use sha2::{Digest, Sha256};

/// The length of every hash in a chain.
pub const HASH_LEN: usize = 32;

/// The `prev_hash` of the first row of every chain: 32 zero bytes.
pub const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];

/// One column value of a chained row, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number (no chained log stores one, but a tampered row may).
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

impl<'a> From<Option<&'a str>> for Field<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Field::Null, Field::Text)
    }
}

impl<'a> From<&'a str> for Field<'a> {
    fn from(v: &'a str) -> Self {
        Field::Text(v)
    }
}

impl From<i64> for Field<'_> {
    fn from(v: i64) -> Self {
        Field::Int(v)
    }
}

/// Appends the canonical encoding of `fields` to `out`.
pub fn encode(fields: &[Field<'_>], out: &mut Vec<u8>) {
    for field in fields {
        match *field {
            Field::Null => out.push(0x00),
            Field::Int(i) => {
                out.push(0x01);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Field::Real(r) => {
                out.push(0x02);
                out.extend_from_slice(&r.to_bits().to_be_bytes());
            }
            Field::Text(s) => {
                out.push(0x03);
                push_len_prefixed(s.as_bytes(), out);
            }
            Field::Blob(b) => {
                out.push(0x04);
                push_len_prefixed(b, out);
            }
        }
    }
}

fn push_len_prefixed(bytes: &[u8], out: &mut Vec<u8>) {
    // A field longer than 4 GiB cannot be stored in SQLite (1 GB limit); saturating keeps
    // this total without a panic path.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The hash of a row: `SHA-256(prev_hash || encode(fields))`.
///
/// `prev_hash` is taken as stored (normally 32 bytes), so a verifier can recompute the
/// hash of a row whose `prev_hash` was tampered with to any length.
pub fn link(prev_hash: &[u8], fields: &[Field<'_>]) -> [u8; HASH_LEN] {
    let mut encoded = Vec::with_capacity(256);
    encode(fields, &mut encoded);
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(&encoded);
    h.finalize().into()
}

/// A chain's last row: its sequence number and stored hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// Sequence number of the row.
    pub seq: i64,
    /// Its hash as stored (32 bytes unless tampered with).
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

/// What is wrong with a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Sequence numbers are missing: rows were deleted.
    MissingRows,
    /// A sequence number is out of place (not counting up by one from 1).
    BadSequence,
    /// The row's `prev_hash` is not the previous row's hash: rows were removed,
    /// reordered or replaced.
    BrokenLink,
    /// The row's hash does not match its contents: it was changed after it was written.
    HashMismatch,
    /// The row could not be read or is not a chained row at all.
    Unreadable,
    /// The log ends before the sequence number anchored outside it: it was truncated.
    ShorterThanAnchor,
    /// The row at the anchored sequence number is not the anchored one: the log was
    /// rewritten.
    AnchorMismatch,
    /// The triggers that make the log append-only are gone.
    Unprotected,
}

/// One problem found in a chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The first sequence number affected, when the problem has one.
    pub seq: Option<i64>,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// A sentence for the operator.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "seq {seq}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// The result of recomputing a chain end to end.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChainReport {
    /// Rows read.
    pub rows: u64,
    /// The last row, if any.
    pub head: Option<Head>,
    /// The anchor the chain was compared with, if any.
    pub anchor: Option<Head>,
    /// The first problems found, in order (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// How many problems were found in all.
    pub problem_count: u64,
}

/// How many problems a report keeps; past the first few, more detail does not help.
pub const MAX_PROBLEMS: usize = 20;

impl ChainReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }

    /// The lowest sequence number any problem points at.
    pub fn first_bad_seq(&self) -> Option<i64> {
        self.problems.iter().filter_map(|p| p.seq).min()
    }

    /// Adds a problem (kept if there is room, always counted).
    pub fn push(&mut self, seq: Option<i64>, kind: ProblemKind, what: impl Into<String>) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                seq,
                kind,
                what: what.into(),
            });
        }
    }
}

/// Recomputes a chain row by row, in sequence order.
///
/// Each row is checked against the one before it: its sequence number follows on, its
/// `prev_hash` is the previous row's stored hash, and its stored hash is the hash of its
/// `prev_hash` and fields. Comparing with the previous *stored* hash (not a recomputed
/// one) means one changed row is reported once, not as a cascade down the chain.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    expected_prev: Vec<u8>,
    watch: Option<i64>,
    watched_hash: Option<Vec<u8>>,
    report: ChainReport,
}

impl Verifier {
    /// A verifier for a chain whose first row has sequence number `first_seq` (1 for a
    /// clinic's audit log) and `prev_hash` [`GENESIS`]. `anchor`, if given, is checked by
    /// [`Verifier::finish`].
    pub fn new(first_seq: i64, anchor: Option<Head>) -> Self {
        Self {
            expected_seq: first_seq,
            expected_prev: GENESIS.to_vec(),
            watch: anchor.as_ref().map(|a| a.seq),
            watched_hash: None,
            report: ChainReport {
                anchor,
                ..ChainReport::default()
            },
        }
    }

    /// Checks the next row. `fields` are the chained columns in the log's order
    /// (starting with `seq`).
    pub fn row(&mut self, seq: i64, prev_hash: &[u8], hash: &[u8], fields: &[Field<'_>]) {
        self.report.rows += 1;
        if seq > self.expected_seq {
            let what = if seq - self.expected_seq == 1 {
                format!("row {} is missing (deleted)", self.expected_seq)
            } else {
                format!(
                    "rows {} to {} are missing (deleted)",
                    self.expected_seq,
                    seq - 1
                )
            };
            self.report
                .push(Some(self.expected_seq), ProblemKind::MissingRows, what);
        } else if seq < self.expected_seq {
            self.report.push(
                Some(seq),
                ProblemKind::BadSequence,
                format!(
                    "sequence number {seq} is out of place (expected {})",
                    self.expected_seq
                ),
            );
        } else if prev_hash != self.expected_prev.as_slice() {
            self.report.push(
                Some(seq),
                ProblemKind::BrokenLink,
                "the row does not follow the previous row (prev_hash differs): rows were removed, reordered or replaced",
            );
        } else if link(prev_hash, fields) != hash {
            self.report.push(
                Some(seq),
                ProblemKind::HashMismatch,
                "the row's contents do not match its hash: it was changed after it was written",
            );
        }
        if Some(seq) == self.watch {
            self.watched_hash = Some(hash.to_vec());
        }
        self.expected_seq = seq.saturating_add(1);
        self.expected_prev = hash.to_vec();
        self.report.head = Some(Head {
            seq,
            hash: hash.to_vec(),
        });
    }

    /// Reports a row that could not be decoded; the chain continues after it.
    pub fn unreadable(&mut self, seq: Option<i64>, why: &str) {
        self.report.rows += 1;
        self.report.push(
            seq,
            ProblemKind::Unreadable,
            format!("the row cannot be read: {why}"),
        );
        if let Some(seq) = seq {
            self.expected_seq = seq.saturating_add(1);
        }
    }

    /// Adds a problem found outside the rows (missing triggers, …).
    pub fn problem(&mut self, seq: Option<i64>, kind: ProblemKind, what: impl Into<String>) {
        self.report.push(seq, kind, what);
    }

    /// Compares the head with the anchor and returns the report.
    pub fn finish(mut self) -> ChainReport {
        if let Some(anchor) = self.report.anchor.clone() {
            let head_seq = self.report.head.as_ref().map_or(0, |h| h.seq);
            if head_seq < anchor.seq {
                self.report.push(
                    Some(head_seq + 1),
                    ProblemKind::ShorterThanAnchor,
                    format!(
                        "the log ends at seq {head_seq} but seq {} was anchored: rows {} to {} are gone (truncated)",
                        anchor.seq,
                        head_seq + 1,
                        anchor.seq
                    ),
                );
            } else if self.watched_hash.as_deref() != Some(anchor.hash.as_slice()) {
                self.report.push(
                    Some(anchor.seq),
                    ProblemKind::AnchorMismatch,
                    "the row differs from the one anchored in the control plane: the log was rewritten",
                );
            }
        }
        self.report
    }
}

/// Hashes as lowercase hex in JSON.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_is_exactly_as_documented() {
        let mut out = Vec::new();
        encode(
            &[
                Field::Null,
                Field::Int(258),
                Field::Text("hé"),
                Field::Blob(&[9]),
            ],
            &mut out,
        );
        assert_eq!(
            out,
            [
                0x00, //
                0x01, 0, 0, 0, 0, 0, 0, 1, 2, //
                0x03, 0, 0, 0, 3, b'h', 0xc3, 0xa9, //
                0x04, 0, 0, 0, 1, 9,
            ]
        );
    }

    #[test]
    fn values_cannot_move_between_fields_or_change_type_without_changing_the_hash() {
        let base = link(&GENESIS, &[Field::Text("ab"), Field::Text("c")]);
        for other in [
            link(&GENESIS, &[Field::Text("a"), Field::Text("bc")]),
            link(&GENESIS, &[Field::Text("abc"), Field::Text("")]),
            link(&GENESIS, &[Field::Text("ab"), Field::Blob(b"c")]),
            link(
                &GENESIS,
                &[Field::Text("ab"), Field::Text("c"), Field::Null],
            ),
            link(&[1; 32], &[Field::Text("ab"), Field::Text("c")]),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(
            link(&GENESIS, &[Field::Null]),
            link(&GENESIS, &[Field::Text("")])
        );
    }

    fn chain(n: i64) -> Vec<(i64, Vec<u8>, Vec<u8>, String)> {
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|seq| {
                let text = format!("row {seq}");
                let hash = link(&prev, &[Field::Int(seq), Field::Text(&text)]).to_vec();
                let row = (seq, prev.clone(), hash.clone(), text);
                prev = hash;
                row
            })
            .collect()
    }

    fn verify(rows: &[(i64, Vec<u8>, Vec<u8>, String)], anchor: Option<Head>) -> ChainReport {
        let mut v = Verifier::new(1, anchor);
        for (seq, prev, hash, text) in rows {
            v.row(*seq, prev, hash, &[Field::Int(*seq), Field::Text(text)]);
        }
        v.finish()
    }

    #[test]
    fn an_intact_chain_matching_its_anchor_is_clean() {
        let rows = chain(5);
        let anchor = Head {
            seq: 5,
            hash: rows[4].2.clone(),
        };
        let report = verify(&rows, Some(anchor));
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.rows, 5);
        assert_eq!(report.head.map(|h| h.seq), Some(5));
    }

    #[test]
    fn each_kind_of_damage_names_the_first_bad_row() {
        let rows = chain(6);
        let anchor = Some(Head {
            seq: 6,
            hash: rows[5].2.clone(),
        });

        let mut changed = rows.clone();
        changed[2].3 = "row 3, edited".into();
        let r = verify(&changed, anchor.clone());
        assert_eq!(
            (r.first_bad_seq(), r.problems[0].kind),
            (Some(3), ProblemKind::HashMismatch)
        );
        assert_eq!(r.problem_count, 1, "one change, one problem: {r:?}");

        let mut deleted = rows.clone();
        deleted.remove(1);
        let r = verify(&deleted, anchor.clone());
        assert_eq!(
            (r.first_bad_seq(), r.problems[0].kind),
            (Some(2), ProblemKind::MissingRows)
        );

        let r = verify(&rows[..4], anchor.clone());
        assert_eq!(
            (r.first_bad_seq(), r.problems[0].kind),
            (Some(5), ProblemKind::ShorterThanAnchor)
        );

        let mut relinked = chain(6);
        relinked[5].3 = "rewritten".into();
        relinked[5].2 = link(&relinked[5].1, &[Field::Int(6), Field::Text("rewritten")]).to_vec();
        let r = verify(&relinked, anchor);
        assert_eq!(
            (r.first_bad_seq(), r.problems[0].kind),
            (Some(6), ProblemKind::AnchorMismatch)
        );
    }

    #[test]
    fn the_hash_is_sha256_of_prev_then_encoding() {
        // SHA-256 of 32 zero bytes followed by the encoding of the integer 1, computed
        // independently (python3 hashlib) so a change of algorithm cannot go unnoticed.
        let h = link(&GENESIS, &[Field::Int(1)]);
        assert_eq!(
            hex::encode(h),
            "f123469ba12e7625191d964fcf0a40c3be85ccbcd87805253f4a95229c2a6462"
        );
    }
}
