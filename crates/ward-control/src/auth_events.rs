//! The platform's authentication log: every signup, verification, login attempt,
//! logout, password reset and session revocation, hash-chained like a clinic's audit
//! log.

use serde::{Deserialize, Serialize};
use ward_core::chain::{self, ChainReport, Field, GENESIS, ProblemKind, Verifier};
use ward_core::format_time;
use ward_tenancy::db;
use ward_tenancy::sql::Value;

use crate::{ControlError, ControlPlane};

/// One authentication event, as recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthEvent {
    /// What happened: `signup`, `verify_email`, `login`, `logout`, `reset_request`,
    /// `reset_complete`, `password_change`, `session_revoke`, …
    pub kind: String,
    /// The user, when known.
    pub user_id: Option<String>,
    /// The email address as typed.
    pub email: Option<String>,
    /// The client address as the rate limiter's key extractor determined it.
    pub ip: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// `ok`, `failed`, `limited`, …
    pub outcome: String,
    /// Extra detail (never a secret).
    pub detail: Option<String>,
}

/// The chained columns of `auth_events`, in the order they are encoded for hashing.
const CHAINED_COLUMNS: &str = "seq, at, kind, user_id, email, ip, user_agent, outcome, detail";

impl ControlPlane {
    /// Appends one event to the auth log, chained to the one before it:
    /// `hash = SHA-256(prev_hash || canonical encoding of seq .. detail)` (docs/audit.md).
    ///
    /// The head is read and the event inserted in one write transaction, so concurrent
    /// events cannot both follow the same head and fork the chain.
    pub async fn record_auth_event(&self, event: AuthEvent) -> Result<(), ControlError> {
        let at = format_time(self.clock.now());
        self.transaction(|conn| async move {
            let head = db::first_row(
                &conn,
                "SELECT seq, hash FROM auth_events ORDER BY seq DESC LIMIT 1",
                (),
            )?;
            let (seq, prev_hash) = match head {
                // Events from before the chain existed have no hash; the chain starts after them.
                Some(row) => (
                    row.get::<i64>(0)? + 1,
                    row.get::<Option<Vec<u8>>>(1)?
                        .unwrap_or_else(|| GENESIS.to_vec()),
                ),
                None => (1, GENESIS.to_vec()),
            };
            let hash = chain::link(
                &prev_hash,
                &[
                    Field::Int(seq),
                    Field::Text(&at),
                    Field::Text(&event.kind),
                    event.user_id.as_deref().into(),
                    event.email.as_deref().into(),
                    event.ip.as_deref().into(),
                    event.user_agent.as_deref().into(),
                    Field::Text(&event.outcome),
                    event.detail.as_deref().into(),
                ],
            );
            conn.execute(
                "INSERT INTO auth_events (seq, at, kind, user_id, email, ip, user_agent, outcome, detail, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                ward_tenancy::sql::params![
                    seq,
                    at,
                    event.kind,
                    event.user_id,
                    event.email,
                    event.ip,
                    event.user_agent,
                    event.outcome,
                    event.detail,
                    prev_hash,
                    hash.to_vec()
                ],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Recomputes the auth log's chain end to end (for `ward verify`).
    ///
    /// Events older than the chain (no hash, from before it was introduced) are allowed
    /// only before the first chained event; the chain then starts at `GENESIS`. Also
    /// reports missing append-only triggers.
    pub async fn verify_auth_chain(&self) -> Result<ChainReport, ControlError> {
        self.with(|conn| async move {
            let mut verifier: Option<Verifier> = None;
            let mut problems = Vec::new();
            for name in ["auth_events_no_update", "auth_events_no_delete"] {
                let present = db::first_row(
                    &conn,
                    "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'auth_events' AND name = ?1 AND upper(sql) LIKE '%RAISE(ABORT%'",
                    [name],
                )?
                .is_some();
                if !present {
                    problems.push(format!("the append-only trigger {name} is missing or altered"));
                }
            }
            let sql = format!("SELECT {CHAINED_COLUMNS}, prev_hash, hash FROM auth_events ORDER BY seq");
            let mut rows = conn.query(&sql, ()).await?;
            let mut values = Vec::with_capacity(11);
            while let Some(row) = rows.next().await? {
                values.clear();
                for i in 0..11 {
                    values.push(row.get_value(i)?);
                }
                let seq = match values[0] {
                    Value::Integer(seq) => seq,
                    _ => {
                        verifier
                            .get_or_insert_with(|| Verifier::new(1, None))
                            .unreadable(None, "its sequence number is not an integer");
                        continue;
                    }
                };
                let (prev_hash, hash) = match (&values[9], &values[10]) {
                    (Value::Blob(p), Value::Blob(h)) => (p, h),
                    (Value::Null, Value::Null) if verifier.is_none() => continue,
                    _ => {
                        verifier
                            .get_or_insert_with(|| Verifier::new(seq, None))
                            .unreadable(Some(seq), "it is not chained (no prev_hash or hash)");
                        continue;
                    }
                };
                let fields: Vec<Field<'_>> = values[..9].iter().map(Field::from).collect();
                verifier
                    .get_or_insert_with(|| Verifier::new(seq, None))
                    .row(seq, prev_hash, hash, &fields);
            }
            let mut verifier = verifier.unwrap_or_else(|| Verifier::new(1, None));
            for p in problems {
                verifier.problem(None, ProblemKind::Unprotected, p);
            }
            Ok(verifier.finish())
        })
        .await
    }
}

impl ControlPlane {
    /// The newest `limit` auth events, newest first (for the operator and tests).
    pub async fn recent_auth_events(&self, limit: u32) -> Result<Vec<AuthEvent>, ControlError> {
        self.query_rows(
            "SELECT kind, user_id, email, ip, user_agent, outcome, detail FROM auth_events ORDER BY seq DESC LIMIT ?1",
            [limit],
            |row| Ok(row.decode()?),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ward_core::SystemClock;
    use ward_tenancy::MasterKey;

    use super::*;

    async fn control() -> (tempfile::TempDir, Arc<ControlPlane>) {
        let dir = tempfile::tempdir().unwrap();
        let (control, _) =
            ControlPlane::open(dir.path(), &MasterKey::random(), Arc::new(SystemClock))
                .await
                .unwrap();
        (dir, Arc::new(control))
    }

    /// Runs `sql` on the control plane behind the chain's back, then verifies the chain.
    async fn tampered(control: &ControlPlane, sql: &str) -> ChainReport {
        control
            .with(|conn| async move { conn.execute_batch(sql).await.unwrap() })
            .await;
        control.verify_auth_chain().await.unwrap()
    }

    fn event(n: usize) -> AuthEvent {
        AuthEvent {
            kind: "login".into(),
            user_id: n.is_multiple_of(2).then(|| format!("user-{n}")),
            email: Some(format!("person{n}@example.com")),
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            outcome: if n.is_multiple_of(3) { "failed" } else { "ok" }.into(),
            detail: None,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_events_form_one_unbroken_chain() {
        let (_dir, control) = control().await;
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let control = control.clone();
                tokio::spawn(async move {
                    for i in 0..25 {
                        control.record_auth_event(event(t * 100 + i)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let report = control.verify_auth_chain().await.unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.rows, 200);
        assert_eq!(report.head.map(|h| h.seq), Some(200));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_auth_log_refuses_changes_and_reports_tampering() {
        let (_dir, control) = control().await;
        for n in 0..10 {
            control.record_auth_event(event(n)).await.unwrap();
        }
        assert!(control.verify_auth_chain().await.unwrap().is_clean());

        let refused = control
            .with(|conn| async move {
                let update = conn
                    .execute("UPDATE auth_events SET outcome = 'ok' WHERE seq = 4", ())
                    .await;
                let delete = conn
                    .execute("DELETE FROM auth_events WHERE seq = 4", ())
                    .await;
                (update.is_err(), delete.is_err())
            })
            .await;
        assert_eq!(
            refused,
            (true, true),
            "the triggers refuse UPDATE and DELETE"
        );

        // A failed login made to look successful, with the triggers out of the way.
        let report = tampered(
            &control,
            "DROP TRIGGER auth_events_no_update; UPDATE auth_events SET outcome = 'ok' WHERE seq = 4;",
        )
        .await;
        assert_eq!(report.first_bad_seq(), Some(4), "{report:?}");
        for kind in [ProblemKind::HashMismatch, ProblemKind::Unprotected] {
            assert!(
                report.problems.iter().any(|p| p.kind == kind),
                "{kind:?} missing from {report:?}"
            );
        }

        // An event deleted from the middle.
        let report = tampered(
            &control,
            "DROP TRIGGER auth_events_no_delete; DELETE FROM auth_events WHERE seq = 2;",
        )
        .await;
        assert_eq!(report.first_bad_seq(), Some(2), "{report:?}");
        assert_eq!(
            report.problems[0].kind,
            ProblemKind::MissingRows,
            "{report:?}"
        );
    }
}
