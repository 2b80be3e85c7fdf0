//! `ward serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::TimeDelta;
use ward_app::{App, Config, Hashing, MailSetup, Settings};
use ward_clinic::audit::ReadAuditConfig;
use ward_control::SessionPolicy;
use ward_control::passwords::{PRODUCTION_COST, Pepper};
use ward_control::{Backups, ServeGuard};
use ward_core::{Actor, SystemClock};
use ward_mail::MailConfig;
use ward_web::limits::{EmailLimits, IpLimit};
use ward_web::{TrustedProxy, Web, WebOptions};

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
    let _guard = super::try_serve_guard(global)?.with_context(|| {
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
    let pepper = Pepper::load(&global.data_dir, opts.pepper.as_deref())?;
    let previous = Pepper::load_previous(&global.data_dir, opts.pepper_previous.as_deref())?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let trusted_proxy =
        TrustedProxy::parse(opts.trusted_proxy.as_deref()).map_err(anyhow::Error::msg)?;
    let base_url = opts
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let attachment_url = super::attachment_url(global, opts.attachment_url.as_deref());
    let attachments =
        ward_web::attachments::AttachmentStore::from_url(&attachment_url, opts.attachment_max_mb)
            .map_err(anyhow::Error::msg)?
            .with_quota_mb(opts.attachment_quota_mb);
    tracing::info!(url = %attachments.url(), "attachments are stored");
    // Mail goes through the control plane's outbox; the worker delivers it in the
    // background and keeps retrying while the mail server is unreachable.
    let mail = MailConfig {
        smtp_url: opts.mail.smtp_url.clone(),
        from: opts.mail.mail_from.clone(),
        outbox_dir: global.data_dir.join("outbox"),
    };
    let app = Arc::new(App::build(
        &platform,
        Config {
            mail: MailSetup::Deliver(mail),
            hashing: Hashing {
                pepper,
                previous,
                cost: PRODUCTION_COST,
                parallel: cores,
            },
            session_policy: SessionPolicy {
                idle: TimeDelta::hours(opts.session_idle_hours),
                absolute: TimeDelta::days(opts.session_max_days),
            },
            settings: Settings {
                public_url: opts.public_url.clone(),
                base_url,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                retention_days: global.retention_days,
                owner_second_factor_grace: TimeDelta::from_std(opts.owner_mfa_grace)
                    .unwrap_or(TimeDelta::MAX),
            },
            clock: Arc::new(SystemClock),
            read_audit: ReadAuditConfig::default(),
            attachment_files: Some(Arc::new(attachments.clone())),
        },
    )?);
    tracing::info!(to = %app.mailer.describe(), "outgoing mail");
    let web = Web::new(
        app.clone(),
        WebOptions {
            trusted_proxy,
            ip_limit: IpLimit {
                burst: opts.form_burst,
                ..IpLimit::default()
            },
            email_limits: EmailLimits::with_signup(opts.signup_per_hour, opts.signup_min_seconds),
            attachments,
        },
    );
    let operator = super::operator::start(opts.operator_addr, web.clone()).await?;
    let stats = platform.tenants.stats();
    tracing::info!(
        max_open = stats.max_open,
        max_handles = stats.max_handles,
        "clinic handles: cache cap and descriptor budget"
    );
    tracing::info!(addr = %bound, data_dir = %global.data_dir.display(), "Ward is listening");

    // The app's own background work (mail, anchoring, handle housekeeping, export
    // jobs, sweeps), and the server's.
    let mut workers = app.start();
    if let Some(operator) = operator {
        workers.adopt("operator listener", operator);
    }
    let email_limits = web.email_limits.clone();
    workers.every("form limits", Duration::from_secs(15), move || {
        email_limits.housekeeping();
        std::future::ready(())
    });
    let backups = Arc::new(super::backups(global, &platform));
    if opts.backup_interval.is_zero() {
        tracing::warn!("scheduled backups are off (WARD_BACKUP_INTERVAL=0)");
    } else {
        workers.spawn(
            "backups",
            schedule_backups(backups.clone(), opts.backup_interval),
        );
    }
    // Clinics past their retention period are purged once a day (and once at start,
    // which also finishes a purge a crash interrupted).
    let purger = Arc::new(super::purger(global, &platform, web.attachments.clone()));
    let (purge_global, purge_web) = (global.clone(), web.clone());
    let purge_control = platform.control.clone();
    workers.every("purge", Duration::from_secs(86_400), move || {
        let (purger, global, web) = (purger.clone(), purge_global.clone(), purge_web.clone());
        let control = purge_control.clone();
        async move {
            match purger.run(&Actor::Schedule, false).await {
                Ok(items) => {
                    // Also every day without a purge: what an earlier run could not
                    // delete from the replica is deleted now.
                    super::replica::drop_purged(&global, &control, &items).await;
                    if !items.is_empty() {
                        tracing::info!(clinics = items.len(), "daily purge done");
                    }
                }
                Err(e) => tracing::error!(error = %e, "the daily purge failed"),
            }
            // Deleted files' objects past the retention for deleted records.
            ward_web::attachments::sweep_deleted_logged(&web).await;
        }
    });

    let router =
        ward_web::router(web).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server stopped")?;
    let left = workers.shutdown(Duration::from_secs(30)).await;
    if let Some(replicator) = super::replica::replicator() {
        // What is pending ships, and the next server may write the replica at once.
        replicator.release().await;
    }
    tracing::info!(still_open = left, "stopped");
    Ok(ExitCode::SUCCESS)
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
        match backups
            .pass(false, &Actor::Schedule.to_string(), &|_| {})
            .await
        {
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
