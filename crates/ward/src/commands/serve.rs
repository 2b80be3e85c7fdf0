//! `ward serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::TimeDelta;
use ward_clinic::audit::{AnchorSink, Anchorer, BoxError, ReadAuditConfig, ReadAuditor};
use ward_control::ControlPlane;
use ward_control::SessionPolicy;
use ward_control::passwords::{PRODUCTION_COST, PasswordHasher, Pepper};
use ward_control::{Backups, ServeGuard};
use ward_core::{Clock, SystemClock};
use ward_mail::{MailConfig, Mailer};
use ward_web::limits::{EmailLimits, IpLimit};
use ward_web::{App, TrustedProxy, WebConfig};

use crate::cli::{Global, ServeOpts};

pub async fn run(global: &Global, opts: ServeOpts) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&global.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            global.data_dir.display()
        )
    })?;
    // Held for the life of the process: a second server, or a control-plane restore,
    // on the same data is refused while it runs.
    let _guard = ServeGuard::acquire(&global.data_dir)
        .with_context(|| {
            format!(
                "cannot take {}",
                ServeGuard::path(&global.data_dir).display()
            )
        })?
        .with_context(|| {
            let pid = ServeGuard::holder_pid(&global.data_dir)
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            format!(
                "another ward serve{pid}, or a control-plane restore, is running on {}",
                global.data_dir.display()
            )
        })?;
    super::replica::install(global)?;
    let rebuilding = super::replica::rebuild_control_if_empty(global).await?;
    let platform = super::open_platform(global).await?;
    if rebuilding {
        tokio::spawn(super::replica::rebuild_clinics(
            platform.control.clone(),
            platform.tenants.clone(),
        ));
    }
    super::replica::report_status(global);
    if let Some(replicator) = super::replica::replicator() {
        replicator.start();
        if replicator.target().local {
            tracing::warn!(target_url = %replicator.target().url, "the replica is on this machine's disk, not off it: set WARD_REPLICA_URL to a bucket");
        } else {
            tracing::info!(target_url = %replicator.target().url, "every database streams to the replica");
        }
    }
    if platform.control_migration.changed() {
        tracing::info!(
            from = platform.control_migration.from,
            to = platform.control_migration.to,
            "control plane migrated"
        );
    }
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another Ward running there?)",
                opts.addr
            )
        })?;
    let bound = listener.local_addr()?;
    // Mail goes through the control plane's outbox; the worker delivers it in the
    // background and keeps retrying while the mail server is unreachable.
    let mailer = Mailer::new(
        platform.control.clone(),
        MailConfig {
            smtp_url: opts.mail.smtp_url.clone(),
            from: opts.mail.mail_from.clone(),
            outbox_dir: global.data_dir.join("outbox"),
        },
    )
    .context("cannot set up outgoing mail")?;
    tracing::info!(to = %mailer.describe(), "outgoing mail");
    let mail_worker = mailer.spawn_worker();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tenants = platform.tenants.clone();
    // Views of records are queued by pages and written in batches (ward_clinic::audit).
    let read_auditor = ReadAuditor::start(tenants.clone(), ReadAuditConfig::default());
    let anchorer = Arc::new(Anchorer::new(
        tenants.clone(),
        anchor_sink(platform.control.clone()),
    ));
    let anchoring = anchorer.clone().spawn(ANCHOR_EVERY);
    let pepper = Pepper::load(&global.data_dir, opts.pepper.as_deref())?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let previous = Pepper::load_previous(&global.data_dir, opts.pepper_previous.as_deref())?;
    let hasher = PasswordHasher::new(pepper, PRODUCTION_COST, cores)?.with_previous(previous);
    let trusted_proxy =
        TrustedProxy::parse(opts.trusted_proxy.as_deref()).map_err(anyhow::Error::msg)?;
    let base_url = opts
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let attachment_url = opts
        .attachment_url
        .clone()
        .unwrap_or_else(|| format!("file://{}", global.data_dir.join("attachments").display()));
    let attachments =
        ward_web::attachments::AttachmentStore::from_url(&attachment_url, opts.attachment_max_mb)
            .map_err(anyhow::Error::msg)?
            .with_quota_mb(opts.attachment_quota_mb);
    tracing::info!(url = %attachments.url(), "attachments are stored");
    let app = Arc::new(App {
        control: platform.control.clone(),
        tenants: tenants.clone(),
        mailer: mailer.clone(),
        audit: read_auditor.clone(),
        hasher,
        session_policy: SessionPolicy {
            idle: TimeDelta::hours(opts.session_idle_hours),
            absolute: TimeDelta::days(opts.session_max_days),
        },
        trusted_proxy,
        ip_limit: IpLimit {
            burst: opts.form_burst,
            ..IpLimit::default()
        },
        email_limits: EmailLimits::with_signup(opts.signup_per_hour, opts.signup_min_seconds),
        config: WebConfig {
            public_url: opts.public_url.clone(),
            base_url,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            retention_days: global.retention_days,
            owner_second_factor_grace: chrono::TimeDelta::from_std(opts.owner_mfa_grace)
                .unwrap_or(chrono::TimeDelta::MAX),
        },
        started_at: clock.now(),
        clock,
        attachments,
    });
    let operator = super::operator::start(opts.operator_addr, app.clone()).await?;
    let stats = tenants.stats();
    tracing::info!(
        max_open = stats.max_open,
        max_handles = stats.max_handles,
        "clinic handles: cache cap and descriptor budget"
    );
    tracing::info!(addr = %bound, data_dir = %global.data_dir.display(), "Ward is listening");

    // Idle handles are closed by the cache's housekeeping; run it even when no request
    // does. Every second, handles of clinics an operator has locked are closed, so a
    // restore in another process does not wait for a request to notice its lock.
    let housekeeping = {
        let tenants = tenants.clone();
        let email_limits = app.email_limits.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                tenants.close_locked().await;
                n += 1;
                if n.is_multiple_of(15) {
                    tenants.run_pending().await;
                    tenants.release_idle_memory();
                    email_limits.housekeeping();
                }
            }
        })
    };
    let backups = Arc::new(super::backups(global, &platform));
    let scheduler = (!opts.backup_interval.is_zero())
        .then(|| tokio::spawn(schedule_backups(backups.clone(), opts.backup_interval)));
    if scheduler.is_none() {
        tracing::warn!("scheduled backups are off (WARD_BACKUP_INTERVAL=0)");
    }
    // Exports owners asked for are prepared in the background; jobs a stopped process
    // left running are queued again first.
    let exporting = {
        let app = app.clone();
        tokio::spawn(async move {
            ward_web::requeue_export_jobs(&app).await;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                ward_web::run_export_jobs(&app).await;
                // Support sessions whose time is up get their "expired" audit row.
                n += 1;
                if n.is_multiple_of(6)
                    && let Err(e) =
                        ward_web::support_access::expire(&app.control, &app.tenants, None).await
                {
                    tracing::warn!(error = %e, "could not mark expired support grants");
                }
            }
        })
    };
    // Clinics past their retention period are purged once a day (and once at start,
    // which also finishes a purge a crash interrupted).
    // What can no longer be used is deleted every ten minutes: expired links and
    // unconfirmed signups, ended sessions, accounts never confirmed.
    let sweeping = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
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
        })
    };
    let purging = {
        let purger = super::purger(global, &platform, app.attachments.clone());
        let global = global.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(86_400));
            loop {
                tick.tick().await;
                match purger.run("ward serve", false).await {
                    Ok(items) if !items.is_empty() => {
                        super::replica::drop_purged(&global, &items).await;
                        tracing::info!(clinics = items.len(), "daily purge done");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "the daily purge failed"),
                }
                // Deleted files' objects past the retention for deleted records.
                ward_web::attachments::sweep_deleted_logged(&app).await;
            }
        })
    };

    let router =
        ward_web::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server stopped")?;
    housekeeping.abort();
    if let Some(operator) = operator {
        operator.abort();
    }
    purging.abort();
    sweeping.abort();
    exporting.abort();
    // Let the worker finish the mail it is handing over; whatever is still queued stays
    // in the outbox and goes out after the next start.
    mailer.stop();
    if tokio::time::timeout(Duration::from_secs(30), mail_worker)
        .await
        .is_err()
    {
        tracing::warn!("the mail worker did not stop in time; queued mail stays in the outbox");
    }
    anchoring.abort();
    // Every view noted by a finished request is written, then every open clinic's head
    // anchored, before the clinics close.
    let flushed = read_auditor.flush().await;
    if flushed.pending > 0 {
        tracing::error!(
            views = flushed.pending,
            "views could not be written to their clinics' audit logs before stopping"
        );
    }
    match anchorer.anchor_open().await {
        Ok(run) => tracing::info!(
            views = flushed.written,
            anchored = run.anchored,
            "audit trail flushed and anchored"
        ),
        Err(e) => tracing::error!(error = %e, "audit heads could not be anchored at shutdown"),
    }
    if let Some(s) = scheduler {
        s.abort();
    }
    tracing::info!("draining clinic databases");
    let left = tenants.shutdown(Duration::from_secs(30)).await;
    if let Some(replicator) = super::replica::replicator() {
        // What is pending ships, and the next server may write the replica at once.
        replicator.release().await;
    }
    tracing::info!(still_open = left, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// How often open clinics' audit heads are anchored in the control plane.
const ANCHOR_EVERY: Duration = Duration::from_secs(60);

/// Anchors go to the control plane.
fn anchor_sink(control: Arc<ControlPlane>) -> impl AnchorSink {
    move |heads: Vec<(ward_core::ClinicId, ward_clinic::audit::Head)>| {
        let control = control.clone();
        async move {
            let rows: Vec<_> = heads
                .into_iter()
                .map(|(id, head)| (id, head.seq, head.hash))
                .collect();
            control.anchor_many(&rows).await.map_err(BoxError::from)
        }
    }
}

/// Backs up changed clinics every `interval` (give or take a tenth, so servers started
/// together do not stay in step), and runs the daily full pass and restore drill when
/// they are due. Failures are logged as errors and recorded for `/status`.
async fn schedule_backups(backups: Arc<Backups>, interval: Duration) {
    backups.sweep_scratch();
    loop {
        if let Err(e) = backups.run_daily_if_due(&|_| {}).await {
            tracing::error!(error = %e, "the daily backup jobs failed");
        }
        match backups.pass(false, "schedule", &|_| {}).await {
            Ok(s) if !s.failed.is_empty() => tracing::error!(
                backed_up = s.backed_up,
                failed = s.failed.len(),
                "backup pass finished with failures"
            ),
            Ok(s) if s.changed > 0 => tracing::info!(
                changed = s.changed,
                backed_up = s.backed_up,
                removed = s.removed,
                ms = s.duration_ms,
                "backup pass done"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "backup pass failed"),
        }
        let jitter = rand::random::<f64>() * 0.2 - 0.1;
        tokio::time::sleep(interval.mul_f64(1.0 + jitter)).await;
    }
}

/// Ctrl-C or SIGTERM (what fly.io and systemd send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
