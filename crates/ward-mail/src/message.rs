//! What Ward sends, and how each kind is rendered.
//!
//! Every kind has a fixed subject (no names, no clinic, nothing about a patient) and a
//! text and an HTML body from `templates/mail/`. Bodies carry only the fields of the
//! variant: there is no way to put a record's contents into a mail.

use askama::Template;

use crate::MailError;

/// Longest display string (name, clinic, role) put into a mail, in characters.
const MAX_DISPLAY_CHARS: usize = 100;

/// One mail Ward sends. No variant can carry patient data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Confirm the address given at signup.
    VerifyEmail {
        /// The recipient's name, for the greeting.
        name: String,
        /// The one-time confirmation link.
        link: String,
    },
    /// Choose a new password.
    ResetPassword {
        /// The recipient's name, for the greeting.
        name: String,
        /// The one-time reset link.
        link: String,
    },
    /// Someone tried to sign up with an address that already has an account.
    SignupAttempt {
        /// The account holder's name.
        name: String,
        /// A password reset link, in case the owner forgot they had an account.
        reset_link: String,
    },
    /// An owner invited the recipient to a clinic.
    StaffInvite {
        /// The clinic's display name (in the body only, never the subject).
        clinic_name: String,
        /// Who sent the invitation.
        inviter: String,
        /// The role offered, e.g. `doctor`.
        role: String,
        /// The one-time invitation link.
        link: String,
    },
    /// A clinic export the owner asked for can be downloaded.
    ExportReady {
        /// The owner's name.
        name: String,
        /// The one-time download-page link.
        link: String,
    },
    /// Something changed in how the recipient signs in (never carries a code).
    SecurityNotice {
        /// The account holder's name.
        name: String,
        /// What happened.
        event: SecurityEvent,
        /// The account page, to review sessions and the second factor.
        link: String,
    },
    /// The operator asks an owner to approve a support session, or (emergency) has
    /// opened one. Never carries the reason: the clinic's support page shows it.
    SupportAccess {
        /// The owner's name.
        name: String,
        /// The clinic's display name (in the body only).
        clinic_name: String,
        /// Who at the operator's end.
        operator: String,
        /// How long the session may last.
        minutes: u32,
        /// Opened without approval.
        emergency: bool,
        /// The clinic's support page.
        link: String,
    },
}

/// A change to how someone signs in, told to them by mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    /// Two-step sign-in was turned on.
    SecondFactorAdded,
    /// Two-step sign-in was turned off.
    SecondFactorRemoved,
    /// A recovery code was used to sign in or confirm an action.
    RecoveryCodeUsed {
        /// How many unused codes remain.
        left: usize,
    },
}

impl SecurityEvent {
    /// The sentence the mail opens with.
    pub fn sentence(self) -> String {
        match self {
            Self::SecondFactorAdded => "Two-step sign-in was turned on for your Ward account: from now on, signing in asks for a code from your authenticator app after your password.".to_owned(),
            Self::SecondFactorRemoved => "Two-step sign-in was turned off for your Ward account: signing in now needs only your password.".to_owned(),
            Self::RecoveryCodeUsed { left } => format!("One of your recovery codes was just used for your Ward account. It will not work again; {left} unused codes remain."),
        }
    }
}

/// A message turned into what is stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The fixed subject of the message's kind.
    pub subject: &'static str,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

impl Message {
    /// A short stable name of the kind, for logs.
    pub fn kind(&self) -> &'static str {
        self.kind_and_subject().0
    }

    /// The subject: one fixed string per kind, so no personal or patient data can reach
    /// it (subjects show in notification previews and mail server logs).
    pub fn subject(&self) -> &'static str {
        self.kind_and_subject().1
    }

    /// The kind's log name and its fixed subject, side by side.
    fn kind_and_subject(&self) -> (&'static str, &'static str) {
        match self {
            Message::VerifyEmail { .. } => ("verify_email", "Confirm your email address"),
            Message::ResetPassword { .. } => ("reset_password", "Reset your Ward password"),
            Message::SignupAttempt { .. } => (
                "signup_attempt",
                "Someone tried to sign up with your address",
            ),
            Message::StaffInvite { .. } => {
                ("staff_invite", "You have been invited to a clinic on Ward")
            }
            Message::ExportReady { .. } => ("export_ready", "Your Ward export is ready"),
            Message::SecurityNotice { .. } => {
                ("security_notice", "A change to how you sign in to Ward")
            }
            Message::SupportAccess {
                emergency: false, ..
            } => (
                "support_access",
                "Support asks to look at your clinic on Ward",
            ),
            Message::SupportAccess {
                emergency: true, ..
            } => (
                "support_access",
                "Emergency support access to your clinic on Ward",
            ),
        }
    }

    /// The links the message carries.
    pub fn links(&self) -> [&str; 1] {
        match self {
            Message::VerifyEmail { link, .. }
            | Message::ResetPassword { link, .. }
            | Message::StaffInvite { link, .. }
            | Message::ExportReady { link, .. }
            | Message::SecurityNotice { link, .. }
            | Message::SupportAccess { link, .. } => [link],
            Message::SignupAttempt { reset_link, .. } => [reset_link],
        }
    }

    /// Renders both bodies. `to_name` greets the recipient when the message has no name
    /// of its own (an invitation). Every link must be an `http(s)` address.
    pub fn render(&self, to_name: &str) -> Result<Rendered, MailError> {
        for link in self.links() {
            check_link(link)?;
        }
        let (text, html) = match self {
            Message::VerifyEmail { name, link } => verify_email(&display(name), link)?,
            Message::ResetPassword { name, link } => reset_password(&display(name), link)?,
            Message::SignupAttempt { name, reset_link } => {
                signup_attempt(&display(name), reset_link)?
            }
            Message::StaffInvite {
                clinic_name,
                inviter,
                role,
                link,
            } => staff_invite(
                &display(to_name),
                &display(clinic_name),
                &display(inviter),
                &display(role),
                link,
            )?,
            Message::ExportReady { name, link } => export_ready(&display(name), link)?,
            Message::SecurityNotice { name, event, link } => {
                security_notice(&display(name), &event.sentence(), link)?
            }
            Message::SupportAccess {
                name,
                clinic_name,
                operator,
                minutes,
                emergency,
                link,
            } => support_access(
                &display(name),
                &display(clinic_name),
                &display(operator),
                *minutes,
                *emergency,
                link,
            )?,
        };
        Ok(Rendered {
            subject: self.subject(),
            text,
            html,
        })
    }
}

