//! `ward clinics create|list|show`.

use ward_tenancy::migrations::TENANT;

use crate::support::Ward;

#[test]
fn create_prints_the_id_and_a_slug_derived_from_the_name() {
    let ward = Ward::new();
    let (id, slug) = ward.create("Acme Clinic");
    assert_eq!(slug, "acme-clinic");
    let parsed = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(parsed.get_version_num(), 7);
    assert_eq!(parsed.hyphenated().to_string(), id);
    assert!(
        ward.data_dir()
            .join("clinics")
            .join(format!("{id}.db"))
            .exists()
    );

    // The same name again gets its own slug; the id is new.
    let (id2, slug2) = ward.create("Acme Clinic");
    assert_ne!(id2, id);
    assert_eq!(slug2, "acme-clinic-2");
}

#[test]
fn create_takes_an_explicit_slug_and_refuses_a_taken_one() {
    let ward = Ward::new();
    let out = ward
        .run(&[
            "clinics",
            "create",
            "--name",
            "Dr. Rao's Eye & Skin",
            "--slug",
            "rao",
            "--json",
        ])
        .ok();
    let clinic: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(clinic["slug"], "rao");
    assert_eq!(clinic["name"], "Dr. Rao's Eye & Skin");
    assert_eq!(clinic["status"], "active");
    assert_eq!(clinic["schema_version"], TENANT.len());

    let err = ward
        .run(&["clinics", "create", "--name", "Other", "--slug", "rao"])
        .one_line_error();
    assert!(err.contains("\"rao\"") && err.contains("taken"), "{err}");
    assert_eq!(ward.list().len(), 1, "a refused clinic left a row behind");
    assert_eq!(
        std::fs::read_dir(ward.data_dir().join("clinics"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "db"))
            .count(),
        1,
        "a refused clinic left a database behind"
    );
}

#[test]
fn list_shows_every_clinic_with_its_schema_version() {
    let ward = Ward::new();
    let out = ward.run(&["clinics", "list"]).ok();
    assert!(out.contains("no clinics yet"), "{out}");
    assert_eq!(ward.list().len(), 0);

    let (a, _) = ward.create("Alpha Clinic");
    let (b, _) = ward.create("Beta Clinic");
    let out = ward.run(&["clinics", "list"]).ok();
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("SCHEMA") && header.contains("SLUG"),
        "{out}"
    );
    for (id, slug) in [(&a, "alpha-clinic"), (&b, "beta-clinic")] {
        let row = out.lines().find(|l| l.starts_with(id.as_str())).unwrap();
        assert!(row.contains(slug) && row.contains("active"), "{row}");
        assert!(
            row.split_whitespace()
                .any(|w| w == TENANT.len().to_string()),
            "{row}"
        );
    }
    assert!(out.contains("2 clinics"), "{out}");
    assert!(out.contains("0 behind"), "{out}");

    let listed = ward.list();
    assert_eq!(listed.len(), 2);
    for c in &listed {
        assert_eq!(c["schema_version"], TENANT.len());
        assert!(c["open_error"].is_null());
        assert!(
            c.get("wrapped_key").is_none(),
            "the key left the control plane"
        );
    }
    assert_eq!(listed[0]["id"], a.as_str());
}

#[test]
fn show_finds_a_clinic_by_slug_or_id() {
    let ward = Ward::new();
    let (id, slug) = ward.create("Acme Clinic");
    for by in [slug.as_str(), id.as_str(), &id.to_uppercase()] {
        let out = ward.run(&["clinics", "show", by]).ok();
        assert!(out.contains(&format!("id:         {id}")), "{out}");
        assert!(out.contains("slug:       acme-clinic"), "{out}");
        assert!(out.contains("name:       Acme Clinic"), "{out}");
        assert!(out.contains("schema:"), "{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ward.run(&["clinics", "show", &slug, "--json"]).ok()).unwrap();
    assert_eq!(json["id"], id.as_str());
}

#[test]
fn an_unknown_clinic_is_one_clear_error() {
    let ward = Ward::new();
    ward.create("Acme Clinic");
    let err = ward.run(&["clinics", "show", "nope"]).one_line_error();
    assert!(err.contains("no clinic") && err.contains("nope"), "{err}");
    let missing = "0192f5c4-8a1e-7c3b-9d2e-4f5a6b7c8d9e";
    let err = ward.run(&["clinics", "show", missing]).one_line_error();
    assert!(err.contains(missing), "{err}");
    for hostile in ["../../etc/passwd", "Acme Clinic", ":memory:", "file:x.db"] {
        let err = ward.run(&["clinics", "show", hostile]).one_line_error();
        assert!(err.contains("neither a clinic id"), "{err}");
    }
}
