//! The outbox and the worker, through the memory transport.

use std::time::Duration;

use chrono::TimeDelta;
use ward_control::MailState;
use ward_core::Clock as _;
use ward_mail::{MAX_ATTEMPTS, MailError, Mailer, Message, retry_delay};

use crate::support::{Plane, email, open_control};

fn verify(link: &str) -> Message {
    Message::VerifyEmail {
        name: "Ana".into(),
        link: link.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_that_keeps_failing_is_given_up_after_the_cap_and_kept() {
    let plane = Plane::new().await;
    let (mailer, mailbox) = Mailer::in_memory(plane.control.clone()).unwrap();
    mailbox.fail_with(Some("451 try again later"));
    let id = mailer
        .enqueue(
            &email("ana@clinic.test"),
            "Ana",
            verify("https://ward.test/v?token=1"),
        )
        .await
        .unwrap();
    for attempt in 1..MAX_ATTEMPTS {
        assert_eq!(mailer.deliver_due().await.unwrap(), 0);
        let row = plane.control.outbox().get(id).await.unwrap().unwrap();
        assert_eq!(row.attempts, attempt);
        assert_eq!(row.state(), MailState::Pending, "attempt {attempt}");
        assert_eq!(
            row.next_attempt_at,
            Some(plane.clock.now() + retry_delay(attempt))
        );
        plane.clock.advance(retry_delay(attempt));
    }
    assert_eq!(mailer.deliver_due().await.unwrap(), 0);
    let row = plane.control.outbox().get(id).await.unwrap().unwrap();
    assert_eq!(row.state(), MailState::Failed);
    assert_eq!(row.attempts, MAX_ATTEMPTS);
    assert_eq!(row.last_error.as_deref(), Some("451 try again later"));
    assert!(row.body_text.contains("token=1"), "the mail is kept");

    // Given up means given up, even once the transport works again.
    mailbox.fail_with(None);
    plane.clock.advance(TimeDelta::days(1));
    assert_eq!(mailer.deliver_due().await.unwrap(), 0);
    assert!(mailbox.sent().is_empty());
    assert_eq!(plane.control.outbox().counts().await.unwrap().failed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_delivers_when_woken_and_stops_when_asked() {
    let plane = Plane::new().await;
    let (mailer, mailbox) = Mailer::in_memory(plane.control.clone()).unwrap();
    let worker = mailer.spawn_worker();
    for i in 0..3 {
        mailer
            .send(
                &email(&format!("user{i}@clinic.test")),
                "",
                verify(&format!("https://ward.test/v?token={i}")),
            )
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), mailbox.wait_for(3))
        .await
        .expect("the worker delivered the mail");
    let sent = mailbox.sent();
    assert_eq!(sent.len(), 3);
    let mut links: Vec<String> = sent.iter().flat_map(|m| m.links()).collect();
    links.sort();
    assert_eq!(
        links,
        [
            "https://ward.test/v?token=0",
            "https://ward.test/v?token=1",
            "https://ward.test/v?token=2"
        ]
    );
    assert!(sent[0].text.starts_with("Hello Ana,"), "{}", sent[0].text);
    assert_eq!(
        mailbox.last_to("USER1@clinic.test").unwrap().links(),
        ["https://ward.test/v?token=1"]
    );

    mailer.stop();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stopped")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_mail_survives_a_restart() {
    let plane = Plane::new().await;
    {
        let (mailer, _) = Mailer::in_memory(plane.control.clone()).unwrap();
        mailer
            .send(
                &email("ana@clinic.test"),
                "Ana",
                verify("https://ward.test/v?token=kept"),
            )
            .await
            .unwrap();
    }
    // A new process: the control plane reopened from its file.
    let Plane {
        dir,
        control,
        clock,
    } = plane;
    drop(control);
    let control = open_control(dir.path(), &clock).await;
    let (mailer, mailbox) = Mailer::in_memory(control).unwrap();
    assert_eq!(mailer.deliver_due().await.unwrap(), 1);
    assert_eq!(
        mailbox.sent()[0].links(),
        ["https://ward.test/v?token=kept"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_with_a_bad_link_is_refused_before_it_is_stored() {
    let plane = Plane::new().await;
    let (mailer, _) = Mailer::in_memory(plane.control.clone()).unwrap();
    for link in [
        "javascript:alert(1)",
        "https://ward.test/v?token=a\r\nBcc: x@y.test",
        "",
    ] {
        assert!(matches!(
            mailer
                .send(&email("ana@clinic.test"), "Ana", verify(link))
                .await,
            Err(MailError::Link)
        ));
    }
    assert_eq!(
        plane.control.outbox().counts().await.unwrap(),
        Default::default()
    );
}
