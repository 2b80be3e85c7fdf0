//! The export document against the database, the import round trip, and bad files.

use std::collections::BTreeMap;

use serde_json::Value as J;
use ward_clinic::export::{self, ClinicInfo, Header, StaffMember};
use ward_clinic::ids::PatientId;
use ward_clinic::import;
use ward_control::ClinicRecord;
use ward_core::format_time;
use ward_tenancy::sql::Value;

use crate::support::{TestPlatform, append, refusal, start, zip_files};

const CANARY: &str = "Zebediah Quillfeather";

pub fn header(c: &ClinicRecord) -> Header {
    Header {
        clinic: ClinicInfo {
            id: c.id.to_string(),
            slug: c.slug.to_string(),
            name: c.name.clone(),
            status: c.status.to_string(),
            created_at: format_time(c.created_at),
        },
        exported_at: start(),
        exported_by: "operator".into(),
        staff: vec![StaffMember {
            user_id: "u1".into(),
            name: "Owner One".into(),
            email: "owner@example.com".into(),
            role: "owner".into(),
            member_since: format_time(start()),
        }],
    }
}

/// Fills a clinic with every kind of record this schema has.
pub fn fill(conn: &ward_tenancy::Db, patients: i64) {
    conn.execute(
        "INSERT OR REPLACE INTO settings (key, value) VALUES ('address', '1 High St'), ('currency', 'EUR')",
        (),
    )
    .unwrap();
    conn.execute("BEGIN", ()).unwrap();
    for i in 1..=patients {
        let name = if i == 1 {
            CANARY.to_owned()
        } else {
            format!("Patient {i} \"quoted\" \\ ünïcode")
        };
        conn.execute(
            "INSERT INTO patients (id, number, full_name, date_of_birth, age_years, age_recorded_on, sex, phone, phone_digits, address, email, notes, created_at, updated_at) \
             VALUES (?1, ?1, ?2, ?3, NULL, NULL, 'female', '+1 555 0100', '15550100', 'Somewhere\nLine 2', '', ?4, '2026-03-01T09:00:00.000Z', '2026-03-01T09:00:00.000Z')",
            ward_tenancy::sql::params![i, name, if i % 2 == 0 { Some("1980-02-29") } else { None }, format!("notes {i}")],
        )
        .unwrap();
    }
    // One of everything the clinic's other tables hold.
    for sql in [
        "INSERT INTO patient_name_tokens (token, patient_id) VALUES ('patient', 2), ('zebulon', 1)",
        "INSERT INTO visits (id, patient_id, doctor_id, doctor_name, visited_at, presenting_complaints, examination_notes, advice, follow_up_on, created_at, updated_at) \
         VALUES (1, 1, 'u1', 'Dr. Rao', '2026-03-01T09:30:00.000Z', 'cough', 'clear chest', 'rest', '2026-03-08', '2026-03-01T09:30:00.000Z', '2026-03-01T09:30:00.000Z')",
        "INSERT INTO diagnoses (id, visit_id, position, text) VALUES (1, 1, 0, 'viral URTI'), (2, 1, 1, 'mild fever')",
        "INSERT INTO prescription_items (id, visit_id, position, drug, dose, frequency, duration, instructions) VALUES (1, 1, 0, 'Paracetamol', '500 mg', 'TDS', '3 days', 'after food')",
        "INSERT INTO favourites (id, doctor_id, name, created_at) VALUES (1, 'u1', 'Fever', '2026-03-01T09:00:00.000Z')",
        "INSERT INTO favourite_items (id, favourite_id, position, drug, dose, frequency, duration, instructions) VALUES (1, 1, 0, 'Paracetamol', '500 mg', 'TDS', '3 days', '')",
        "INSERT INTO appointments (id, patient_id, doctor_id, doctor_name, starts_at, ends_at, status, reason, created_at, updated_at) \
         VALUES (1, 1, 'u1', 'Dr. Rao', '2026-03-02T04:00:00.000Z', '2026-03-02T04:15:00.000Z', 'booked', 'review', '2026-03-01T09:00:00.000Z', '2026-03-01T09:00:00.000Z')",
        "INSERT INTO payments (id, receipt_number, patient_id, visit_id, amount_minor, currency, method, reference, recorded_by_id, recorded_by_name, received_at) \
         VALUES (1, 1, 1, 1, 45000, 'EUR', 'cash', '', 'u1', 'Dr. Rao', '2026-03-01T10:00:00.000Z')",
        "INSERT INTO payment_items (payment_id, position, description, amount_minor) VALUES (1, 0, 'Consultation', 45000)",
        "INSERT INTO patient_versions (patient_id, version, content, author_id, author_name, saved_at, reason) \
         SELECT id, 1, json_object('full_name', full_name, 'notes', notes), 'u1', 'Dr. Rao', created_at, NULL FROM patients",
        "INSERT INTO visit_versions (visit_id, version, content, author_id, author_name, saved_at, reason) \
         VALUES (1, 1, '{\"presenting_complaints\":\"cough\"}', 'u1', 'Dr. Rao', '2026-03-01T09:30:00.000Z', NULL), \
                (1, 2, '{\"presenting_complaints\":\"cough, wheeze\"}', 'u1', 'Dr. Rao', '2026-03-01T09:40:00.000Z', 'heard a wheeze')",
        "INSERT INTO patient_merges (id, survivor_id, merged_id, moved, merged_at, merged_by_id, merged_by_name) \
         VALUES (1, 1, 2, '{\"visits\":[],\"appointments\":[],\"payments\":[]}', '2026-03-01T12:00:00.000Z', 'u1', 'Dr. Rao')",
        "INSERT INTO payment_corrections (id, payment_id, kind, receipt_number, amount_minor, currency, method, reason, recorded_by_id, recorded_by_name, recorded_at) \
         VALUES (1, 1, 'refund', 2, 5000, 'EUR', 'card', 'charged for a dressing not given', 'u1', 'Dr. Rao', '2026-03-01T11:00:00.000Z')",
        "INSERT INTO attachments (id, patient_id, visit_id, kind, title, content_type, size, sha256, object_name, file_key, uploaded_at, uploaded_by_id, uploaded_by_name) \
         VALUES (1, 1, 1, 'lab_report', 'CBC', 'application/pdf', 1234, 'ab', 'a/00ff', zeroblob(32), '2026-03-01T09:45:00.000Z', 'u1', 'Dr. Rao')",
    ] {
        conn.execute(sql, ()).unwrap();
    }
    conn.execute("COMMIT", ()).unwrap();
    append(conn, 0..25);
}

