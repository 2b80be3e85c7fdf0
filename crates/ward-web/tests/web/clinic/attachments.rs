//! Attachments through the pages: upload (sniffed, capped, encrypted), the list on the
//! patient page, viewing (sandboxed, digest-checked), roles, isolation, tampering,
//! deletion and the audit trail; several files per upload, the quota, retried uploads,
//! thumbnails, the sweep of deleted files and the purge.

use axum::http::StatusCode;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::DecryptorBE32;
use ward_clinic::audit::Filter;

use crate::support::staffed::{Clinic, Staffed as _};
use crate::support::{ATTACHMENT_CAP, TestApp, id_of};

/// A PNG-looking file of `len` bytes: the real signature and header, then a pattern
/// that carries a marker the encrypted object must not show.
fn png(len: usize) -> Vec<u8> {
    let mut b = vec![
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R',
    ];
    let mut i = 0u32;
    while b.len() < len {
        b.extend_from_slice(format!("PLAINTEXT-MARKER-{i:08};").as_bytes());
        i += 1;
    }
    b.truncate(len);
    b
}

fn pdf(text: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {text}\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
        .into_bytes()
}

/// The upload form's action on the patient page, if it shows one.
fn upload_action(page: &str) -> Option<String> {
    let form = page.find("enctype=\"multipart/form-data\"")?;
    let start = page[..form].rfind("action=\"")? + "action=\"".len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].replace("&amp;", "&"))
}

/// One upload as the patient page's form sends it: a title, a kind and its files, in
/// order.
struct Upload<'a> {
    title: &'a str,
    kind: &'a str,
    files: Vec<(&'a str, &'a str, &'a [u8])>,
}

impl<'a> Upload<'a> {
    fn new(title: &'a str, kind: &'a str) -> Self {
        Upload {
            title,
            kind,
            files: Vec::new(),
        }
    }

    /// Adds the file `name` of the media type `mime`.
    fn file(mut self, name: &'a str, mime: &'a str, bytes: &'a [u8]) -> Self {
        self.files.push((name, mime, bytes));
        self
    }

    fn pdf(self, name: &'a str, bytes: &'a [u8]) -> Self {
        self.file(name, "application/pdf", bytes)
    }

    fn png(self, name: &'a str, bytes: &'a [u8]) -> Self {
        self.file(name, "image/png", bytes)
    }

    fn jpeg(self, name: &'a str, bytes: &'a [u8]) -> Self {
        self.file(name, "image/jpeg", bytes)
    }

    /// Posts the upload, without an upload key, to the form on the patient page (or, where
    /// the page shows no form, to the patient's attachments with the page's CSRF token).
    async fn post(&self, browser: &mut TestApp, patient: &str) -> crate::support::Response {
        let page = browser.get(patient).await;
        let action = upload_action(&page.body)
            .unwrap_or_else(|| format!("{patient}/attachments?_csrf={}", page.csrf()));
        browser
            .post_files(
                &action,
                &[("title", self.title), ("kind", self.kind)],
                &self.files,
            )
            .await
    }

    /// [`Self::post`], which must be accepted (redirected back to the patient page).
    async fn accepted(&self, browser: &mut TestApp, patient: &str) {
        let r = self.post(browser, patient).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }

    /// Posts the upload through the form on the page at `path`, with that form's own
    /// upload key.
    async fn post_keyed(&self, browser: &mut TestApp, path: &str) -> crate::support::Response {
        let (action, key) = upload_form(browser, path).await;
        browser
            .post_files(
                &action,
                &[
                    ("upload_key", &key),
                    ("title", self.title),
                    ("kind", self.kind),
                ],
                &self.files,
            )
            .await
    }
}

/// Deletes the attachment `id` of `patient` for `reason`, from the patient page.
async fn delete(
    browser: &mut TestApp,
    patient: &str,
    id: impl std::fmt::Display,
    reason: &str,
) -> crate::support::Response {
    browser
        .submit(
            patient,
            &format!("{patient}/attachments/{id}/delete"),
            &[("reason", reason)],
        )
        .await
}

