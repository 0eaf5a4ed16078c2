//! A store that fails in the middle of an ingest: what it wrote before the
//! failure is recorded in full (statistics, actions), since the client's
//! retry finds those events duplicates and nothing else would produce them.
//!
//! The server is assembled here around a sled store wrapped to fail on
//! demand, and driven over real gRPC on an ephemeral port.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use common::{
    Client, connect, counts, dead_letters, event, now_ms, profile, record, request, stats_totals,
    ts, watch,
};
use reach::{
    config::Config,
    domain::{
        Millis,
        stats::{Dims, StatCell},
    },
    engine::Engine,
    grpc::ReachabilityApi,
    proto::{
        self, ActionKind, Channel, Status, reachability_service_server::ReachabilityServiceServer,
    },
    providers::Providers,
    storage::{
        Catalog, Commit, CommitOp, ContactKey, Deadline, Granularity, LoadRequest, Record,
        SledStore, Snapshot, StatDelta, Store, StoreError, Tenant,
    },
};
use tokio::sync::watch as signal;

const HOUR: i64 = 3_600_000;

/// How the next `commit_many` fails.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    /// Writes the first op, reports the others as conflicts, and fails the
    /// next call as a whole: an error in a later compare-and-swap round.
    LaterRound,
    /// Writes the first op and fails the others in the same call, as a Redis
    /// Cluster can when one shard is down.
    BesideAWrite,
    /// Armed by `LaterRound`: the next call fails as a whole.
    FailNextCall,
    /// Writes a single-contact op and reports it unconfirmed, as the Redis
    /// store does when `WAIT` is not answered by a replica.
    UnconfirmedWrite,
}

/// sled, with `commit_many` failing once as its [`Fault`] says,
/// `append_actions` failing once when `fail_actions` is set, and
/// `add_stats` failing once halfway (the day cells written, the minute
/// cells not) when `fail_stats` is set.
struct FlakyStore {
    inner: SledStore,
    fault: Mutex<Fault>,
    fail_actions: AtomicBool,
    fail_stats: AtomicBool,
}

impl FlakyStore {
    fn arm(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    fn injected() -> StoreError {
        StoreError::Unavailable("injected by the test".into())
    }
}

impl Store for FlakyStore {
    async fn commit_many(
        &self,
        mut ops: Vec<CommitOp>,
        now: Millis,
    ) -> Result<Vec<Commit>, StoreError> {
        let fault = *self.fault.lock().unwrap();
        match fault {
            Fault::FailNextCall => {
                self.arm(Fault::None);
                Err(Self::injected())
            }
            Fault::LaterRound | Fault::BesideAWrite if ops.len() > 1 => {
                let rest = ops.split_off(1);
                let mut commits = self.inner.commit_many(ops, now).await?;
                let (next, other) = match fault {
                    Fault::LaterRound => (Fault::FailNextCall, Commit::Conflict),
                    _ => (Fault::None, Commit::Failed(Self::injected())),
                };
                self.arm(next);
                commits.extend(rest.iter().map(|_| other.clone()));
                Ok(commits)
            }
            Fault::UnconfirmedWrite if ops.len() == 1 => {
                self.arm(Fault::None);
                let commits = self.inner.commit_many(ops, now).await?;
                Ok(commits
                    .into_iter()
                    .map(|commit| match commit {
                        Commit::Applied(version) => Commit::Unconfirmed(version, Self::injected()),
                        other => other,
                    })
                    .collect())
            }
            _ => self.inner.commit_many(ops, now).await,
        }
    }

