//! Amendments: the kept versions of visits and patient records, and readable differences
//! between two versions.
//!
//! A record's first version is written when it is created; a correction writes the next
//! version, with who made it, when and why, in the same transaction as the change to the
//! current row. Versions are never changed afterwards (a trigger refuses it), so the
//! record always shows what was written, what was changed, by whom, when and why. The
//! audit log refers to version numbers; the text itself is only here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use ward_core::format_time;
use ward_tenancy::Db;
use ward_tenancy::sql::params;

use crate::ClinicError;
use crate::audit::{Actor, Entry};
use crate::patients::time;

/// The longest reason for an amendment, in characters.
pub const MAX_REASON: usize = 500;

/// One saved version of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Version<T> {
    /// 1 for the record as first saved, then 2, 3, …
    pub number: i64,
    /// The record's content as saved in this version.
    pub content: T,
    /// Who saved it (user id; empty for records that predate versions).
    pub author_id: String,
    /// Their name at the time.
    pub author_name: String,
    /// When (UTC).
    pub saved_at: DateTime<Utc>,
    /// Why it was amended; `None` for the first version.
    pub reason: Option<String>,
}

/// The reason for an amendment, trimmed: required, at most [`MAX_REASON`] characters.
pub fn check_reason(reason: &str) -> Result<String, ClinicError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ClinicError::invalid(
            "reason",
            "Say why this is being corrected: the record keeps the reason with the change.",
        ));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(ClinicError::invalid(
            "reason",
            format!("Keep the reason under {MAX_REASON} characters."),
        ));
    }
    Ok(reason.to_owned())
}

/// Who an audit entry's actor is, as a version's author: (id, name).
pub(crate) fn author(actor: &Actor) -> (String, String) {
    let name = actor.name();
    let id = actor
        .id()
        .unwrap_or_else(|| format!("{}:{name}", actor.kind()));
    (id, name)
}

/// Which record kind: its versions table and the column naming the record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Visit,
    Patient,
}

impl Kind {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Self::Visit => ("visit_versions", "visit_id"),
            Self::Patient => ("patient_versions", "patient_id"),
        }
    }
}

/// What [`insert`] writes besides the content.
pub(crate) struct Saved<'a> {
    pub number: i64,
    pub actor: &'a Actor,
    pub at: DateTime<Utc>,
    pub reason: Option<&'a str>,
}

impl<'a> Saved<'a> {
    /// Version `number`, by `entry`'s actor at its time, with `reason`.
    pub fn by(entry: &'a Entry, number: i64, reason: Option<&'a str>) -> Self {
        Self {
            number,
            actor: &entry.actor,
            at: entry.at,
            reason,
        }
    }
}

/// Writes version `saved.number` of record `id`.
pub(crate) fn insert(
    tx: &Db,
    kind: Kind,
    id: i64,
    content: &impl Serialize,
    saved: &Saved<'_>,
) -> Result<(), ClinicError> {
    let (table, owner) = kind.table();
    let json = serde_json::to_string(content)
        .map_err(|e| ClinicError::invalid("version", format!("cannot keep the version: {e}")))?;
    let (author_id, author_name) = author(saved.actor);
    tx.execute(
        &format!(
            "INSERT INTO {table} ({owner}, version, content, author_id, author_name, saved_at, reason) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        params![
            id,
            saved.number,
            json,
            author_id,
            author_name,
            format_time(saved.at),
            saved.reason.map(str::to_owned)
        ],
    )?;
    Ok(())
}

fn from_row<T: DeserializeOwned>(row: &ward_tenancy::sql::Row) -> Result<Version<T>, ClinicError> {
    let json: String = row.get(1)?;
    let content = serde_json::from_str(&json)
        .map_err(|e| ClinicError::invalid("version", format!("unreadable version: {e}")))?;
    Ok(Version {
        number: row.get(0)?,
        content,
        author_id: row.get(2)?,
        author_name: row.get(3)?,
        saved_at: time(row, 4)?,
        reason: row.get(5)?,
    })
}

const COLUMNS: &str = "version, content, author_id, author_name, saved_at, reason";

/// Every version of record `id`, oldest first (empty if there is no such record).
pub(crate) fn list<T: DeserializeOwned>(
    conn: &Db,
    kind: Kind,
    id: i64,
) -> Result<Vec<Version<T>>, ClinicError> {
    let (table, owner) = kind.table();
    conn.rows(
        &format!("SELECT {COLUMNS} FROM {table} WHERE {owner} = ?1 ORDER BY version"),
        [id],
        from_row,
    )
}

/// Version `number` of record `id`, or [`ClinicError::NotFound`].
pub(crate) fn one<T: DeserializeOwned>(
    conn: &Db,
    kind: Kind,
    id: i64,
    number: i64,
) -> Result<Version<T>, ClinicError> {
    let (table, owner) = kind.table();
    conn.row(
        &format!("SELECT {COLUMNS} FROM {table} WHERE {owner} = ?1 AND version = ?2"),
        [id, number],
        from_row,
    )?
    .ok_or(ClinicError::NotFound)
}

