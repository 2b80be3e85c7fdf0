//! Tests of the vendored engine's unix VFS change: SQLite finds the one lock state of
//! a file among many open files through a hash table instead of a list (docs/engine.md,
//! "The vendored engine"). If a lookup missed, two connections of this process to one
//! file would keep separate lock states and could both write, and a descriptor a closed
//! connection had to leave open would never be used again.

use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};

fn open(path: &Path) -> Connection {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .unwrap();
    conn.busy_timeout(std::time::Duration::ZERO).unwrap();
    conn
}

fn create(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("{i}.db"));
            let conn = open(&path);
            let _: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .unwrap();
            conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
            path
        })
        .collect()
}

fn begin_immediate(conn: &Connection) -> Result<(), ErrorCode> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.sqlite_error_code().unwrap_or(ErrorCode::Unknown))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Asserts that a second connection to each of `paths` meets the first one's write lock.
fn second_writer_is_refused(held: &[(usize, Connection)], paths: &[PathBuf]) {
    for (i, first) in held {
        begin_immediate(first).unwrap();
        let second = open(&paths[*i]);
        assert_eq!(
            begin_immediate(&second),
            Err(ErrorCode::DatabaseBusy),
            "file {i}: a second connection took the write lock"
        );
        first.execute_batch("COMMIT").unwrap();
        begin_immediate(&second).unwrap();
        second.execute_batch("COMMIT").unwrap();
    }
}

#[test]
fn connections_to_one_file_share_its_locks_among_many_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths = create(dir.path(), 300);
    let mut held: Vec<(usize, Connection)> = paths.iter().map(|p| open(p)).enumerate().collect();
    second_writer_is_refused(&held, &paths);
    // Closing every other file takes its lock state out of the table; the rest, and the
    // files opened again, must still be found.
    held.retain(|(i, _)| i % 2 == 0);
    second_writer_is_refused(&held, &paths);
    held.extend(
        (0..paths.len())
            .filter(|i| i % 2 == 1)
            .map(|i| (i, open(&paths[i]))),
    );
    second_writer_is_refused(&held, &paths);
}

#[test]
fn a_descriptor_left_open_by_a_closed_connection_is_used_again() {
    let dir = tempfile::tempdir().unwrap();
    let paths = create(dir.path(), 50);
    let _others: Vec<Connection> = paths[1..].iter().map(|p| open(p)).collect();
    let reader = open(&paths[0]);
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    // While `reader` holds a lock on the file, closing another connection's descriptor
    // would drop it, so SQLite keeps that descriptor aside for the next open.
    let closing = open(&paths[0]);
    let _: i64 = closing
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    drop(closing);
    let before = open_fds();
    let reopened = open(&paths[0]);
    assert_eq!(open_fds(), before, "the open took a new descriptor");
    let _: i64 = reopened
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    reader.execute_batch("COMMIT").unwrap();
}
