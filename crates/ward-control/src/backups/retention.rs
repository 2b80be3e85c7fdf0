//! Retention: which backups the tiers keep, and removing the others.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use uuid::Uuid;

use super::Backups;
use super::manifests::manifest_path;
use crate::ControlError;
use crate::catalog::Scope;

impl Backups {
    /// Removes the backups of `scope` that the retention tiers no longer keep; returns
    /// how many.
    pub async fn apply_retention(&self, scope: Scope) -> Result<usize, ControlError> {
        let now = self.now();
        let list = self.control.list_backups(scope, false).await?;
        let plan: Vec<(Uuid, DateTime<Utc>, bool)> = list
            .iter()
            .map(|b| (b.id, b.taken_at, b.is_good()))
            .collect();
        let doomed = retention_plan(
            &plan,
            now,
            self.config.keep_all,
            self.config.keep_daily_days,
        );
        if doomed.is_empty() {
            return Ok(0);
        }
        let doomed_set: HashSet<Uuid> = doomed.iter().copied().collect();
        for b in list.iter().filter(|b| doomed_set.contains(&b.id)) {
            let path = self.config.dir.join(&b.file);
            for p in [manifest_path(&path), path] {
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::error!(path = %p.display(), error = %e, "cannot remove an expired backup")
                    }
                }
            }
        }
        self.control.mark_backups_deleted(&doomed, now).await?;
        Ok(doomed.len())
    }
}

/// Which backups the tiers drop: all younger than `keep_all` stay; beyond that, the
/// newest good backup of each of the last `keep_daily_days` UTC days stays; and the
/// newest good backup of all always stays (a clinic that has not changed for months
/// still has one). Everything else goes. `backups` are `(id, taken_at, good)`.
pub fn retention_plan(
    backups: &[(Uuid, DateTime<Utc>, bool)],
    now: DateTime<Utc>,
    keep_all: TimeDelta,
    keep_daily_days: u32,
) -> Vec<Uuid> {
    let mut keep: HashSet<Uuid> = HashSet::new();
    let first_day: NaiveDate =
        (now - TimeDelta::days(i64::from(keep_daily_days.saturating_sub(1)))).date_naive();
    let mut newest_per_day: BTreeMap<NaiveDate, (DateTime<Utc>, Uuid)> = BTreeMap::new();
    let mut newest_good: Option<(DateTime<Utc>, Uuid)> = None;
    for &(id, at, good) in backups {
        if at >= now - keep_all {
            keep.insert(id);
        }
        if !good {
            continue;
        }
        if newest_good.is_none_or(|(t, _)| at > t) {
            newest_good = Some((at, id));
        }
        let day = at.date_naive();
        if keep_daily_days > 0 && day >= first_day {
            let e = newest_per_day.entry(day).or_insert((at, id));
            if at > e.0 {
                *e = (at, id);
            }
        }
    }
    keep.extend(newest_per_day.values().map(|(_, id)| *id));
    keep.extend(newest_good.map(|(_, id)| id));
    backups
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !keep.contains(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_core::parse_time;

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn retention_keeps_two_days_of_everything_then_one_good_backup_a_day() {
        let now = at("2026-03-01T12:00:00Z");
        let mut backups = Vec::new();
        // One every 6 hours for 40 days back, the 03:00 one of every day failing.
        for h in (0..40 * 24).step_by(3) {
            let t = now - TimeDelta::hours(h);
            let good = t.format("%H").to_string() != "00";
            backups.push((Uuid::now_v7(), t, good));
        }
        let doomed: HashSet<Uuid> = retention_plan(&backups, now, TimeDelta::hours(48), 35)
            .into_iter()
            .collect();
        let kept: Vec<_> = backups.iter().filter(|b| !doomed.contains(&b.0)).collect();
        // Everything of the last 48 hours, good or not.
        for b in &backups {
            if b.1 >= now - TimeDelta::hours(48) {
                assert!(!doomed.contains(&b.0));
            }
        }
        // Beyond: exactly one per day, the newest good one, for days within 35 days.
        let old: Vec<_> = kept
            .iter()
            .filter(|b| b.1 < now - TimeDelta::hours(48))
            .collect();
        let days: HashSet<NaiveDate> = old.iter().map(|b| b.1.date_naive()).collect();
        assert_eq!(days.len(), old.len(), "one per day");
        assert!(old.iter().all(|b| b.2));
        assert!(old.iter().all(|b| b.1.format("%H").to_string() == "21"));
        let oldest = old.iter().map(|b| b.1).min().unwrap();
        assert_eq!(oldest.date_naive(), at("2026-01-26T00:00:00Z").date_naive());
    }

    #[test]
    fn retention_never_drops_the_only_good_backup() {
        let now = at("2026-03-01T12:00:00Z");
        let old = (Uuid::now_v7(), now - TimeDelta::days(100), true);
        let failed = (Uuid::now_v7(), now - TimeDelta::days(90), false);
        let doomed = retention_plan(&[old, failed], now, TimeDelta::hours(48), 35);
        assert_eq!(doomed, vec![failed.0]);
    }
}