/// (id, object name, key, kind) of every attachment row, oldest first.
async fn rows(t: &TestApp, c: &Clinic) -> Vec<(i64, String, Vec<u8>, String, Option<String>)> {
    let tenant = t.app.tenants.get(c.id).await.unwrap();
    tenant
        .with(|conn| {
            conn.rows(
                "SELECT id, object_name, file_key, kind, delete_reason FROM attachments ORDER BY id",
                (),
                |r| {
                    Ok::<_, ward_tenancy::sql::Error>((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                },
            )
        })
        .await
        .unwrap()
}

/// Every file under the attachment store's folder.
fn stored_files(t: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&t.dir.path().join("attachments"), &mut out);
    out.sort();
    out
}

/// Opens an object by the documented format alone: a 19-byte nonce prefix, then 64 KiB
/// chunks sealed with XChaCha20-Poly1305 STREAM (BE32), the object name as associated
/// data.
fn decrypt(object: &[u8], key: &[u8], name: &str) -> Option<Vec<u8>> {
    let (prefix, mut rest) = object.split_at_checked(19)?;
    let cipher = XChaCha20Poly1305::new(GenericArray::from_slice(key));
    let mut dec = DecryptorBE32::from_aead(cipher, GenericArray::from_slice(prefix));
    let mut out = Vec::new();
    let sealed = 64 * 1024 + 16;
    while rest.len() > sealed {
        let (chunk, tail) = rest.split_at(sealed);
        out.extend(
            dec.decrypt_next(chacha20poly1305::aead::Payload {
                msg: chunk,
                aad: name.as_bytes(),
            })
            .ok()?,
        );
        rest = tail;
    }
    out.extend(
        dec.decrypt_last(chacha20poly1305::aead::Payload {
            msg: rest,
            aad: name.as_bytes(),
        })
        .ok()?,
    );
    Some(out)
}

#[tokio::test]
async fn attachments_are_sniffed_capped_encrypted_shown_by_role_and_deleted() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Asha Clinic", "asha").await;
    let patient = c.patient("Zubair Khan", "98450 11111").await;

    // A PNG over two chunks and a small PDF, uploaded by the doctor.
    let image = png(150 * 1024);
    Upload::new("Zubair chest X-ray", "imaging")
        .png("zubair-xray.png", &image)
        .accepted(&mut c.doctor, &patient)
        .await;
    let report = pdf("Zubair blood count");
    Upload::new("Zubair CBC", "lab_report")
        .pdf("zubair-cbc.pdf", &report)
        .accepted(&mut c.doctor, &patient)
        .await;

    let page = c.doctor.get(&patient).await;
    page.assert_contains("Zubair chest X-ray");
    assert!(page.body.contains("Zubair CBC"));
    assert!(page.body.contains("PNG") && page.body.contains("PDF"));
    assert!(page.body.contains("Dr. Bina Shah"));

    // The objects hold ciphertext under random names; the row's key opens them exactly.
    let all = rows(&t, &c).await;
    assert_eq!(all.len(), 2);
    let (png_id, png_name, png_key, _, _) = all[0].clone();
    let (pdf_id, pdf_name, pdf_key, _, _) = all[1].clone();
    assert!(!png_name.contains("zubair") && !png_name.contains("xray"));
    assert_eq!(png_key.len(), 32);
    assert_ne!(png_key, pdf_key);
    let raw = t.app.attachments.raw(&png_name).await.unwrap().unwrap();
    assert!(
        !raw.windows(16).any(|w| w == b"PLAINTEXT-MARKER"),
        "the stored object shows the plaintext"
    );
    assert_eq!(
        decrypt(&raw, &png_key, &png_name).as_deref(),
        Some(&image[..])
    );
    assert_eq!(
        decrypt(&raw, &pdf_key, &png_name),
        None,
        "another key opens it"
    );
    let raw_pdf = t.app.attachments.raw(&pdf_name).await.unwrap().unwrap();
    assert_eq!(
        decrypt(&raw_pdf, &pdf_key, &pdf_name).as_deref(),
        Some(&report[..])
    );

    // Viewing gives the exact bytes, sandboxed and uncached.
    let png_url = format!("{patient}/attachments/{png_id}");
    let pdf_url = format!("{patient}/attachments/{pdf_id}");
    let r = c.doctor.get(&png_url).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, image);
    let h = |name: &str| {
        r.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(h("content-type"), "image/png");
    assert!(h("content-security-policy").starts_with("sandbox; default-src 'none'"));
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("cache-control"), "no-store");
    let r = c.doctor.get(&format!("{pdf_url}/download")).await;
    assert_eq!(r.bytes, report);
    assert!(
        r.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );

    // Sniffed, not named: a text file called .pdf is refused and nothing is stored.
    let files_before = stored_files(&t);
    let r = Upload::new("Zubair notes", "other")
        .pdf("notes.pdf", b"just some text, not a PDF at all")
        .post(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_contains("PDF, JPEG, PNG, WebP and DICOM");
    // Over the cap: refused while streaming, nothing stored.
    let big = png(usize::try_from(ATTACHMENT_CAP).unwrap() + 70 * 1024);
    let r = Upload::new("Zubair big", "photo")
        .png("big.png", &big)
        .post(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    r.assert_contains("larger than");
    assert_eq!(rows(&t, &c).await.len(), 2);
    assert_eq!(stored_files(&t), files_before);

    // The front desk: no clinical files, but consent forms.
    let r = c.receptionist.get(&pdf_url).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.bytes.windows(8).any(|w| w == b"%PDF-1.4"));
    let page = c.receptionist.get(&patient).await;
    assert!(!page.body.contains("Zubair CBC"));
    assert!(!page.body.contains("value=\"lab_report\""));
    let r = c
        .receptionist
        .post_multipart(
            &upload_action(&page.body).unwrap(),
            &[("title", "Zubair lab"), ("kind", "lab_report")],
            ("lab.pdf", "application/pdf", &report),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let consent = pdf("Zubair consent signed");
    Upload::new("Zubair consent", "consent")
        .pdf("consent.pdf", &consent)
        .accepted(&mut c.receptionist, &patient)
        .await;
    let consent_id = rows(&t, &c).await[2].0;
    let r = c
        .receptionist
        .get(&format!("{patient}/attachments/{consent_id}"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, consent);
    assert!(
        c.receptionist
            .get(&patient)
            .await
            .body
            .contains("Zubair consent")
    );
    // Billing sees none of them.
    assert_eq!(
        c.billing
            .get(&format!("{patient}/attachments/{consent_id}"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Another clinic's owner finds nothing there.
    let mut other = t.clinic("Other Clinic", "other").await;
    let r = other.owner.get(&png_url).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_ne!(r.bytes, image);

    // A flipped byte in the stored object: an error, never the tampered bytes.
    let pdf_file = stored_files(&t)
        .into_iter()
        .find(|p| {
            p.to_string_lossy()
                .ends_with(pdf_name.rsplit('/').next().unwrap())
        })
        .unwrap();
    let mut stored = std::fs::read(&pdf_file).unwrap();
    stored[30] ^= 0x01;
    std::fs::write(&pdf_file, &stored).unwrap();
    let r = c.doctor.get(&pdf_url).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!r.bytes.windows(8).any(|w| w == b"%PDF-1.4"));

    // Delete: a reason is required; then hidden, 404, and the object gone.
    let r = delete(&mut c.doctor, &patient, png_id, " ").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(t.app.attachments.raw(&png_name).await.unwrap().is_some());
    let r = delete(
        &mut c.doctor,
        &patient,
        png_id,
        "uploaded to the wrong patient",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        !c.doctor
            .get(&patient)
            .await
            .body
            .contains("Zubair chest X-ray")
    );
    assert_eq!(c.doctor.get(&png_url).await.status, StatusCode::NOT_FOUND);
    // The object stays for the retention for deleted records (swept later).
    assert!(t.app.attachments.raw(&png_name).await.unwrap().is_some());
    assert_eq!(
        rows(&t, &c).await[0].4.as_deref(),
        Some("uploaded to the wrong patient")
    );

    // Audited by id and kind: never the title, the file name or the reason.
    let audit = t.audit_of(c.id, ("attachment", png_id), None).await;
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&"create"), "{actions:?}");
    assert!(actions.contains(&"view"), "{actions:?}");
    assert!(actions.contains(&"delete"), "{actions:?}");
    let all_rows = t.audit(c.id, Filter::default()).await;
    let attachment_rows: Vec<_> = all_rows
        .iter()
        .filter(|r| r.entity_type.as_deref() == Some("attachment"))
        .collect();
    assert!(attachment_rows.len() >= 8, "{attachment_rows:?}");
    let text = serde_json::to_string(&all_rows).unwrap();
    for secret in [
        "Zubair chest X-ray",
        "Zubair CBC",
        "zubair-xray.png",
        "zubair-cbc.pdf",
        "consent.pdf",
        "wrong patient",
    ] {
        assert!(!text.contains(secret), "the audit log shows {secret:?}");
    }
    assert!(text.contains("\"detail\":\"imaging\""), "{text}");
}

#[tokio::test]
async fn erasure_removes_the_patients_files_their_titles_and_keys() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Erase Clinic", "erase").await;
    let patient = c.patient("Yusuf Ali", "98450 22222").await;
    let consent = pdf("Yusuf consent");
    Upload::new("Yusuf consent form", "consent")
        .pdf("yusuf.pdf", &consent)
        .accepted(&mut c.receptionist, &patient)
        .await;
    let (aid, name, _, _, _) = rows(&t, &c).await[0].clone();
    assert!(t.app.attachments.raw(&name).await.unwrap().is_some());
    // A photo with its thumbnail: both objects go too.
    let photo = real_image(100, 80, image::ImageFormat::Png);
    Upload::new("Yusuf photo", "photo")
        .png("yusuf.png", &photo)
        .accepted(&mut c.doctor, &patient)
        .await;
    assert_eq!(stored_files(&t).len(), 3);

    let erase = format!("{patient}/erase");
    let r = c
        .owner
        .submit_page(&erase, &[("ground", "patient_request"), ("confirm", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(t.app.attachments.raw(&name).await.unwrap().is_none());
    assert_eq!(stored_files(&t), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        t.count(
            c.id,
            "SELECT count(*) FROM attachments WHERE thumbnail_key IS NOT NULL \
             AND thumbnail_key != zeroblob(32)"
        )
        .await,
        0
    );
    let (_, _, key, _, reason) = rows(&t, &c).await[0].clone();
    assert_eq!(key, vec![0u8; 32]);
    assert_eq!(reason.as_deref(), Some("Erased"));
    assert_eq!(
        t.count(
            c.id,
            "SELECT count(*) FROM attachments WHERE title LIKE '%Yusuf%'"
        )
        .await,
        0
    );
    let r = c.owner.get(&format!("{patient}/attachments/{aid}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dicom_is_downloaded_and_an_upload_without_the_form_token_is_refused() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Scan Clinic", "scan").await;
    let patient = c.patient("Wanda Mehta", "98450 33333").await;
    let mut dicom = vec![0u8; 128];
    dicom.extend_from_slice(b"DICM");
    dicom.extend_from_slice(&[7u8; 2000]);
    Upload::new("Wanda CT", "imaging")
        .file("scan.dcm", "application/octet-stream", &dicom)
        .accepted(&mut c.doctor, &patient)
        .await;
    let id = rows(&t, &c).await[0].0;
    assert!(c.doctor.get(&patient).await.body.contains("DICOM"));
    let r = c.doctor.get(&format!("{patient}/attachments/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, dicom);
    assert_eq!(r.headers["content-type"], "application/dicom");
    assert!(
        r.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(r.headers["cache-control"], "no-store");

    // Without the form's token (or with another), nothing is read or stored; nor with
    // a title too long to be one.
    let files = stored_files(&t);
    let long = "x".repeat(5000);
    let r = Upload::new(&long, "imaging")
        .file("scan.dcm", "application/octet-stream", &dicom)
        .post(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_contains("at most 200 characters");
    for action in [
        format!("{patient}/attachments"),
        format!("{patient}/attachments?_csrf=0000"),
    ] {
        let r = c
            .doctor
            .post_multipart(
                &action,
                &[("title", "Wanda again"), ("kind", "imaging")],
                ("scan.dcm", "application/octet-stream", &dicom),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(rows(&t, &c).await.len(), 1);
    assert_eq!(stored_files(&t), files);
}

#[tokio::test]
async fn a_file_attached_from_a_visit_page_belongs_to_that_visit() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Visit Clinic", "visit").await;
    let patient = c.patient("Vera Das", "98450 44444").await;
    let other = c.patient("Omar Das", "98450 55555").await;
    let visit_page = c
        .doctor
        .record_visit(&patient, &[("presenting_complaints", "rash")])
        .await;
    let visit_id = id_of(&visit_page).to_owned();
    let page = c.doctor.get(&visit_page).await;
    let action = upload_action(&page.body).expect("the visit page has an upload form");
    assert!(
        page.body
            .contains(&format!("name=\"visit\" value=\"{visit_id}\""))
    );
    let photo = png(2000);
    let r = c
        .doctor
        .post_multipart(
            &action,
            &[
                ("visit", &visit_id),
                ("title", "Vera rash day 1"),
                ("kind", "photo"),
            ],
            ("rash.png", "image/png", &photo),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with(&visit_page), "{}", r.location());
    assert!(
        c.doctor
            .get(&visit_page)
            .await
            .body
            .contains("Vera rash day 1")
    );
    assert!(
        c.doctor
            .get(&patient)
            .await
            .body
            .contains("Vera rash day 1")
    );
    let visit_of_row = t
        .count(
            c.id,
            "SELECT visit_id FROM attachments WHERE kind = 'photo'",
        )
        .await;
    assert_eq!(visit_of_row.to_string(), visit_id);

    // Another patient's visit cannot be named; nothing is stored.
    let files = stored_files(&t);
    let page = c.doctor.get(&other).await;
    let r = c
        .doctor
        .post_multipart(
            &upload_action(&page.body).unwrap(),
            &[("visit", &visit_id), ("title", "Omar"), ("kind", "photo")],
            ("x.png", "image/png", &photo),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(stored_files(&t), files);
}

#[tokio::test]
async fn merging_moves_the_duplicates_files_and_undoing_brings_them_back() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Merge Clinic", "merge").await;
    let kept = c.patient("Uma Rao", "98450 66666").await;
    let dup = c.patient("Uma Rao", "98450 77777").await;
    let consent = pdf("Uma consent");
    Upload::new("Uma consent form", "consent")
        .pdf("uma.pdf", &consent)
        .accepted(&mut c.receptionist, &dup)
        .await;
    let kept_id = id_of(&kept);
    let dup_id = id_of(&dup);
    let owner_of = |id: &str| format!("SELECT count(*) FROM attachments WHERE patient_id = {id}");

    let merge = format!("{kept}/merge");
    let r = c.receptionist.submit_page(&merge, &[("other", "2")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(t.count(c.id, &owner_of(kept_id)).await, 1);
    assert!(
        c.receptionist
            .get(&kept)
            .await
            .body
            .contains("Uma consent form")
    );
    let aid = rows(&t, &c).await[0].0;
    let r = c
        .receptionist
        .get(&format!("{kept}/attachments/{aid}"))
        .await;
    assert_eq!(r.bytes, consent);
    // The merged-away record takes no new file: it goes to the kept one.
    let r = Upload::new("Late consent", "consent")
        .pdf("late.pdf", &pdf("late"))
        .post(&mut c.receptionist, &dup)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    r.assert_contains("merged into No. 1");
    assert_eq!(rows(&t, &c).await.len(), 1, "nothing stored");

    let r = c
        .receptionist
        .submit(&kept, &format!("{kept}/merges/1/undo"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(t.count(c.id, &owner_of(dup_id)).await, 1);
    assert_eq!(t.count(c.id, &owner_of(kept_id)).await, 0);
}

#[tokio::test]
async fn damage_past_the_first_chunk_ends_the_stream_with_an_error() {
    use futures::StreamExt;
    let t = TestApp::new().await;
    let store = &t.app.attachments;
    let plain = png(200 * 1024);
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = plain
        .chunks(10_000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let stored = store.put(futures::stream::iter(pieces)).await.unwrap();
    assert_eq!(stored.content_type, "image/png");
    assert_eq!(stored.size, plain.len() as u64);

    // Intact: every byte back, in order.
    let mut out = Vec::new();
    let mut s = store
        .open(&stored.object_name, &stored.key, &stored.sha256)
        .await
        .unwrap();
    while let Some(piece) = s.next().await {
        out.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(out, plain);

    // A wrong digest on the row: the bytes open but the end is an error.
    let mut s = store
        .open(&stored.object_name, &stored.key, &"0".repeat(64))
        .await
        .unwrap();
    let mut last = None;
    while let Some(piece) = s.next().await {
        last = Some(piece.is_ok());
    }
    assert_eq!(last, Some(false));

    // A flipped byte in the third chunk: the first chunks go out, then an error.
    let file = stored_files(&t).pop().unwrap();
    let mut raw = std::fs::read(&file).unwrap();
    raw[19 + 2 * (64 * 1024 + 16) + 5] ^= 0x80;
    std::fs::write(&file, &raw).unwrap();
    let mut s = store
        .open(&stored.object_name, &stored.key, &stored.sha256)
        .await
        .unwrap();
    let mut good = 0;
    let mut failed = false;
    while let Some(piece) = s.next().await {
        match piece {
            Ok(b) => good += b.len(),
            Err(_) => failed = true,
        }
    }
    assert!(failed);
    assert_eq!(good, 2 * 64 * 1024, "only the intact chunks went out");
}

// ------------------------------------------------------------ several files, quota, retries

/// A real image of `w` x `h` pixels in `format`.
fn real_image(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// The upload form's action and its upload key, from the page at `path`.
async fn upload_form(browser: &mut TestApp, path: &str) -> (String, String) {
    let page = browser.get(path).await;
    let action = upload_action(&page.body).expect("an upload form");
    let key = crate::support::field_value(&page.body, "upload_key").expect("an upload key");
    (action, key)
}

/// (title, size, has a thumbnail) of every attachment row, oldest first.
async fn titles(t: &TestApp, c: &Clinic) -> Vec<(String, i64, bool)> {
    let tenant = t.app.tenants.get(c.id).await.unwrap();
    tenant
        .with(|conn| {
            conn.rows(
                "SELECT title, size, thumbnail_object IS NOT NULL FROM attachments ORDER BY id",
                (),
                |r| Ok::<_, ward_tenancy::sql::Error>((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn several_files_in_one_upload_are_numbered_and_stored_all_or_nothing() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Batch Clinic", "batch").await;
    let patient = c.patient("Meera Iyer", "98450 22222").await;
    let page = c.doctor.get(&patient).await;
    assert!(
        page.body.contains("type=\"file\" multiple"),
        "the file input takes several files"
    );

    // Three files, one title and kind: three rows, numbered, each its own object.
    let (action, key) = upload_form(&mut c.doctor, &patient).await;
    let first = pdf("Meera report page one");
    let second = real_image(40, 30, image::ImageFormat::Png);
    let third = pdf("Meera report page three");
    let r = c
        .doctor
        .post_files(
            &action,
            &[
                ("upload_key", &key),
                ("title", "Meera labs"),
                ("kind", "lab_report"),
            ],
            &[
                ("one.pdf", "application/pdf", &first),
                ("two.png", "image/png", &second),
                ("three.pdf", "application/pdf", &third),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().ends_with("#attachments"));
    let all = titles(&t, &c).await;
    let names: Vec<&str> = all.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        names,
        [
            "Meera labs (1 of 3)",
            "Meera labs (2 of 3)",
            "Meera labs (3 of 3)"
        ]
    );
    assert_eq!(all[1].1, i64::try_from(second.len()).unwrap());
    let objects = stored_files(&t);
    // Three files and the image's thumbnail.
    assert_eq!(objects.len(), 4, "{objects:?}");
    let page = c.doctor.get(&patient).await;
    assert!(page.body.contains("Meera labs (3 of 3)"));
    let ids: Vec<i64> = rows(&t, &c).await.iter().map(|r| r.0).collect();
    let r = c
        .doctor
        .get(&format!("{patient}/attachments/{}", ids[2]))
        .await;
    assert_eq!(r.bytes, third);
    // One audit row per file.
    let creates = t
        .audit(c.id, Filter::default())
        .await
        .into_iter()
        .filter(|r| r.entity_type.as_deref() == Some("attachment") && r.action == "create")
        .count();
    assert_eq!(creates, 3);

    // One file of the batch refused by its content: the message names it, and nothing
    // of the batch is kept (the first file's object, already written, is removed).
    let r = Upload::new("Meera more", "other")
        .pdf("good.pdf", &first)
        .pdf("notes.pdf", b"plain words, no PDF here")
        .pdf("after.pdf", &third)
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    r.assert_contains("notes.pdf");
    r.assert_contains("file 2 of this upload");
    r.assert_contains("Nothing was stored");
    assert_eq!(titles(&t, &c).await.len(), 3);
    assert_eq!(stored_files(&t), objects);

    // One file of the batch over the cap: 413, naming it, nothing kept.
    let big = png(usize::try_from(ATTACHMENT_CAP).unwrap() + 1024);
    let r = Upload::new("Meera photos", "photo")
        .png("small.png", &second)
        .png("huge.png", &big)
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    r.assert_contains("huge.png");
    r.assert_contains("larger than");
    assert_eq!(titles(&t, &c).await.len(), 3);
    assert_eq!(stored_files(&t), objects);
}

#[tokio::test]
async fn the_quota_refuses_what_would_pass_it_and_the_owner_sees_the_usage() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Quota Clinic", "quota").await;
    let base = c.base.clone();
    let patient = c.patient("Ravi Rao", "98450 33333").await;
    let settings = format!("{base}/settings");
    let page = c.owner.get(&settings).await;
    page.assert_contains("0 B of 2 MB");

    // 4 x 450 KiB = 1.76 MiB of the 2 MiB quota, in one upload (whose body is larger
    // than one file's cap: each file is capped, not the upload).
    let file = png(450 * 1024);
    let r = Upload::new("Scans", "imaging")
        .png("scan1.png", &file)
        .png("scan2.png", &file)
        .png("scan3.png", &file)
        .png("scan4.png", &file)
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(titles(&t, &c).await.len(), 4);
    assert_eq!(crate::support::ATTACHMENT_QUOTA, 2 * 1024 * 1024);
    let page = c.owner.get(&settings).await;
    page.assert_contains("1.8 MB of 2 MB");

    // One more would pass it: 413, a clear page, nothing stored.
    let before = stored_files(&t);
    let r = Upload::new("Scan 5", "imaging")
        .png("scan.png", &file)
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    r.assert_contains("quota of 2 MB");
    r.assert_contains("Nothing was");
    assert_eq!(titles(&t, &c).await.len(), 4);
    assert_eq!(stored_files(&t), before);

    // Another clinic's quota is its own.
    let mut other = t.clinic("Roomy Clinic", "roomy").await;
    let obase = other.base.clone();
    let op = other
        .receptionist
        .register(
            &obase,
            &[("full_name", "Asha Rao"), ("phone", "98450 44444")],
        )
        .await;
    let (action, key) = upload_form(&mut other.doctor, &op).await;
    let r = other
        .doctor
        .post_files(
            &action,
            &[("upload_key", &key), ("title", "Scan"), ("kind", "imaging")],
            &[("scan.png", "image/png", &file)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // Deleting a file makes room again.
    let first = rows(&t, &c).await[0].0;
    let r = delete(&mut c.doctor, &patient, first, "a duplicate").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(c.owner.get(&settings).await.body.contains("1.3 MB of 2 MB"));
    let r = Upload::new("Scan 5", "imaging")
        .png("scan.png", &file)
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Only owners see the settings page.
    assert_eq!(c.doctor.get(&settings).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_retried_upload_with_the_same_key_is_stored_once() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Retry Clinic", "retry").await;
    let patient = c.patient("Kiran Das", "98450 55555").await;
    let other_patient = c.patient("Leela Das", "98450 66666").await;
    let (action, key) = upload_form(&mut c.doctor, &patient).await;
    assert_eq!(key.len(), 32);
    // Each page view makes a new key.
    assert_ne!(upload_form(&mut c.doctor, &patient).await.1, key);
    let report = pdf("Kiran report");
    let form = [
        ("upload_key", key.as_str()),
        ("title", "Kiran report"),
        ("kind", "lab_report"),
    ];
    let files: [(&str, &str, &[u8]); 2] = [
        ("a.pdf", "application/pdf", &report),
        ("b.pdf", "application/pdf", &report),
    ];
    let r = c.doctor.post_files(&action, &form, &files).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let first_location = r.location().to_owned();
    let objects = stored_files(&t);
    assert_eq!(objects.len(), 2);

    // The same upload again (the answer was lost; the script retries): the answer is
    // the same, and nothing more is stored.
    let r = c.doctor.post_files(&action, &form, &files).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), first_location);
    assert_eq!(titles(&t, &c).await.len(), 2);
    assert_eq!(stored_files(&t), objects);

    // The key cannot be replayed against another record.
    let other_action = action.replace(&patient, &other_patient);
    assert_ne!(other_action, action);
    let r = c.doctor.post_files(&other_action, &form, &files).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(titles(&t, &c).await.len(), 2);
    assert_eq!(stored_files(&t), objects);

    // A malformed key is refused; a fresh key stores again.
    let bad = [
        ("upload_key", "short"),
        ("title", "Kiran"),
        ("kind", "lab_report"),
    ];
    let r = c.doctor.post_files(&action, &bad, &files).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (action, key) = upload_form(&mut c.doctor, &patient).await;
    let form = [
        ("upload_key", key.as_str()),
        ("title", "Kiran again"),
        ("kind", "lab_report"),
    ];
    let r = c.doctor.post_files(&action, &form, &files[..1]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(titles(&t, &c).await.len(), 3);

    // The script that sends the form with a progress bar is served from Ward itself.
    let page = c.doctor.get(&patient).await;
    assert!(page.body.contains("<script src=\"/static/upload.js\""));
    assert!(page.body.contains("<progress"));
    let js = c.doctor.get("/static/upload.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.body.contains("upload.addEventListener(\"progress\""));
}

// ------------------------------------------------------------------------------ thumbnails

#[tokio::test]
async fn images_get_a_thumbnail_stored_encrypted_and_served_like_the_file() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Thumb Clinic", "thumb").await;
    let patient = c.patient("Nisha Pai", "98450 77777").await;
    let wide = real_image(600, 300, image::ImageFormat::Png);
    let photo = real_image(300, 500, image::ImageFormat::Jpeg);
    let broken = png(2048); // a PNG signature over nonsense: stored, no thumbnail
    let r = Upload::new("Nisha wound", "photo")
        .png("wide.png", &wide)
        .jpeg("tall.jpg", &photo)
        .png("broken.png", &broken)
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let all = titles(&t, &c).await;
    assert_eq!(
        all.iter().map(|a| a.2).collect::<Vec<_>>(),
        [true, true, false],
        "a thumbnail failure does not fail the upload"
    );
    let ids: Vec<i64> = rows(&t, &c).await.iter().map(|r| r.0).collect();
    let page = c.doctor.get(&patient).await;
    for id in &ids[..2] {
        page.assert_contains(&format!("src=\"{patient}/attachments/{id}/thumbnail\""));
    }
    assert!(
        !page
            .body
            .contains(&format!("attachments/{}/thumbnail", ids[2]))
    );

    // Served as a small JPEG keeping the shape, under the file's rules.
    for (id, size) in [(ids[0], (256, 128)), (ids[1], (154, 256))] {
        let r = c
            .doctor
            .get(&format!("{patient}/attachments/{id}/thumbnail"))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "image/jpeg");
        assert_eq!(r.headers["cache-control"], "no-store");
        assert!(
            r.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("sandbox;")
        );
        let img = image::load_from_memory_with_format(&r.bytes, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), size);
    }
    let r = c
        .doctor
        .get(&format!("{patient}/attachments/{}/thumbnail", ids[2]))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The thumbnail's object is encrypted under its own key.
    let tenant = t.app.tenants.get(c.id).await.unwrap();
    let first = ids[0];
    let (thumb_name, thumb_key, file_key): (String, Vec<u8>, Vec<u8>) = tenant
        .with(move |conn| {
            conn.row(
                "SELECT thumbnail_object, thumbnail_key, file_key FROM attachments WHERE id = ?1",
                [first],
                |r| Ok::<_, ward_tenancy::sql::Error>((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })
        .await
        .unwrap()
        .unwrap();
    assert_ne!(thumb_key, file_key);
    let raw = t.app.attachments.raw(&thumb_name).await.unwrap().unwrap();
    assert!(image::load_from_memory(&raw).is_err());
    let plain = decrypt(&raw, &thumb_key, &thumb_name).unwrap();
    assert_eq!(&plain[..2], [0xFF, 0xD8]);

    // Roles and isolation as for the file; views are audited.
    let url = format!("{patient}/attachments/{}/thumbnail", ids[0]);
    assert_eq!(c.receptionist.get(&url).await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.billing.get(&url).await.status, StatusCode::FORBIDDEN);
    let mut other = t.clinic("Elsewhere", "elsewhere").await;
    assert_eq!(other.owner.get(&url).await.status, StatusCode::NOT_FOUND);
    let views = t
        .audit_of(c.id, ("attachment", ids[0]), None)
        .await
        .into_iter()
        .filter(|r| r.action == "view")
        .count();
    assert_eq!(views, 1);

    // A deleted image's thumbnail is gone with it.
    let r = delete(&mut c.doctor, &patient, ids[0], "blurred").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(c.doctor.get(&url).await.status, StatusCode::NOT_FOUND);
}

// -------------------------------------------------------------- retention and purge

#[tokio::test]
async fn deleted_files_stay_for_the_retention_and_the_sweep_then_removes_them() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Sweep Clinic", "sweep").await;
    let patient = c.patient("Omar Ali", "98450 88888").await;
    let img = real_image(64, 64, image::ImageFormat::Png);
    let r = Upload::new("Omar", "photo")
        .png("a.png", &img)
        .pdf("b.pdf", &pdf("Omar kept"))
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Two files, one thumbnail.
    assert_eq!(stored_files(&t).len(), 3);
    let (gone_id, gone_name, ..) = rows(&t, &c).await[0].clone();
    let r = delete(&mut c.doctor, &patient, gone_id, "wrong patient").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // Hidden at once, but the objects stay for the retention.
    assert_eq!(
        c.doctor
            .get(&format!("{patient}/attachments/{gone_id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(t.app.attachments.exists(&gone_name).await.unwrap());
    async fn sweep(
        t: &TestApp,
    ) -> Result<ward_web::attachments::Swept, ward_control::ControlError> {
        ward_web::attachments::sweep_deleted(
            &t.app.control,
            &t.app.tenants,
            &t.app.attachments,
            t.app.clock.now(),
            t.app.config.retention_days,
        )
        .await
    }
    t.clock.advance(chrono::TimeDelta::days(89));
    assert_eq!(sweep(&t).await.unwrap().attachments, 0);
    assert_eq!(stored_files(&t).len(), 3);

    // Past the retention (90 days in tests): the file and its thumbnail go; the other
    // file stays, and the row keeps who, when and why.
    t.clock.advance(chrono::TimeDelta::days(2));
    let s = sweep(&t).await.unwrap();
    assert_eq!(s.attachments, 1);
    assert_eq!(s.failed, 0);
    assert!(!t.app.attachments.exists(&gone_name).await.unwrap());
    let left = stored_files(&t);
    assert_eq!(left.len(), 1, "{left:?}");
    let kept = rows(&t, &c).await[1].1.clone();
    assert!(
        left[0]
            .to_string_lossy()
            .ends_with(kept.rsplit('/').next().unwrap())
    );
    assert_eq!(rows(&t, &c).await[0].4.as_deref(), Some("wrong patient"));
    // Nothing is left to do the next time.
    assert_eq!(sweep(&t).await.unwrap().attachments, 0);
    assert!(t.app.attachments.exists(&kept).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn purging_a_clinic_deletes_its_objects_before_its_key() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Purge Clinic", "purge").await;
    let mut keep = t.clinic("Kept Clinic", "kept").await;
    let base = c.base.clone();
    let patient = c.patient("Tara Sen", "98450 99999").await;
    let kbase = keep.base.clone();
    let kept_patient = keep
        .receptionist
        .register(
            &kbase,
            &[("full_name", "Uma Sen"), ("phone", "98450 12121")],
        )
        .await;
    let img = real_image(80, 40, image::ImageFormat::Jpeg);
    let r = Upload::new("Tara", "photo")
        .jpeg("a.jpg", &img)
        .pdf("b.pdf", &pdf("Tara"))
        .pdf("c.pdf", &pdf("Tara deleted"))
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // A deleted file (its objects kept for the retention) goes too.
    let deleted = rows(&t, &c).await[2].0;
    delete(&mut c.doctor, &patient, deleted, "duplicate").await;
    let r = Upload::new("Uma", "lab_report")
        .pdf("u.pdf", &pdf("Uma"))
        .post_keyed(&mut keep.doctor, &kept_patient)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let kept_object = rows(&t, &keep).await[0].1.clone();
    // Three files and a thumbnail of the clinic to purge, one of the other.
    assert_eq!(stored_files(&t).len(), 5);

    let settings = format!("{base}/settings/close");
    let r = c
        .owner
        .submit_page(&settings, &[("clinic_name", "Purge Clinic")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let purger = || {
        ward_control::lifecycle::Purger::new(
            t.app.control.clone(),
            t.app.tenants.clone(),
            t.dir.path().join("backups"),
            t.dir.path().join("exports"),
            ward_control::lifecycle::retention_days(90),
        )
        .with_before(std::sync::Arc::new(ward_web::attachments::PurgeObjects {
            tenants: t.app.tenants.clone(),
            store: t.app.attachments.clone(),
        }))
    };
    // Not yet due: nothing goes.
    assert!(
        purger()
            .run(&ward_core::Actor::Operator, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(stored_files(&t).len(), 5);
    t.clock.advance(chrono::TimeDelta::days(91));
    let done = purger()
        .run(&ward_core::Actor::Operator, false)
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].done);
    // Only the other clinic's object is left.
    let left = stored_files(&t);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0]
            .to_string_lossy()
            .ends_with(kept_object.rsplit('/').next().unwrap())
    );
    assert!(t.app.attachments.exists(&kept_object).await.unwrap());
}

/// A zip of `entries`, as someone repacking an archive would write it.
fn rezip(entries: &std::collections::BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Imports the archive `bytes` into a new clinic `name` as `ward import` does: read and
/// check it, create the clinic, store the files and write the rows, and remove the
/// clinic again if that fails.
async fn import_archive(
    t: &TestApp,
    bytes: &[u8],
    name: &str,
) -> Result<ward_control::ClinicRecord, String> {
    let path = t.dir.path().join(format!("{name}.zip"));
    std::fs::write(&path, bytes).unwrap();
    let (doc, files) = ward_app::archive::read(&path)
        .await
        .map_err(|e| e.to_string())?;
    let clinic = t
        .app
        .control
        .create_clinic(name, None, &t.app.tenants, &ward_core::Actor::Operator)
        .await
        .unwrap();
    let tenant = t.app.tenants.get(clinic.id).await.unwrap();
    let imported = ward_app::archive::import(
        &tenant,
        doc,
        &files,
        &path,
        &t.app.attachments,
        t.app.clock.now(),
        "operator",
        "import",
    )
    .await;
    match imported {
        Ok((_, head)) => {
            let head = head.unwrap();
            t.app
                .control
                .anchor(clinic.id, head.seq, &head.hash)
                .await
                .unwrap();
            Ok(clinic)
        }
        Err(e) => {
            drop(tenant);
            t.app
                .control
                .discard_new_clinic(clinic.id, &t.app.tenants)
                .await
                .unwrap();
            Err(e.to_string())
        }
    }
}

#[tokio::test]
async fn the_export_with_files_brings_every_file_into_an_imported_clinic() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Files Clinic", "files").await;
    let base = c.base.clone();
    let patient = c.patient("Kavya Rao", "98450 31313").await;
    // A real PNG (it gets a thumbnail) over several 64 KiB chunks, and a PDF.
    let noise = image::RgbImage::from_fn(256, 256, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).rotate_left(x % 31);
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut image = std::io::Cursor::new(Vec::new());
    noise.write_to(&mut image, image::ImageFormat::Png).unwrap();
    let image = image.into_inner();
    assert!(image.len() > 64 * 1024, "{}", image.len());
    let report = pdf("Kavya thyroid panel");
    let r = Upload::new("Kavya", "lab_report")
        .png("scan.png", &image)
        .pdf("panel.pdf", &report)
        .post_keyed(&mut c.doctor, &patient)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let source = rows(&t, &c).await;
    assert_eq!(source.len(), 2);
    assert_eq!(
        titles(&t, &c).await.iter().map(|a| a.2).collect::<Vec<_>>(),
        [true, false],
        "the PNG has a thumbnail in the clinic"
    );
    assert_eq!(stored_files(&t).len(), 3, "two files and a thumbnail");

    // The owner asks for the export with files on the export page.
    let export = format!("{base}/export");
    let page = c.owner.get(&export).await;
    page.assert_contains("name=\"format\" value=\"zip\"");
    let r = c.owner.submit_page(&export, &[("format", "zip")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.assert_contains("every file kept next to your patients");
    assert_eq!(ward_app::exports::run_jobs(&t.app).await, 1);
    // Sealed at rest, like the other formats (the PDF's text is in the archive itself:
    // its entry is compared with the upload below).
    let sealed: Vec<Vec<u8>> = std::fs::read_dir(t.dir.path().join("exports"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(sealed.len(), 1);
    let marker = b"Kavya thyroid panel";
    assert!(report.windows(marker.len()).any(|w| w == marker));
    assert!(!sealed[0].windows(marker.len()).any(|w| w == marker));
    assert!(!sealed[0].starts_with(b"PK"), "not a bare zip");
    let link = c.owner.link_in_last_mail("/export/download").await;
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let r = c
        .owner
        .submit(&link, "/export/download", &[("token", &token)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/zip");
    let archive = r.bytes;
    let details = {
        let tenant = t.app.tenants.get(c.id).await.unwrap();
        tenant
            .with(|conn| {
                conn.rows(
                    "SELECT detail FROM audit_log WHERE action = 'export' ORDER BY seq",
                    (),
                    |r| r.get::<String>(0),
                )
            })
            .await
            .unwrap()
    };
    assert!(
        details[0].starts_with("export requested (zip)") && details[1] == "export downloaded (zip)",
        "{details:?}"
    );

    // The files as uploaded, and nothing else: no thumbnail, no key.
    let entries = ward_testkit::zip_files(std::io::Cursor::new(&archive));
    let (png_id, pdf_id) = (source[0].0, source[1].0);
    assert_eq!(
        entries.keys().cloned().collect::<Vec<_>>(),
        [
            format!("attachments/{png_id}.png"),
            format!("attachments/{pdf_id}.pdf"),
            "ward-export.json".to_owned()
        ]
    );
    assert_eq!(entries[&format!("attachments/{png_id}.png")], image);
    assert_eq!(entries[&format!("attachments/{pdf_id}.pdf")], report);
    for (_, _, key, _, _) in &source {
        assert_eq!(key.len(), 32);
        assert!(key.iter().any(|b| *b != 0), "a real key in the clinic");
        assert!(!archive.windows(32).any(|w| w == &key[..]), "a raw key");
        let hex_key = hex::encode(key);
        assert!(
            !archive.windows(64).any(|w| w == hex_key.as_bytes()),
            "a hex key"
        );
    }
    let thumbnail = {
        let tenant = t.app.tenants.get(c.id).await.unwrap();
        tenant
            .with(move |conn| {
                conn.rows(
                    "SELECT thumbnail_object FROM attachments WHERE id = ?1",
                    [png_id],
                    |r| r.get::<String>(0),
                )
            })
            .await
            .unwrap()
            .remove(0)
    };
    assert!(
        !archive
            .windows(thumbnail.len())
            .any(|w| w == thumbnail.as_bytes()),
        "the thumbnail is not named"
    );
    let doc: serde_json::Value = serde_json::from_slice(&entries["ward-export.json"]).unwrap();
    assert_eq!(doc["format"], "ward-export");
    assert_eq!(doc["files"].as_array().unwrap().len(), 2);
    let table = &doc["tables"]["attachments"];
    let cols = table["columns"].as_array().unwrap();
    let at = |name: &str| cols.iter().position(|c| c == name).unwrap();
    for row in table["rows"].as_array().unwrap() {
        assert_eq!(row[at("file_key")]["hex"], "0".repeat(64));
        assert!(row[at("thumbnail_key")].is_null());
    }

    // `ward import`'s path: a new clinic, every file stored again under a new name.
    let before = stored_files(&t);
    let copy = import_archive(&t, &archive, "Files Again").await.unwrap();
    let after = stored_files(&t);
    assert_eq!(
        after.len(),
        before.len() + 2,
        "two new objects, no thumbnail"
    );
    let copied = {
        let tenant = t.app.tenants.get(copy.id).await.unwrap();
        tenant
            .with(|conn| {
                conn.rows(
                    "SELECT id, object_name, file_key, thumbnail_object IS NULL FROM attachments ORDER BY id",
                    (),
                    |r| {
                        Ok::<_, ward_tenancy::sql::Error>((
                            r.get::<i64>(0)?,
                            r.get::<String>(1)?,
                            r.get::<Vec<u8>>(2)?,
                            r.get::<bool>(3)?,
                        ))
                    },
                )
            })
            .await
            .unwrap()
    };
    assert_eq!(copied.len(), 2);
    for (new, old) in copied.iter().zip(&source) {
        assert_eq!(new.0, old.0, "ids are kept");
        assert_ne!(new.1, old.1, "a new object name");
        assert_ne!(new.2, old.2, "a new key");
        assert!(new.3, "no thumbnail row");
    }

    // The owner, made owner of the new clinic, gets the same bytes from its pages.
    t.add_member(copy.id, ward_core::Role::Owner, "owner@files.test", "Owner")
        .await;
    let new_patient = patient.replace(&base, &format!("/c/{}", copy.slug));
    for (id, bytes, ct) in [
        (png_id, &image, "image/png"),
        (pdf_id, &report, "application/pdf"),
    ] {
        let r = c
            .owner
            .get(&format!("{new_patient}/attachments/{id}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.headers["content-type"], ct);
        assert_eq!(&r.bytes, bytes, "attachment {id} byte for byte");
        let r = c
            .owner
            .get(&format!("{new_patient}/attachments/{id}/download"))
            .await;
        assert_eq!(&r.bytes, bytes);
    }
    // The original clinic's files still open: nothing was moved out of it.
    let r = c
        .owner
        .get(&format!("{patient}/attachments/{pdf_id}"))
        .await;
    assert_eq!(&r.bytes, &report);

    // A changed byte in a file: refused before anything is written.
    let clinics = t.clinic_names().await.len();
    let mut tampered = entries.clone();
    tampered
        .get_mut(&format!("attachments/{pdf_id}.pdf"))
        .unwrap()[12] ^= 1;
    let why = import_archive(&t, &rezip(&tampered), "Tampered")
        .await
        .unwrap_err();
    assert!(
        why.contains(&format!("attachments/{pdf_id}.pdf does not match"))
            && why.contains("altered or damaged"),
        "{why}"
    );
    assert_eq!(t.clinic_names().await.len(), clinics);
    assert_eq!(stored_files(&t), after, "no object written");

    // Files that pass but rows that do not (an edited audit log): every object the
    // import had stored is removed again, and the clinic with them.
    let mut edited = entries.clone();
    let mut d: serde_json::Value = serde_json::from_slice(&edited["ward-export.json"]).unwrap();
    let log = d["tables"]["audit_log"]["rows"].as_array_mut().unwrap();
    log.remove(1);
    edited.insert("ward-export.json".into(), d.to_string().into_bytes());
    let why = import_archive(&t, &rezip(&edited), "Edited")
        .await
        .unwrap_err();
    assert!(why.contains("audit log"), "{why}");
    assert_eq!(t.clinic_names().await.len(), clinics);
    assert_eq!(stored_files(&t), after, "the stored objects were removed");
}
