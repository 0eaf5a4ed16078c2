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
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// The process-wide Prometheus recorder, installed on first use: every
/// `metrics::counter!` in reach lands here.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Latencies as histograms (not summaries), so that they aggregate
        // across replicas: 100 us to 10 s.
        let buckets = [
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ];
        // Delivery receipts take seconds to minutes: 250 ms to 1 h.
        let delivery = [
            0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("reach_delivery_latency_seconds".into()),
                &delivery,
            )
            .expect("bucket list is not empty")
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder was installed first (not in reach).
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples are kept raw until upkeep folds them into the
        // buckets: without it they would pile up between scrapes (or
        // forever, with no scraper), a few bytes per request.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    upkeep.run_upkeep();
                }
            })
            .expect("spawning the metrics upkeep thread");
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
        .route(
            "/metrics",
            get(move || async move {
                // Read when scraped, so the figures are those of now.
                crate::memory::publish();
                handle.render()
            }),
        )
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
