//! Set-up that the integration tests of more than one crate share: opening a platform
//! over a data folder, creating a clinic, running SQL in one, reading zips and JSON
//! lists back, and the header rows an export's CSV files must have. Only tests depend
//! on this crate; a step that fails here fails the test that called it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ward_control::{BackupConfig, Backups, ClinicRecord, MasterKeySource, Platform};
use ward_core::{Actor, ClinicId, Clock};
use ward_tenancy::{Db, StoreConfig, TenantStore};

/// Opens the platform over `config`, its master key given as the hex `master_hex`, on
/// `clock`.
pub async fn open_platform(
    config: StoreConfig,
    master_hex: &str,
    clock: Arc<dyn Clock>,
) -> Platform {
    Platform::open(
        config,
        MasterKeySource::Configured(master_hex.to_owned()),
        clock,
    )
    .await
    .unwrap()
}

/// The backups of `platform`'s clinics, kept under `dir`.
pub fn backups(platform: &Platform, dir: impl Into<PathBuf>) -> Backups {
    Backups::new(
        platform.control.clone(),
        platform.tenants.clone(),
        BackupConfig::new(dir),
    )
}

/// Creates the clinic `name` as the operator would, with a slug made from the name.
pub async fn create_clinic(platform: &Platform, name: &str) -> ClinicRecord {
    platform
        .control
        .create_clinic(name, None, &platform.tenants, &Actor::Operator)
        .await
        .unwrap()
}

/// Runs `sql` (one or more statements) in clinic `id`.
pub async fn exec(tenants: &TenantStore, id: ClinicId, sql: &str) {
    let sql = sql.to_owned();
    tenants
        .get(id)
        .await
        .unwrap()
        .with(|conn| conn.execute_batch(&sql).map(|_| ()))
        .await
        .unwrap();
}

/// The first column, as text, of every row `sql` returns.
pub fn texts(conn: &Db, sql: &str) -> Vec<String> {
    let mut rows = conn.query(sql, ()).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        out.push(row.get::<String>(0).unwrap());
    }
    out
}

/// The files of the zip read from `reader`, by name.
pub fn zip_files(reader: impl std::io::Read + std::io::Seek) -> BTreeMap<String, Vec<u8>> {
    use std::io::Read as _;
    let mut zip = zip::ZipArchive::new(reader).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        out.insert(f.name().unwrap().into_owned(), data);
    }
    out
}

/// The strings of the JSON array `value`, which must hold nothing else.
pub fn strs(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// Fails, naming what is missing and showing `text`, unless `text` holds every one of
/// `wanted`.
#[track_caller]
pub fn assert_contains_all(text: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(text.contains(w), "{w:?} missing from:\n{text}");
    }
}

/// The header row of an export's `payments.csv`.
pub const PAYMENTS_CSV_HEADER: [&str; 12] = [
    "id",
    "receipt_number",
    "patient_id",
    "visit_id",
    "amount_minor",
    "amount",
    "currency",
    "method",
    "reference",
    "recorded_by_id",
    "recorded_by_name",
    "received_at",
];

/// The header row of an export's `payment_corrections.csv`.
pub const PAYMENT_CORRECTIONS_CSV_HEADER: [&str; 12] = [
    "id",
    "payment_id",
    "kind",
    "receipt_number",
    "amount_minor",
    "amount",
    "currency",
    "method",
    "reason",
    "recorded_by_id",
    "recorded_by_name",
    "recorded_at",
];
