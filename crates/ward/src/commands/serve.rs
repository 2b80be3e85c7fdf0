//! `ward serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ward_clinic::audit::{AnchorSink, Anchorer, BoxError, ReadAuditConfig, ReadAuditor};
use ward_control::ControlPlane;
use ward_core::{Clock, SystemClock};
use ward_web::{App, WebConfig};

use crate::cli::{Global, ServeOpts};

pub async fn run(global: &Global, opts: ServeOpts) -> anyhow::Result<ExitCode> {
    raise_fd_limit(global.max_open_tenants);
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
    // Views of records are queued by pages and written in batches (ward_clinic::audit).
    let read_auditor = ReadAuditor::start(tenants.clone(), ReadAuditConfig::default());
    let anchorer = Arc::new(Anchorer::new(
        tenants.clone(),
        anchor_sink(platform.control.clone()),
    ));
    let anchoring = anchorer.clone().spawn(ANCHOR_EVERY);
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

    // Idle handles are closed by the cache's housekeeping; run it even when no request does.
    let housekeeping = {
        let tenants = tenants.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                tenants.run_pending().await;
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
    tracing::info!("draining clinic databases");
    let left = tenants.shutdown(Duration::from_secs(30)).await;
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

/// Each open clinic holds three descriptors (database, WAL, shared memory): make room
/// for the cap plus sockets and the control plane.
fn raise_fd_limit(max_open: u64) {
    let wanted = max_open.saturating_mul(3).saturating_add(1024);
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