    async fn load_many(
        &self,
        requests: &[LoadRequest],
        now: Millis,
    ) -> Result<Vec<Snapshot>, StoreError> {
        self.inner.load_many(requests, now).await
    }
    async fn get(&self, key: &ContactKey) -> Result<Option<Record>, StoreError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &ContactKey) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }
    async fn quarantine(&self, key: &ContactKey, reason: &str) -> Result<(), StoreError> {
        self.inner.quarantine(key, reason).await
    }
    async fn put_dead_letter(&self, t: &Tenant, id: &str, v: &[u8]) -> Result<bool, StoreError> {
        self.inner.put_dead_letter(t, id, v).await
    }
    async fn list_dead_letters(
        &self,
        t: &Tenant,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.list_dead_letters(t, after, limit).await
    }
    async fn delete_dead_letter(&self, t: &Tenant, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_dead_letter(t, id).await
    }
    async fn put_entry(
        &self,
        c: Catalog,
        t: &Tenant,
        id: &str,
        v: &[u8],
    ) -> Result<(), StoreError> {
        self.inner.put_entry(c, t, id, v).await
    }
    async fn get_entry(
        &self,
        c: Catalog,
        t: &Tenant,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_entry(c, t, id).await
    }
    async fn list_entries(
        &self,
        c: Catalog,
        t: &Tenant,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.list_entries(c, t).await
    }
    async fn add_stats(&self, deltas: &mut Vec<StatDelta>) -> Result<(), StoreError> {
        if !self.fail_stats.swap(false, Ordering::SeqCst) {
            return self.inner.add_stats(deltas).await;
        }
        let (mut days, minutes): (Vec<_>, Vec<_>) = deltas
            .drain(..)
            .partition(|d| d.granularity == Granularity::Day);
        assert!(
            !days.is_empty() && !minutes.is_empty(),
            "{days:?} {minutes:?}"
        );
        self.inner.add_stats(&mut days).await?;
        *deltas = minutes;
        Err(Self::injected())
    }
    async fn day_stats(
        &self,
        t: &Tenant,
        from: u32,
        to: u32,
    ) -> Result<Vec<(u32, Dims, StatCell)>, StoreError> {
        self.inner.day_stats(t, from, to).await
    }
    async fn minute_stats(
        &self,
        from: u32,
        to: u32,
    ) -> Result<Vec<(Tenant, u32, Dims, StatCell)>, StoreError> {
        self.inner.minute_stats(from, to).await
    }
    async fn trim_minute_stats(&self, before: u32) -> Result<usize, StoreError> {
        self.inner.trim_minute_stats(before).await
    }
    async fn put_deadline(&self, d: &Deadline) -> Result<(), StoreError> {
        self.inner.put_deadline(d).await
    }
    async fn due_deadlines(&self, now: Millis, limit: usize) -> Result<Vec<Deadline>, StoreError> {
        self.inner.due_deadlines(now, limit).await
    }
    async fn delete_deadline(&self, d: &Deadline) -> Result<(), StoreError> {
        self.inner.delete_deadline(d).await
    }
    async fn append_actions(
        &self,
        t: &Tenant,
        actions: &[(Millis, Vec<u8>)],
    ) -> Result<Vec<u64>, StoreError> {
        if self.fail_actions.swap(false, Ordering::SeqCst) {
            return Err(Self::injected());
        }
        self.inner.append_actions(t, actions).await
    }
    async fn actions_after(
        &self,
        t: &Tenant,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Millis, Vec<u8>)>, StoreError> {
        self.inner.actions_after(t, after, limit).await
    }
    async fn trim_actions(&self, before: Millis) -> Result<usize, StoreError> {
        self.inner.trim_actions(before).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    async fn expire_markers(&self, now: Millis) -> Result<usize, StoreError> {
        self.inner.expire_markers(now).await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

/// A reach API over a [`FlakyStore`] in a temporary directory, served on an
/// ephemeral port.
struct FlakyServer {
    addr: SocketAddr,
    store: Arc<FlakyStore>,
    /// The engine behind the API, for what no RPC starts (the sweep).
    engine: Arc<OnceLock<Engine<FlakyStore>>>,
    _dir: tempfile::TempDir,
    _stop: signal::Sender<bool>,
}

impl FlakyServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let store = Arc::new(FlakyStore {
            inner: SledStore::open(&config.data_dir, &config.store).unwrap(),
            fault: Mutex::new(Fault::None),
            fail_actions: AtomicBool::new(false),
            fail_stats: AtomicBool::new(false),
        });
        let providers = Arc::new(Providers::load(config.providers.clone()).unwrap());
        let settings = config.engine_settings(config.address_key().unwrap());
        let engine = Engine::new(store.clone(), settings, providers);
        engine.warm_up().await.unwrap();
        let slot = Arc::new(OnceLock::new());
        assert!(slot.set(engine).is_ok());
        let (stop, stopping) = signal::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = ReachabilityServiceServer::new(ReachabilityApi::new(slot.clone(), stopping));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(api)
                .serve_with_incoming(reach::server::incoming(listener)),
        );
        FlakyServer {
            addr,
            store,
            engine: slot,
            _dir: dir,
            _stop: stop,
        }
    }
}

/// Three hard bounces for each of contacts `a` and `b`, in one bulk stream.
fn bounces() -> Vec<proto::ChannelEvent> {
    let t = now_ms() - HOUR;
    ["a", "b"]
        .iter()
        .flat_map(|c| {
            (0..3).map(move |i| {
                let mut e = event(
                    &format!("{c}{i}"),
                    c,
                    Channel::Email,
                    Status::BouncedHard,
                    t + i,
                );
                // A campaign's bounce suggests a fallback channel.
                e.campaign_id = "newsletter".into();
                e
            })
        })
        .collect()
}

async fn send(
    client: &mut Client,
    events: &[proto::ChannelEvent],
) -> Result<(u64, u64), tonic::Status> {
    let reply = client
        .record_events(tokio_stream::iter(
            events.iter().cloned().map(request).collect::<Vec<_>>(),
        ))
        .await?
        .into_inner();
    assert_eq!(reply.rejected, 0, "{reply:?}");
    Ok((reply.accepted, reply.duplicates))
}

async fn hard_bounces_counted(client: &mut Client) -> i64 {
    stats_totals(client, now_ms() - 2 * HOUR).await.bounced_hard
}

/// Actions per contact: (fallback suggestions, suppressions).
fn per_contact(actions: &[proto::Action], contact: &str) -> (usize, usize) {
    let of = |kind: ActionKind| {
        actions
            .iter()
            .filter(|a| a.contact_id == contact && a.kind == kind as i32)
            .count()
    };
    (
        of(ActionKind::FallbackSuggested),
        of(ActionKind::ContactChannelSuppressed),
    )
}

