//! Assembles and runs the gRPC server: health and reflection first, the
//! store opened in the background (health NOT_SERVING until it is), the
//! admin HTTP port, SIGHUP to reload the provider tables, and a graceful
//! shutdown that drains calls and flushes the store.

use std::{
    future::Future,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    admin,
    auth::Authenticator,
    config::Config,
    domain::Millis,
    engine::Engine,
    grpc::{
        ReachabilityApi,
        reply_frames::{CopiedWrites, ReplyFramesLayer},
    },
    proto::{self, reachability_service_server::ReachabilityServiceServer},
    providers::Providers,
    storage::{Backend, Store as _},
};

type Api = ReachabilityServiceServer<ReachabilityApi<Backend>>;

/// The sockets reach serves on, bound by the caller (port 0 in tests).
pub struct Listeners {
    pub grpc: TcpListener,
    /// The admin HTTP port (`/metrics`, `/livez`, `/readyz`), if enabled.
    pub admin: Option<TcpListener>,
    /// The webhook intake port (`webhooks.listen`), if enabled.
    pub webhooks: Option<TcpListener>,
}

/// Serves gRPC on `listener` (no admin port) until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listeners = Listeners {
        grpc: listener,
        admin: None,
        webhooks: None,
    };
    serve_with(config, listeners, shutdown).await
}

/// Serves until `shutdown` resolves, then drains in-flight calls (for at
/// most `config.shutdown_grace`) and flushes the store.
pub async fn serve_with(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    admin::metrics_handle();
    let providers =
        Arc::new(Providers::load(config.providers.clone()).map_err(anyhow::Error::msg)?);
    let ready = Arc::new(AtomicBool::new(false));
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let admin_task = listeners.admin.map(|listener| {
        tokio::spawn(admin::serve(listener, ready.clone(), async {
            let _ = admin_stopped.await;
        }))
    });
    let reloader = tokio::spawn(reload_on_sighup(providers.clone()));
    let listener = listeners.grpc;
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;

    let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building reflection v1alpha")?;

    let slot = Arc::new(OnceLock::new());
    let (webhooks_stop, webhooks_stopped) = oneshot::channel::<()>();
    let webhooks_task = listeners.webhooks.map(|listener| {
        tokio::spawn(crate::webhooks::serve(
            listener,
            config.webhooks.clone(),
            config.providers.max_body_bytes,
            slot.clone(),
            async {
                let _ = webhooks_stopped.await;
            },
        ))
    });
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let auth = Authenticator::new(&config.auth).map_err(anyhow::Error::msg)?;
    // Health and reflection stay open (probes, grpcurl describe); every
    // ReachabilityService call needs a token when tokens are configured.
    let api = ReachabilityServiceServer::new(ReachabilityApi::new(slot.clone(), stopping_rx))
        .max_decoding_message_size(config.max_message_bytes);
    let admin_auth = auth.clone();
    let api =
        tonic::service::interceptor::InterceptedService::new(api, move |request| match &auth {
            Some(auth) => auth.intercept(request),
            None => Ok(request),
        });
    // Backups hold every tenant's data: admin tokens only.
    let admin_api = proto::admin_service_server::AdminServiceServer::new(
        crate::grpc::AdminApi::new(slot.clone(), config.data_dir.clone()),
    );
    let admin_api =
        tonic::service::interceptor::InterceptedService::new(admin_api, move |request| {
            match &admin_auth {
                Some(auth) => auth.admin(request),
                None => Ok(request),
            }
        });
    let (failed_tx, failed_rx) = oneshot::channel();
    let opener = tokio::spawn(open_store(
        config.clone(),
        providers,
        slot.clone(),
        health.clone(),
        ready.clone(),
        failed_tx,
    ));

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // One limit across all connections, and shedding rather than queueing
    // past it: an overloaded server answers RESOURCE_EXHAUSTED at once.
    let limits = tower::ServiceBuilder::new()
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_to_status,
        ))
        .layer(crate::grpc::request_metrics::RequestMetricsLayer::new(
            SERVED_SERVICES,
        ))
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            config.max_concurrent_calls,
        ));
    let mut builder = Server::builder();
    let mut reply_frames = ReplyFramesLayer::copied();
    if let Some(tls) = config.tls.server_config().map_err(anyhow::Error::msg)? {
        builder = builder.tls_config(tls).context("configuring TLS")?;
        reply_frames = ReplyFramesLayer::whole();
    }
    let server = builder
        .timeout(config.request_timeout)
        .layer(reply_frames)
        .layer(limits)
        .trace_fn(|request| {
            tracing::info_span!("rpc", method = %request.uri().path(), tenant = tracing::field::Empty)
        })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .add_service(admin_api)
        .serve_with_incoming_shutdown(copied_writes(listener), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);

    let open_error = tokio::select! {
        result = &mut server => {
            result.context("grpc server failed")?;
            None
        }
        _ = shutdown => None,
        Ok(error) = failed_rx => Some(error),
    };
    tracing::info!("shutting down: draining in-flight calls");
    ready.store(false, Ordering::SeqCst);
    let _ = stopping_tx.send(true);
    set_health(&health, ServingStatus::NotServing).await;
    let _ = stop_tx.send(());
    // A server whose store never opened has answered nothing worth draining;
    // only health watchers would hold it, for the whole grace.
    let grace = match open_error {
        Some(_) => Duration::ZERO,
        None => config.shutdown_grace,
    };
    if tokio::time::timeout(grace, &mut server).await.is_err() {
        tracing::warn!(
            ?grace,
            "calls still running after the grace period, dropping them"
        );
    }
    reloader.abort();
    let _ = webhooks_stop.send(());
    if let Some(task) = webhooks_task
        && let Ok(Err(e)) = task.await
    {
        tracing::warn!(error = %e, "webhook port failed");
    }
    let _ = admin_stop.send(());
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    if let Ok(Some(maintenance)) = opener.await {
        // Awaited, not just aborted: the task holds the store, which must be
        // closed (and its file lock released) when `serve` returns.
        maintenance.abort();
        let _ = maintenance.await;
    }
    if let Some(error) = open_error {
        return Err(error);
    }
    if let Some(engine) = slot.get() {
        if let Err(e) = engine.flush_stats().await {
            tracing::warn!(error = %e, "last statistics flush failed");
        }
        engine.store().close().await.context("flushing the store")?;
        tracing::info!("store flushed, bye");
    }
    Ok(())
}

