//! Compaction: a generation's many small segments joined into a few larger ones.
//!
//! A busy clinic ships a segment every second or so, which leaves thousands of small
//! objects in a generation: each costs a request to store, list and read back, and a
//! restore reads them one after another. Compaction joins runs of consecutive segments
//! (bytes of one WAL, in order) into one object of at most [`JOINED_MAX`] bytes that
//! carries every commit and its time, so every second stays restorable. It never drops
//! a page version: the pages written again inside a generation are what make each
//! second between its snapshot and the next restorable; new generations bound them.
//!
//! The joined object is written beside the segments it replaces (create-only); a restore
//! that finds both reads the joined one. The replaced segments are deleted by the next
//! pass, so a restore that listed them a moment before the join still finds them.

use crate::ReplicaError;
use crate::segment::{self, Commit, SegmentHeader};
use crate::target::Target;

/// The largest object compaction writes.
pub const JOINED_MAX: u64 = 16 << 20;
/// The fewest segments compaction joins at once: fewer are left until more arrive.
pub const JOIN_AT_LEAST: usize = 8;

/// What one compaction pass did to a generation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Joined objects written.
    pub written: usize,
    /// Segments (or earlier joined objects) those stand in for.
    pub joined: usize,
    /// Objects deleted because an earlier pass's joined object stands in for them.
    pub deleted: usize,
}

impl std::ops::AddAssign for Compacted {
    fn add_assign(&mut self, o: Self) {
        self.written += o.written;
        self.joined += o.joined;
        self.deleted += o.deleted;
    }
}

/// Compacts generation `generation` of `db`: deletes what earlier passes' joined
/// objects stand in for, then joins each run of at least [`JOIN_AT_LEAST`] consecutive
/// objects of one WAL that fit in [`JOINED_MAX`] bytes.
pub async fn compact_generation(
    target: &Target,
    db: &str,
    generation: &str,
) -> Result<Compacted, ReplicaError> {
    let mut done = Compacted::default();
    let listed = target.list(&format!("{db}/{generation}/wal")).await?;
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    let chain = segment::chain(&names);
    for name in &chain.superseded {
        target.delete(name).await?;
        done.deleted += 1;
    }
    let size = |name: &str| {
        listed
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, s)| *s)
    };
    // Runs by size first; each is then read and split where its WAL changes.
    let mut run: Vec<&str> = Vec::new();
    let mut run_bytes = 0;
    for name in chain.used.iter().copied() {
        let n = size(name);
        if run_bytes + n > JOINED_MAX && !run.is_empty() {
            done += join_run(target, db, generation, &run).await?;
            run.clear();
            run_bytes = 0;
        }
        run.push(name);
        run_bytes += n;
    }
    done += join_run(target, db, generation, &run).await?;
    Ok(done)
}

/// Reads the objects `run` (consecutive in the chain) and writes each stretch of at
/// least [`JOIN_AT_LEAST`] of them that continue one WAL as one joined object.
async fn join_run(
    target: &Target,
    db: &str,
    generation: &str,
    run: &[&str],
) -> Result<Compacted, ReplicaError> {
    let mut done = Compacted::default();
    if run.len() < JOIN_AT_LEAST {
        return Ok(done);
    }
    let mut stretch: Vec<(SegmentHeader, Vec<u8>)> = Vec::new();
    for name in run {
        let bytes = target
            .get(name)
            .await?
            .ok_or_else(|| ReplicaError::Damaged(format!("{name} vanished")))?;
        let (h, body) = segment::decode(name, &bytes)?;
        let continues = stretch
            .last()
            .is_some_and(|(p, _)| h.from != 0 && p.salt == h.salt && p.to == h.from);
        if !continues {
            done += write_joined(target, db, generation, &stretch).await?;
            stretch.clear();
        }
        stretch.push((h, body));
    }
    done += write_joined(target, db, generation, &stretch).await?;
    Ok(done)
}

/// Writes `parts` (consecutive, one WAL) as one object, if there are enough of them.
async fn write_joined(
    target: &Target,
    db: &str,
    generation: &str,
    parts: &[(SegmentHeader, Vec<u8>)],
) -> Result<Compacted, ReplicaError> {
    let (Some((first, _)), Some((last, _))) = (parts.first(), parts.last()) else {
        return Ok(Compacted::default());
    };
    if parts.len() < JOIN_AT_LEAST {
        return Ok(Compacted::default());
    }
    let body: Vec<u8> = parts.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let commits: Vec<Commit> = parts.iter().flat_map(|(h, _)| h.commits.clone()).collect();
    let through = last.through.unwrap_or(last.seq);
    let header = SegmentHeader {
        db: db.to_owned(),
        generation: generation.to_owned(),
        seq: first.seq,
        through: Some(through),
        salt: first.salt,
        from: first.from,
        to: last.to,
        commits,
        sha256: segment::digest(&body),
    };
    let name = segment::compacted_name(db, generation, first.seq, through);
    match target.create(&name, segment::encode(&header, &body)).await {
        // Written by a pass cut short before it finished: the same bytes.
        Ok(()) | Err(ReplicaError::Fenced(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(Compacted {
        written: 1,
        joined: parts.len(),
        deleted: 0,
    })
}
