//! The operator listener of `ward serve` (`WARD_OPERATOR_ADDR`): metrics and the
//! detailed status, on an address apart from the public one.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use ward_web::Web;

/// Binds `addr` and serves the operator's pages there until the task is aborted; `None`
/// when no address is set (then nothing is recorded either).
pub async fn start(
    addr: Option<SocketAddr>,
    web: Arc<Web>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    // Installed before the public listener serves, so the first request is counted.
    ward_web::operator::metrics_handle();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on the operator address {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "operator listener (metrics and status)");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = ward_web::serve_operator(listener, web, std::future::pending()).await {
            tracing::error!(error = %e, "the operator listener stopped");
        }
    })))
}
