//! A clinic connection with the convenience calls the domain code uses.
//!
//! Every statement runs through the connection's cache of prepared statements (see
//! [`crate::sql`]): parsing the SQL, resolving names against the schema and planning the
//! query happen once per connection, not once per page. SQLite takes a cached statement
//! out of the cache while it runs, so a nested use of the same SQL (a query inside a row
//! callback) simply gets a statement of its own, and each statement is reset when its
//! call returns, which also ends its read transaction.

use std::ops::Deref;

use crate::sql::{self, Connection, IntoParams, Row};

/// A connection for the clinic domain, whose calls are plain synchronous SQLite: each
/// returns when SQLite has answered. Dereferences to the [`Connection`] for what it
/// does not define itself.
///
/// Callers run these calls off the async workers ([`crate::Tenant::with`] does).
#[derive(Clone)]
pub struct Db {
    conn: Connection,
}

impl Deref for Db {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// The rows of a query on a [`Db`], already read.
#[derive(Debug)]
pub struct DbRows {
    rows: std::vec::IntoIter<Row>,
}

impl DbRows {
    /// The next row, if any. (Shaped like the connection's own rows, so code reads the
    /// same whichever it holds.)
    #[expect(
        clippy::should_implement_trait,
        reason = "reads like a fallible cursor; the rows are already in memory"
    )]
    pub fn next(&mut self) -> Result<Option<Row>, sql::Error> {
        Ok(self.rows.next())
    }
}

impl Db {
    /// `conn`, for the domain calls.
    pub fn new(conn: Connection) -> Self {
        Self { conn }
    }

    /// The plain connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs a statement that returns no rows (or whose rows are not wanted); the number
    /// of rows it changed.
    pub fn execute(&self, sql: &str, params: impl IntoParams) -> Result<u64, sql::Error> {
        self.conn.execute_now(sql, params)
    }

