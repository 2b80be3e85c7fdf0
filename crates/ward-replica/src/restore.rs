//! Rebuilding a database from its replica, up to a chosen moment.

use std::io::Write;
use std::path::Path;

use futures::StreamExt as _;

use crate::ReplicaError;
use crate::segment::{self, Meta};
use crate::target::Target;
use crate::wal::{self, Cursor};

/// Segments read ahead of the one being replayed.
const PREFETCH: usize = 16;

/// A generation of a database in the replica.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Its name.
    pub name: String,
    /// Its description.
    pub meta: Meta,
}

/// What a restore rebuilt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    /// The generation restored from.
    pub generation: String,
    /// When its snapshot was taken.
    pub snapshot_ms: i64,
    /// Segments read.
    pub segments: usize,
    /// Transactions replayed onto the snapshot.
    pub commits: usize,
    /// When the last replayed transaction was committed (the snapshot's time if none).
    pub last_commit_ms: i64,
    /// Bytes read from the replica.
    pub bytes: u64,
}

/// The complete generations of `db` (those with a description), oldest first.
pub async fn generations(target: &Target, db: &str) -> Result<Vec<Generation>, ReplicaError> {
    let mut out = Vec::new();
    for name in target.folders(db).await? {
        let Some(bytes) = target.get(&format!("{db}/{name}/meta.json")).await? else {
            continue;
        };
        let meta: Meta = serde_json::from_slice(&bytes)
            .map_err(|_| ReplicaError::Damaged(format!("{db}/{name}/meta.json is unreadable")))?;
        out.push(Generation { name, meta });
    }
    out.sort_by(|a, b| (a.meta.created_at_ms, &a.name).cmp(&(b.meta.created_at_ms, &b.name)));
    Ok(out)
}

/// The databases the replica holds (`control` and clinic ids).
pub async fn databases(target: &Target) -> Result<Vec<String>, ReplicaError> {
    target.folders("").await
}

/// Rebuilds `db` into the new file `out` as it was after the last commit at or before
/// `at_ms` (the latest commit when `None`). The file is the encrypted database; the
/// caller checks it with its key before using it.
pub async fn restore_to(
    target: &Target,
    db: &str,
    at_ms: Option<i64>,
    out: &Path,
) -> Result<Restored, ReplicaError> {
    let at = at_ms.unwrap_or(i64::MAX);
    let gens = generations(target, db).await?;
    let Some(chosen) = gens.iter().rev().find(|g| g.meta.created_at_ms <= at) else {
        return Err(ReplicaError::NotFound(match gens.first() {
            Some(g) => format!(
                "the replica's oldest copy of {db} is from {}; nothing is kept from before",
                crate::restore::rfc3339(g.meta.created_at_ms)
            ),
            None => format!("the replica holds no copy of {db}"),
        }));
    };
    restore_generation(target, db, chosen, at_ms, out).await
}