/// A handler that panics answers INTERNAL (and is logged and counted)
/// instead of resetting the client's stream.
fn panic_to_status(
    panic: Box<dyn std::any::Any + Send + 'static>,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    metrics::counter!("reach_panics_total").increment(1);
    tracing::error!(panic = what, "a call panicked; answered INTERNAL");
    tonic::Status::internal("internal error, see the server log").into_http()
}

/// Accepted connections with Nagle off: gRPC writes small frames and waits
/// for answers, the worst case for Nagle plus delayed ACKs (40 ms stalls).
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Accepted connections as [`CopiedWrites`]: see `grpc::reply_frames`.
fn copied_writes(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<CopiedWrites>> {
    use tokio_stream::StreamExt;
    incoming(listener).map(|accepted| accepted.map(CopiedWrites))
}

/// The descriptor sets of every service served on the gRPC port: their
/// methods are the ones counted by name in the request metrics.
const SERVED_SERVICES: &[&[u8]] = &[
    proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// Reflection serves our descriptors, the health service's and the
/// google.rpc error details (so grpcurl can print field violations); both
/// v1 and v1alpha are registered because grpcurl 1.8 speaks only v1alpha.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status(<Api as tonic::server::NamedService>::NAME, status)
        .await;
}

/// Opens the store off the runtime, fills the engine slot and turns health to
/// SERVING. Returns the background maintenance task, if the store opened.
async fn open_store(
    config: Config,
    providers: Arc<Providers>,
    slot: Arc<OnceLock<Engine<Backend>>>,
    health: HealthReporter,
    ready: Arc<AtomicBool>,
    failed: oneshot::Sender<anyhow::Error>,
) -> Option<JoinHandle<()>> {
    let store = match Backend::open(config.data_dir.clone(), &config.store).await {
        Ok(store) => Arc::new(store),
        Err(e) => {
            let where_ = match store_kind(&config) {
                "sled" => format!("opening store in {}", config.data_dir.display()),
                _ => format!(
                    "connecting to the Redis Cluster {:?}",
                    config.store.redis.nodes
                ),
            };
            let _ = failed.send(anyhow::Error::new(e).context(where_));
            return None;
        }
    };
    let key = match address_key(&config, &store).await {
        Ok(key) => key,
        Err(e) => {
            let _ = failed.send(anyhow::anyhow!("address hash key: {e}"));
            return None;
        }
    };
    let engine = Engine::new(store, config.engine_settings(key), providers);
    if let Err(e) = engine.warm_up().await {
        let _ = failed.send(anyhow::Error::new(e).context("loading route statistics"));
        return None;
    }
    if slot.set(engine).is_err() {
        return None;
    }
    set_health(&health, ServingStatus::Serving).await;
    ready.store(true, Ordering::SeqCst);
    tracing::info!(
        store = store_kind(&config),
        data_dir = %config.data_dir.display(),
        "store open, serving"
    );
    Some(tokio::spawn(maintain(slot, config)))
}

fn store_kind(config: &Config) -> &'static str {
    match config.store.backend {
        crate::storage::BackendKind::Sled => "sled",
        crate::storage::BackendKind::Redis => "redis",
    }
}

