//! Forward-only schema migrations, tracked in SQLite's `user_version`.

use crate::sql::Connection;

use crate::db::DbError;

/// One numbered SQL file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; the schema version after it ran.
    pub version: u32,
    /// The rest of the file name.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// What a migration run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateOutcome {
    /// Version before.
    pub from: u32,
    /// Version after.
    pub to: u32,
}

impl MigrateOutcome {
    /// Whether any migration ran.
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// The newest version in `migrations`.
pub fn latest(migrations: &[Migration]) -> u32 {
    migrations.last().map_or(0, |m| m.version)
}

/// Reads the schema version of a database.
pub fn version(conn: &Connection) -> Result<u32, DbError> {
    match conn.first_row_now("PRAGMA user_version", ())? {
        Some(row) => Ok(row.get::<u32>(0)?),
        None => Ok(0),
    }
}

/// Brings `conn` up to the newest of `migrations`, all pending steps in one
/// transaction: a failure leaves the schema exactly as it was.
///
/// The common case (already current) costs one read and no write lock.
pub fn migrate(conn: &Connection, migrations: &[Migration]) -> Result<MigrateOutcome, DbError> {
    let known = latest(migrations);
    let current = version(conn)?;
    if current == known {
        return Ok(MigrateOutcome {
            from: current,
            to: current,
        });
    }
    if current > known {
        return Err(DbError::TooNew {
            found: current,
            known,
        });
    }
    conn.execute_now("BEGIN IMMEDIATE", ())?;
    match apply(conn, migrations, known) {
        Ok(outcome) => {
            conn.execute_now("COMMIT", ())?;
            Ok(outcome)
        }
        Err(e) => {
            // The rollback's own failure would hide the cause; the cause is what matters.
            let _ = conn.execute_now("ROLLBACK", ());
            Err(e)
        }
    }
}

fn apply(
    conn: &Connection,
    migrations: &[Migration],
    known: u32,
) -> Result<MigrateOutcome, DbError> {
    // Re-read under the write lock: another process may have migrated meanwhile.
    let from = version(conn)?;
    if from > known {
        return Err(DbError::TooNew { found: from, known });
    }
    for m in migrations.iter().filter(|m| m.version > from) {
        conn.execute_batch_now(m.sql)?;
    }
    conn.execute_now(&format!("PRAGMA user_version = {known}"), ())?;
    Ok(MigrateOutcome { from, to: known })
}

#[cfg(test)]
mod tests {
    use crate::migrations::{CONTROL, TENANT};

    #[test]
    fn embedded_migrations_are_numbered_from_one_without_gaps() {
        for list in [CONTROL, TENANT] {
            assert!(!list.is_empty());
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version as usize, i + 1, "{}", m.name);
                assert!(!m.sql.trim().is_empty());
            }
        }
    }
}
