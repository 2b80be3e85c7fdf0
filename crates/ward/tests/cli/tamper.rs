//! A byte changed anywhere in a clinic's file: `ward verify` finds it every time, names
//! the damage, exits 1 and never panics; the other clinic still verifies clean.

use crate::support::Ward;
use crate::verify::record_and_anchor;

/// How many places of the file are changed, one at a time.
const FLIPS: usize = 300;

/// Clinics `names`, the first with enough audit rows to span dozens of pages, all
/// anchored and closed (so each file is whole, with no WAL beside it).
fn seed(ward: &Ward, names: &[&str], rows: i64) -> Vec<ward_control::ClinicRecord> {
    crate::support::in_process(ward, async |platform, _| {
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let clinic = ward_testkit::create_clinic(platform, name).await;
            let n = if i == 0 { rows } else { 10 };
            record_and_anchor(platform, &clinic, n).await;
            out.push(clinic);
        }
        out
    })
}

#[test]
fn every_changed_byte_of_a_clinic_file_is_found_by_verify_and_nothing_panics() {
    let ward = Ward::new();
    let clinics = seed(&ward, &["Acme", "Bravo"], 600);
    let (acme, bravo) = (&clinics[0], &clinics[1]);
    let path = ward.data_dir().join("clinics").join(acme.id.file_name());
    // Closed cleanly: every page is in the file itself, none waits in the WAL.
    assert_eq!(ward.non_empty_wals(), Vec::<std::path::PathBuf>::new());
    let original = std::fs::read(&path).unwrap();
    let pages = original.len() / 4096;
    assert!(pages >= 30, "the file has only {pages} pages");

    // The untouched file verifies clean: a problem found below is the change's doing.
    let clean = ward.run(&["verify", "--json"]);
    assert!(clean.status.success(), "{clean:#?}");

    // Offsets spread over the whole file, each page's header, body and trailer (IV and
    // HMAC) included, plus the salt at the very start.
    let mut offsets: Vec<usize> = (0..FLIPS)
        .map(|i| i * original.len() / FLIPS + (i * 37) % 4096)
        .collect();
    offsets.extend([0, 15, 16, 100, 4095, original.len() - 1]);
    offsets.retain(|&o| o < original.len());
    let mut named_tables = 0;
    for &at in &offsets {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01 << (at % 8);
        std::fs::write(&path, &bytes).unwrap();
        let run = ward.run(&["verify", "--clinic", acme.slug.as_str(), "--json"]);
        assert_eq!(
            run.status.code(),
            Some(1),
            "a change at byte {at} (page {}) went unnoticed or crashed: {run:#?}",
            at / 4096 + 1
        );
        assert!(
            !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
            "{run:#?}"
        );
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let clinic = &report["clinics"][0];
        assert_eq!(clinic["ok"], false);
        let integrity = ward_testkit::strs(&clinic["integrity"]);
        let error = clinic["error"].as_str().unwrap_or_default();
        assert!(
            integrity.iter().any(|l| {
                l.starts_with("HMAC verification failed for page")
                    || l.starts_with("the file does not open")
            }) || error.contains("does not open"),
            "byte {at}: the damage is not what was reported: {clinic}"
        );
        if integrity
            .iter()
            .any(|l| l.starts_with("audit_log") || l.contains(": damaged page"))
        {
            named_tables += 1;
        }
    }
    // Most pages belong to a table or index, which the report names.
    assert!(
        named_tables * 2 > offsets.len(),
        "only {named_tables} of {} reports named the damaged table",
        offsets.len()
    );

    // Put back, the clinic verifies clean again, and the other clinic never stopped.
    std::fs::write(&path, &original).unwrap();
    let out = ward.run(&["verify", "--json"]).ok();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    for c in report["clinics"].as_array().unwrap() {
        assert_eq!(c["ok"], true, "{c}");
    }
    assert!(out.contains(bravo.id.to_string().as_str()));
}
