//! A clinic connection with a cache of prepared statements.
//!
//! libSQL prepares a statement afresh for every `query` and `execute`: parsing the SQL,
//! resolving names against the schema and planning the query. On a page that runs half a
//! dozen queries that is a third of the page's CPU time. [`Db`] keeps each prepared
//! statement for reuse on the same connection.
//!
//! A libSQL row reads its values from its live statement, so a statement handed out while
//! rows from it are still being read would corrupt them. The cache therefore never hands
//! out a statement: [`Db::rows`] and [`Db::row`] take it out of the cache, read every row
//! they return into plain values, reset it (which also ends its read transaction) and put
//! it back. The same SQL run again before that (a nested query) simply gets a statement of
//! its own.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use libsql::params::IntoParams;
use libsql::{Connection, Row, Statement};

/// Statements a connection keeps prepared; past this many the cache starts over. The
/// busiest pages and the audit writer use about a dozen; a prepared statement costs a
/// few KiB, and up to a thousand connections are open at once.
const CAPACITY: usize = 48;

/// Prepared statements of one connection, by SQL text.
#[derive(Default)]
pub struct StatementCache {
    statements: Mutex<HashMap<String, Statement>>,
}

impl StatementCache {
    fn take(&self, sql: &str) -> Option<(String, Statement)> {
        self.statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove_entry(sql)
    }

    fn put_back(&self, sql: String, statement: Statement) {
        // Ends the statement's read transaction now rather than when it is next used.
        statement.reset();
        let mut statements = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if statements.len() >= CAPACITY {
            statements.clear();
        }
        statements.insert(sql, statement);
    }