/// The address hash key: from the config or the data directory (sled);
/// on Redis, replicas must agree, so a key not set in the config is the
/// one stored in the cluster (the first replica to start stores its own).
async fn address_key(
    config: &Config,
    store: &Backend,
) -> Result<crate::domain::address::AddressKey, String> {
    match store.redis() {
        Some(redis) if config.addresses.hash_key.is_empty() => {
            let candidate =
                crate::domain::address::AddressKey::new(crate::domain::address::random_key());
            let hex = redis
                .shared_address_key(&candidate.to_hex())
                .await
                .map_err(|e| e.to_string())?;
            crate::domain::address::AddressKey::from_hex(&hex)
        }
        _ => config.address_key(),
    }
}

/// Re-reads the provider tables on every SIGHUP; a bad table leaves the
/// tables in force and says why in the log.
async fn reload_on_sighup(providers: Arc<Providers>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            match providers.reload() {
                Ok(tables) => {
                    tracing::info!(tables = tables.len(), "provider tables reloaded on SIGHUP")
                }
                Err(e) => {
                    tracing::error!(error = %e, "provider tables not reloaded, the old ones stay")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = providers;
}

/// The engine's periodic work: statistics every second, routes, the silence
/// sweep and housekeeping at their configured intervals.
async fn maintain(slot: Arc<OnceLock<Engine<Backend>>>, config: Config) {
    let Some(engine) = slot.get() else { return };
    let mut stats = tokio::time::interval(Duration::from_secs(1));
    let mut routes = tokio::time::interval(config.route_health.evaluate_every);
    let mut sweep = tokio::time::interval(config.lifecycle.sweep_every);
    let mut housekeeping = tokio::time::interval(config.maintenance_interval);
    for ticker in [&mut stats, &mut routes, &mut sweep, &mut housekeeping] {
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        let (task, result) = tokio::select! {
            _ = stats.tick() => ("statistics flush", flush_stats(engine).await),
            _ = routes.tick() => ("route and sender health", judge_health(engine).await),
            _ = sweep.tick() => ("silence sweep", engine.sweep_silence(Millis::now()).await.map(drop)),
            _ = housekeeping.tick() => ("housekeeping", engine.housekeeping(config.actions.retention).await),
        };
        if let Err(e) = result {
            tracing::warn!(task, error = %e, "background task failed, retrying at its next tick");
        }
    }
}

/// Reopens the store if a flush failed and the disk takes writes again,
/// flushes the statistics, then sets `reach_store_size_bytes` (sled's file
/// size: a metadata call, cheap enough for every second).
async fn flush_stats(engine: &Engine<Backend>) -> crate::error::Result<()> {
    let Some(sled) = engine.store().sled() else {
        return engine.flush_stats().await;
    };
    if sled.needs_recovery() {
        let store = engine.store().clone();
        let recover = move || store.sled().map_or(Ok(false), |s| s.recover_blocking());
        match tokio::task::spawn_blocking(recover).await {
            Ok(Ok(true)) => {
                metrics::gauge!("reach_store_failed").set(0.0);
                tracing::info!(
                    "the data directory takes writes again: store reopened, writes accepted"
                );
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "store reopen failed, retrying"),
            Err(e) => tracing::error!(error = %e, "store reopen task failed"),
        }
    }
    engine.flush_stats().await?;
    let bytes = sled.size_on_disk()?;
    metrics::gauge!("reach_store_size_bytes").set(bytes as f64);
    Ok(())
}

/// Route health, then sender health, on the route-health schedule.
async fn judge_health(engine: &Engine<Backend>) -> crate::error::Result<()> {
    if engine.store().redis().is_some() {
        engine.reload_shared_stats().await?;
    }
    engine.judge_routes().await?;
    engine.judge_senders().await
}

#[cfg(test)]
mod tests {
    use tower::{Service, ServiceBuilder, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn a_panicking_call_answers_internal() {
        let mut service = ServiceBuilder::new()
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                panic_to_status,
            ))
            .service_fn(|_: http::Request<()>| async {
                if true {
                    panic!("boom");
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<
                    bytes::Bytes,
                >::default()))
            });
        let response = service
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.headers()["grpc-status"], "13");
    }
}
