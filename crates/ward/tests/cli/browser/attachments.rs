//! Files in a real browser: the owner uploads an image and a PDF in one go from the
//! patient page (the script sends the form with its progress bar), sees the image's
//! thumbnail load in the list and opens the PDF.

use std::time::{Duration, Instant};

use super::{artifact, register_patient, signed_up_owner};

#[tokio::test(flavor = "multi_thread")]
async fn an_image_and_a_pdf_uploaded_together_show_a_thumbnail_and_open() {
    let (_server, browser, home) = signed_up_owner(
        "Riverside Clinic",
        "Dr. Mira Iyer",
        "mira@riverside.example",
    )
    .await;

    browser.goto(&format!("{home}patients/new")).await;
    browser.fill("#full_name", "Anil Kapoor").await;
    browser.click("input[name=sex][value=male]").await;
    browser.fill("#phone", "98450 31313").await;
    let patient = register_patient(&browser).await;
    browser.wait_for_text("Anil Kapoor").await;

    // Two real files on disk, chosen together in the one file input.
    let files = tempfile::tempdir().unwrap();
    let png = files.path().join("knee.png");
    image::RgbImage::from_fn(640, 400, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    })
    .save(&png)
    .unwrap();
    let pdf = files.path().join("report.pdf");
    std::fs::write(
        &pdf,
        "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    )
    .unwrap();
    browser.fill("#attachment-title", "Knee").await;
    browser.select("#attachment-kind", "imaging").await;
    browser
        .fill(
            "#attachment-file",
            &format!("{}\n{}", png.display(), pdf.display()),
        )
        .await;
    browser.click("form[data-upload] button[type=submit]").await;
    let page = browser.wait_for_text("Knee (2 of 2)").await;
    assert!(page.contains("Knee (1 of 2)"), "{page}");
    assert!(
        browser
            .url()
            .await
            .starts_with(patient.split('#').next().unwrap()),
        "back on the patient page"
    );

    // The image's thumbnail loads (decoded by the browser: it has a width).
    let deadline = Instant::now() + Duration::from_secs(20);
    let width = loop {
        let w = browser
            .eval(
                "var i = document.querySelector('img.thumbnail'); \
                 if (!i) { return -1; } i.scrollIntoView(); \
                 return i.complete ? i.naturalWidth : 0;",
            )
            .await
            .as_i64()
            .unwrap_or(0);
        if w > 0 || Instant::now() >= deadline {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(width, 256, "the thumbnail is 256 px wide");
    browser.screenshot(&artifact("attachments-list.png")).await;
    // Only the image has one.
    let thumbnails = browser
        .eval("return document.querySelectorAll('img.thumbnail').length;")
        .await;
    assert_eq!(thumbnails.as_i64(), Some(1));

    // The PDF is listed and opens inline, sandboxed.
    let answer = browser
        .eval(
            "var a = Array.from(document.querySelectorAll('#attachments a')) \
                 .find(function (a) { return a.textContent === 'Knee (2 of 2)'; }); \
             var x = new XMLHttpRequest(); x.open('GET', a.href, false); x.send(); \
             return [x.status, x.getResponseHeader('content-type'), \
                     x.getResponseHeader('content-disposition'), \
                     x.getResponseHeader('content-security-policy'), \
                     x.responseText.slice(0, 8)];",
        )
        .await;
    assert_eq!(answer[0].as_i64(), Some(200), "{answer}");
    assert_eq!(answer[1], "application/pdf", "{answer}");
    assert_eq!(answer[2], "inline", "{answer}");
    assert!(
        answer[3]
            .as_str()
            .unwrap_or_default()
            .starts_with("sandbox"),
        "{answer}"
    );
    assert_eq!(answer[4], "%PDF-1.4", "{answer}");
    browser.quit().await;
}
