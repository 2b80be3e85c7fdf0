//! What the history pages of amended records (visits, patients) share: one entry per
//! kept version, with who saved it, when, why and what it changed.

use ward_clinic::history::{Change, Version};
use ward_clinic::settings::ClinicSettings;

/// One version on a history page.
pub(crate) struct HistoryEntry {
    /// The version's number.
    pub(crate) number: i64,
    /// When it was saved, in the clinic's time.
    pub(crate) when: String,
    /// Who saved it.
    pub(crate) author: String,
    /// Why it was amended; `None` for the first version.
    pub(crate) reason: Option<String>,
    /// How it differs from the version before (empty for the first).
    pub(crate) changes: Vec<Change>,
}

impl HistoryEntry {
    /// `versions` (oldest first, as stored) as entries, newest first, each compared with
    /// the one before it by `changes`.
    pub(crate) fn newest_first<T>(
        versions: &[Version<T>],
        s: &ClinicSettings,
        changes: impl Fn(&T, &T) -> Vec<Change>,
    ) -> Vec<Self> {
        let mut entries: Vec<Self> = versions
            .iter()
            .enumerate()
            .map(|(i, v)| Self {
                number: v.number,
                when: s.local(v.saved_at).format("%Y-%m-%d %H:%M").to_string(),
                author: v.author_name.clone(),
                reason: v.reason.clone(),
                changes: i
                    .checked_sub(1)
                    .and_then(|p| versions.get(p))
                    .map(|old| changes(&old.content, &v.content))
                    .unwrap_or_default(),
            })
            .collect();
        entries.reverse();
        entries
    }
}