async fn export_bytes(tp: &TestPlatform, c: &ClinicRecord) -> Vec<u8> {
    let h = header(c);
    tp.with(c, |conn| {
        let mut out = Vec::new();
        export::write_export(&conn, &h, &mut out).unwrap();
        out
    })
    .await
}

fn query_all(conn: &ward_tenancy::Db, table: &str) -> Vec<Vec<Value>> {
    let cols = export::columns(conn, table).unwrap();
    let mut rows = conn
        .query(&format!("SELECT * FROM \"{table}\""), ())
        .unwrap();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        out.push(
            (0..cols.len())
                .map(|i| r.get_value(i as i32).unwrap())
                .collect(),
        );
    }
    out
}

fn json_of(v: &Value) -> J {
    match v {
        Value::Null => J::Null,
        Value::Integer(i) => J::from(*i),
        Value::Real(r) => J::from(*r),
        Value::Text(s) => J::from(s.clone()),
        Value::Blob(b) => serde_json::json!({ "hex": hex::encode(b) }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_holds_exactly_what_the_database_holds() {
    let tp = TestPlatform::new().await;
    let c = tp.clinic("Acme Clinic").await;
    tp.with(&c, |conn| fill(&conn, 40)).await;
    let bytes = export_bytes(&tp, &c).await;
    let doc: J = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["format"], "ward-export");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["clinic"]["id"], c.id.to_string());
    assert_eq!(doc["staff"][0]["email"], "owner@example.com");
    assert!(doc["staff"][0].get("password_hash").is_none());
    let tables = doc["tables"].as_object().unwrap().clone();
    let expected = tp
        .with(&c, |conn| {
            let mut all = BTreeMap::new();
            for t in export::tables(&conn).unwrap() {
                let cols = export::columns(&conn, &t).unwrap();
                all.insert(t.clone(), (cols, query_all(&conn, &t)));
            }
            all
        })
        .await;
    assert_eq!(
        tables.keys().cloned().collect::<Vec<_>>(),
        expected.keys().cloned().collect::<Vec<_>>()
    );
    for (t, (cols, rows)) in &expected {
        let got = &tables[t];
        assert_eq!(got["columns"], serde_json::json!(cols), "{t}");
        let got_rows = got["rows"].as_array().unwrap();
        assert_eq!(got_rows.len(), rows.len(), "row count of {t}");
        assert!(!rows.is_empty(), "{t} should have rows in this test");
        // Spot checks: first, middle and last row, value by value.
        for i in [0, rows.len() / 2, rows.len() - 1] {
            let want: Vec<J> = rows[i].iter().map(json_of).collect();
            assert_eq!(got_rows[i], J::from(want), "{t} row {i}");
        }
    }
    assert_eq!(tables["patients"]["rows"].as_array().unwrap().len(), 40);
    assert_eq!(tables["audit_log"]["rows"].as_array().unwrap().len(), 25);
    // Hashes are hex.
    let hash_col = tables["audit_log"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "hash")
        .unwrap();
    let hash = tables["audit_log"]["rows"][0][hash_col]["hex"]
        .as_str()
        .unwrap();
    assert_eq!(hash.len(), 64);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_format_doc_lists_every_table_and_column() {
    let tp = TestPlatform::new().await;
    let c = tp.clinic("Docs Clinic").await;
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/export-format.md"
    ))
    .unwrap();
    let schema = tp
        .with(&c, |conn| {
            let mut out = Vec::new();
            for t in export::tables(&conn).unwrap() {
                let cols = export::columns(&conn, &t).unwrap();
                out.push((t, cols));
            }
            out
        })
        .await;
    assert!(schema.len() >= 3);
    for (table, cols) in schema {
        let heading = format!("### `{table}`");
        let start = doc
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/export-format.md has no section {heading}"));
        let section = &doc[start + heading.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        for col in cols {
            assert!(
                section.contains(&format!("| `{col}` |")),
                "docs/export-format.md does not document {table}.{col}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_import_export_round_trips() {
    let tp = TestPlatform::new().await;
    let a = tp.clinic("Origin Clinic").await;
    tp.with(&a, |conn| fill(&conn, 30)).await;
    let first: J = serde_json::from_slice(&export_bytes(&tp, &a).await).unwrap();
    let doc = import::parse(&export_bytes(&tp, &a).await[..]).unwrap();

    let b = tp.clinic("Copy Clinic").await;
    let imported = tp
        .with(&b, |conn| {
            import::import(&conn, &doc, start(), "ops", "import").unwrap()
        })
        .await;
    assert!(
        imported
            .tables
            .iter()
            .any(|(t, n)| t == "patients" && *n == 30)
    );
    let second: J = serde_json::from_slice(&export_bytes(&tp, &b).await).unwrap();
    assert_eq!(second["clinic"]["id"], b.id.to_string());
    let (t1, t2) = (
        first["tables"].as_object().unwrap(),
        second["tables"].as_object().unwrap(),
    );
    assert_eq!(t1.keys().collect::<Vec<_>>(), t2.keys().collect::<Vec<_>>());
    // Refunds and voids come along, and still count against the payment.
    assert_eq!(
        t2["payment_corrections"]["rows"].as_array().unwrap().len(),
        1
    );
    let account = tp
        .with(&b, |conn| {
            ward_clinic::payments::account(&conn, PatientId::new(1)).unwrap()
        })
        .await;
    assert_eq!(
        (account.paid_minor, account.refunded_minor),
        (40_000, 5_000)
    );
    for (name, table) in t1 {
        if name == "audit_log" {
            let r1 = table["rows"].as_array().unwrap();
            let r2 = t2[name]["rows"].as_array().unwrap();
            assert_eq!(r2.len(), r1.len() + 1, "one import row appended");
            assert_eq!(&r2[..r1.len()], &r1[..], "history kept as it was");
            let last = r2.last().unwrap().to_string();
            assert!(
                last.contains("operator_access") && last.contains(&a.id.to_string()),
                "{last}"
            );
        } else {
            assert_eq!(
                table, &t2[name],
                "table {name} differs after the round trip"
            );
        }
    }
    // The imported chain verifies.
    let report = tp
        .with(&b, |conn| {
            ward_clinic::audit::verify_chain(&conn, None).unwrap()
        })
        .await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_are_refused_with_a_clear_message() {
    let tp = TestPlatform::new().await;
    let a = tp.clinic("Origin Clinic").await;
    tp.with(&a, |conn| fill(&conn, 5)).await;
    let good = String::from_utf8(export_bytes(&tp, &a).await).unwrap();
    import::parse(good.as_bytes()).unwrap();

    let m = refusal(import::parse(
        good.replace("\"ward-export\"", "\"other\"").as_bytes(),
    ));
    assert!(m.contains("not a Ward export"), "{m}");
    let m = refusal(import::parse(
        good.replacen("\"version\":1", "\"version\":2", 1)
            .as_bytes(),
    ));
    assert!(m.contains("version 2"), "{m}");
    let m = refusal(import::parse(&good.as_bytes()[..good.len() / 2]));
    assert!(m.contains("ends too early"), "{m}");
    let m = refusal(import::parse(good.replacen("{", "{,", 1).as_bytes()));
    assert!(m.contains("not valid JSON"), "{m}");
    let m = refusal(import::parse(&b"[1,2,3]"[..]));
    assert!(m.contains("not a Ward export"), "{m}");
    let huge = good.replacen(CANARY, &"x".repeat(import::MAX_TEXT + 1), 1);
    let m = refusal(import::parse(huge.as_bytes()));
    assert!(m.contains("longer than"), "{m}");

    // Duplicate ids: patient 2 appears twice. Parsing passes; the import refuses and
    // leaves the target clinic as it was.
    let mut v: J = serde_json::from_str(&good).unwrap();
    let rows = v["tables"]["patients"]["rows"].as_array_mut().unwrap();
    let dup = rows[1].clone();
    rows.push(dup);
    let doc = import::parse(v.to_string().as_bytes()).unwrap();
    let b = tp.clinic("Target Clinic").await;
    let (err, patients, audit) = tp
        .with(&b, |conn| {
            let err = import::import(&conn, &doc, start(), "ops", "import").unwrap_err();
            let count = |sql: &'static str| {
                let conn = conn.clone();
                {
                    let mut r = conn.query(sql, ()).unwrap();
                    r.next().unwrap().unwrap().get::<i64>(0).unwrap()
                }
            };
            (
                err.to_string(),
                count("SELECT count(*) FROM patients"),
                count("SELECT count(*) FROM audit_log"),
            )
        })
        .await;
    assert!(err.contains("duplicate id"), "{err}");
    assert_eq!((patients, audit), (0, 0), "nothing was written");

    // An edited audit log does not verify and is refused.
    let mut v: J = serde_json::from_str(&good).unwrap();
    let cols = v["tables"]["audit_log"]["columns"]
        .as_array()
        .unwrap()
        .clone();
    let detail = cols.iter().position(|c| c == "detail").unwrap();
    v["tables"]["audit_log"]["rows"][3][detail] = J::from("edited");
    let doc = import::parse(v.to_string().as_bytes()).unwrap();
    let c = tp.clinic("Target Two").await;
    let err = tp
        .with(&c, |conn| {
            import::import(&conn, &doc, start(), "ops", "import")
                .unwrap_err()
                .to_string()
        })
        .await;
    assert!(err.contains("does not verify"), "{err}");
}

/// A CSV file's rows (header first), after checking its byte-order mark.
fn csv_rows(file: &[u8]) -> Vec<Vec<String>> {
    let body = file
        .strip_prefix(ward_clinic::export_csv::BOM)
        .unwrap_or_else(|| panic!("every file starts with the UTF-8 byte-order mark"));
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_csv_export_is_a_zip_of_one_csv_per_table_with_money_in_both_forms() {
    let tp = TestPlatform::new().await;
    let c = tp.clinic("Acme Clinic").await;
    tp.with(&c, |conn| fill(&conn, 3)).await;
    let h = header(&c);
    let (bytes, summary, tables) = tp
        .with(&c, |conn| {
            let mut out = Vec::new();
            let summary = ward_clinic::export_csv::write_csv_zip(&conn, &h, &mut out).unwrap();
            (out, summary, export::tables(&conn).unwrap())
        })
        .await;
    assert_eq!(summary.bytes, bytes.len() as u64);
    let files = zip_files(std::io::Cursor::new(&bytes));
    let mut expected: Vec<String> = tables.iter().map(|t| format!("{t}.csv")).collect();
    expected.extend(["export.csv".to_owned(), "staff.csv".to_owned()]);
    expected.sort();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), expected);
    for (name, data) in &files {
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.starts_with('\u{feff}'), "{name} has a BOM");
        assert!(
            text.ends_with("\r\n"),
            "{name} ends its last line with CRLF"
        );
    }

    let payments = csv_rows(&files["payments.csv"]);
    assert_eq!(payments[0], ward_testkit::PAYMENTS_CSV_HEADER);
    assert_eq!(
        payments[1],
        [
            "1",
            "1",
            "1",
            "1",
            "45000",
            "450.00",
            "EUR",
            "cash",
            "",
            "u1",
            "Dr. Rao",
            "2026-03-01T10:00:00.000Z"
        ]
    );
    let refunds = csv_rows(&files["payment_corrections.csv"]);
    assert_eq!(refunds[0], ward_testkit::PAYMENT_CORRECTIONS_CSV_HEADER);
    assert_eq!(
        refunds[1][..9],
        [
            "1",
            "1",
            "refund",
            "2",
            "5000",
            "50.00",
            "EUR",
            "card",
            "charged for a dressing not given"
        ]
    );
    // A money column without a currency of its own is in the clinic's (INR by default);
    // no fee is an empty cell in both columns.
    let visits = csv_rows(&files["visits.csv"]);
    let fee = visits[0].iter().position(|c| c == "fee_minor").unwrap();
    assert_eq!(visits[0][fee + 1], "fee");
    assert_eq!(visits[1][fee..fee + 2], ["", ""]);
    // Names keep their accents; the patient register is complete.
    let patients = csv_rows(&files["patients.csv"]);
    assert_eq!(patients.len(), 1 + 3);
    assert!(
        patients.iter().any(|r| r.iter().any(|v| v == CANARY)),
        "{patients:?}"
    );
    let staff = csv_rows(&files["staff.csv"]);
    assert_eq!(
        staff[1],
        [
            "u1",
            "Owner One",
            "owner@example.com",
            "owner",
            &format_time(start())
        ]
    );
    let about = csv_rows(&files["export.csv"]);
    assert_eq!(about[1][0], "ward-export");
    assert_eq!(about[1][3], c.slug.to_string());
    // Audit hashes are hex, as in the JSON export.
    let audit = csv_rows(&files["audit_log.csv"]);
    let hash = audit[0].iter().position(|c| c == "hash").unwrap();
    assert_eq!(audit[1][hash].len(), 64);
}
