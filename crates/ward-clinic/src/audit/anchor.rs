//! Anchoring: copying each clinic's chain head to the control plane, so that a log cut
//! short or rewritten (even with every hash recomputed) no longer matches its anchor.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ward_core::ClinicId;
use ward_tenancy::TenantStore;

use super::{Head, head};

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where anchors are kept: the control plane (`ControlPlane::anchor_many`). A closure
/// `Fn(Vec<(ClinicId, Head)>) -> impl Future<Output = Result<(), BoxError>>` is one.
pub trait AnchorSink: Send + Sync + 'static {
    /// Stores these heads as the clinics' anchors. Must not move an anchor backwards.
    fn store(
        &self,
        heads: Vec<(ClinicId, Head)>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

impl<F, Fut> AnchorSink for F
where
    F: Fn(Vec<(ClinicId, Head)>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    fn store(
        &self,
        heads: Vec<(ClinicId, Head)>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        self(heads)
    }
}

/// What one anchoring pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnchorRun {
    /// Open clinics looked at.
    pub clinics: usize,
    /// Heads that had moved and were anchored.
    pub anchored: usize,
    /// Clinics whose head could not be read.
    pub failed: usize,
}

/// Anchors the heads of the clinics this process has open, periodically and at shutdown.
///
/// Only open clinics can have changed (a closed file is not written by this process), so
/// each pass reads the head of every cached clinic (one indexed lookup each, without
/// counting as a use that would keep it open) and stores the ones that moved since the
/// last pass, in one control-plane transaction. A clinic closed for capacity between two
/// passes is anchored the next time it is open during a pass; idle clinics stay open
/// far longer than the interval, so they are anchored before they close.
pub struct Anchorer<S> {
    store: TenantStore,
    sink: S,
    /// Last head anchored per clinic by this process, to skip unchanged ones.
    anchored: Mutex<HashMap<ClinicId, Head>>,
}

impl<S: AnchorSink> Anchorer<S> {
    /// An anchorer for `store`'s clinics, writing to `sink`.
    pub fn new(store: TenantStore, sink: S) -> Self {
        Self {
            store,
            sink,
            anchored: Mutex::new(HashMap::new()),
        }
    }

    /// One pass over the open clinics; see the type's documentation.
    pub async fn anchor_open(&self) -> Result<AnchorRun, BoxError> {
        let tenants = self.store.open_tenants();
        let mut run = AnchorRun {
            clinics: tenants.len(),
            ..AnchorRun::default()
        };
        let mut moved = Vec::new();
        for tenant in tenants {
            let id = tenant.id();
            match tenant.with(|conn| head(&conn)).await {
                Ok(Some(h)) => {
                    let known = self
                        .anchored
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&id)
                        .is_some_and(|a| *a == h);
                    if !known {
                        moved.push((id, h));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    run.failed += 1;
                    tracing::warn!(clinic = %id, error = %e, "cannot read the audit head to anchor it");
                }
            }
        }
        if moved.is_empty() {
            return Ok(run);
        }
        run.anchored = moved.len();
        self.sink.store(moved.clone()).await?;
        self.anchored
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(moved);
        Ok(run)
    }

    /// Runs [`Anchorer::anchor_open`] every `every` until the task is aborted. Call
    /// `anchor_open` once more at shutdown, after the read auditor's flush.
    pub fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match self.anchor_open().await {
                    Ok(run) if run.anchored > 0 => {
                        tracing::debug!(
                            clinics = run.clinics,
                            anchored = run.anchored,
                            "audit heads anchored"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "audit heads could not be anchored"),
                }
            }
        })
    }
}
