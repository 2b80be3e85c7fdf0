//! `ward export`, `ward import`, `ward clinics suspend|resume|close|reopen` and
//! `ward purge` through the real binary.

use crate::support::{Run, Ward};

/// `ward export --clinic <clinic> --reason <reason> <more>`.
fn export(ward: &Ward, clinic: &str, reason: &str, more: &[&str]) -> Run {
    let mut args = vec!["export", "--clinic", clinic, "--reason", reason];
    args.extend(more);
    ward.run(&args)
}

/// `ward import --file <file> --name <name> <more>`.
fn import(ward: &Ward, file: &str, name: &str, more: &[&str]) -> Run {
    let mut args = vec!["import", "--file", file, "--name", name];
    args.extend(more);
    ward.run(&args)
}

#[test]
fn export_then_import_through_the_command_line() {
    let ward = Ward::new();
    let (id, slug) = ward.create("Acme Clinic");
    let dir = ward.data_dir();
    let file = dir.join("acme.json");
    let out = export(&ward, &slug, "owner asked by phone", &["--out"]).stderr;
    assert!(out.contains("--out"), "--out needs a value: {out}");
    export(
        &ward,
        &slug,
        "owner asked by phone",
        &["--out", file.to_str().unwrap()],
    )
    .ok();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["format"], "ward-export");
    assert_eq!(doc["clinic"]["id"], id);
    let audit = doc["tables"]["audit_log"]["rows"].as_array().unwrap();
    let last = audit.last().unwrap().to_string();
    assert!(
        last.contains("operator") && last.contains("owner asked by phone"),
        "the operator's access is in the exported log: {last}"
    );

    // Standard output by default.
    let stdout = export(&ward, &id, "second look", &[]).ok();
    let doc2: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc2["clinic"]["slug"], slug);

    let out = import(&ward, file.to_str().unwrap(), "Acme Again", &["--json"]).ok();
    let imported: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(imported["id"], id);
    assert_eq!(imported["from"], id);
    assert_eq!(ward.list().len(), 2);
    // The imported clinic verifies (chain imported, import row anchored).
    ward.run(&["verify"]).ok();

    // A cut-off file is refused and creates nothing.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.join("cut.json");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let err = import(&ward, cut.to_str().unwrap(), "Broken", &[]).final_error();
    assert!(
        err.contains("ends too early") && err.contains("nothing was created"),
        "{err}"
    );
    // Duplicate audit rows: parsed fine, refused while importing, clinic removed again.
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let rows = v["tables"]["audit_log"]["rows"].as_array_mut().unwrap();
    let first = rows[0].clone();
    rows.push(first);
    let dup = dir.join("dup.json");
    std::fs::write(&dup, v.to_string()).unwrap();
    let err = import(&ward, dup.to_str().unwrap(), "Dup", &[]).final_error();
    assert!(err.contains("nothing was created"), "{err}");
    assert_eq!(ward.list().len(), 2, "no clinic left behind");
    let clinic_files = std::fs::read_dir(dir.join("clinics"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
        .count();
    assert_eq!(clinic_files, 2, "no clinic file left behind");
}

#[test]
fn clinic_status_changes_and_purge_dry_run() {
    let ward = Ward::new();
    let (_, slug) = ward.create("Acme Clinic");
    let status = |ward: &Ward| ward.list()[0]["status"].as_str().unwrap().to_owned();
    let out = ward
        .run(&["clinics", "suspend", &slug, "--reason", "unpaid"])
        .ok();
    assert!(out.contains("suspended"), "{out}");
    assert_eq!(status(&ward), "suspended");
    ward.run(&["clinics", "resume", &slug]).ok();
    assert_eq!(status(&ward), "active");
    let err = ward.run(&["clinics", "reopen", &slug]).final_error();
    assert!(err.contains("cannot be reopened"), "{err}");
    let out = ward
        .run(&["clinics", "close", &slug, "--reason", "retiring"])
        .ok();
    assert!(out.contains("kept until"), "{out}");
    assert_eq!(status(&ward), "closed");
    // Inside the grace period nothing is due.
    let out = ward.run(&["purge", "--dry-run"]).ok();
    assert!(out.contains("nothing to purge"), "{out}");
    ward.run(&["clinics", "reopen", &slug, "--reason", "came back"])
        .ok();
    assert_eq!(status(&ward), "active");
    // Every change is in the clinic's own audit log: the export shows them.
    let doc: serde_json::Value =
        serde_json::from_str(&export(&ward, &slug, "check", &[]).ok()).unwrap();
    let log = doc["tables"]["audit_log"].to_string();
    ward_testkit::assert_contains_all(
        &log,
        &[
            "active → suspended",
            "suspended → active",
            "active → closed",
            "closed → active",
        ],
    );
    ward.run(&["verify"]).ok();
}

#[test]
fn export_as_csv_writes_a_zip_of_one_csv_per_table() {
    use std::io::Read as _;
    let ward = Ward::new();
    let (id, slug) = ward.create("Acme Clinic");
    let file = ward.data_dir().join("acme.zip");
    export(
        &ward,
        &slug,
        "spreadsheet for the accountant",
        &["--format", "csv", "--out", file.to_str().unwrap()],
    )
    .ok();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&file).unwrap()).unwrap();
    let mut read = |name: &str| {
        let mut text = String::new();
        zip.by_name(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    // Each file starts with its header row, after the byte-order mark.
    for (name, header) in [
        ("export.csv", "\u{feff}format,version,clinic_id,"),
        ("patients.csv", "\u{feff}id,number,full_name,"),
        (
            "payment_corrections.csv",
            "\u{feff}id,payment_id,kind,receipt_number,amount_minor,amount,",
        ),
    ] {
        let text = read(name);
        assert!(text.starts_with(header), "{name}: {text}");
    }
    let about = read("export.csv");
    assert!(
        about.contains(&format!("ward-export,1,{id},{slug},")),
        "{about}"
    );
    let payments = read("payments.csv");
    assert!(
        payments.contains(",amount_minor,amount,currency,"),
        "{payments}"
    );
    let audit = read("audit_log.csv");
    assert!(
        audit.contains("spreadsheet for the accountant") && audit.contains("full export (csv)"),
        "the operator's access is in the exported log: {audit}"
    );

    // JSON stays the default; an unknown format is refused.
    let stdout = export(&ward, &id, "json still", &[]).ok();
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["format"], "ward-export");
    let err = export(&ward, &id, "x", &["--format", "xml"]).stderr;
    assert!(err.contains("xml"), "{err}");
}

