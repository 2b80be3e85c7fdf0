//! Ward's outgoing mail.
//!
//! [`Mailer::send`] renders a [`Message`] and stores it in the control plane's durable
//! outbox; it returns once the mail is stored, not once it is delivered. A worker
//! ([`Mailer::spawn_worker`]) hands stored mail to the [`Transport`] and retries failures
//! with exponential back-off, so a mail server being down loses nothing: the mail goes out
//! when the server comes back. A mail is given up on only after [`MAX_ATTEMPTS`] attempts
//! (or a permanent refusal), and then it stays in the outbox with its error.
//!
//! Header injection is ruled out by construction: addresses are [`ward_core::Email`]
//! (which refuses CR/LF), display names lose their control characters, subjects are fixed
//! strings, and every header is built by lettre's typed builders, never by concatenation.

mod message;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};
use lettre::message::{Mailbox, MultiPart};
use ward_control::{ControlError, ControlPlane, MailState, NewMail, OutboxMail};
use ward_core::Email;

pub use message::{Message, Rendered, SecurityEvent, display};
pub use transport::{MemoryMailbox, SentMail, Transport};

/// Attempts after which a mail is given up on (about 14 hours of retrying).
pub const MAX_ATTEMPTS: u32 = 20;

/// Wait before the first retry; it doubles with every failure up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// How many due mails one query fetches.
const BATCH: u32 = 50;

/// Longest the worker sleeps without looking at the outbox: other processes (operator
/// commands) may store mail without waking it.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// How long the worker waits after the outbox itself failed.
const STORE_RETRY: Duration = Duration::from_secs(10);

/// Why mail could not be sent or configured.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The mail settings are unusable; the text says which and why (never a password).
    #[error("{0}")]
    Config(String),
    /// The recipient address cannot be written into a mail header.
    #[error("the recipient address cannot be used for mail")]
    Address,
    /// A link in the message is not an absolute http(s) address.
    #[error("a link in a mail must be an absolute http or https address")]
    Link,
    /// A template failed to render.
    #[error("cannot render the mail")]
    Render(#[from] askama::Error),
    /// The outbox could not be read or written.
    #[error(transparent)]
    Store(#[from] ControlError),
}

/// Mail settings (`WARD_SMTP_URL`, `WARD_MAIL_FROM`, the data directory).
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// SMTP server URL; `None` writes `.eml` files to `outbox_dir` instead.
    pub smtp_url: Option<String>,
    /// Sender, e.g. `Ward <ward@example.com>`.
    pub from: String,
    /// `<data>/outbox`: where `.eml` files go when there is no SMTP server.
    pub outbox_dir: PathBuf,
}

