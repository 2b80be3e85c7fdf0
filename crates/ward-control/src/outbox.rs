//! The durable mail outbox: a mail is stored here before the caller is told it was sent,
//! and a delivery worker works through it, retrying with back-off. The back-off policy
//! belongs to the mail crate; this module only stores what it decides.

use chrono::{DateTime, Utc};
use serde::Serialize;
use ward_core::{format_time, parse_time};
use ward_tenancy::sql::Row;

use crate::{ControlError, ControlPlane};

/// How much of a delivery error is kept; SMTP replies can be long.
const MAX_ERROR_CHARS: usize = 1_000;

/// A rendered mail to store.
#[derive(Debug, Clone)]
pub struct NewMail {
    /// Recipient address (already validated).
    pub to_addr: String,
    /// Recipient display name (already free of control characters).
    pub to_name: String,
    /// Subject: a fixed string per kind of mail.
    pub subject: String,
    /// Plain-text body.
    pub body_text: String,
    /// HTML body.
    pub body_html: String,
}

/// Where a stored mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailState {
    /// Waiting for its next attempt.
    Pending,
    /// Accepted by the transport.
    Sent,
    /// Given up on after too many attempts or a permanent refusal.
    Failed,
}

/// One row of the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxMail {
    /// Row id.
    pub id: i64,
    /// Recipient address.
    pub to_addr: String,
    /// Recipient display name.
    pub to_name: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body (empty once sent).
    pub body_text: String,
    /// HTML body (empty once sent).
    pub body_html: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When it is next tried; `None` once sent or given up.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the transport accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When delivery was given up.
    pub failed_at: Option<DateTime<Utc>>,
}

impl OutboxMail {
    /// Pending, sent or failed.
    pub fn state(&self) -> MailState {
        if self.sent_at.is_some() {
            MailState::Sent
        } else if self.failed_at.is_some() {
            MailState::Failed
        } else {
            MailState::Pending
        }
    }

    fn from_row(row: &Row) -> Result<Self, ControlError> {
        let bad = || ControlError::Invalid("the outbox holds an invalid time".into());
        let time = |i: i32| -> Result<Option<DateTime<Utc>>, ControlError> {
            match row.get::<Option<String>>(i)? {
                Some(t) => parse_time(&t).map(Some).ok_or_else(bad),
                None => Ok(None),
            }
        };
        Ok(Self {
            id: row.get(0)?,
            to_addr: row.get(1)?,
            to_name: row.get(2)?,
            subject: row.get(3)?,
            body_text: row.get(4)?,
            body_html: row.get(5)?,
            created_at: time(6)?.ok_or_else(bad)?,
            attempts: row.get(7)?,
            next_attempt_at: time(8)?,
            last_error: row.get(9)?,
            sent_at: time(10)?,
            failed_at: time(11)?,
        })
    }
}

/// How many mails are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    /// Waiting to be delivered.
    pub pending: u64,
    /// Delivered.
    pub sent: u64,
    /// Given up on.
    pub failed: u64,
}

const COLUMNS: &str = "id, to_addr, to_name, subject, body_text, body_html, created_at, attempts, next_attempt_at, last_error, sent_at, failed_at";

/// The outbox of a [`ControlPlane`]; see [`ControlPlane::outbox`].
#[derive(Debug, Clone, Copy)]
pub struct Outbox<'a> {
    control: &'a ControlPlane,
}

impl ControlPlane {
    /// The durable mail outbox.
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox { control: self }
    }
}