/// (id, object name, key, plaintext) of every attachment of `clinic`, each opened from
/// the store as a page serves it.
fn files_of(ward: &Ward, clinic: &str) -> Vec<(i64, String, Vec<u8>, Vec<u8>)> {
    crate::support::in_process(ward, async |platform, store| {
        let id: ward_core::ClinicId = clinic.parse().unwrap();
        let tenant = platform.tenants.get(id).await.unwrap();
        let rows = tenant
            .with(|conn| {
                conn.rows(
                    "SELECT id, object_name, file_key, sha256 FROM attachments ORDER BY id",
                    (),
                    |r| {
                        Ok::<_, ward_tenancy::sql::Error>((
                            r.get::<i64>(0)?,
                            r.get::<String>(1)?,
                            r.get::<Vec<u8>>(2)?,
                            r.get::<String>(3)?,
                        ))
                    },
                )
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        for (id, name, key, sha) in rows {
            let bytes = store.read_all(&name, &key, &sha, u64::MAX).await.unwrap();
            out.push((id, name, key, bytes));
        }
        out
    })
}

/// How many objects the attachment store holds.
fn objects(ward: &Ward) -> usize {
    ward.files_ending("")
        .iter()
        .filter(|p| p.starts_with(ward.data_dir().join("attachments")))
        .count()
}

#[test]
fn the_export_with_files_round_trips_through_the_command_line() {
    let ward = Ward::new();
    let (id, slug) = ward.create("Acme Clinic");
    let dir = ward.data_dir();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let pdf = b"%PDF-1.4\n% Acme lab report\ntrailer << >>\n%%EOF\n".to_vec();
    // A patient with a PNG and a PDF, stored as an upload stores them.
    let (p, d) = (png.clone(), pdf.clone());
    crate::support::in_process(&ward, async |platform, store| {
        let tenant = platform.tenants.get(id.parse().unwrap()).await.unwrap();
        let mut files = Vec::new();
        for bytes in [p, d] {
            files.push(store.put_bytes(bytes).await.unwrap());
        }
        tenant
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO patients (id, number, full_name, sex, created_at, updated_at) VALUES (1, 1, 'Asha Rao', 'female', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                    (),
                )
                .unwrap();
                for s in files {
                    conn.execute(
                        "INSERT INTO attachments (patient_id, kind, title, content_type, size, sha256, object_name, file_key, uploaded_at, uploaded_by_id, uploaded_by_name) \
                         VALUES (1, 'lab_report', 'Report', ?1, ?2, ?3, ?4, ?5, '2026-01-01T00:00:00.000Z', 'u1', 'Dr. Rao')",
                        ward_tenancy::sql::params![s.content_type, s.size as i64, s.sha256, s.object_name, s.key.to_vec()],
                    )
                    .unwrap();
                }
            })
            .await;
    });
    let source = files_of(&ward, &id);
    assert_eq!(source.len(), 2);
    assert_eq!((&source[0].3, &source[1].3), (&png, &pdf));
    assert_eq!(objects(&ward), 2);

    // The plain JSON export cannot bring the files, so its import is refused.
    let json = dir.join("acme.json");
    export(&ward, &slug, "move", &["--out", json.to_str().unwrap()]).ok();
    let err = import(&ward, json.to_str().unwrap(), "Lossy", &[]).final_error();
    ward_testkit::assert_contains_all(
        &err,
        &[
            "names 2 attachment file(s) but holds none of them",
            "--format zip",
            "nothing was created",
        ],
    );
    assert_eq!(ward.list().len(), 1);

    let archive = dir.join("acme.zip");
    let run = export(
        &ward,
        &slug,
        "moving to a new installation",
        &["--format", "zip", "--out", archive.to_str().unwrap()],
    );
    assert!(run.stderr.contains("2 attachment files"), "{run:#?}");
    run.ok();
    let entries = ward_testkit::zip_files(std::fs::File::open(&archive).unwrap());
    assert_eq!(
        entries.keys().cloned().collect::<Vec<_>>(),
        ["attachments/1.png", "attachments/2.pdf", "ward-export.json"]
    );
    assert_eq!(entries["attachments/1.png"], png);
    assert_eq!(entries["attachments/2.pdf"], pdf);
    let raw = std::fs::read(&archive).unwrap();
    let plain = std::fs::read(&json).unwrap();
    for (_, _, key, _) in &source {
        let hex_key = hex::encode(key);
        assert!(
            plain.windows(64).any(|w| w == hex_key.as_bytes()),
            "the JSON export holds the key"
        );
        assert!(!raw.windows(64).any(|w| w == hex_key.as_bytes()), "a key");
        assert!(!raw.windows(32).any(|w| w == &key[..]), "a raw key");
    }

    let out = import(&ward, archive.to_str().unwrap(), "Acme Again", &["--json"]).ok();
    let imported: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(imported["files"], 2);
    assert_eq!(imported["from"], id);
    assert_eq!(ward.list().len(), 2);
    assert_eq!(objects(&ward), 4, "two new objects");
    let copy = files_of(&ward, imported["id"].as_str().unwrap());
    assert_eq!(copy.len(), 2);
    for (new, old) in copy.iter().zip(&source) {
        assert_eq!(new.0, old.0);
        assert_ne!(new.1, old.1, "a new object name");
        assert_ne!(new.2, old.2, "a new key");
        assert_eq!(new.3, old.3, "the same bytes");
    }
    // Both clinics' histories and objects check out.
    ward.run(&["verify"]).ok();

    // A changed byte in a file: refused, no clinic, no object.
    let mut tampered = entries.clone();
    tampered.get_mut("attachments/2.pdf").unwrap()[20] ^= 1;
    let bad = dir.join("tampered.zip");
    {
        use std::io::Write as _;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&bad).unwrap());
        for (name, data) in &tampered {
            zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }
    let err = import(&ward, bad.to_str().unwrap(), "Tampered", &[]).final_error();
    ward_testkit::assert_contains_all(
        &err,
        &[
            "attachments/2.pdf does not match",
            "altered or damaged",
            "nothing was created",
        ],
    );
    assert_eq!(ward.list().len(), 2, "no clinic left behind");
    assert_eq!(objects(&ward), 4, "no object left behind");
}