/// Sends Ward's mail through the durable outbox. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    control: Arc<ControlPlane>,
    from: Mailbox,
    transport: Transport,
    /// Woken when mail is stored, so the worker does not wait for its next timer.
    wake: tokio::sync::Notify,
    /// One delivery pass at a time, so a mail is never handed over twice by this process.
    pass: tokio::sync::Mutex<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Mailer {
    /// A mailer using the SMTP server of `config.smtp_url` (which must use TLS unless it is
    /// on loopback), or `.eml` files in `config.outbox_dir` when there is none.
    pub fn new(control: Arc<ControlPlane>, config: MailConfig) -> Result<Self, MailError> {
        let transport = match &config.smtp_url {
            Some(url) => Transport::smtp(url)?,
            None => Transport::file(&config.outbox_dir)?,
        };
        Self::with_transport(control, &config.from, transport)
    }

    /// A mailer with the given transport and sender.
    pub fn with_transport(
        control: Arc<ControlPlane>,
        from: &str,
        transport: Transport,
    ) -> Result<Self, MailError> {
        let bad = || {
            MailError::Config(
                "WARD_MAIL_FROM must be an address such as \"Ward <ward@example.com>\"".into(),
            )
        };
        if from.chars().any(char::is_control) {
            return Err(bad());
        }
        let from: Mailbox = from.trim().parse().map_err(|_| bad())?;
        let (stop, _) = tokio::sync::watch::channel(false);
        Ok(Self {
            inner: Arc::new(Inner {
                control,
                from,
                transport,
                wake: tokio::sync::Notify::new(),
                pass: tokio::sync::Mutex::new(()),
                stop,
            }),
        })
    }

    /// A mailer that delivers into memory, for tests: the mailbox sees what was delivered
    /// (after [`Mailer::deliver_due`] or the worker ran).
    pub fn in_memory(control: Arc<ControlPlane>) -> Result<(Self, MemoryMailbox), MailError> {
        let (transport, mailbox) = Transport::memory();
        Ok((
            Self::with_transport(control, "Ward <ward@localhost>", transport)?,
            mailbox,
        ))
    }

    /// Where mail goes, for the log (never credentials).
    pub fn describe(&self) -> String {
        self.inner.transport.describe()
    }

    /// Renders `message` for `to` and stores it durably in the outbox, then wakes the
    /// worker. Returns once the mail is stored; delivery happens later and is retried.
    pub async fn send(&self, to: &Email, to_name: &str, message: Message) -> Result<(), MailError> {
        self.enqueue(to, to_name, message).await.map(drop)
    }

    /// [`Mailer::send`], returning the mail's outbox id.
    pub async fn enqueue(
        &self,
        to: &Email,
        to_name: &str,
        message: Message,
    ) -> Result<i64, MailError> {
        // Refuse now what could never be delivered, rather than storing it.
        let _: lettre::Address = to.as_str().parse().map_err(|_| MailError::Address)?;
        let to_name = display(to_name);
        let rendered = message.render(&to_name)?;
        let id = self
            .inner
            .control
            .outbox()
            .enqueue(NewMail {
                to_addr: to.as_str().to_owned(),
                to_name,
                subject: rendered.subject.to_owned(),
                body_text: rendered.text,
                body_html: rendered.html,
            })
            .await?;
        tracing::debug!(outbox_id = id, kind = message.kind(), "mail stored");
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// One delivery pass: hands every due mail to the transport, marks it sent or
    /// schedules its retry. Returns how many were delivered. Transport failures are
    /// recorded on the mail, not returned; an error means the outbox itself failed.
    pub async fn deliver_due(&self) -> Result<usize, MailError> {
        let _pass = self.inner.pass.lock().await;
        let outbox = self.inner.control.outbox();
        let mut delivered = 0;
        loop {
            let now = self.inner.control.clock().now();
            let due = outbox.due(now, BATCH).await?;
            let fetched = due.len();
            for row in due {
                if *self.inner.stop.borrow() {
                    return Ok(delivered);
                }
                if self.deliver_one(row).await? {
                    delivered += 1;
                }
            }
            // A failed mail moves into the future and a sent one leaves, so every row
            // seen is gone from the next query: this ends.
            if fetched < BATCH as usize {
                return Ok(delivered);
            }
        }
    }

    /// Tries mail `id` now if it is still pending, for a command that stored it and
    /// should not wait for `ward serve`'s worker; returns whether it was delivered. A
    /// failed attempt is recorded as the worker's would be, and the worker retries it.
    pub async fn deliver(&self, id: i64) -> Result<bool, MailError> {
        let _pass = self.inner.pass.lock().await;
        match self.inner.control.outbox().get(id).await? {
            Some(row) if row.state() == MailState::Pending => self.deliver_one(row).await,
            _ => Ok(false),
        }
    }

    /// Tries one mail; returns whether it was delivered.
    async fn deliver_one(&self, row: OutboxMail) -> Result<bool, MailError> {
        let outbox = self.inner.control.outbox();
        let result = match self.build(&row) {
            Ok(email) => self.inner.transport.deliver(&row, email).await,
            Err(message) => Err(transport::DeliveryError {
                permanent: true,
                message,
            }),
        };
        match result {
            Ok(()) => {
                outbox.mark_sent(row.id).await?;
                metrics::counter!("ward_mail_sent_total").increment(1);
                tracing::info!(outbox_id = row.id, "mail delivered");
                Ok(true)
            }
            Err(e) => {
                let attempts = row.attempts.saturating_add(1);
                let gave_up = e.permanent || attempts >= MAX_ATTEMPTS;
                metrics::counter!(
                    "ward_mail_send_failures_total",
                    "outcome" => if gave_up { "gave_up" } else { "retry" }
                )
                .increment(1);
                if gave_up {
                    outbox.mark_failed(row.id, None, &e.message).await?;
                    tracing::error!(
                        outbox_id = row.id,
                        attempts,
                        error = %e.message,
                        "gave up delivering a mail; it stays in the outbox"
                    );
                } else {
                    let next = self.inner.control.clock().now() + retry_delay(attempts);
                    outbox.mark_failed(row.id, Some(next), &e.message).await?;
                    tracing::warn!(
                        outbox_id = row.id,
                        attempts,
                        retry_at = %ward_core::format_time(next),
                        error = %e.message,
                        "mail delivery failed; will retry"
                    );
                }
                Ok(false)
            }
        }
    }

    /// The stored mail as a MIME message: typed headers only.
    fn build(&self, row: &OutboxMail) -> Result<lettre::Message, String> {
        let address: lettre::Address = row
            .to_addr
            .parse()
            .map_err(|_| "the stored recipient address is not valid".to_owned())?;
        // Stored names were cleaned on the way in; clean again so a row written by
        // anything else cannot reach a header with a line break.
        let name = display(&row.to_name);
        let to = Mailbox::new((!name.is_empty()).then_some(name), address);
        // The same id on every attempt, so a mail handed over twice (the server took it
        // but the reply was lost) can be recognised as one.
        let message_id = format!(
            "<ward.{}.{}@{}>",
            row.id,
            row.created_at.timestamp_millis(),
            self.inner.from.email.domain()
        );
        lettre::Message::builder()
            .message_id(Some(message_id))
            .from(self.inner.from.clone())
            .to(to)
            .subject(display(&row.subject))
            .date(system_time(row.created_at))
            .multipart(MultiPart::alternative_plain_html(
                row.body_text.clone(),
                row.body_html.clone(),
            ))
            .map_err(|e| format!("cannot build the mail: {e}"))
    }

    /// Starts the delivery worker: a pass whenever mail is stored or a retry falls due
    /// (and at least every minute), until [`Mailer::stop`].
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        let mailer = self.clone();
        tokio::spawn(async move { mailer.work().await })
    }

    /// Asks the worker to stop after the mail it is handing over; stored mail stays in
    /// the outbox for the next start.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
        self.inner.wake.notify_one();
    }

    async fn work(self) {
        let mut stop = self.inner.stop.subscribe();
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let wait = match self.deliver_due().await {
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the mail outbox; retrying");
                    STORE_RETRY
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::debug!("mail worker stopped");
    }

    /// How long until the earliest pending mail is due, at most [`MAX_IDLE`].
    async fn until_next_due(&self) -> Duration {
        match self.inner.control.outbox().next_attempt_at().await {
            Ok(Some(at)) => (at - self.inner.control.clock().now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the mail outbox; retrying");
                STORE_RETRY
            }
        }
    }
}

/// The wait before attempt `failures + 1`: 30 s, doubling, at most an hour.
pub fn retry_delay(failures: u32) -> TimeDelta {
    let exponent = failures.saturating_sub(1).min(16);
    let delay = FIRST_RETRY_DELAY
        .saturating_mul(1 << exponent)
        .min(MAX_RETRY_DELAY);
    TimeDelta::from_std(delay).unwrap_or(TimeDelta::hours(1))
}

fn system_time(t: DateTime<Utc>) -> SystemTime {
    SystemTime::from(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailer_can_be_shared_across_tasks() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Mailer>();
        shareable::<MemoryMailbox>();
    }

    #[test]
    fn retries_back_off_from_thirty_seconds_to_an_hour() {
        let secs: Vec<i64> = (1..=10).map(|n| retry_delay(n).num_seconds()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(retry_delay(u32::MAX).num_seconds(), 3600);
        let total: i64 = (1..MAX_ATTEMPTS)
            .map(|n| retry_delay(n).num_seconds())
            .sum();
        assert!(
            (10 * 3600..24 * 3600).contains(&total),
            "mail is retried for {total} s"
        );
    }
}