/// The call fails; contact `a` was written and is recorded in full; the
/// retry records `b` once and finds `a` duplicates.
async fn written_part_is_recorded(fault: Fault) {
    let server = FlakyServer::start().await;
    let mut client = connect(server.addr).await;
    let events = bounces();
    server.store.arm(fault);
    let failed = send(&mut client, &events).await.unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert!(failed.message().contains("injected"), "{failed:?}");

    assert_eq!(hard_bounces_counted(&mut client).await, 3);
    let actions = watch(&mut client, 0, &[], 4).await;
    assert_eq!(per_contact(&actions, "a"), (3, 1), "{actions:?}");

    assert_eq!(send(&mut client, &events).await.unwrap(), (3, 3));
    assert_eq!(hard_bounces_counted(&mut client).await, 6);
    let actions = watch(&mut client, 0, &[], 8).await;
    assert_eq!(per_contact(&actions, "a"), (3, 1), "{actions:?}");
    assert_eq!(per_contact(&actions, "b"), (3, 1), "{actions:?}");
    // Nothing more than the eight.
    let mut stream = client
        .watch_actions(proto::WatchActionsRequest {
            after_sequence: actions.last().unwrap().sequence,
            kinds: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let more = tokio::time::timeout(std::time::Duration::from_millis(500), stream.message()).await;
    assert!(more.is_err(), "an action beyond the eight: {more:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_error_in_a_later_round_keeps_what_an_earlier_round_wrote() {
    written_part_is_recorded(Fault::LaterRound).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_op_failing_beside_a_written_one_keeps_the_written_one() {
    written_part_is_recorded(Fault::BesideAWrite).await;
}

/// A statistics flush that fails halfway: the cells it wrote are not added
/// again by the flush that retries the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_statistics_write_failing_halfway_counts_nothing_twice() {
    let server = FlakyServer::start().await;
    let mut client = connect(server.addr).await;
    assert_eq!(send(&mut client, &bounces()).await.unwrap(), (6, 0));
    server.store.fail_stats.store(true, Ordering::SeqCst);
    let failed = client
        .query_delivery_stats(proto::QueryDeliveryStatsRequest {
            from: Some(ts(now_ms() - 2 * HOUR)),
            to: Some(ts(now_ms())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert!(!server.store.fail_stats.load(Ordering::SeqCst), "not tried");
    assert_eq!(hard_bounces_counted(&mut client).await, 6);
    assert_eq!(hard_bounces_counted(&mut client).await, 6);
}

/// A dead letter whose action could not be written is taken back, so that
/// the provider's retry stores and announces it: one letter, one action.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_whose_action_failed_is_announced_on_the_retry() {
    let server = FlakyServer::start().await;
    let mut client = connect(server.addr).await;
    let unmapped = proto::ProviderEventRequest {
        provider: "twilio".into(),
        native: Some(proto::NativeFields {
            status: "undelivered".into(),
            error_code: "39998".into(),
            ..Default::default()
        }),
        contact_id: "c-unmapped".into(),
        event_id: "u1".into(),
        ..Default::default()
    };
    server.store.fail_actions.store(true, Ordering::SeqCst);
    let failed = client
        .record_provider_event(unmapped.clone())
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert!(
        dead_letters(&mut client).await.is_empty(),
        "the letter was not taken back"
    );

    let reply = client.record_provider_event(unmapped).await.unwrap();
    assert!(reply.into_inner().results[0].dead_lettered);
    assert_eq!(dead_letters(&mut client).await.len(), 1);
    let actions = watch(&mut client, 0, &[ActionKind::UnmappedProviderCode], 1).await;
    assert_eq!(actions[0].code, "undelivered/39998");
}

/// The silence sweep's write stands but its replication is not confirmed
/// (Redis `WAIT` unanswered): the pass fails, and the message's UNCONFIRMED
/// statistic is counted then, since the next pass finds the message already
/// expired and counts nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_write_left_unconfirmed_is_counted_once() {
    let server = FlakyServer::start().await;
    let mut client = connect(server.addr).await;
    let t0 = now_ms() - 100 * HOUR;
    let mut sent = event("s1", "quiet", Channel::Sms, Status::Sent, t0);
    sent.message_id = "msg-1".into();
    assert!(!record(&mut client, sent).await, "not a duplicate");
    let engine = server.engine.get().unwrap();

    server.store.arm(Fault::UnconfirmedWrite);
    let failed = engine.sweep_silence(Millis(now_ms())).await.unwrap_err();
    assert!(failed.to_string().contains("injected"), "{failed}");
    assert_eq!(engine.sweep_silence(Millis(now_ms())).await.unwrap(), 0);

    let quiet = profile(&mut client, "quiet").await;
    assert_eq!(counts(&quiet, Channel::Sms).unconfirmed, 1);
    let total = stats_totals(&mut client, t0).await;
    assert_eq!((total.sent, total.unconfirmed), (1, 1));
}
