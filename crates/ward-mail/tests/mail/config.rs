//! Mail settings: TLS is required off loopback, and settings never echo secrets.

use ward_mail::{MailConfig, MailError, Mailer};

use crate::support::Plane;

fn mailer(plane: &Plane, smtp_url: Option<&str>, from: &str) -> Result<Mailer, MailError> {
    Mailer::new(
        plane.control.clone(),
        MailConfig {
            smtp_url: smtp_url.map(str::to_owned),
            from: from.into(),
            outbox_dir: plane.outbox_dir(),
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_needs_tls_except_to_this_machine() {
    let plane = Plane::new().await;
    for ok in [
        "smtps://ward:s3cret-pass@smtp.example.com",
        "smtps://smtp.example.com:2465",
        "smtp://ward:s3cret-pass@smtp.example.com:587?tls=required",
        "smtp://127.0.0.1:2525",
        "smtp://127.0.0.53",
        "smtp://localhost:25",
        "smtp://[::1]:2525",
        "smtp://127.0.0.1:2525?tls=opportunistic",
    ] {
        let m = mailer(&plane, Some(ok), "Ward <ward@example.com>")
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(
            !m.describe().contains("s3cret"),
            "{ok}: the password shows in {}",
            m.describe()
        );
        assert!(
            m.describe().starts_with("SMTP server smtp"),
            "{}",
            m.describe()
        );
    }
    for bad in [
        "smtp://ward:s3cret-pass@smtp.example.com",
        "smtp://ward:s3cret-pass@smtp.example.com:587?tls=opportunistic",
        "smtp://ward:s3cret-pass@smtp.example.com:587?tls=none",
        "smtp://10.0.0.1:25",
        "smtp://127.0.0.1.example.com",
        "http://ward:s3cret-pass@smtp.example.com",
        "ward:s3cret-pass@smtp.example.com",
        "smtps://",
    ] {
        match mailer(&plane, Some(bad), "Ward <ward@example.com>") {
            Ok(_) => panic!("{bad} was accepted"),
            Err(e) => {
                assert!(matches!(e, MailError::Config(_)), "{bad}: {e:?}");
                let text = e.to_string();
                assert!(text.contains("WARD_SMTP_URL"), "{text}");
                assert!(!text.contains("s3cret"), "the password shows in {text:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sender_must_be_one_clean_address() {
    let plane = Plane::new().await;
    for ok in [
        "ward@example.com",
        "Ward <ward@example.com>",
        "\"Ward, clinics\" <ward@example.com>",
    ] {
        assert!(mailer(&plane, None, ok).is_ok(), "{ok} was refused");
    }
    for bad in [
        "",
        "ward",
        "Ward <ward@example.com>\r\nBcc: evil@attacker.test",
        "Ward <ward@example.com>\nBcc: evil@attacker.test",
        "Ward <ward@example.com>, Eve <evil@attacker.test>",
    ] {
        assert!(
            matches!(mailer(&plane, None, bad), Err(MailError::Config(_))),
            "{bad:?} was accepted"
        );
    }
    assert!(plane.outbox_dir().is_dir(), "the mail folder is created");
}
