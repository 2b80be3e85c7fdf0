//! Delivery through a real SMTP server on loopback.

use chrono::TimeDelta;
use ward_control::MailState;
use ward_core::Clock as _;
use ward_mail::Message;

use crate::support::{Plane, SmtpServer, email, parse};

const VERIFY_LINK: &str = "http://127.0.0.1:8080/verify-email?token=dmVyaWZ5LXRva2Vu";
const RESET_LINK: &str = "http://127.0.0.1:8080/password/reset?token=cmVzZXQtdG9rZW4";

#[tokio::test(flavor = "multi_thread")]
async fn verification_and_reset_mails_arrive_with_their_subject_and_link() {
    let server = SmtpServer::start(0);
    let plane = Plane::new().await;
    let mailer = plane.mailer(Some(server.url()));

    mailer
        .send(
            &email("ana@clinic.test"),
            "Ana Pérez",
            Message::VerifyEmail {
                name: "Ana Pérez".into(),
                link: VERIFY_LINK.into(),
            },
        )
        .await
        .unwrap();
    mailer
        .send(
            &email("Ben@Clinic.test"),
            "Ben",
            Message::ResetPassword {
                name: "Ben".into(),
                link: RESET_LINK.into(),
            },
        )
        .await
        .unwrap();
    assert!(
        server.received().is_empty(),
        "send only stores; delivery is the worker's"
    );
    assert_eq!(mailer.deliver_due().await.unwrap(), 2);

    let received = server.received();
    assert_eq!(received.len(), 2);
    let expected = [
        (
            "ana@clinic.test",
            "Confirm your email address",
            VERIFY_LINK,
            "Ana Pérez",
        ),
        (
            "ben@clinic.test",
            "Reset your Ward password",
            RESET_LINK,
            "Ben",
        ),
    ];
    for (got, (to, subject, link, name)) in received.iter().zip(expected) {
        assert_eq!(got.rcpt_tos, vec![to.to_owned()], "envelope recipient");
        assert_eq!(got.mail_from, "ward@ward.test", "envelope sender");
        let mail = parse(&got.raw);
        assert_eq!(mail.subject(), subject);
        assert_eq!(mail.header("To").len(), 1);
        assert_eq!(mail.to.len(), 1);
        match &mail.to[0] {
            mailparse::MailAddr::Single(s) => {
                assert_eq!(s.addr, to);
                assert_eq!(s.display_name.as_deref(), Some(name));
            }
            other => panic!("To is a group: {other:?}"),
        }
        assert_eq!(mail.header("From"), vec!["Ward <ward@ward.test>"]);
        let message_id = mail.header("Message-ID");
        assert!(
            message_id.len() == 1 && message_id[0].ends_with("@ward.test>"),
            "{message_id:?}"
        );
        assert!(
            mail.text.contains(link),
            "text body lacks the link: {}",
            mail.text
        );
        assert!(
            mail.html.contains(&format!("href=\"{link}\"")),
            "HTML body lacks the link"
        );
        assert!(mail.text.contains(&format!("Hello {name},")));
        assert!(mail.text.contains("only once") && mail.text.contains("expire"));
    }
    let counts = plane.control.outbox().counts().await.unwrap();
    assert_eq!((counts.pending, counts.sent, counts.failed), (0, 2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn data_passed_in_other_fields_stays_out_of_subjects_headers_and_bodies() {
    const CANARY: &str = "CANARY-PATIENT Jane Roe born 1961-02-03 diabetes";
    let server = SmtpServer::start(0);
    let plane = Plane::new().await;
    let mailer = plane.mailer(Some(server.url()));
    let link = "https://ward.test/x?token=abc";
    // The canary rides in every field a caller fills in; each field may show in the body
    // where the template puts it, never in a subject or another header.
    let messages = [
        Message::VerifyEmail {
            name: CANARY.into(),
            link: link.into(),
        },
        Message::ResetPassword {
            name: CANARY.into(),
            link: link.into(),
        },
        Message::SignupAttempt {
            name: CANARY.into(),
            reset_link: link.into(),
        },
        Message::StaffInvite {
            clinic_name: CANARY.into(),
            inviter: CANARY.into(),
            role: CANARY.into(),
            link: link.into(),
        },
        Message::ExportReady {
            name: CANARY.into(),
            link: link.into(),
        },
    ];
    let subjects: Vec<&str> = messages.iter().map(Message::subject).collect();
    for m in messages.clone() {
        mailer
            .send(&email("owner@clinic.test"), "Owner", m)
            .await
            .unwrap();
    }
    // And the recipient's display name, a header field, stays out of the bodies of mails
    // whose template does not greet by it.
    for m in &messages[..3] {
        let m = match m.clone() {
            Message::VerifyEmail { link, .. } => Message::VerifyEmail {
                name: "Owner".into(),
                link,
            },
            Message::ResetPassword { link, .. } => Message::ResetPassword {
                name: "Owner".into(),
                link,
            },
            Message::SignupAttempt { reset_link, .. } => Message::SignupAttempt {
                name: "Owner".into(),
                reset_link,
            },
            other => other,
        };
        mailer
            .send(&email("owner@clinic.test"), CANARY, m)
            .await
            .unwrap();
    }
    assert_eq!(mailer.deliver_due().await.unwrap(), 8);
    let received = server.received();
    assert_eq!(received.len(), 8);
    for (i, got) in received.iter().enumerate() {
        let mail = parse(&got.raw);
        assert_eq!(mail.subject(), subjects[i % 5], "mail {i}");
        for (key, value) in &mail.headers {
            if i >= 5 && key.eq_ignore_ascii_case("To") {
                continue; // the display name is the recipient's, by design
            }
            assert!(!value.contains("CANARY"), "mail {i}: header {key}: {value}");
        }
        if i >= 5 {
            assert!(!mail.text.contains("CANARY"), "mail {i}: text body");
            assert!(!mail.html.contains("CANARY"), "mail {i}: HTML body");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_retries_after_the_server_was_down_and_delivers_exactly_once() {
    // Hold a port without listening on it: connecting is refused, like a server that is
    // down, and no one else can take the port before the server comes up on it.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = reserved.local_addr().unwrap().port();

    let plane = Plane::new().await;
    let mailer = plane.mailer(Some(format!("smtp://127.0.0.1:{port}")));
    let id = mailer
        .enqueue(
            &email("ana@clinic.test"),
            "Ana",
            Message::VerifyEmail {
                name: "Ana".into(),
                link: VERIFY_LINK.into(),
            },
        )
        .await
        .unwrap();
    let sent_at = plane.clock.now();

    assert_eq!(mailer.deliver_due().await.unwrap(), 0);
    let row = plane.control.outbox().get(id).await.unwrap().unwrap();
    assert_eq!(row.state(), MailState::Pending);
    assert_eq!(row.attempts, 1);
    assert!(row.last_error.as_deref().is_some_and(|e| !e.is_empty()));
    assert_eq!(row.next_attempt_at, Some(sent_at + TimeDelta::seconds(30)));
    assert!(!row.body_text.is_empty(), "nothing is lost while waiting");

    // Not due yet: another pass does not try again.
    assert_eq!(mailer.deliver_due().await.unwrap(), 0);
    let row = plane.control.outbox().get(id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 1);

    // Still down at the first retry: the wait doubles.
    plane.clock.advance(TimeDelta::seconds(30));
    assert_eq!(mailer.deliver_due().await.unwrap(), 0);
    let row = plane.control.outbox().get(id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 2);
    assert_eq!(
        row.next_attempt_at,
        Some(plane.clock.now() + TimeDelta::seconds(60))
    );

    // The server comes back on the same port.
    drop(reserved);
    let server = SmtpServer::start(port);
    assert_eq!(server.port, port);
    assert_eq!(
        mailer.deliver_due().await.unwrap(),
        0,
        "it waits for its retry time"
    );
    assert!(server.received().is_empty());

    plane.clock.advance(TimeDelta::seconds(60));
    assert_eq!(mailer.deliver_due().await.unwrap(), 1);
    assert_eq!(mailer.deliver_due().await.unwrap(), 0);
    plane.clock.advance(TimeDelta::hours(2));
    assert_eq!(mailer.deliver_due().await.unwrap(), 0);

    let received = server.received();
    assert_eq!(received.len(), 1, "delivered exactly once");
    let mail = parse(&received[0].raw);
    assert_eq!(mail.subject(), "Confirm your email address");
    assert!(mail.text.contains(VERIFY_LINK));
    let row = plane.control.outbox().get(id).await.unwrap().unwrap();
    assert_eq!(row.state(), MailState::Sent);
    assert_eq!(row.attempts, 3);
    assert_eq!(row.sent_at, Some(plane.clock.now() - TimeDelta::hours(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn header_injection_through_names_adds_no_header_and_no_recipient() {
    let server = SmtpServer::start(0);
    let plane = Plane::new().await;
    let mailer = plane.mailer(Some(server.url()));
    let hostile_names = [
        "Ana\r\nBcc: evil@attacker.test",
        "Ana\nX-Injected: yes\n\nbody takeover",
        "Ana\rSubject: free money",
        "Eve <evil@attacker.test>, Mallory <m@attacker.test>",
        "\"Ana\" <evil@attacker.test>\r\n",
        "=?utf-8?q?=0D=0ABcc:_evil@attacker.test?=",
    ];
    for name in hostile_names {
        mailer
            .send(
                &email("ana@clinic.test"),
                name,
                Message::StaffInvite {
                    clinic_name: format!("Acme\r\nBcc: evil@attacker.test {name}"),
                    inviter: name.into(),
                    role: "doctor\r\nX-Injected: yes".into(),
                    link: "https://ward.test/invite?token=abc".into(),
                },
            )
            .await
            .unwrap();
    }
    // Addresses cannot carry a line break at all: they are refused before any mail exists.
    for bad in [
        "ana@clinic.test\r\nBcc: evil@attacker.test",
        "ana@clinic.test\nBcc: evil@attacker.test",
        "ana@clinic.test,evil@attacker.test",
        "Ana <ana@clinic.test>",
    ] {
        assert!(
            ward_core::Email::parse(bad).is_err(),
            "{bad:?} was accepted"
        );
    }

    assert_eq!(mailer.deliver_due().await.unwrap(), hostile_names.len());
    let received = server.received();
    assert_eq!(received.len(), hostile_names.len());
    for got in &received {
        assert_eq!(got.rcpt_tos, vec!["ana@clinic.test".to_owned()]);
        let mail = parse(&got.raw);
        let mut names: Vec<String> = mail.headers.iter().map(|(k, _)| k.to_lowercase()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "content-type",
                "date",
                "from",
                "message-id",
                "mime-version",
                "subject",
                "to"
            ],
            "headers: {}",
            mail.raw_headers
        );
        assert_eq!(mail.subject(), "You have been invited to a clinic on Ward");
        for line in mail.raw_headers.lines() {
            let lower = line.to_ascii_lowercase();
            assert!(
                !lower.starts_with("bcc:") && !lower.starts_with("x-injected:"),
                "{line}"
            );
        }
        assert_eq!(mail.header("To").len(), 1);
        assert_eq!(mail.to.len(), 1, "To: {}", mail.header("To")[0]);
        match &mail.to[0] {
            mailparse::MailAddr::Single(s) => {
                assert_eq!(s.addr, "ana@clinic.test");
                let name = s.display_name.as_deref().unwrap_or_default();
                assert!(!name.contains('\r') && !name.contains('\n'), "{name:?}");
            }
            other => panic!("To is a group: {other:?}"),
        }
    }
}