impl Outbox<'_> {
    /// Stores a mail, due at once, and returns its id. Once this returns the mail is
    /// durable: it survives a crash and is delivered when a transport accepts it.
    pub async fn enqueue(&self, mail: NewMail) -> Result<i64, ControlError> {
        let now = format_time(self.control.clock.now());
        self.control
            .with(|conn| async move {
                let mut rows = conn
                    .query(
                        "INSERT INTO outbox (to_addr, to_name, subject, body_text, body_html, created_at, next_attempt_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING id",
                        ward_tenancy::sql::params![
                            mail.to_addr,
                            mail.to_name,
                            mail.subject,
                            mail.body_text,
                            mail.body_html,
                            now
                        ],
                    )
                    .await?;
                match rows.next().await? {
                    Some(row) => Ok(row.get::<i64>(0)?),
                    None => Err(ControlError::Invalid("the outbox did not return an id".into())),
                }
            })
            .await
    }

    /// Pending mails whose next attempt is at or before `now`, oldest due first, at most
    /// `limit` of them.
    pub async fn due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, ControlError> {
        let now = format_time(now);
        self.control
            .query_rows(
                &format!(
                    "SELECT {COLUMNS} FROM outbox \
                             WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?1 \
                             ORDER BY next_attempt_at, id LIMIT ?2"
                ),
                ward_tenancy::sql::params![now, limit],
                OutboxMail::from_row,
            )
            .await
    }

    /// Records that the transport accepted mail `id`, and empties its bodies: they hold a
    /// one-time link that should not outlive its delivery in the database. Returns whether
    /// a pending mail was updated (false if it was already sent or given up).
    pub async fn mark_sent(&self, id: i64) -> Result<bool, ControlError> {
        let now = format_time(self.control.clock.now());
        let changed = self
            .control
            .with(|conn| async move {
                conn.execute(
                    "UPDATE outbox SET sent_at = ?2, attempts = attempts + 1, next_attempt_at = NULL, \
                     last_error = NULL, body_text = '', body_html = '' \
                     WHERE id = ?1 AND next_attempt_at IS NOT NULL",
                    ward_tenancy::sql::params![id, now],
                )
                .await
            })
            .await?;
        Ok(changed == 1)
    }

    /// Records a failed attempt at mail `id`: it is tried again at `next_attempt_at`, or,
    /// when that is `None`, given up on (kept, with the error, never deleted). Returns the
    /// number of attempts made so far, or `None` if no pending mail has that id.
    pub async fn mark_failed(
        &self,
        id: i64,
        next_attempt_at: Option<DateTime<Utc>>,
        error: &str,
    ) -> Result<Option<u32>, ControlError> {
        let now = format_time(self.control.clock.now());
        let next = next_attempt_at.map(format_time);
        let failed_at = next.is_none().then_some(now);
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        self.control
            .with(|conn| async move {
                let mut rows = conn
                    .query(
                        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, \
                         last_error = ?3, failed_at = ?4 \
                         WHERE id = ?1 AND next_attempt_at IS NOT NULL RETURNING attempts",
                        ward_tenancy::sql::params![id, next, error, failed_at],
                    )
                    .await?;
                match rows.next().await? {
                    Some(row) => Ok(Some(row.get::<u32>(0)?)),
                    None => Ok(None),
                }
            })
            .await
    }

    /// When the earliest pending mail is due, if any is pending.
    pub async fn next_attempt_at(&self) -> Result<Option<DateTime<Utc>>, ControlError> {
        let next: Option<String> = self
            .control
            .with(|conn| async move {
                let mut rows = conn
                    .query(
                        "SELECT MIN(next_attempt_at) FROM outbox WHERE next_attempt_at IS NOT NULL",
                        (),
                    )
                    .await?;
                match rows.next().await? {
                    Some(row) => row.get::<Option<String>>(0),
                    None => Ok(None),
                }
            })
            .await?;
        match next {
            Some(t) => parse_time(&t)
                .map(Some)
                .ok_or_else(|| ControlError::Invalid("the outbox holds an invalid time".into())),
            None => Ok(None),
        }
    }

    /// One mail by id.
    pub async fn get(&self, id: i64) -> Result<Option<OutboxMail>, ControlError> {
        self.control
            .with(|conn| async move {
                let mut rows = conn
                    .query(
                        &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                        ward_tenancy::sql::params![id],
                    )
                    .await?;
                match rows.next().await? {
                    Some(row) => OutboxMail::from_row(&row).map(Some),
                    None => Ok(None),
                }
            })
            .await
    }

    /// How many mails are pending, sent and given up (for status pages and operators).
    pub async fn counts(&self) -> Result<OutboxCounts, ControlError> {
        self.control
            .with(|conn| async move {
                let mut rows = conn
                    .query(
                        "SELECT \
                           COALESCE(SUM(next_attempt_at IS NOT NULL), 0), \
                           COALESCE(SUM(sent_at IS NOT NULL), 0), \
                           COALESCE(SUM(failed_at IS NOT NULL), 0) \
                         FROM outbox",
                        (),
                    )
                    .await?;
                match rows.next().await? {
                    Some(row) => Ok(OutboxCounts {
                        pending: row.get(0)?,
                        sent: row.get(1)?,
                        failed: row.get(2)?,
                    }),
                    None => Ok(OutboxCounts::default()),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeDelta;
    use ward_core::{Clock, ManualClock, parse_time};
    use ward_tenancy::MasterKey;

    use super::*;

    /// A control plane in a new folder, on a clock that moves only when told to.
    async fn plane() -> (tempfile::TempDir, ControlPlane, ManualClock) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(parse_time("2026-03-01T09:00:00Z").unwrap());
        let (control, _) =
            ControlPlane::open(dir.path(), &MasterKey::random(), Arc::new(clock.clone()))
                .await
                .unwrap();
        (dir, control, clock)
    }

    fn mail(to: &str) -> NewMail {
        NewMail {
            to_addr: to.into(),
            to_name: "Ana".into(),
            subject: "Confirm your email address".into(),
            body_text: "https://ward.example/verify-email?token=abc".into(),
            body_html: "<p>hi</p>".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stored_mail_is_due_at_once_and_not_after_it_is_sent() {
        let (_dir, control, clock) = plane().await;
        let outbox = control.outbox();
        let id = outbox.enqueue(mail("ana@example.com")).await.unwrap();
        let due = outbox.due(clock.now(), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, id);
        assert_eq!(due[0].state(), MailState::Pending);
        assert_eq!(due[0].attempts, 0);

        assert!(outbox.mark_sent(id).await.unwrap());
        assert!(!outbox.mark_sent(id).await.unwrap(), "sent twice");
        assert!(outbox.due(clock.now(), 10).await.unwrap().is_empty());
        let row = outbox.get(id).await.unwrap().unwrap();
        assert_eq!(row.state(), MailState::Sent);
        assert_eq!(row.sent_at, Some(clock.now()));
        assert_eq!(row.attempts, 1);
        assert!(
            row.body_text.is_empty() && row.body_html.is_empty(),
            "the one-time link outlived delivery"
        );
        assert_eq!(
            outbox.counts().await.unwrap(),
            OutboxCounts {
                pending: 0,
                sent: 1,
                failed: 0
            }
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_attempt_waits_for_its_retry_time_and_giving_up_keeps_the_row() {
        let (_dir, control, clock) = plane().await;
        let outbox = control.outbox();
        let id = outbox.enqueue(mail("ana@example.com")).await.unwrap();
        let retry = clock.now() + TimeDelta::seconds(30);
        assert_eq!(
            outbox
                .mark_failed(id, Some(retry), "connection refused")
                .await
                .unwrap(),
            Some(1)
        );
        assert!(outbox.due(clock.now(), 10).await.unwrap().is_empty());
        assert_eq!(outbox.next_attempt_at().await.unwrap(), Some(retry));
        clock.advance(TimeDelta::seconds(30));
        let due = outbox.due(clock.now(), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].last_error.as_deref(), Some("connection refused"));

        assert_eq!(
            outbox
                .mark_failed(id, None, &"x".repeat(5_000))
                .await
                .unwrap(),
            Some(2)
        );
        let row = outbox.get(id).await.unwrap().unwrap();
        assert_eq!(row.state(), MailState::Failed);
        assert_eq!(row.failed_at, Some(clock.now()));
        assert_eq!(row.last_error.unwrap().len(), MAX_ERROR_CHARS);
        assert!(
            !row.body_text.is_empty(),
            "a given-up mail keeps its content"
        );
        assert_eq!(outbox.next_attempt_at().await.unwrap(), None);
        assert_eq!(outbox.mark_failed(id, None, "again").await.unwrap(), None);
        assert_eq!(outbox.counts().await.unwrap().failed, 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn due_mails_come_oldest_first_and_limited() {
        let (_dir, control, clock) = plane().await;
        let outbox = control.outbox();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                outbox
                    .enqueue(mail(&format!("u{i}@example.com")))
                    .await
                    .unwrap(),
            );
            clock.advance(TimeDelta::seconds(1));
        }
        // The first one failed and waits a minute: the others overtake it.
        outbox
            .mark_failed(ids[0], Some(clock.now() + TimeDelta::minutes(1)), "down")
            .await
            .unwrap();
        let due = outbox.due(clock.now(), 3).await.unwrap();
        assert_eq!(
            due.iter().map(|m| m.id).collect::<Vec<_>>(),
            ids[1..4].to_vec()
        );
    }
}
