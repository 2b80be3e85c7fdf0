//! Outbound mail. Interim version: writes each message as a text file under
//! `<data>/outbox/`; the SMTP transport and durable outbox replace it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ward_control::ControlPlane;
use ward_core::Email;

/// What Ward sends.
#[derive(Debug, Clone)]
pub enum Message {
    /// Confirm an address.
    VerifyEmail { name: String, link: String },
    /// Reset a password.
    ResetPassword { name: String, link: String },
    /// Someone tried to sign up with an existing address.
    SignupAttempt { name: String, reset_link: String },
}

/// Mail settings.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// SMTP server URL.
    pub smtp_url: Option<String>,
    /// Sender.
    pub from: String,
    /// `<data>/outbox`.
    pub outbox_dir: PathBuf,
}

/// Why mail failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MailError(String);

/// Sends mail.
#[derive(Clone)]
pub struct Mailer {
    dir: PathBuf,
    n: Arc<AtomicU64>,
}

impl Mailer {
    /// A mailer.
    pub fn new(_control: Arc<ControlPlane>, config: MailConfig) -> Result<Self, MailError> {
        std::fs::create_dir_all(&config.outbox_dir).map_err(|e| MailError(e.to_string()))?;
        Ok(Self {
            dir: config.outbox_dir,
            n: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sends one message.
    pub async fn send(&self, to: &Email, to_name: &str, message: Message) -> Result<(), MailError> {
        let (subject, link) = match &message {
            Message::VerifyEmail { link, .. } => ("Confirm your email address", link),
            Message::ResetPassword { link, .. } => ("Reset your Ward password", link),
            Message::SignupAttempt { reset_link, .. } => {
                ("Someone tried to sign up with your address", reset_link)
            }
        };
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let body = format!("To: {to_name} <{to}>\nSubject: {subject}\n\n{link}\n");
        std::fs::write(
            self.dir
                .join(format!("{:06}-{}.eml", n, std::process::id())),
            body,
        )
        .map_err(|e| MailError(e.to_string()))?;
        tracing::info!(%link, "mail written to the outbox");
        Ok(())
    }

    /// Delivers due mail.
    pub async fn deliver_due(&self) -> Result<usize, MailError> {
        Ok(0)
    }

    /// The delivery worker.
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async {})
    }
}
