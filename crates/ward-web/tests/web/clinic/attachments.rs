//! Attachments through the pages: upload (sniffed, capped, encrypted), the list on the
//! patient page, viewing (sandboxed, digest-checked), roles, isolation, tampering,
//! deletion and the audit trail.

use axum::http::StatusCode;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::DecryptorBE32;
use ward_clinic::audit::Filter;

use crate::support::staffed::{Clinic, Staffed as _};
use crate::support::{ATTACHMENT_CAP, TestApp};

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

async fn upload(
    browser: &mut TestApp,
    patient: &str,
    title: &str,
    kind: &str,
    file: (&str, &str, &[u8]),
) -> crate::support::Response {
    let page = browser.get(patient).await;
    let action = upload_action(&page.body)
        .unwrap_or_else(|| format!("{patient}/attachments?_csrf={}", page.csrf()));
    browser
        .post_multipart(&action, &[("title", title), ("kind", kind)], file)
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
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(
            &base,
            &[("full_name", "Zubair Khan"), ("phone", "98450 11111")],
        )
        .await;

    // A PNG over two chunks and a small PDF, uploaded by the doctor.
    let image = png(150 * 1024);
    let r = upload(
        &mut c.doctor,
        &patient,
        "Zubair chest X-ray",
        "imaging",
        ("zubair-xray.png", "image/png", &image),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let report = pdf("Zubair blood count");
    let r = upload(
        &mut c.doctor,
        &patient,
        "Zubair CBC",
        "lab_report",
        ("zubair-cbc.pdf", "application/pdf", &report),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    let page = c.doctor.get(&patient).await;
    assert!(page.body.contains("Zubair chest X-ray"), "{}", page.body);
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
    let r = upload(
        &mut c.doctor,
        &patient,
        "Zubair notes",
        "other",
        (
            "notes.pdf",
            "application/pdf",
            b"just some text, not a PDF at all",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("PDF, JPEG, PNG, WebP and DICOM"),
        "{}",
        r.body
    );
    // Over the cap: refused while streaming, nothing stored.
    let big = png(usize::try_from(ATTACHMENT_CAP).unwrap() + 70 * 1024);
    let r = upload(
        &mut c.doctor,
        &patient,
        "Zubair big",
        "photo",
        ("big.png", "image/png", &big),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("larger than"), "{}", r.body);
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
    let r = upload(
        &mut c.receptionist,
        &patient,
        "Zubair consent",
        "consent",
        ("consent.pdf", "application/pdf", &consent),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
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
    let r = c
        .doctor
        .submit(&patient, &format!("{png_url}/delete"), &[("reason", " ")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(t.app.attachments.raw(&png_name).await.unwrap().is_some());
    let r = c
        .doctor
        .submit(
            &patient,
            &format!("{png_url}/delete"),
            &[("reason", "uploaded to the wrong patient")],
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
    assert!(t.app.attachments.raw(&png_name).await.unwrap().is_none());
    assert_eq!(
        rows(&t, &c).await[0].4.as_deref(),
        Some("uploaded to the wrong patient")
    );

    // Audited by id and kind: never the title, the file name or the reason.
    let audit = t
        .audit(
            c.id,
            Filter {
                entity: Some(("attachment".into(), png_id.to_string())),
                ..Filter::default()
            },
        )
        .await;
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
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(
            &base,
            &[("full_name", "Yusuf Ali"), ("phone", "98450 22222")],
        )
        .await;
    let consent = pdf("Yusuf consent");
    let r = upload(
        &mut c.receptionist,
        &patient,
        "Yusuf consent form",
        "consent",
        ("yusuf.pdf", "application/pdf", &consent),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (aid, name, _, _, _) = rows(&t, &c).await[0].clone();
    assert!(t.app.attachments.raw(&name).await.unwrap().is_some());

    let erase = format!("{patient}/erase");
    let r = c
        .owner
        .submit(
            &erase,
            &erase,
            &[("ground", "patient_request"), ("confirm", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(t.app.attachments.raw(&name).await.unwrap().is_none());
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
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(
            &base,
            &[("full_name", "Wanda Mehta"), ("phone", "98450 33333")],
        )
        .await;
    let mut dicom = vec![0u8; 128];
    dicom.extend_from_slice(b"DICM");
    dicom.extend_from_slice(&[7u8; 2000]);
    let r = upload(
        &mut c.doctor,
        &patient,
        "Wanda CT",
        "imaging",
        ("scan.dcm", "application/octet-stream", &dicom),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
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
    let r = upload(
        &mut c.doctor,
        &patient,
        &long,
        "imaging",
        ("scan.dcm", "application/octet-stream", &dicom),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("at most 200 characters"), "{}", r.body);
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
    let base = c.base.clone();
    let patient = c
        .receptionist
        .register(
            &base,
            &[("full_name", "Vera Das"), ("phone", "98450 44444")],
        )
        .await;
    let other = c
        .receptionist
        .register(
            &base,
            &[("full_name", "Omar Das"), ("phone", "98450 55555")],
        )
        .await;
    let r = c
        .doctor
        .submit(
            &format!("{patient}/visits/new"),
            &format!("{patient}/visits"),
            &[("action", "save"), ("presenting_complaints", "rash")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let visit_page = r.location().to_owned();
    let visit_id = visit_page.rsplit('/').next().unwrap().to_owned();
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
    let base = c.base.clone();
    let kept = c
        .receptionist
        .register(&base, &[("full_name", "Uma Rao"), ("phone", "98450 66666")])
        .await;
    let dup = c
        .receptionist
        .register(&base, &[("full_name", "Uma Rao"), ("phone", "98450 77777")])
        .await;
    let consent = pdf("Uma consent");
    let r = upload(
        &mut c.receptionist,
        &dup,
        "Uma consent form",
        "consent",
        ("uma.pdf", "application/pdf", &consent),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let kept_id = kept.rsplit('/').next().unwrap();
    let dup_id = dup.rsplit('/').next().unwrap();
    let owner_of = |id: &str| format!("SELECT count(*) FROM attachments WHERE patient_id = {id}");

    let merge = format!("{kept}/merge");
    let r = c
        .receptionist
        .submit(&merge, &merge, &[("other", "2")])
        .await;
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
    let r = upload(
        &mut c.receptionist,
        &dup,
        "Late consent",
        "consent",
        ("late.pdf", "application/pdf", &pdf("late")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("merged into No. 1"), "{}", r.body);
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