    /// Finalizes every cached statement. A statement holds its connection open, so this
    /// must run before the connection is closed.
    pub fn clear(&self) {
        self.statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many statements are cached.
    pub fn len(&self) -> usize {
        self.statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection and its statement cache. Dereferences to the [`Connection`], so anything
/// written for a plain connection works with it; [`Self::rows`], [`Self::row`] and
/// [`Self::exec`] reuse prepared statements.
#[derive(Clone)]
pub struct Db {
    conn: Connection,
    cache: Arc<StatementCache>,
}

impl Deref for Db {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Db {
    /// `conn` with a cache of its own (for connections outside the tenant store: tests,
    /// maintenance commands).
    pub fn new(conn: Connection) -> Self {
        Self::with_cache(conn, Arc::default())
    }

    /// `conn` with `cache`, which must belong to `conn` alone.
    pub(crate) fn with_cache(conn: Connection, cache: Arc<StatementCache>) -> Self {
        Self { conn, cache }
    }

    /// The plain connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    async fn statement(&self, sql: &str) -> Result<(String, Statement), libsql::Error> {
        match self.cache.take(sql) {
            Some(found) => Ok(found),
            None => Ok((sql.to_owned(), self.conn.prepare(sql).await?)),
        }
    }

    /// Every row of `sql`, each turned into a value by `f`, on a reused statement.
    pub async fn rows<T, E>(
        &self,
        sql: &str,
        params: impl IntoParams,
        mut f: impl FnMut(&Row) -> Result<T, E>,
    ) -> Result<Vec<T>, E>
    where
        E: From<libsql::Error>,
    {
        let (key, statement) = self.statement(sql).await?;
        let result = async {
            let mut rows = statement.query(params).await?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().await? {
                out.push(f(&row)?);
            }
            Ok(out)
        }
        .await;
        self.cache.put_back(key, statement);
        result
    }

    /// The first row of `sql`, if any, turned into a value by `f`, on a reused statement.
    pub async fn row<T, E>(
        &self,
        sql: &str,
        params: impl IntoParams,
        f: impl FnOnce(&Row) -> Result<T, E>,
    ) -> Result<Option<T>, E>
    where
        E: From<libsql::Error>,
    {
        let (key, statement) = self.statement(sql).await?;
        let result = async {
            let mut rows = statement.query(params).await?;
            match rows.next().await? {
                Some(row) => f(&row).map(Some),
                None => Ok(None),
            }
        }
        .await;
        self.cache.put_back(key, statement);
        result
    }

    /// Runs the reads in `reads` (which use this connection) in one read transaction: they
    /// all see the same snapshot, and the file's locks are taken once instead of once
    /// per statement. The transaction is rolled back, not committed, so nothing `reads`
    /// might write is kept or reaches the disk; a write is reported as an error. Must not
    /// be called inside a transaction.
    pub async fn read_only<T, E>(&self, reads: impl Future<Output = Result<T, E>>) -> Result<T, E>
    where
        E: From<libsql::Error>,
    {
        let changes = self.conn.total_changes();
        self.exec("BEGIN", ()).await?;
        let out = reads.await;
        let wrote = self.conn.total_changes() != changes;
        let ended = self.exec("ROLLBACK", ()).await;
        if wrote {
            return Err(libsql::Error::Misuse(
                "a read-only use of a clinic connection tried to write; the change was undone"
                    .into(),
            )
            .into());
        }
        match (out, ended) {
            (Ok(_), Err(e)) => Err(e.into()),
            (out, _) => out,
        }
    }

    /// Runs a statement that returns no rows, on a reused statement; the number of rows
    /// it changed.
    pub async fn exec(&self, sql: &str, params: impl IntoParams) -> Result<usize, libsql::Error> {
        let (key, statement) = self.statement(sql).await?;
        let result = statement.execute(params).await;
        self.cache.put_back(key, statement);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataKey, Durability, db};

    async fn fresh() -> (tempfile::TempDir, db::Opened, Db) {
        let dir = tempfile::tempdir().unwrap();
        let opened = db::open(
            &dir.path().join("a.db"),
            &DataKey::random(),
            true,
            Durability::Full,
        )
        .await
        .unwrap();
        opened
            .conn
            .execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3);")
            .await
            .unwrap();
        let db = Db::new(opened.conn.clone());
        (dir, opened, db)
    }

    const ALL: &str = "SELECT n FROM t WHERE n >= ?1 ORDER BY n";

    #[tokio::test]
    async fn statements_are_reused_and_give_fresh_results_each_time() {
        let (_dir, _opened, db) = fresh().await;
        let first: Vec<i64> = db.rows(ALL, [2], |r| r.get::<i64>(0)).await.unwrap();
        assert_eq!(first, [2, 3]);
        assert_eq!(db.cache.len(), 1);
        // Same statement, new parameters, after a change.
        assert_eq!(db.exec("INSERT INTO t VALUES (?1)", [4]).await.unwrap(), 1);
        let again: Vec<i64> = db.rows(ALL, [1], |r| r.get::<i64>(0)).await.unwrap();
        assert_eq!(again, [1, 2, 3, 4]);
        assert_eq!(db.cache.len(), 2);
        // A first row only, then the full set again: the early stop left nothing behind.
        let one = db.row(ALL, [3], |r| r.get::<i64>(0)).await.unwrap();
        assert_eq!(one, Some(3));
        let none = db.row(ALL, [9], |r| r.get::<i64>(0)).await.unwrap();
        assert_eq!(none, None);
        let all: Vec<i64> = db.rows(ALL, [0], |r| r.get::<i64>(0)).await.unwrap();
        assert_eq!(all, [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_nested_use_of_the_same_sql_gets_its_own_statement() {
        let (_dir, _opened, db) = fresh().await;
        let pairs: Vec<(i64, Vec<i64>)> = {
            let outer: Vec<i64> = db.rows(ALL, [1], |r| r.get::<i64>(0)).await.unwrap();
            let mut out = Vec::new();
            for n in outer {
                out.push((n, db.rows(ALL, [n], |r| r.get::<i64>(0)).await.unwrap()));
            }
            out
        };
        assert_eq!(pairs[0], (1, vec![1, 2, 3]));
        assert_eq!(pairs[2], (3, vec![3]));
    }

    #[tokio::test]
    async fn a_failed_statement_stays_usable_and_a_finished_read_holds_no_transaction() {
        let (_dir, opened, db) = fresh().await;
        db.execute("CREATE UNIQUE INDEX t_n ON t (n)", ())
            .await
            .unwrap();
        let insert = "INSERT INTO t VALUES (?1)";
        assert!(db.exec(insert, [1]).await.is_err());
        assert_eq!(db.exec(insert, [7]).await.unwrap(), 1);
        // The cached read released its snapshot: a checkpoint from another connection
        // can copy every frame and truncate the log.
        let _ = db.row(ALL, [0], |r| r.get::<i64>(0)).await.unwrap();
        let other = opened.database.connect().unwrap();
        let mut rows = other
            .query("PRAGMA wal_checkpoint(TRUNCATE)", ())
            .await
            .unwrap();
        let busy: i64 = rows.next().await.unwrap().unwrap().get(0).unwrap();
        assert_eq!(busy, 0, "a cached statement kept a read transaction open");
    }

    #[tokio::test]
    async fn a_read_only_use_sees_one_snapshot_keeps_no_write_and_always_ends() {
        let (_dir, opened, db) = fresh().await;
        let other = opened.database.connect().unwrap();
        let (before, after) = db
            .read_only(async {
                let before: Vec<i64> = db.rows(ALL, [0], |r| r.get::<i64>(0)).await?;
                other.execute("INSERT INTO t VALUES (10)", ()).await?;
                let after: Vec<i64> = db.rows(ALL, [0], |r| r.get::<i64>(0)).await?;
                Ok::<_, libsql::Error>((before, after))
            })
            .await
            .unwrap();
        assert_eq!(
            before, after,
            "both reads see the snapshot the first one began"
        );
        assert!(db.is_autocommit());
        let failed = db
            .read_only(async { db.rows("SELECT nope FROM t", (), |r| r.get::<i64>(0)).await })
            .await;
        assert!(failed.is_err());
        assert!(
            db.is_autocommit(),
            "a failed read still ends the transaction"
        );
        let wrote = db
            .read_only(async { db.exec("DELETE FROM t", ()).await })
            .await;
        assert!(wrote.unwrap_err().to_string().contains("tried to write"));
        assert!(db.is_autocommit());
        let now: Vec<i64> = db.rows(ALL, [10], |r| r.get::<i64>(0)).await.unwrap();
        assert_eq!(now, [10]);
    }

    #[tokio::test]
    async fn clearing_finalizes_so_the_connection_can_close() {
        let (_dir, opened, db) = fresh().await;
        let _ = db.rows(ALL, [0], |r| r.get::<i64>(0)).await.unwrap();
        assert!(!db.cache.is_empty());
        db.cache.clear();
        assert!(db.cache.is_empty());
        drop(opened);
    }
}
