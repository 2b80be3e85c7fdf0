//! The default without a mail server: `.eml` files in `<data>/outbox/`, links in the log.

use ward_mail::Message;

use crate::support::{LogCapture, Plane, email, parse};

#[tokio::test(flavor = "multi_thread")]
async fn without_smtp_mail_becomes_an_eml_file_and_only_the_link_is_logged() {
    let plane = Plane::new().await;
    let mailer = plane.mailer(None);
    let link = "http://127.0.0.1:8080/password/reset?token=ZmlsZS10cmFuc3BvcnQ";
    mailer
        .send(
            &email("zoe.quinn@clinic.test"),
            "Zoe Quinn",
            Message::ResetPassword {
                name: "Zoe Quinn".into(),
                link: link.into(),
            },
        )
        .await
        .unwrap();

    let logs = LogCapture::start();
    assert_eq!(mailer.deliver_due().await.unwrap(), 1);
    let logged = logs.text();

    let files: Vec<_> = std::fs::read_dir(plane.outbox_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
    let mail = parse(&std::fs::read(&files[0]).unwrap());
    assert_eq!(mail.subject(), "Reset your Ward password");
    assert!(mail.text.contains(link));
    assert!(mail.html.contains(&format!("href=\"{link}\"")));
    assert_eq!(mail.header("To").len(), 1);
    assert!(mail.header("To")[0].contains("zoe.quinn@clinic.test"));

    assert!(logged.contains(link), "the link is not logged: {logged}");
    let file_name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(
        logged.contains(file_name),
        "the file is not named: {logged}"
    );
    for private in ["zoe.quinn", "Zoe", "Reset your Ward password", "30 minutes"] {
        assert!(
            !logged.contains(private),
            "the log shows {private:?}: {logged}"
        );
    }
}