    /// Runs several statements separated by semicolons, with no parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<(), sql::Error> {
        self.conn.execute_batch_now(sql)
    }

    /// Every row of a query.
    pub fn query(&self, sql: &str, params: impl IntoParams) -> Result<DbRows, sql::Error> {
        let mut rows = Vec::new();
        self.conn.for_each_row(sql, params, |row| {
            rows.push(row.clone());
            Ok::<_, sql::Error>(())
        })?;
        Ok(DbRows {
            rows: rows.into_iter(),
        })
    }

    /// Every row of `sql`, each turned into a value by `f`.
    pub fn rows<T, E>(
        &self,
        sql: &str,
        params: impl IntoParams,
        mut f: impl FnMut(&Row) -> Result<T, E>,
    ) -> Result<Vec<T>, E>
    where
        E: From<sql::Error>,
    {
        let mut out = Vec::new();
        self.conn.for_each_row(sql, params, |row| {
            out.push(f(row)?);
            Ok::<_, E>(())
        })?;
        Ok(out)
    }

    /// The first row of `sql`, if any, turned into a value by `f`.
    pub fn row<T, E>(
        &self,
        sql: &str,
        params: impl IntoParams,
        f: impl FnOnce(&Row) -> Result<T, E>,
    ) -> Result<Option<T>, E>
    where
        E: From<sql::Error>,
    {
        match self.conn.first_row_now(sql, params)? {
            Some(row) => f(&row).map(Some),
            None => Ok(None),
        }
    }

    /// Runs `reads` (which use this connection) in one read transaction: they all see
    /// the same snapshot, and the file's locks are taken once instead of once per
    /// statement. The transaction is rolled back, not committed, so nothing `reads`
    /// might write is kept or reaches the disk; a write is reported as an error. Must not
    /// be called inside a transaction.
    pub fn read_only<T, E>(&self, reads: impl FnOnce() -> Result<T, E>) -> Result<T, E>
    where
        E: From<sql::Error>,
    {
        let changes = self.conn.total_changes();
        self.exec("BEGIN", ())?;
        let out = reads();
        let wrote = self.conn.total_changes() != changes;
        let ended = self.exec("ROLLBACK", ());
        if wrote {
            return Err(sql::Error::Misuse(
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

    /// Runs a statement that returns no rows; the number of rows it changed.
    pub fn exec(&self, sql: &str, params: impl IntoParams) -> Result<usize, sql::Error> {
        let n = self.conn.execute_now(sql, params)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataKey, Durability, db};

    struct Fresh {
        dir: tempfile::TempDir,
        key: DataKey,
    }

    impl Fresh {
        /// A second connection to the same file.
        fn other(&self) -> Connection {
            db::open_now(
                &self.dir.path().join("a.db"),
                &self.key,
                false,
                Durability::Full,
            )
            .unwrap()
            .conn
        }
    }

    fn fresh() -> (Fresh, db::Opened, Db) {
        let dir = tempfile::tempdir().unwrap();
        let key = DataKey::random();
        let opened = db::open_now(&dir.path().join("a.db"), &key, true, Durability::Full).unwrap();
        opened
            .conn
            .execute_batch_now("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3);")
            .unwrap();
        let db = Db::new(opened.conn.clone());
        (Fresh { dir, key }, opened, db)
    }

    const ALL: &str = "SELECT n FROM t WHERE n >= ?1 ORDER BY n";

    #[test]
    fn statements_are_reused_and_give_fresh_results_each_time() {
        let (_dir, _opened, db) = fresh();
        let first: Vec<i64> = db.rows(ALL, [2], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(first, [2, 3]);
        // Same statement, new parameters, after a change.
        assert_eq!(db.exec("INSERT INTO t VALUES (?1)", [4]).unwrap(), 1);
        let again: Vec<i64> = db.rows(ALL, [1], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(again, [1, 2, 3, 4]);
        // A first row only, then the full set again: the early stop left nothing behind.
        let one = db.row(ALL, [3], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(one, Some(3));
        let none = db.row(ALL, [9], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(none, None);
        let all: Vec<i64> = db.rows(ALL, [0], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(all, [1, 2, 3, 4]);
    }

    #[test]
    fn a_nested_use_of_the_same_sql_gets_its_own_statement() {
        let (_dir, _opened, db) = fresh();
        let pairs: Vec<(i64, Vec<i64>)> = {
            let outer: Vec<i64> = db.rows(ALL, [1], |r| r.get::<i64>(0)).unwrap();
            let mut out = Vec::new();
            for n in outer {
                out.push((n, db.rows(ALL, [n], |r| r.get::<i64>(0)).unwrap()));
            }
            out
        };
        assert_eq!(pairs[0], (1, vec![1, 2, 3]));
        assert_eq!(pairs[2], (3, vec![3]));
    }

    #[test]
    fn a_failed_statement_stays_usable_and_a_finished_read_holds_no_transaction() {
        let (fresh, _opened, db) = fresh();
        db.execute("CREATE UNIQUE INDEX t_n ON t (n)", ()).unwrap();
        let insert = "INSERT INTO t VALUES (?1)";
        assert!(db.exec(insert, [1]).is_err());
        assert_eq!(db.exec(insert, [7]).unwrap(), 1);
        // The cached read released its snapshot: a checkpoint from another connection
        // can copy every frame and truncate the log.
        let _ = db.row(ALL, [0], |r| r.get::<i64>(0)).unwrap();
        let other = fresh.other();
        let busy: i64 = other
            .first_row_now("PRAGMA wal_checkpoint(TRUNCATE)", ())
            .unwrap()
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(busy, 0, "a cached statement kept a read transaction open");
    }

    #[test]
    fn a_read_only_use_sees_one_snapshot_keeps_no_write_and_always_ends() {
        let (fresh, _opened, db) = fresh();
        let other = fresh.other();
        let (before, after) = db
            .read_only(|| {
                let before: Vec<i64> = db.rows(ALL, [0], |r| r.get::<i64>(0))?;
                other.execute_now("INSERT INTO t VALUES (10)", ())?;
                let after: Vec<i64> = db.rows(ALL, [0], |r| r.get::<i64>(0))?;
                Ok::<_, sql::Error>((before, after))
            })
            .unwrap();
        assert_eq!(
            before, after,
            "both reads see the snapshot the first one began"
        );
        assert!(db.is_autocommit());
        let failed = db.read_only(|| db.rows("SELECT nope FROM t", (), |r| r.get::<i64>(0)));
        assert!(failed.is_err());
        assert!(
            db.is_autocommit(),
            "a failed read still ends the transaction"
        );
        let wrote = db.read_only(|| db.exec("DELETE FROM t", ()));
        assert!(wrote.unwrap_err().to_string().contains("tried to write"));
        assert!(db.is_autocommit());
        let now: Vec<i64> = db.rows(ALL, [10], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(now, [10]);
    }
}
