//! `ward migrate`: exit codes, a broken clinic reported and skipped, resumability.

use ward_tenancy::migrations::TENANT;

use crate::support::Ward;

fn summary(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap()
}

#[test]
fn migrate_succeeds_when_everything_is_current() {
    let ward = Ward::new();
    // A fresh data directory: the control plane is created and migrated.
    let out = ward.run(&["migrate"]).ok();
    assert!(
        out.contains("0 migrated, 0 already current, 0 failed"),
        "{out}"
    );
    ward.create("Alpha");
    ward.create("Beta");
    let out = ward.run(&["migrate"]).ok();
    assert!(
        out.contains("0 migrated, 2 already current, 0 failed"),
        "{out}"
    );
    let s = summary(&ward.run(&["migrate", "--json"]).ok());
    assert_eq!(s["already_current"], 2);
    assert_eq!(s["failed"].as_array().unwrap().len(), 0);
    assert_eq!(s["control_from"], s["control_to"]);
}

#[test]
fn a_new_migration_reaches_every_clinic_but_a_broken_one_which_is_named() {
    let ward = Ward::new();
    // Clinics created by a build one tenant migration behind this one.
    let older = &TENANT[..TENANT.len() - 1];
    let seeded = ward.seed_with_schema(&["Alpha", "Broken", "Gamma", "Delta"], older);
    let behind = older.len();
    let broken = &seeded[1];
    let out = ward.run(&["clinics", "list"]).ok();
    assert!(out.contains("4 behind"), "{out}");

    let path = ward
        .data_dir()
        .join("clinics")
        .join(format!("{}.db", broken.id));
    let saved = std::fs::read(&path).unwrap();
    std::fs::write(
        &path,
        b"this is not a database, just some bytes on a disk".repeat(200),
    )
    .unwrap();

    let run = ward.run(&["migrate"]);
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert!(
        run.stdout
            .contains("3 migrated, 0 already current, 1 failed"),
        "{run:#?}"
    );
    let failed_line = run
        .stdout
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("{run:#?}"));
    assert!(failed_line.contains(broken.slug.as_str()), "{failed_line}");
    assert!(
        failed_line.contains(&broken.id.to_string()),
        "{failed_line}"
    );

    let listed = ward.list();
    for c in &listed {
        if c["id"] == broken.id.to_string().as_str() {
            assert_eq!(c["schema_version"], behind);
            assert!(c["open_error"].is_string(), "{c}");
        } else {
            assert_eq!(c["schema_version"], TENANT.len(), "{c}");
            assert!(c["open_error"].is_null());
        }
    }
    let out = ward.run(&["clinics", "list"]).ok();
    assert!(out.contains("1 behind"), "{out}");
    let out = ward.run(&["clinics", "show", broken.slug.as_str()]).ok();
    assert!(out.contains("FAILING"), "{out}");

    // Run again: nothing redone, the broken clinic still reported.
    let run = ward.run(&["migrate", "--json"]);
    assert_eq!(run.status.code(), Some(1));
    let s = summary(&run.stdout);
    assert_eq!(s["migrated"], 0);
    assert_eq!(s["already_current"], 3);
    assert_eq!(s["failed"][0]["clinic"], broken.id.to_string().as_str());
    assert_eq!(s["failed"][0]["slug"], broken.slug.as_str());

    // Repaired, it migrates and the failure mark goes.
    std::fs::write(&path, saved).unwrap();
    let out = ward.run(&["migrate"]).ok();
    assert!(
        out.contains("1 migrated, 3 already current, 0 failed"),
        "{out}"
    );
    assert!(
        ward.list()
            .iter()
            .all(|c| c["schema_version"] == TENANT.len() && c["open_error"].is_null())
    );
    // Every clinic was closed cleanly.
    assert_eq!(ward.non_empty_wals(), Vec::<std::path::PathBuf>::new());
}
