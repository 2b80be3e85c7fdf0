//! The archive export's writer and reader: the zip holds the document and exactly the
//! files its list names, checked against their rows; no key and no thumbnail leaves.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde_json::Value as J;
use sha2::{Digest, Sha256};
use ward_clinic::archive::{self, ArchiveWriter};
use ward_clinic::export::{self, ExportError, Header};
use ward_clinic::import;
use ward_control::ClinicRecord;

use crate::export::{fill, header};
use crate::support::{TestPlatform, refusal, start, zip_files};

/// A PNG's signature and some bytes, long enough to span several pieces.
fn png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend((0..150_000u32).map(|i| (i % 251) as u8));
    b
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n".to_vec()
}

const KEY_PNG: [u8; 32] = [0x5a; 32];
const KEY_PDF: [u8; 32] = [0xa5; 32];

/// `fill`'s clinic plus: a PNG and a PDF with their objects (2, 3), a deleted file
/// whose objects were removed (4), and a thumbnail on the PNG. `fill`'s own file (1)
/// has an all-zero key, as after an erasure.
async fn clinic_with_files(tp: &TestPlatform, name: &str) -> ClinicRecord {
    let c = tp.clinic(name).await;
    let (png, pdf) = (png(), pdf());
    tp.with(&c, move |conn| {
        fill(&conn, 3);
        let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
        for (id, ct, bytes, key, removed) in [
            (2, "image/png", png.as_slice(), KEY_PNG, None),
            (3, "application/pdf", pdf.as_slice(), KEY_PDF, None),
            (4, "application/pdf", pdf.as_slice(), [7u8; 32], Some("2026-02-01T00:00:00.000Z")),
        ] {
            conn.execute(
                "INSERT INTO attachments (id, patient_id, kind, title, content_type, size, sha256, object_name, file_key, uploaded_at, uploaded_by_id, uploaded_by_name, deleted_at, objects_removed_at) \
                 VALUES (?1, 1, 'imaging', 'Scan', ?2, ?3, ?4, ?5, ?6, '2026-01-01T00:00:00.000Z', 'u1', 'Dr. Rao', ?7, ?7)",
                ward_tenancy::sql::params![id, ct, bytes.len() as i64, sha(bytes), format!("a/obj{id}"), key.to_vec(), removed],
            )
            .unwrap();
        }
        conn.execute(
            "UPDATE attachments SET thumbnail_object = 'a/thumb2', thumbnail_key = ?1, thumbnail_sha256 = 'cd' WHERE id = 2",
            [vec![0x3cu8; 32]],
        )
        .unwrap();
    })
    .await;
    c
}

/// The file behind an object name, as the attachment store would give it back.
fn bytes_of(object_name: &str) -> Vec<u8> {
    match object_name {
        "a/obj2" => png(),
        "a/obj3" => pdf(),
        other => panic!("no object {other}"),
    }
}

/// Writes the archive of `c` to `path`, each file in pieces of at most 64 KiB.
async fn write_archive(
    tp: &TestPlatform,
    c: &ClinicRecord,
    path: &Path,
) -> Result<(), ExportError> {
    let h: Header = header(c);
    let path = path.to_owned();
    tp.with(c, move |conn| {
        let mut w = ArchiveWriter::new(&h, std::fs::File::create(&path).unwrap());
        let files = w.write_document(&conn, &h)?;
        for f in &files {
            w.begin_file(&f.file)?;
            for piece in bytes_of(&f.object_name).chunks(64 * 1024) {
                w.write_file(piece)?;
            }
            w.end_file()?;
        }
        let (summary, out) = w.finish()?;
        out.sync_all().unwrap();
        assert_eq!(summary.files, 2);
        Ok(())
    })
    .await
}

fn unzip(path: &Path) -> BTreeMap<String, Vec<u8>> {
    zip_files(std::fs::File::open(path).unwrap())
}

