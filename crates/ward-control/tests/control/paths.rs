//! No clinic id, slug or request string can name a file outside `<data>/clinics/`.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ward_control::ClinicRef;
use ward_core::{ClinicId, Slug};
use ward_tenancy::TenantStore;

use crate::support::{TestPlatform, files_under};

/// Strings an attacker would try, alone and glued together.
const HOSTILE: &[&str] = &[
    "..",
    "../",
    "..\\",
    "/",
    "\\",
    "\0",
    ".",
    "~",
    ":memory:",
    "file:",
    "file:///etc/passwd",
    "file:x.db?mode=memory&cache=shared",
    "file::memory:?cache=shared",
    "/etc/passwd",
    "%2e%2e%2f",
    "..%2f",
    "%00",
    "\u{2215}",
    "\u{ff0e}\u{ff0e}",
    "é",
    "क्लिनिक",
    "🦀",
    "\u{202e}",
    "\r\n",
    " ",
    "-",
    "a",
    "0192f5c4-8a1e-7c3b-9d2e-4f5a6b7c8d9e",
    "0192F5C4-8A1E-7C3B-9D2E-4F5A6B7C8D9E",
    "{0192f5c4-8a1e-7c3b-9d2e-4f5a6b7c8d9e}",
    "urn:uuid:0192f5c4-8a1e-7c3b-9d2e-4f5a6b7c8d9e",
    "0192f5c48a1e7c3b9d2e4f5a6b7c8d9e",
    ".db",
    "-wal",
    ".lock",
    "control",
    "control.db",
    "master.key",
];

fn hostile_string() -> impl Strategy<Value = String> {
    let piece = proptest::sample::select(HOSTILE).prop_map(str::to_owned);
    prop_oneof![
        piece.clone(),
        proptest::collection::vec(piece, 1..8).prop_map(|v| v.concat()),
        any::<String>(),
        "[a-z0-9./:%\\\\-]{0,80}",
        "[a-z0-9-]{1,70}",
        "[0-9a-fA-F-]{36}",
        ".{200,2000}",
        // A canonical id with something hostile around it.
        (
            proptest::sample::select(HOSTILE),
            proptest::sample::select(HOSTILE)
        )
            .prop_map(|(a, b)| format!("{a}{}{b}", ClinicId::new())),
    ]
}

/// The one shape a clinic file may have: `<clinics>/<canonical uuid>.db`.
fn assert_clinic_path(store: &TenantStore, id: ClinicId) {
    let path = store.path_of(id);
    assert_eq!(path.parent(), Some(store.clinics_dir()));
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(name, format!("{}.db", id.as_uuid().hyphenated()));
    assert_eq!(name.len(), 39);
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase() || b == b'-' || b == b'.'),
        "{name}"
    );
    assert!(path.components().all(|c| c.as_os_str() != ".."));
}

fn assert_slug_is_inert(slug: &Slug) {
    let s = slug.as_str();
    assert!(!s.is_empty() && s.len() <= Slug::MAX_LEN, "{s:?}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{s:?}"
    );
    assert!(!s.starts_with('-') && !s.ends_with('-'), "{s:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_string_can_name_a_file_outside_the_clinics_folder() {
    let t = TestPlatform::new().await;
    let store = t.store().clone();
    let mut runner = TestRunner::new(Config {
        cases: 4_000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&hostile_string(), |s| {
            if let Ok(id) = ClinicId::parse(&s) {
                // Accepted ids are exactly the canonical spelling, in either case.
                prop_assert_eq!(id.to_string(), s.to_ascii_lowercase());
                assert_clinic_path(&store, id);
            }
            if let Ok(slug) = Slug::parse(&s) {
                prop_assert_eq!(slug.as_str(), s.as_str());
                assert_slug_is_inert(&slug);
            }
            // Whatever a name is, the slug derived from it is a valid slug.
            let derived = Slug::from_name(&s);
            prop_assert_eq!(Slug::parse(derived.as_str()), Ok(derived.clone()));
            assert_slug_is_inert(&derived);
            match s.parse::<ClinicRef>() {
                Ok(ClinicRef::Id(id)) => assert_clinic_path(&store, id),
                Ok(ClinicRef::Slug(slug)) => assert_slug_is_inert(&slug),
                Err(msg) => prop_assert!(msg.contains("neither a clinic id")),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_obvious_attacks_are_refused_by_both_parsers() {
    for s in [
        "..",
        "../x",
        "/etc/passwd",
        "a/b",
        "a\0b",
        ":memory:",
        "file:x.db",
        "file:///etc/passwd",
        "x.db",
        "ACME",
        "",
        "\u{ff0e}\u{ff0e}",
    ] {
        assert!(ClinicId::parse(s).is_err(), "{s:?} parsed as an id");
        assert!(Slug::parse(s).is_err(), "{s:?} parsed as a slug");
        assert!(s.parse::<ClinicRef>().is_err(), "{s:?} parsed as a clinic");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clinics_with_hostile_names_get_only_uuid_files() {
    let t = TestPlatform::new().await;
    let mut created = Vec::new();
    for name in [
        "../../etc/passwd",
        "/tmp/evil",
        ":memory:",
        "file:evil.db?mode=memory",
        "..",
        "control.db",
        "\u{ff0e}\u{ff0e}/\u{ff0e}\u{ff0e}",
        "क्लिनिक",
        "🦀🦀🦀",
        &"x/".repeat(100),
        "a\0b",
        "line\nbreak",
    ] {
        match t
            .platform
            .control
            .create_clinic(name, None, t.store(), &ward_core::Actor::Operator)
            .await
        {
            Ok(c) => {
                assert_eq!(c.name, name.trim());
                assert_slug_is_inert(&c.slug);
                created.push(c.id);
            }
            // Control characters are refused as a name; nothing may be left behind.
            Err(e) => assert!(
                name.chars().any(char::is_control),
                "{name:?} was refused: {e}"
            ),
        }
    }
    assert_eq!(created.len(), 10);
    t.store().shutdown(std::time::Duration::from_secs(10)).await;

    let data = t.data_dir();
    let clinic_files: Vec<_> = files_under(&data.join("clinics"));
    // Each clinic has its database, the database's WAL and shared-memory files (kept,
    // empty, after close) and its pin file (the cross-process "in use" lock), all named
    // from the id alone.
    let mut expected: Vec<_> = created
        .iter()
        .flat_map(|id| {
            [
                Path::new(&id.file_name()).to_owned(),
                Path::new(&format!("{}-shm", id.file_name())).to_owned(),
                Path::new(&format!("{}-wal", id.file_name())).to_owned(),
                Path::new(&format!("{id}.pin")).to_owned(),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(clinic_files, expected);
    // Nothing else anywhere: the data directory holds the control plane and the clinics,
    // and nothing was written beside it.
    for f in files_under(&data) {
        let s = f.to_str().unwrap();
        assert!(
            s.starts_with("clinics/")
                || s.starts_with("control.db")
                || s == "control.pin"
                || s == "format",
            "unexpected file {s}"
        );
    }
    assert_eq!(files_under(t.dir.path()).len(), files_under(&data).len());
}