#[test]
fn a_purged_clinics_replica_objects_left_behind_go_on_the_next_purge() {
    let mut ward = Ward::new();
    ward.set_env("WARD_RETENTION_DAYS", "1");
    let (id, _) = ward.create("Acme Clinic");
    let objects = |dir: &std::path::Path| {
        let mut n = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    n += 1;
                }
            }
        }
        n
    };
    let replica = ward.data_dir().join("replica").join(&id);
    assert!(objects(&replica) > 0, "the new clinic is in the replica");
    // Closed three days ago (through the library, on a clock set back).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let then = ward_core::Clock::now(&ward_core::SystemClock) - chrono::TimeDelta::days(3);
        let platform = ward_testkit::open_platform(
            ward_tenancy::StoreConfig::new(ward.data_dir()),
            crate::support::MASTER_HEX,
            std::sync::Arc::new(ward_core::ManualClock::new(then)),
        )
        .await;
        platform
            .control
            .transition_clinic(
                ward_core::ClinicId::parse(&id).unwrap(),
                ward_control::lifecycle::Transition::Close,
                &ward_core::Actor::Operator,
                "leaving",
                ward_control::lifecycle::retention_days(1),
            )
            .await
            .unwrap();
        platform
            .tenants
            .shutdown(std::time::Duration::from_secs(10))
            .await;
    });
    // The purge runs while its replica is somewhere else (as if the store could not be
    // reached): the clinic is purged, its objects stay.
    let elsewhere = ward.data_dir().join("elsewhere");
    let mut away = ward.cmd();
    away.env(
        "WARD_REPLICA_URL",
        format!("file://{}", elsewhere.display()),
    )
    .args(["purge", "--json"]);
    let run = crate::support::run(&mut away);
    assert!(run.status.success(), "{run:#?}");
    assert!(run.stdout.contains(&id), "the clinic was purged: {run:#?}");
    assert!(objects(&replica) > 0, "its replica objects were left");
    // The next purge has no clinic to purge, and deletes what was left.
    let out = ward.run(&["purge"]).ok();
    assert!(out.contains("nothing to purge"), "{out}");
    assert_eq!(
        objects(&replica),
        0,
        "the purged clinic's replica objects are gone"
    );
}