fn rezip(entries: &BTreeMap<String, Vec<u8>>, path: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

async fn plain_doc(tp: &TestPlatform, c: &ClinicRecord) -> import::Document {
    let h = header(c);
    let bytes = tp
        .with(c, move |conn| {
            let mut out = Vec::new();
            export::write_export(&conn, &h, &mut out).unwrap();
            out
        })
        .await;
    import::parse(&bytes[..]).unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_archive_holds_the_document_and_every_live_file_and_no_key() {
    let tp = TestPlatform::new().await;
    let c = clinic_with_files(&tp, "Origin Clinic").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.zip");
    write_archive(&tp, &c, &path).await.unwrap();

    let entries = unzip(&path);
    assert_eq!(
        entries.keys().cloned().collect::<Vec<_>>(),
        ["attachments/2.png", "attachments/3.pdf", "ward-export.json"],
        "the removed file (4) and the erased one (1) are left out, and so is every thumbnail"
    );
    assert_eq!(entries["attachments/2.png"], png());
    assert_eq!(entries["attachments/3.pdf"], pdf());

    // The plain export carries the keys and the thumbnail; the archive none of them.
    let plain = tp
        .with(&c, |conn| {
            let mut out = Vec::new();
            export::write_export(&conn, &header(&c), &mut out).unwrap();
            out
        })
        .await;
    let raw = std::fs::read(&path).unwrap();
    for secret in [
        hex::encode(KEY_PNG),
        hex::encode(KEY_PDF),
        hex::encode([0x3cu8; 32]),
    ] {
        assert!(
            contains(&plain, secret.as_bytes()),
            "the JSON export has {secret}"
        );
        assert!(!contains(&entries["ward-export.json"], secret.as_bytes()));
        assert!(!contains(&raw, secret.as_bytes()));
    }
    assert!(contains(&plain, b"a/thumb2"));
    assert!(!contains(&entries["ward-export.json"], b"a/thumb2"));
    for key in [KEY_PNG, KEY_PDF] {
        assert!(!contains(&raw, &key), "no raw key in the archive");
    }

    let doc: J = serde_json::from_slice(&entries["ward-export.json"]).unwrap();
    assert_eq!(doc["format"], "ward-export");
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["path"], "attachments/2.png");
    assert_eq!(files[0]["size"], png().len());
    let table = &doc["tables"]["attachments"];
    let cols = ward_testkit::strs(&table["columns"]);
    let at = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    for row in table["rows"].as_array().unwrap() {
        assert_eq!(row[at("file_key")]["hex"], "0".repeat(64));
        assert!(row[at("thumbnail_object")].is_null());
        assert!(row[at("thumbnail_key")].is_null());
    }

    // The reader accepts it and lists the same files.
    let (doc, listed) = archive::read(&path).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(doc.files.as_ref().unwrap(), &listed);
    // Its document is refused on its own: its files are in the archive.
    assert!(refusal(archive::check_plain_json(&doc)).contains("import the archive"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_does_not_match_its_row_is_refused_both_ways() {
    let tp = TestPlatform::new().await;
    let c = clinic_with_files(&tp, "Origin Clinic").await;
    let dir = tempfile::tempdir().unwrap();

    // Writing: a file whose bytes differ from its row's digest fails the export.
    let h = header(&c);
    let err = tp
        .with(&c, move |conn| {
            let mut w = ArchiveWriter::new(&h, Vec::new());
            let files = w.write_document(&conn, &h).unwrap();
            let mut wrong = bytes_of(&files[0].object_name);
            wrong[100] ^= 1;
            w.begin_file(&files[0].file).unwrap();
            w.write_file(&wrong).unwrap();
            w.end_file().unwrap_err()
        })
        .await;
    assert!(matches!(&err, ExportError::File { id: 2, .. }), "{err:?}");

    // Reading: the archive as written is accepted...
    let good = dir.path().join("good.zip");
    write_archive(&tp, &c, &good).await.unwrap();
    archive::read(&good).unwrap();
    let entries = unzip(&good);
    let rewritten = dir.path().join("rewritten.zip");
    rezip(&entries, &rewritten);
    archive::read(&rewritten).unwrap();

    // ...one changed byte in a file is not.
    let mut tampered = entries.clone();
    tampered.get_mut("attachments/3.pdf").unwrap()[5] ^= 1;
    let bad = dir.path().join("tampered.zip");
    rezip(&tampered, &bad);
    let why = refusal(archive::read(&bad));
    assert!(
        why.contains("attachments/3.pdf does not match") && why.contains("altered or damaged"),
        "{why}"
    );
    // A file cut short, a file missing, an entry the list does not name, and a CSV-like
    // zip without the document: each archive changed so, and what its refusal says.
    type Change = fn(&mut BTreeMap<String, Vec<u8>>);
    let changes: [(Change, &str); 4] = [
        (
            |e| e.get_mut("attachments/2.png").unwrap().truncate(1000),
            "attachments/2.png does not match",
        ),
        (
            |e| {
                e.remove("attachments/2.png");
            },
            "has no attachments/2.png",
        ),
        (
            |e| {
                e.insert("attachments/2.thumbnail.jpg".into(), vec![0xff, 0xd8, 0xff]);
            },
            "not one of its listed files",
        ),
        (
            |e| {
                e.remove("ward-export.json");
            },
            "holds no ward-export.json",
        ),
    ];
    for (change, expected) in changes {
        let mut changed = entries.clone();
        change(&mut changed);
        rezip(&changed, &bad);
        let why = refusal(archive::read(&bad));
        assert!(why.contains(expected), "{expected}: {why}");
    }
    // A cut-off zip.
    let raw = std::fs::read(&good).unwrap();
    std::fs::write(&bad, &raw[..raw.len() / 2]).unwrap();
    assert!(refusal(archive::read(&bad)).contains("not a readable zip"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_export_is_refused_when_its_clinic_had_files_and_rows_point_at_new_objects() {
    let tp = TestPlatform::new().await;
    // `fill` alone: its one file is erased (an all-zero key), so nothing is lost.
    let plain_only = tp.clinic("No Files").await;
    tp.with(&plain_only, |conn| fill(&conn, 2)).await;
    let with_files = clinic_with_files(&tp, "With Files").await;
    archive::check_plain_json(&plain_doc(&tp, &plain_only).await).unwrap();
    let why = refusal(archive::check_plain_json(
        &plain_doc(&tp, &with_files).await,
    ));
    assert!(
        why.contains("names 2 attachment file(s) but holds none of them")
            && why.contains("--format zip"),
        "{why}"
    );

    // The archive's rows, pointed at new objects, import into a new clinic.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.zip");
    write_archive(&tp, &with_files, &path).await.unwrap();
    let (mut doc, _) = archive::read(&path).unwrap();
    let stored = BTreeMap::from([
        (2, ("a/new2".to_owned(), [0x11u8; 32])),
        (3, ("a/new3".to_owned(), [0x22u8; 32])),
    ]);
    let mut n = 0;
    archive::point_rows(&mut doc, &stored, || {
        n += 1;
        format!("a/unused{n}")
    })
    .unwrap();
    let copy = tp.clinic("Copy").await;
    let rows = tp
        .with(&copy, move |conn| {
            import::import(&conn, &doc, start(), "ops", "import").unwrap();
            let mut out = Vec::new();
            conn.for_each_row(
                "SELECT id, object_name, hex(file_key), thumbnail_object, objects_removed_at FROM attachments ORDER BY id",
                (),
                |r| {
                    out.push((
                        r.get::<i64>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                        r.get::<Option<String>>(3)?,
                        r.get::<Option<String>>(4)?,
                    ));
                    Ok::<_, ward_tenancy::sql::Error>(())
                },
            )
            .unwrap();
            out
        })
        .await;
    assert_eq!(rows.len(), 4);
    assert_eq!(
        (rows[1].1.as_str(), rows[1].2.as_str()),
        ("a/new2", "11".repeat(32).as_str())
    );
    assert_eq!(
        (rows[2].1.as_str(), rows[2].2.as_str()),
        ("a/new3", "22".repeat(32).as_str())
    );
    assert!(
        rows.iter().all(|r| r.3.is_none()),
        "no thumbnail comes along"
    );
    for r in [&rows[0], &rows[3]] {
        assert!(
            r.1.starts_with("a/unused"),
            "a row without its file names no object: {r:?}"
        );
        assert_eq!(r.2, "00".repeat(32));
    }
    assert!(rows[3].4.is_some(), "the removed file stays marked removed");
}
