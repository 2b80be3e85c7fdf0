//! Merging a duplicate patient into another record, and undoing it (docs/patients.md).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use ward_clinic::audit::Action;
use ward_clinic::merge::{self, ByNumber, Merge};
use ward_clinic::patients::Patient;
use ward_clinic::settings::ClinicSettings;
use ward_clinic::{ClinicError, MergeId, PatientId};
use ward_core::Permission;

use crate::extract::{AppForm, ClinicAccess};
use crate::extract::{RecordId, RecordRequest, parse_id};
use crate::views::frame::ClinicFrame;
use crate::views::patients::patients_frame;
use crate::{AppError, AppState};

type Page = Result<Response, AppError>;

/// What the patient page needs about merging, read with the page.
pub struct Merging {
    merges: Vec<Merge>,
    merged_into: Option<(PatientId, i64)>,
    duplicates: Vec<Patient>,
}

impl Merging {
    /// For patient `id`, on the page's connection.
    pub fn load(conn: &ward_tenancy::Db, id: PatientId) -> Result<Self, ClinicError> {
        let o = merge::overview(conn, id)?;
        Ok(Self {
            merges: o.merges,
            merged_into: o.merged_into,
            duplicates: o.duplicates,
        })
    }
}

/// One merge into this record, as the page lists it.
pub struct MergeLine {
    pub id: MergeId,
    pub number: i64,
    pub name: String,
    pub when: String,
    pub by: String,
    pub moved: String,
    pub undone: bool,
}

/// The patient page's box.
pub struct MergeBox {
    /// `/c/{slug}/patients/{id}`.
    pub base: String,
    pub merges: Vec<MergeLine>,
    /// The record this one went into: (its page, its number).
    pub merged_into: Option<(String, i64)>,
    /// (page, label, merge link) of each possible duplicate.
    pub duplicates: Vec<(String, String, String)>,
}

impl MergeBox {
    /// The box for patient `id`.
    pub fn new(access: &ClinicAccess, s: &ClinicSettings, id: PatientId, m: Merging) -> Self {
        let slug = &access.slug;
        Self {
            base: format!("/c/{slug}/patients/{id}"),
            merges: m
                .merges
                .into_iter()
                .map(|g| MergeLine {
                    moved: format!(
                        "{} visits, {} appointments, {} payments moved",
                        g.moved.visits.len(),
                        g.moved.appointments.len(),
                        g.moved.payments.len()
                    ),
                    id: g.id,
                    number: g.merged_number,
                    name: g.merged_name,
                    when: s.local(g.merged_at).format("%Y-%m-%d %H:%M").to_string(),
                    by: g.merged_by_name,
                    undone: g.undone_at.is_some(),
                })
                .collect(),
            merged_into: m
                .merged_into
                .map(|(sid, number)| (format!("/c/{slug}/patients/{sid}"), number)),
            duplicates: m
                .duplicates
                .into_iter()
                .map(|d| {
                    (
                        format!("/c/{slug}/patients/{}", d.id),
                        format!("No. {} {}", d.number, d.full_name),
                        format!("/c/{slug}/patients/{id}/merge?other={}", d.number),
                    )
                })
                .collect(),
        }
    }
}

/// One side of the merge review.
struct Side {
    p: Patient,
    visits: usize,
    payments: usize,
}

#[derive(Template)]
#[template(path = "patient_merge.html")]
struct ReviewPage {
    frame: ClinicFrame,
    keep: Side,
    other: Option<Side>,
    asked: String,
    error: Option<String>,
}

/// `?other=N`: the duplicate's patient number.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct OtherQuery {
    other: String,
}

impl From<merge::Side> for Side {
    fn from(s: merge::Side) -> Self {
        Self {
            p: s.patient,
            visits: s.visits,
            payments: s.payments,
        }
    }
}

/// The duplicate's number as typed (`#` allowed).
fn number(typed: &str) -> Option<i64> {
    typed.trim().trim_start_matches('#').parse::<i64>().ok()
}

/// Why the review cannot go on (`asked`, the number typed, found `other`), if it
/// cannot.
fn review_error(id: PatientId, other: Option<&Side>, asked: Option<i64>) -> Option<String> {
    match (other, asked) {
        (_, None) => Some("Enter the duplicate's patient number.".to_owned()),
        (None, Some(n)) => Some(format!("No patient has the number {n}.")),
        (Some(o), _) if o.p.id == id => {
            Some("That is this record: enter the other one's number.".to_owned())
        }
        _ => None,
    }
}

/// The review page: both records side by side, or why the number does not do.
async fn review(
    app: &AppState,
    access: &ClinicAccess,
    csrf: String,
    id: PatientId,
    asked: String,
    error: Option<String>,
) -> Page {
    let number = number(&asked);
    let (keep, other) = access
        .tenant
        .with(move |conn| merge::review(&conn, id, number))
        .await?;
    let (keep, other) = (Side::from(keep), other.map(Side::from));
    let error = error.or_else(|| review_error(id, other.as_ref(), number));
    let page = ReviewPage {
        keep,
        other,
        asked,
        error,
        frame: patients_frame(app, access, csrf).await?,
    };
    crate::views::respond::page_refused_if(page.error.is_some(), &page)
}

/// `GET /c/{slug}/patients/{id}/merge?other=N`: what merging No. N into this record
/// would do, to confirm.
pub async fn merge_get(
    RecordRequest(app, access, csrf, id): RecordRequest<PatientId>,
    Query(q): Query<OtherQuery>,
) -> Page {
    access.require(Permission::EditDemographics)?;
    review(&app, &access, csrf, id, q.other, None).await
}

/// The merge form.
#[derive(Deserialize)]
pub struct MergeForm {
    #[serde(default)]
    other: String,
}

/// `POST /c/{slug}/patients/{id}/merge`: merges patient number `other` into this record;
/// audited on both.
pub async fn merge_post(
    RecordRequest(app, access, csrf, id): RecordRequest<PatientId>,
    AppForm(form): AppForm<MergeForm>,
) -> Page {
    access.require(Permission::EditDemographics)?;
    let Some(number) = number(&form.other) else {
        return review(&app, &access, csrf, id, form.other, None).await;
    };
    let entry = access.audit_entry(app.clock.now(), Action::Update);
    let done = access
        .tenant
        .with(move |conn| merge::merge_by_number(&conn, id, number, entry))
        .await?;
    let message = match done {
        ByNumber::Merged => {
            let to = format!("/c/{}/patients/{id}#merging", access.slug);
            return Ok(Redirect::to(&to).into_response());
        }
        ByNumber::NoSuchNumber => None,
        ByNumber::Refused(message) => Some(message),
    };
    review(&app, &access, csrf, id, form.other, message).await
}

/// `POST /c/{slug}/patients/{id}/merges/{merge}/undo`: undoes a merge into this record.
pub async fn undo_post(
    State(app): State<AppState>,
    access: ClinicAccess,
    RecordId(id): RecordId<PatientId>,
    Path((_, _, merge_id)): Path<(String, String, String)>,
) -> Page {
    access.require(Permission::EditDemographics)?;
    let merge_id: MergeId = parse_id(&merge_id)?;
    let entry = access.audit_entry(app.clock.now(), Action::Update);
    access
        .tenant
        .with(move |conn| merge::undo(&conn, id, merge_id, entry))
        .await?;
    Ok(Redirect::to(&format!("/c/{}/patients/{id}#merging", access.slug)).into_response())
}
