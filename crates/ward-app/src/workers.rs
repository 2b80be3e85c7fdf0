//! The background work of a running Ward, started from one place and stopped through
//! one path.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use ward_clinic::audit::{AnchorSink, Anchorer, BoxError, Head};
use ward_control::ControlPlane;
use ward_core::ClinicId;

use crate::App;

/// How often open clinics' audit heads are anchored in the control plane.
const ANCHOR_EVERY: Duration = Duration::from_secs(60);
/// How long the mail worker may take to hand over the mail it holds at shutdown.
const MAIL_GRACE: Duration = Duration::from_secs(30);

/// Anchors go to the control plane.
struct ControlSink(Arc<ControlPlane>);

impl AnchorSink for ControlSink {
    fn store(
        &self,
        heads: Vec<(ClinicId, Head)>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let control = self.0.clone();
        async move {
            let rows: Vec<_> = heads
                .into_iter()
                .map(|(id, head)| (id, head.seq, head.hash))
                .collect();
            control.anchor_many(&rows).await.map_err(BoxError::from)
        }
    }
}

/// The running background tasks. Dropping this leaves them running; call
/// [`Workers::shutdown`] to stop them.
pub struct Workers {
    app: Arc<App>,
    anchorer: Arc<Anchorer<ControlSink>>,
    mail: Option<JoinHandle<()>>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl App {
    /// Starts the app's own background work:
    /// - the mail worker, which delivers the outbox and retries while the mail server is
    ///   unreachable;
    /// - anchoring of open clinics' audit heads every minute;
    /// - the clinic handles' housekeeping: every second, handles of clinics an operator
    ///   has locked are closed (so a restore in another process does not wait for a
    ///   request to notice its lock); every 15 s, idle and over-cap handles are closed
    ///   and unused page caches given back;
    /// - the owners' export jobs (jobs a stopped process left running are queued again
    ///   first), every 5 s, and the "expired" rows of support sessions whose time is up,
    ///   every 30 s;
    /// - every second, the sessions' last-seen times noted by requests, in one write;
    /// - every ten minutes, the sweep of what can no longer be used: expired links and
    ///   unconfirmed signups, ended sessions, accounts never confirmed.
    ///
    /// The read audit's writer runs from [`App::build`] on.
    pub fn start(self: &Arc<Self>) -> Workers {
        let anchorer = Arc::new(Anchorer::new(
            self.tenants.clone(),
            ControlSink(self.control.clone()),
        ));
        let mut workers = Workers {
            app: self.clone(),
            anchorer: anchorer.clone(),
            mail: Some(self.mailer.spawn_worker()),
            tasks: Vec::new(),
        };
        workers.adopt("anchoring", anchorer.spawn(ANCHOR_EVERY));
        let tenants = self.tenants.clone();
        workers.spawn("housekeeping", async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                tenants.close_locked().await;
                n += 1;
                if n.is_multiple_of(15) {
                    tenants.run_pending().await;
                    tenants.release_idle_memory();
                }
            }
        });
        let app = self.clone();
        workers.spawn("exports", async move {
            crate::exports::requeue_interrupted(&app).await;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                crate::exports::run_jobs(&app).await;
                n += 1;
                if n.is_multiple_of(6)
                    && let Err(e) = crate::support::expire(&app.control, &app.tenants, None).await
                {
                    tracing::warn!(error = %e, "could not mark expired support grants");
                }
            }
        });
        let control = self.control.clone();
        workers.every("session touches", Duration::from_secs(1), move || {
            let control = control.clone();
            async move {
                control.write_session_touches().await;
            }
        });
        let app = self.clone();
        workers.every("sweep", Duration::from_secs(600), move || {
            let app = app.clone();
            async move {
                match app.control.sweep(app.session_policy).await {
                    Ok(s) if s != ward_control::signup::Swept::default() => tracing::info!(
                        tokens = s.tokens,
                        sessions = s.sessions,
                        users = s.users,
                        "swept expired links, sessions and unconfirmed accounts"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the sweep of expired links and sessions failed")
                    }
                }
            }
        });
        workers
    }
}

impl Workers {
    /// Runs `task` until shutdown.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.adopt(name, tokio::spawn(task));
    }

    /// Stops an already running task at shutdown.
    pub fn adopt(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.tasks.push((name, handle));
    }

    /// Runs `f` now and then every `period` until shutdown.
    pub fn every<F, Fut>(&mut self, name: &'static str, period: Duration, mut f: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.spawn(name, async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                f().await;
            }
        });
    }

    /// The names of the running tasks, in the order they started.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(n, _)| *n).collect()
    }

    /// Stops everything, in order: the tasks; the mail worker, once it has handed over
    /// what it holds (what is still queued stays in the outbox for the next start);
    /// then every view a finished request noted is written and every open clinic's head
    /// anchored; last, the clinics' databases are closed, waiting up to `drain` for the
    /// ones in use. Returns how many were still open.
    pub async fn shutdown(mut self, drain: Duration) -> usize {
        for (_, task) in self.tasks.drain(..) {
            task.abort();
        }
        self.app.mailer.stop();
        if let Some(mail) = self.mail.take()
            && tokio::time::timeout(MAIL_GRACE, mail).await.is_err()
        {
            tracing::warn!("the mail worker did not stop in time; queued mail stays in the outbox");
        }
        self.app.control.write_session_touches().await;
        let flushed = self.app.audit.flush().await;
        if flushed.pending > 0 {
            tracing::error!(
                views = flushed.pending,
                "views could not be written to their clinics' audit logs before stopping"
            );
        }
        match self.anchorer.anchor_open().await {
            Ok(run) => tracing::info!(
                views = flushed.written,
                anchored = run.anchored,
                "audit trail flushed and anchored"
            ),
            Err(e) => tracing::error!(error = %e, "audit heads could not be anchored at shutdown"),
        }
        tracing::info!("draining clinic databases");
        self.app.tenants.shutdown(drain).await
    }
}