/// A display string made safe to show and to put in a header: control and bidirectional
/// formatting characters removed (CR/LF would start a new header; bidi overrides can
/// disguise text), runs of whitespace collapsed to one space, trimmed, bounded.
pub fn display(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_DISPLAY_CHARS * 4));
    let mut count = 0;
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            // Treat line breaks and tabs as word separators rather than gluing words.
            pending_space = !out.is_empty();
            continue;
        }
        if is_invisible_format(c) {
            continue;
        }
        if count >= MAX_DISPLAY_CHARS {
            break;
        }
        if pending_space {
            // Room for the space and the character after it, or stop: no trailing space.
            if count + 2 > MAX_DISPLAY_CHARS {
                break;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// Bidirectional overrides and zero-width characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A link must be an absolute `http`/`https` address with nothing in it that could break
/// out of a line or an attribute.
fn check_link(link: &str) -> Result<(), MailError> {
    if link.is_empty()
        || link.len() > 2_000
        || link
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>'))
    {
        return Err(MailError::Link);
    }
    match url::Url::parse(link) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(()),
        _ => Err(MailError::Link),
    }
}

/// The `http(s)://` addresses in a rendered text body (what the file transport logs).
pub(crate) fn links_in(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter(|w| w.starts_with("https://") || w.starts_with("http://"))
}

/// Declares the text and the HTML template of one kind, which take the same fields, and
/// a function that renders both from those fields.
macro_rules! bodies {
    ($(
        $render:ident: $text:ident = $text_path:tt, $html:ident = $html_path:tt
            { $($field:ident: $ty:ty),+ $(,)? }
    )+) => {$(
        #[derive(Template)]
        #[template(path = $text_path)]
        struct $text<'a> {
            $($field: $ty),+
        }

        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a> {
            $($field: $ty),+
        }

        fn $render<'a>($($field: $ty),+) -> Result<(String, String), askama::Error> {
            Ok(($text { $($field),+ }.render()?, $html { $($field),+ }.render()?))
        }
    )+};
}