/// One piece of a difference: text both versions have, or text only the old one
/// (`removed`) or the new one (`added`) has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Piece {
    /// `same`, `added` or `removed` (also the piece's CSS class).
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

/// How one field changed between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The field's label.
    pub label: &'static str,
    /// The difference, in reading order.
    pub pieces: Vec<Piece>,
}

impl Change {
    /// A change of a short value, shown as the old value struck out and the new one.
    pub fn value(label: &'static str, old: &str, new: &str) -> Self {
        let mut pieces = Vec::new();
        if !old.is_empty() {
            pieces.push(piece("removed", old));
        }
        if !new.is_empty() {
            pieces.push(piece("added", new));
        }
        Self { label, pieces }
    }

    /// A change of free text, word by word.
    pub fn text(label: &'static str, old: &str, new: &str) -> Self {
        Self {
            label,
            pieces: diff(&tokens(old), &tokens(new), ""),
        }
    }

    /// A change of a list, entry by entry (each entry on its own line).
    pub fn lines(label: &'static str, old: &[String], new: &[String]) -> Self {
        Self {
            label,
            pieces: diff(old, new, "\n"),
        }
    }
}

fn piece(kind: &'static str, text: &str) -> Piece {
    Piece {
        kind,
        text: text.to_owned(),
    }
}

/// Words and the whitespace between them, in order, so that joining them gives the text.
fn tokens(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut last_space = None;
    for c in text.chars() {
        let space = c.is_whitespace();
        match found.last_mut() {
            Some(t) if last_space == Some(space) => t.push(c),
            _ => found.push(c.to_string()),
        }
        last_space = Some(space);
    }
    found
}

/// The largest table the longest-common-subsequence diff fills (entries of old × new);
/// beyond it the whole old text is shown removed and the new one added.
const MAX_CELLS: usize = 4_000_000;

/// A longest-common-subsequence difference of `old` and `new`; neighbouring pieces of
/// one kind are joined with `joiner`.
fn diff(old: &[String], new: &[String], joiner: &str) -> Vec<Piece> {
    let (n, m) = (old.len(), new.len());
    let mut steps: Vec<(&'static str, &str)> = Vec::new();
    if n.saturating_mul(m) > MAX_CELLS {
        steps.extend(old.iter().map(|t| ("removed", t.as_str())));
        steps.extend(new.iter().map(|t| ("added", t.as_str())));
    } else {
        // lcs[i][j]: the longest common subsequence of old[i..] and new[j..].
        let width = m + 1;
        let mut lcs = vec![0u32; (n + 1) * width];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * width + j] = if old[i] == new[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && old[i] == new[j] {
                steps.push(("same", &old[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
                // Removals first: "old new" reads as a replacement.
                steps.push(("removed", &old[i]));
                i += 1;
            } else {
                steps.push(("added", &new[j]));
                j += 1;
            }
        }
    }
    let mut pieces: Vec<Piece> = Vec::new();
    for (kind, text) in steps {
        match pieces.last_mut() {
            Some(p) if p.kind == kind => {
                p.text.push_str(joiner);
                p.text.push_str(text);
            }
            _ => pieces.push(piece(kind, text)),
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(pieces: &[Piece]) -> String {
        pieces
            .iter()
            .map(|p| match p.kind {
                "added" => format!("[+{}]", p.text),
                "removed" => format!("[-{}]", p.text),
                _ => p.text.clone(),
            })
            .collect()
    }

    #[test]
    fn a_changed_word_is_shown_removed_and_added() {
        let c = Change::text("Notes", "Throat red, no fever", "Throat red, mild fever");
        assert_eq!(shown(&c.pieces), "Throat red, [-no][+mild] fever");
    }

    #[test]
    fn whitespace_and_order_are_kept() {
        let c = Change::text("Notes", "a  b\nc", "a  b\nc d");
        assert_eq!(shown(&c.pieces), "a  b\nc[+ d]");
        let c = Change::text("Notes", "", "new text");
        assert_eq!(shown(&c.pieces), "[+new text]");
    }

    #[test]
    fn lists_differ_by_entry() {
        let old = vec!["Viral fever".to_owned(), "Cough".to_owned()];
        let new = vec!["Cough".to_owned(), "Tonsillitis".to_owned()];
        let c = Change::lines("Diagnoses", &old, &new);
        assert_eq!(shown(&c.pieces), "[-Viral fever]Cough[+Tonsillitis]");
    }

    #[test]
    fn a_huge_text_falls_back_to_whole_replacement() {
        let old = "a ".repeat(3000);
        let new = "b ".repeat(3000);
        let c = Change::text("Notes", &old, &new);
        assert_eq!(c.pieces.len(), 2);
        assert_eq!(c.pieces[0].kind, "removed");
        assert_eq!(c.pieces[1].text, new);
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(check_reason("  ").is_err());
        assert!(check_reason(&"x".repeat(MAX_REASON + 1)).is_err());
        assert_eq!(check_reason(" typo in dose ").unwrap(), "typo in dose");
    }
}
