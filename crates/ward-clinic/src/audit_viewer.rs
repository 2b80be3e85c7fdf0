//! The owner's audit-log viewer: a search of the log (see [`crate::audit::search`]) by
//! local days in the clinic's timezone and by patient number.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use ward_tenancy::Db;

use crate::ClinicError;
use crate::audit::{self, AuditRow, Filter};
use crate::settings::{self, ClinicSettings};

/// A search as the viewer's form asks for it.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// The filter's actor and action (its times and record are set from the fields below).
    pub filter: Filter,
    /// Only this patient (by number) and their records.
    pub patient_number: Option<i64>,
    /// The first local day.
    pub from_day: Option<NaiveDate>,
    /// The last local day, inclusive.
    pub to_day: Option<NaiveDate>,
    /// Rows older than this sequence number.
    pub before: Option<i64>,
}

/// The start of `day` in `tz`, in UTC (the earliest instant, across DST gaps).
fn start_of<Z: TimeZone>(day: NaiveDate, tz: &Z) -> Option<DateTime<Utc>> {
    let midnight = day.and_hms_opt(0, 0, 0)?;
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            // Midnight skipped by a DST change: the day starts an hour later.
            tz.from_local_datetime(&(midnight + chrono::TimeDelta::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// The clinic's settings and at most `limit` rows of the log `search` selects, newest
/// first; `None` for the rows when no patient has the number. Without a search (the
/// form was refused) there are no rows.
pub fn search(
    conn: &Db,
    search: Option<Search>,
    limit: u32,
) -> Result<(ClinicSettings, Option<Vec<AuditRow>>), ClinicError> {
    let settings = settings::load(conn)?;
    let Some(mut wanted) = search else {
        return Ok((settings, Some(Vec::new())));
    };
    if let Some(number) = wanted.patient_number {
        let Some(id) = crate::patients::id_by_number(conn, number)? else {
            return Ok((settings, None));
        };
        wanted.filter.entity = Some(("patient".to_owned(), id.to_string()));
    }
    let tz = &settings.timezone;
    wanted.filter.from = wanted.from_day.and_then(|d| start_of(d, tz));
    let after_last = wanted.to_day.and_then(|d| d.succ_opt());
    wanted.filter.until = after_last.and_then(|d| start_of(d, tz));
    let rows = audit::search(conn, &wanted.filter, wanted.before, limit)?;
    Ok((settings, Some(rows)))
}
