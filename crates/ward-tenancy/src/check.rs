//! Checking a database file for damage: every page's authentication code, then SQLite's
//! own structural check, with damaged pages named by the table or index they belong to.

use crate::sql::{Connection, Error};

/// Most problems reported per file; past this the file is damaged anyway.
const MAX_PROBLEMS: usize = 100;

/// What is wrong with the file behind `conn`, in sentences; empty when it is sound.
///
/// `PRAGMA cipher_integrity_check` reads every page and checks its HMAC, so a changed
/// byte anywhere (a page of an index no query touched, free pages too) is found. Then
/// `PRAGMA integrity_check` checks the b-trees. Neither stops at the first problem, and a
/// check that cannot finish is itself reported, never turned into a panic.
pub fn file_problems(conn: &Connection) -> Vec<String> {
    let mut problems = Vec::new();
    let mut damaged_pages = Vec::new();
    match lines(conn, "PRAGMA cipher_integrity_check") {
        Ok(lines) => {
            for line in lines {
                if let Some(page) = line
                    .strip_prefix("HMAC verification failed for page ")
                    .and_then(|p| p.trim().parse::<i64>().ok())
                {
                    damaged_pages.push(page);
                }
                problems.push(line);
            }
        }
        Err(e) => problems.push(format!("the page check could not finish: {e}")),
    }
    if !damaged_pages.is_empty() {
        problems.extend(owners(conn, &damaged_pages));
    }
    match lines(conn, "PRAGMA integrity_check(100)") {
        Ok(lines) => problems.extend(lines.into_iter().filter(|l| l != "ok")),
        Err(e) => problems.push(format!("the structure check could not finish: {e}")),
    }
    problems.truncate(MAX_PROBLEMS);
    problems
}

fn lines(conn: &Connection, sql: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    conn.for_each_row(sql, (), |row| {
        out.push(row.get::<String>(0)?);
        Ok::<_, Error>(())
    })?;
    Ok(out)
}

/// Which tables and indexes hold the damaged `pages`, as sentences. A tree that cannot
/// be walked because of the damage is named as unreadable.
fn owners(conn: &Connection, pages: &[i64]) -> Vec<String> {
    let names = match lines(
        conn,
        "SELECT name FROM sqlite_schema WHERE type IN ('table', 'index') AND rootpage > 0 ORDER BY name",
    ) {
        Ok(names) => names,
        Err(e) => {
            return vec![format!(
                "the schema cannot be read to name the damaged pages: {e}"
            )];
        }
    };
    let mut out = Vec::new();
    for name in names {
        let mut hit = Vec::new();
        let walked = conn.for_each_row(
            "SELECT pageno FROM dbstat WHERE name = ?1",
            [name.as_str()],
            |row| {
                let page: i64 = row.get(0)?;
                if pages.contains(&page) {
                    hit.push(page);
                }
                Ok::<_, Error>(())
            },
        );
        match walked {
            Ok(_) if hit.is_empty() => {}
            Ok(_) => out.push(format!(
                "{name}: damaged page(s) {}",
                hit.iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(_) => out.push(format!("{name}: cannot be read past a damaged page")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, db};

    #[test]
    fn a_sound_file_has_no_problems_and_a_flipped_index_page_is_named() {
        let (_dir, path, key) = crate::test_files::temp_db("a.db");
        {
            let c = db::open_now(&path, &key, true, Durability::Full)
                .unwrap()
                .conn;
            c.execute_batch_now(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT); CREATE INDEX t_x ON t (x);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                 INSERT INTO t (x) SELECT 'row ' || i || ' with some text' FROM n;
                 PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .unwrap();
            assert_eq!(file_problems(&c), Vec::<String>::new());
        }
        // The last page belongs to the index, which was filled last.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 2000;
        bytes[at] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        let c = db::open_now(&path, &key, false, Durability::Full)
            .unwrap()
            .conn;
        let problems = file_problems(&c);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("HMAC verification failed for page")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("t_x: ")),
            "{problems:?}"
        );
    }
}
