//! `ward serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ward_control::{Backups, ServeGuard};
use ward_core::{Clock, SystemClock};
use ward_web::{App, WebConfig};

use crate::cli::{Global, ServeOpts};

pub async fn run(global: &Global, opts: ServeOpts) -> anyhow::Result<ExitCode> {
    raise_fd_limit(global.max_open_tenants);
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
    let platform = super::open_platform(global).await?;
    if platform.control_migration.changed() {
        tracing::info!(
            from = platform.control_migration.from,
            to = platform.control_migration.to,
            "control plane migrated"
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tenants = platform.tenants.clone();
    let app = Arc::new(App {
        control: platform.control.clone(),
        tenants: tenants.clone(),
        config: WebConfig {
            public_url: opts.public_url.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        started_at: clock.now(),
        clock,
    });
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another Ward running there?)",
                opts.addr
            )
        })?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %global.data_dir.display(), "Ward is listening");

    // Idle handles are closed by the cache's housekeeping; run it even when no request
    // does. Every second, handles of clinics an operator has locked are closed, so a
    // restore in another process does not wait for a request to notice its lock.
    let housekeeping = {
        let tenants = tenants.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                tenants.close_locked().await;
                n += 1;
                if n.is_multiple_of(15) {
                    tenants.run_pending().await;
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

    let router =
        ward_web::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server stopped")?;
    housekeeping.abort();
    if let Some(s) = scheduler {
        s.abort();
    }
    tracing::info!("draining clinic databases");
    let left = tenants.shutdown(Duration::from_secs(30)).await;
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

/// Each open clinic holds four descriptors (database, WAL, shared memory, pin): make
/// room for the cap plus sockets, backups and the control plane.
fn raise_fd_limit(max_open: u64) {
    let wanted = max_open.saturating_mul(4).saturating_add(1024);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => tracing::warn!(
            wanted,
            got,
            "the open-file limit is lower than the clinic cache needs; lower WARD_MAX_OPEN_TENANTS or raise the limit"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
