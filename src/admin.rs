//! The admin HTTP port: Prometheus metrics and liveness/readiness probes,
//! apart from the gRPC port so that scrapers and probes need no gRPC.

use std::{
    future::Future,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, http::StatusCode, routing::get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// The process-wide Prometheus recorder, installed on first use: every
/// `metrics::counter!` in reach lands here.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder was installed first (not in reach).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Serves `/metrics`, `/livez` and `/readyz` (200 once the store is open
/// and until shutdown starts, 503 otherwise) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = metrics_handle();
    let app = Router::new()
        .route("/metrics", get(move || async move { handle.render() }))
        .route("/livez", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