bodies! {
    verify_email: VerifyEmailText = "mail/verify_email.txt",
        VerifyEmailHtml = "mail/verify_email.html" { name: &'a str, link: &'a str }
    reset_password: ResetPasswordText = "mail/reset_password.txt",
        ResetPasswordHtml = "mail/reset_password.html" { name: &'a str, link: &'a str }
    signup_attempt: SignupAttemptText = "mail/signup_attempt.txt",
        SignupAttemptHtml = "mail/signup_attempt.html" { name: &'a str, link: &'a str }
    staff_invite: StaffInviteText = "mail/staff_invite.txt",
        StaffInviteHtml = "mail/staff_invite.html" {
            name: &'a str,
            clinic_name: &'a str,
            inviter: &'a str,
            role: &'a str,
            link: &'a str,
        }
    export_ready: ExportReadyText = "mail/export_ready.txt",
        ExportReadyHtml = "mail/export_ready.html" { name: &'a str, link: &'a str }
    security_notice: SecurityNoticeText = "mail/security_notice.txt",
        SecurityNoticeHtml = "mail/security_notice.html" {
            name: &'a str,
            sentence: &'a str,
            link: &'a str,
        }
    support_access: SupportAccessText = "mail/support_access.txt",
        SupportAccessHtml = "mail/support_access.html" {
            name: &'a str,
            clinic_name: &'a str,
            operator: &'a str,
            minutes: u32,
            emergency: bool,
            link: &'a str,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "https://ward.example/verify-email?token=Zm9vYmFy";

    fn every_kind(name: &str, link: &str) -> Vec<Message> {
        vec![
            Message::VerifyEmail {
                name: name.into(),
                link: link.into(),
            },
            Message::ResetPassword {
                name: name.into(),
                link: link.into(),
            },
            Message::SignupAttempt {
                name: name.into(),
                reset_link: link.into(),
            },
            Message::StaffInvite {
                clinic_name: name.into(),
                inviter: name.into(),
                role: name.into(),
                link: link.into(),
            },
            Message::ExportReady {
                name: name.into(),
                link: link.into(),
            },
        ]
    }

    #[test]
    fn support_mail_names_the_operator_and_the_length_never_in_the_subject() {
        let link = "https://ward.example/c/acme/support";
        for emergency in [false, true] {
            let m = Message::SupportAccess {
                name: "Ana".into(),
                clinic_name: "<b>Acme</b>".into(),
                operator: "alice".into(),
                minutes: 30,
                emergency,
                link: link.into(),
            };
            let r = m.render("Ana").unwrap();
            assert_eq!(r.subject, m.subject());
            for word in ["alice", "Acme", "30"] {
                assert!(!r.subject.contains(word), "{}", r.subject);
                assert!(r.text.contains(word), "{word}: {}", r.text);
            }
            assert_eq!(links_in(&r.text).collect::<Vec<_>>(), vec![link]);
            assert!(r.html.contains(&format!("href=\"{link}\"")));
            assert!(!r.html.contains("<b>Acme"), "escaped: {}", r.html);
            assert_eq!(r.text.contains("without waiting for approval"), emergency);
        }
    }

    #[test]
    fn every_kind_has_a_fixed_subject_and_the_link_in_both_bodies() {
        for m in every_kind("Ana Pérez", LINK) {
            let r = m.render("Ana Pérez").unwrap();
            assert_eq!(r.subject, m.subject());
            assert!(!r.subject.contains("Ana"), "{}", m.kind());
            assert!(r.text.contains(LINK), "{}: text lacks the link", m.kind());
            assert!(
                r.html.contains(&format!("href=\"{LINK}\"")),
                "{}: html lacks the link",
                m.kind()
            );
            assert_eq!(links_in(&r.text).collect::<Vec<_>>(), vec![LINK]);
            for body in [&r.text, &r.html] {
                assert!(body.contains("once"), "{}: single use not said", m.kind());
                assert!(body.contains("expire"), "{}: expiry not said", m.kind());
            }
        }
    }

    #[test]
    fn a_missing_name_gives_a_plain_greeting() {
        for m in every_kind(" \r\n ", LINK) {
            let r = m.render("").unwrap();
            assert!(r.text.starts_with("Hello,\n"), "{}: {}", m.kind(), r.text);
            assert!(r.html.contains("<p>Hello,</p>"), "{}", m.kind());
        }
    }

    #[test]
    fn html_bodies_escape_what_they_are_given() {
        for m in every_kind("<script>alert(1)</script> & co", LINK) {
            let r = m.render("<b>x</b>").unwrap();
            assert!(!r.html.contains("<script>"), "{}", m.kind());
            assert!(!r.html.contains("<b>x</b>"), "{}", m.kind());
            assert!(r.html.contains("&#60;script&#62;"), "{}", m.kind());
        }
    }

    #[test]
    fn links_must_be_web_addresses_without_breaks() {
        for bad in [
            "",
            "javascript:alert(1)",
            "ftp://ward.example/x",
            "https://ward.example/x\r\nBcc: a@b.com",
            "https://ward.example/a b",
            "https://ward.example/\"onmouseover=\"x",
            "/relative/path",
            "https://",
        ] {
            let m = Message::VerifyEmail {
                name: "Ana".into(),
                link: bad.into(),
            };
            assert!(
                matches!(m.render("Ana"), Err(MailError::Link)),
                "{bad:?} was accepted"
            );
        }
        assert!(
            Message::VerifyEmail {
                name: "Ana".into(),
                link: "http://127.0.0.1:8080/verify-email?token=a-b_c".into(),
            }
            .render("Ana")
            .is_ok()
        );
    }

    #[test]
    fn display_strings_lose_control_and_invisible_characters() {
        assert_eq!(display("Ana\r\nBcc: evil@x.com"), "Ana Bcc: evil@x.com");
        assert_eq!(display("  Ana \t  Pérez \u{0}\u{7f} "), "Ana Pérez");
        assert_eq!(display("abc\u{202E}fed\u{200B}"), "abcfed");
        assert_eq!(display("\r\n"), "");
        assert_eq!(display(&"x".repeat(500)).chars().count(), MAX_DISPLAY_CHARS);
        let long = display(&"é ".repeat(500));
        assert!(long.chars().count() <= MAX_DISPLAY_CHARS && long.ends_with('é'));
    }
}
