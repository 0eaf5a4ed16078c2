//! Test harness: a real reach server on an ephemeral port with a temporary
//! data directory, in-process ([`TestServer`]) or as the real binary
//! ([`ProcessServer`], for SIGKILL and SIGTERM tests), plus event builders.
#![allow(dead_code)]

pub mod http;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prost_types::Timestamp;
use reach::{
    config::Config,
    proto::{self, reachability_service_client::ReachabilityServiceClient},
};
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

pub type Client = ReachabilityServiceClient<Channel>;

pub const DAY_MS: i64 = 86_400_000;

/// A server running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin HTTP port (`/metrics`, `/livez`, `/readyz`).
    pub admin: SocketAddr,
    /// The webhook port, if `webhooks.listen` was set (any value: the test
    /// binds an ephemeral port).
    pub webhooks: Option<SocketAddr>,
    pub config: Config,
    dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the default config adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        if on_redis() && redis_or_skip() {
            use_test_cluster(&mut config);
        }
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    async fn start_in(dir: TempDir, config: Config) -> Self {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let (listener, admin_listener) = (bind().await.expect("bind"), bind().await.expect("bind"));
        let (addr, admin) = (
            listener.local_addr().unwrap(),
            admin_listener.local_addr().unwrap(),
        );
        let (stop, stopped) = oneshot::channel();
        let webhooks = if config.webhooks.listen.is_empty() {
            None
        } else {
            Some(bind().await.expect("bind"))
        };
        let webhooks_addr = webhooks.as_ref().map(|l| l.local_addr().unwrap());
        let listeners = reach::server::Listeners {
            grpc: listener,
            admin: Some(admin_listener),
            webhooks,
        };
        let mut task = tokio::spawn(reach::server::serve_with(
            config.clone(),
            listeners,
            async {
                let _ = stopped.await;
            },
        ));
        tokio::select! {
            () = wait_serving(addr) => {}
            ended = &mut task => panic!("the server stopped before SERVING: {ended:?}"),
        }
        TestServer {
            addr,
            admin,
            webhooks: webhooks_addr,
            config,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> Client {
        connect(self.addr).await
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Graceful shutdown (as on SIGTERM); returns the server's result.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// Shuts down gracefully and starts again on the same data directory.
    pub async fn restart(mut self) -> Self {
        self.shutdown().await.expect("clean shutdown");
        let config = self.config.clone();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::start_in(dir, config).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Where the provider fixtures name the contact id (custom arguments,
/// user variables, metadata), as a deployment would configure it.
pub fn fixture_contact_fields(config: &mut Config) {
    for (provider, field) in [
        ("sendgrid", "contact_id"),
        ("mailgun", "user-variables.contact_id"),
        ("postmark", "Metadata.contact_id"),
    ] {
        config
            .providers
            .contact_fields
            .insert(provider.into(), field.into());
    }
}

/// Whether this copy of the harness serves from Redis Cluster: the suites
/// included by `tests/on_redis.rs` run there, everything else on sled.
pub fn on_redis() -> bool {
    module_path!().starts_with("on_redis::")
}

/// Whether Redis can be run here. Without redis-server the Redis runs are
/// skipped with a notice (the suites then run on sled), except in CI,
/// where that is a failure.
pub fn redis_or_skip() -> bool {
    if reach::bench::redis_cluster::available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the Redis Cluster tests: install redis-server"
    );
    eprintln!("notice: redis-server is not installed: the Redis Cluster run is skipped");
    false
}

/// Points `config` at the test cluster (started once per test process),
/// under a key prefix of its own so that tests never see each other's data.
pub fn use_test_cluster(config: &mut Config) {
    config.store.backend = reach::storage::BackendKind::Redis;
    config.store.redis.nodes = test_cluster().urls();
    config.store.redis.key_prefix = format!("t{:016x}", rand_u64());
}

/// The process's Redis Cluster: 6 nodes on loopback, failover after 1 s.
pub fn test_cluster() -> &'static reach::bench::redis_cluster::LocalCluster {
    reach::bench::redis_cluster::shared().unwrap_or_else(|e| {
        panic!(
            "the Redis Cluster tests need redis-server and redis-cli \
             (apt install redis-server; .ci/run installs them): {e:#}"
        )
    })
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// GET `path` on a local HTTP port; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The real `reach` binary in a child process.
pub struct ProcessServer {
    pub addr: SocketAddr,
    /// The admin port (`/metrics`), ephemeral, as the server announced it.
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    child: Child,
}

impl ProcessServer {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with_env(data_dir, &[]).await
    }

    pub async fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(data_dir, env, Stdio::inherit()).await
    }

    /// Starts with the server's log (stderr) going to `log`.
    pub async fn start_logging_to(data_dir: &Path, env: &[(&str, &str)], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        Self::spawn(data_dir, env, Stdio::from(file)).await
    }

    async fn spawn(data_dir: &Path, env: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reach"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .env("REACH_ADMIN_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn reach");
        let stdout = child.stdout.take().unwrap();
        let (addr, admin) = tokio::task::spawn_blocking(move || {
            let mut stdout = BufReader::new(stdout);
            let mut announced = |prefix: &str| -> SocketAddr {
                let mut line = String::new();
                stdout.read_line(&mut line).expect("read stdout");
                line.trim()
                    .strip_prefix(prefix)
                    .unwrap_or_else(|| panic!("{prefix:?} line, not {line:?}"))
                    .parse()
                    .unwrap()
            };
            let addr = announced("reach listening on ");
            (addr, announced("reach admin on "))
        })
        .await
        .unwrap();
        wait_serving(addr).await;
        ProcessServer {
            addr,
            admin,
            data_dir: data_dir.to_path_buf(),
            child,
        }
    }

    pub async fn client(&self) -> Client {
        connect(self.addr).await
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }

    /// Sends a signal by name (`HUP`, `TERM`...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
    }

    /// SIGTERM, then waits for the exit code.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        self.child.wait().expect("wait")
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect(addr: SocketAddr) -> Client {
    ReachabilityServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

/// Waits on the health Watch stream until the server reports SERVING.
pub async fn wait_serving(addr: SocketAddr) {
    let wait = async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let mut health = HealthClient::new(channel);
        let mut updates = health
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("watch health")
            .into_inner();
        while let Some(update) = updates.message().await.expect("health stream") {
            if update.status == ServingStatus::Serving as i32 {
                return;
            }
        }
        panic!("health stream ended before SERVING");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("server became SERVING");
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn ts(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn event(
    id: &str,
    contact: &str,
    channel: proto::Channel,
    status: proto::Status,
    at_ms: i64,
) -> proto::ChannelEvent {
    proto::ChannelEvent {
        event_id: id.into(),
        contact_id: contact.into(),
        channel: channel as i32,
        status: status as i32,
        occurred_at: Some(ts(at_ms)),
        ..Default::default()
    }
}

pub fn request(e: proto::ChannelEvent) -> proto::RecordEventRequest {
    proto::RecordEventRequest { event: Some(e) }
}

/// Sends `events` again in bulk streams of 500; returns (accepted,
/// duplicates). Every event must be accepted or a duplicate.
pub async fn resend(client: &mut Client, events: &[proto::ChannelEvent]) -> (u64, u64) {
    let mut totals = (0, 0);
    for chunk in events.chunks(500) {
        let reply = client
            .record_events(tokio_stream::iter(
                chunk.iter().cloned().map(request).collect::<Vec<_>>(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.rejected, 0, "{reply:?}");
        totals.0 += reply.accepted;
        totals.1 += reply.duplicates;
    }
    totals
}

/// Records one event and returns whether it was a duplicate.
pub async fn record(client: &mut Client, e: proto::ChannelEvent) -> bool {
    client
        .record_event(request(e))
        .await
        .expect("record_event")
        .into_inner()
        .duplicate
}

pub async fn reachability(
    client: &mut Client,
    contact: &str,
    as_of_ms: Option<i64>,
) -> proto::GetReachabilityResponse {
    client
        .get_reachability(proto::GetReachabilityRequest {
            contact_id: contact.into(),
            as_of: as_of_ms.map(ts),
            ..Default::default()
        })
        .await
        .expect("get_reachability")
        .into_inner()
}

pub async fn best(
    client: &mut Client,
    contact: &str,
    allowed: &[proto::Channel],
) -> proto::GetBestChannelResponse {
    client
        .get_best_channel(proto::GetBestChannelRequest {
            contact_id: contact.into(),
            allowed_channels: allowed.iter().map(|&c| c as i32).collect(),
            ..Default::default()
        })
        .await
        .expect("get_best_channel")
        .into_inner()
}

pub async fn profile(client: &mut Client, contact: &str) -> proto::GetContactProfileResponse {
    client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: contact.into(),
        })
        .await
        .expect("get_contact_profile")
        .into_inner()
}

/// The score entry of `channel` in a reachability answer.
pub fn channel_score(
    r: &proto::GetReachabilityResponse,
    channel: proto::Channel,
) -> proto::ChannelScore {
    r.channels
        .iter()
        .find(|c| c.channel == channel as i32)
        .cloned()
        .expect("channel present")
}

/// The stored counts of `channel` in a profile (all zero if absent).
pub fn counts(
    p: &proto::GetContactProfileResponse,
    channel: proto::Channel,
) -> proto::StatusCounts {
    p.channels
        .iter()
        .find(|c| c.channel == channel as i32)
        .and_then(|c| c.counts)
        .unwrap_or_default()
}

/// The delivery statistics' totals (no grouping) from `from_ms` to now;
/// all zero when nothing was recorded.
pub async fn stats_totals(client: &mut Client, from_ms: i64) -> proto::ClassCounts {
    let rows = client
        .query_delivery_stats(proto::QueryDeliveryStatsRequest {
            from: Some(ts(from_ms)),
            to: Some(ts(now_ms())),
            group_by: vec![],
            filters: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    rows.first().and_then(|r| r.counts).unwrap_or_default()
}

/// Every dead letter of the default tenant (one page).
pub async fn dead_letters(client: &mut Client) -> Vec<proto::DeadLetter> {
    client
        .list_dead_letters(proto::ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .dead_letters
}

/// Reads `n` actions from a watch (after `after`), within a few seconds.
pub async fn watch(
    client: &mut Client,
    after: u64,
    kinds: &[proto::ActionKind],
    n: usize,
) -> Vec<proto::Action> {
    let mut stream = client
        .watch_actions(proto::WatchActionsRequest {
            after_sequence: after,
            kinds: kinds.iter().map(|&k| k as i32).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut actions = Vec::new();
    while actions.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(action))) => actions.push(action),
            other => panic!("after {} actions: {other:?}", actions.len()),
        }
    }
    actions
}