/// Rebuilds generation `chosen` of `db` into the new file `out`, with the commits of its
/// segments made at or before `at_ms` (all of them when `None`) replayed onto its
/// snapshot. [`restore_to`] picks the generation for a moment; this one is for looking
/// at every generation the replica holds.
pub async fn restore_generation(
    target: &Target,
    db: &str,
    chosen: &Generation,
    at_ms: Option<i64>,
    out: &Path,
) -> Result<Restored, ReplicaError> {
    let at = at_ms.unwrap_or(i64::MAX);
    let prefix = format!("{db}/{}", chosen.name);
    let snapshot = target
        .get(&format!("{prefix}/snapshot.db"))
        .await?
        .ok_or_else(|| ReplicaError::Damaged(format!("{prefix}/snapshot.db is missing")))?;
    if segment::digest(&snapshot) != chosen.meta.sha256 {
        return Err(ReplicaError::Damaged(format!(
            "{prefix}/snapshot.db does not match its checksum"
        )));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)?;
    file.write_all(&snapshot)?;
    let mut report = Restored {
        generation: chosen.name.clone(),
        snapshot_ms: chosen.meta.created_at_ms,
        segments: 0,
        commits: 0,
        last_commit_ms: chosen.meta.created_at_ms,
        bytes: snapshot.len() as u64,
    };
    drop(snapshot);
    let listed = target.list(&format!("{prefix}/wal")).await?;
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    let chain = segment::chain(&names);
    let mut log: Vec<u8> = Vec::new();
    let mut header: Option<wal::Header> = None;
    let mut cursor: Option<Cursor> = None;
    let mut reached = false;
    // Segments are read a few ahead of the replay: an object store answers each request
    // in a millisecond or more, and a generation can hold thousands of small segments.
    let names: Vec<String> = chain.used.iter().map(|n| (*n).to_owned()).collect();
    let mut fetched = futures::stream::iter(names)
        .map(|name| {
            let target = target.clone();
            async move {
                let got = target.get(&name).await;
                (name, got)
            }
        })
        .buffered(PREFETCH);
    'segments: while let Some((name, got)) = fetched.next().await {
        let name = name.as_str();
        let bytes = got?.ok_or_else(|| ReplicaError::Damaged(format!("{name} vanished")))?;
        report.bytes += bytes.len() as u64;
        let (h, body) = segment::decode(name, &bytes)?;
        if segment::segment_span(name) != Some((h.seq, h.through.unwrap_or(h.seq))) {
            return Err(ReplicaError::Damaged(format!(
                "{name}: its header names another place"
            )));
        }
        report.segments += 1;
        if h.from == 0 {
            let parsed = wal::header(&body).map_err(|_| {
                ReplicaError::Damaged(format!("{name}: its log header is not valid"))
            })?;
            log = body;
            header = Some(parsed);
            cursor = Some(Cursor::start(&parsed));
        } else {
            let continues =
                header.is_some_and(|hh| hh.salt == h.salt) && h.from == log.len() as u64;
            if !continues {
                return Err(ReplicaError::Damaged(format!(
                    "{name} does not continue the segment before it"
                )));
            }
            log.extend_from_slice(&body);
        }
        let (Some(hh), Some(from)) = (header, cursor) else {
            return Err(ReplicaError::Damaged(format!(
                "{name}: no log header before it"
            )));
        };
        let scan = wal::scan(&log, &hh, from);
        if scan.end.offset != log.len() as u64 {
            return Err(ReplicaError::Damaged(format!(
                "{name}: its frames do not check out (byte {})",
                scan.end.offset
            )));
        }
        let frame_len = u64::from(hh.page_size) + wal::FRAME_HEADER as u64;
        let times: std::collections::HashMap<u64, i64> =
            h.commits.iter().map(|c| (c.end, c.at_ms)).collect();
        let mut last = None;
        let mut past = false;
        for f in scan.commits() {
            let end = f.offset + frame_len;
            let t = *times
                .get(&end)
                .ok_or_else(|| ReplicaError::Damaged(format!("{name}: a commit has no time")))?;
            if t > at {
                past = true;
                break;
            }
            last = Some(f.offset);
            report.commits += 1;
            report.last_commit_ms = t;
        }
        if let Some(last) = last {
            wal::apply(&mut file, &log, &scan.frames, last)?;
        }
        cursor = Some(scan.end);
        if past {
            reached = true;
            break 'segments;
        }
    }
    if let (Some(missing), false) = (chain.missing, reached) {
        // Everything before the gap was replayed and the moment asked for lies beyond.
        return Err(ReplicaError::Damaged(format!(
            "{prefix}: segment {missing} is missing; the replica cannot be replayed past {}",
            rfc3339(report.last_commit_ms)
        )));
    }
    file.sync_all()?;
    Ok(report)
}

/// `ms` as an RFC 3339 time, to the second.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// What `db` occupies in the replica: (objects, bytes), every generation included.
pub async fn stored(target: &Target, db: &str) -> Result<(usize, u64), ReplicaError> {
    let objects = target.list(db).await?;
    Ok((objects.len(), objects.iter().map(|(_, n)| n).sum()))
}

/// Deletes every object of `db` from the replica (a purged clinic). Returns how many.
pub async fn delete_database(target: &Target, db: &str) -> Result<usize, ReplicaError> {
    let objects = target.list(db).await?;
    for (name, _) in &objects {
        target.delete(name).await?;
    }
    Ok(objects.len())
}

/// Deletes the replica objects of every clinic in `purged` (ids of purged clinics) that
/// the replica still holds, and forgets where their streams stood in `data_dir`. Run
/// after every purge, it also finishes a deletion an earlier run could not complete (the
/// store was unreachable, the process stopped). Returns the clinics whose objects went,
/// with how many, and those that failed, with why.
pub async fn delete_purged(
    target: &Target,
    data_dir: &Path,
    purged: &[String],
) -> Result<PurgedObjects, ReplicaError> {
    let held: std::collections::HashSet<String> = databases(target).await?.into_iter().collect();
    let mut out = PurgedObjects::default();
    for db in purged
        .iter()
        .filter(|db| held.contains(*db) && *db != "control")
    {
        crate::replicator::forget_position(data_dir, db);
        match delete_database(target, db).await {
            Ok(n) => out.deleted.push((db.clone(), n)),
            Err(e) => out.failed.push((db.clone(), e.to_string())),
        }
    }
    Ok(out)
}

/// What [`delete_purged`] did.
#[derive(Debug, Default, Clone)]
pub struct PurgedObjects {
    /// Clinics whose objects were deleted, and how many.
    pub deleted: Vec<(String, usize)>,
    /// Clinics whose objects could not all be deleted (tried again on the next run).
    pub failed: Vec<(String, String)>,
}
