//! reach on a real Redis Cluster: several replicas writing the same
//! contacts at once, and a primary killed (SIGKILL) in the middle of
//! ingest and reads. The rest of the suite runs on Redis through
//! `tests/on_redis.rs`.

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{DAY_MS, TestServer, event, now_ms, request, resend, ts};
use reach::{
    bench::redis_cluster::LocalCluster,
    config::Config,
    proto::{self, Channel, Status},
};
use tonic::Code;

const CONTACTS: usize = 40;

fn redis_config(nodes: Vec<String>, prefix: String) -> impl Fn(&mut Config) + Clone {
    move |c: &mut Config| {
        c.store.backend = reach::storage::BackendKind::Redis;
        c.store.redis.nodes = nodes.clone();
        c.store.redis.key_prefix = prefix.clone();
    }
}

fn random_event(rng: &mut fastrand::Rng, id: String) -> proto::ChannelEvent {
    let channel = [Channel::Sms, Channel::Email, Channel::Push][rng.usize(..3)];
    let status = [
        Status::Delivered,
        Status::Delivered,
        Status::BouncedHard,
        Status::PendingRetry,
        Status::Opened,
    ][rng.usize(..5)];
    event(
        &id,
        &format!("c{}", rng.usize(..CONTACTS)),
        channel,
        status,
        now_ms() - rng.i64(0..20 * DAY_MS),
    )
}

/// Counts per channel and scores at `as_of`: what must match a reference.
async fn observed(
    client: &mut common::Client,
    contact: &str,
    as_of: i64,
) -> (Vec<(i32, Option<proto::StatusCounts>)>, Vec<(i32, f64)>) {
    let profile = common::profile(client, contact).await;
    let scores = client
        .get_reachability(proto::GetReachabilityRequest {
            contact_id: contact.into(),
            as_of: Some(ts(as_of)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (
        profile
            .channels
            .iter()
            .map(|c| (c.channel, c.counts))
            .collect(),
        scores
            .channels
            .iter()
            .map(|c| (c.channel, (c.score * 1e9).round() / 1e9))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_cluster_equal_a_single_node() {
    if !common::redis_or_skip() {
        return;
    }
    let nodes = common::test_cluster().urls();
    let tweak = redis_config(nodes, format!("replicas{}", fastrand::u32(..)));
    // This test is about agreement, not latency: on a busy CI machine (two
    // cores, debug builds, twelve Redis nodes) a bulk batch can outlive the
    // default one-second response timeout on a healthy cluster.
    let tweak = move |c: &mut Config| {
        tweak(c);
        c.store.redis.response_timeout = Duration::from_secs(5);
    };
    let replicas = [
        TestServer::start_with(tweak.clone()).await,
        TestServer::start_with(tweak).await,
    ];
    // Four writers per replica over the same 40 contacts: unary and bulk,
    // and one event in four is sent again, to either replica.
    let mut events: Vec<proto::ChannelEvent> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(11);
    for i in 0..2_000 {
        events.push(random_event(&mut rng, format!("e{i}")));
    }
    let mut writers = Vec::new();
    for w in 0..8 {
        let addr = replicas[w % 2].addr;
        let mine: Vec<_> = events
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 8 == w || (i % 4 == 0 && (i + 1) % 8 == w))
            .map(|(_, e)| e.clone())
            .collect();
        writers.push(tokio::spawn(async move {
            let mut client = common::connect(addr).await;
            let mut duplicates = 0u64;
            if w % 2 == 0 {
                for e in mine {
                    duplicates += u64::from(common::record(&mut client, e).await);
                }
            } else {
                for chunk in mine.chunks(50) {
                    duplicates += resend(&mut client, chunk).await.1;
                }
            }
            duplicates
        }));
    }
    let mut duplicates = 0;
    for w in writers {
        duplicates += w.await.unwrap();
    }
    // 500 events were sent twice: exactly one copy of each counted.
    assert_eq!(duplicates, 500, "redelivered events counted once");

    let reference = TestServer::start().await; // sled, one node
    let mut reference_client = reference.client().await;
    assert_eq!(resend(&mut reference_client, &events).await.0, 2_000);
    let mut clients = [replicas[0].client().await, replicas[1].client().await];
    // Nothing lost: every event is known to both replicas.
    assert_eq!(resend(&mut clients[1], &events).await, (0, 2_000));
    let as_of = now_ms();
    for c in 0..CONTACTS {
        let contact = format!("c{c}");
        let want = observed(&mut reference_client, &contact, as_of).await;
        for client in &mut clients {
            assert_eq!(observed(client, &contact, as_of).await, want, "{contact}");
        }
    }
}

/// What the clients saw while a primary was down.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, proto::ChannelEvent>,
    /// Failed calls: when, and their code.
    failures: Vec<(Instant, Code)>,
    /// Successful calls after the kill.
    after_kill: u64,
    last_error: String,
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_costs_seconds_of_unavailable_and_no_acknowledged_event() {
    if !common::redis_or_skip() {
        return;
    }
    // A cluster of its own: this test breaks it.
    let mut cluster = LocalCluster::start(Duration::from_secs(1)).expect("redis cluster");
    let tweak = redis_config(cluster.urls(), "failover".into());
    let server = TestServer::start_with(move |c| {
        tweak(c);
        c.store.redis.wait_replicas = 1;
    })
    .await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (ledger, stop, killed_at, addr) =
            (ledger.clone(), stop.clone(), killed_at.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut client = common::connect(addr).await;
            let mut rng = fastrand::Rng::with_seed(w);
            for n in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let e = random_event(&mut rng, format!("w{w}-{n}"));
                let began = Instant::now();
                let result = if n % 2 == 0 {
                    client.record_event(request(e.clone())).await.map(drop)
                } else {
                    client
                        .get_best_channel(proto::GetBestChannelRequest {
                            contact_id: e.contact_id.clone(),
                            ..Default::default()
                        })
                        .await
                        .map(drop)
                };
                let killed = killed_at.lock().unwrap().is_some();
                let failed = {
                    let mut ledger = ledger.lock().unwrap();
                    ledger.slowest = ledger.slowest.max(began.elapsed());
                    match result {
                        Ok(()) => {
                            ledger.after_kill += u64::from(killed);
                            if n % 2 == 0 {
                                ledger.acked.insert(e.event_id.clone(), e);
                            }
                            false
                        }
                        Err(status) => {
                            ledger.failures.push((Instant::now(), status.code()));
                            ledger.last_error = status.message().to_owned();
                            true
                        }
                    }
                };
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = cluster.primaries()[0];
    cluster.kill(victim).unwrap();
    let kill_time = Instant::now();
    *killed_at.lock().unwrap() = Some(kill_time);
    // The orchestrator brings the node back: it rejoins as a replica, so
    // its shard can confirm writes to one replica again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(victim).unwrap();
    // Run until no call has failed for 3 s (at most 20 s).
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let last_failure = ledger.lock().unwrap().failures.last().map(|f| f.0);
        let quiet_since = last_failure.unwrap_or(kill_time).max(kill_time);
        if quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        if kill_time.elapsed() > Duration::from_secs(20) {
            let state: Vec<String> = cluster
                .nodes
                .iter()
                .map(|n| {
                    let info = reach::bench::redis_cluster::cli(n.port, &["info", "replication"])
                        .unwrap_or_default();
                    let role: Vec<&str> = info
                        .lines()
                        .filter(|l| {
                            l.starts_with("role")
                                || l.contains("link_status")
                                || l.starts_with("connected_slaves")
                                || l.starts_with("slave0")
                        })
                        .collect();
                    format!("{}: {role:?}", n.port)
                })
                .collect();
            panic!(
                "calls still failing 20 s after the kill of {victim}: {}\n{}\n{}",
                ledger.lock().unwrap().last_error,
                state.join("\n"),
                reach::bench::redis_cluster::cli(cluster.nodes[1].port, &["cluster", "nodes"])
                    .unwrap_or_default()
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let outage = ledger
        .failures
        .last()
        .map_or(Duration::ZERO, |f| f.0.saturating_duration_since(kill_time));
    let codes: HashSet<Code> = ledger.failures.iter().map(|f| f.1).collect();
    eprintln!(
        "failover: last failed call {:.1}s after the kill; {} failed calls ({codes:?}), \
         slowest call {:.2}s, {} acknowledged writes, {} good calls after the kill",
        outage.as_secs_f64(),
        ledger.failures.len(),
        ledger.slowest.as_secs_f64(),
        ledger.acked.len(),
        ledger.after_kill
    );
    assert!(outage < Duration::from_secs(10), "outage {outage:?}");
    assert!(ledger.after_kill > 100, "calls did not resume");
    // In between, clients got UNAVAILABLE, never a hang or another error.
    for code in &codes {
        assert_eq!(*code, Code::Unavailable, "{codes:?}");
    }
    assert!(
        ledger.slowest < Duration::from_secs(5),
        "{:?}",
        ledger.slowest
    );
    // Every acknowledged write survived the failover.
    let acked: Vec<_> = ledger.acked.values().cloned().collect();
    let mut client = server.client().await;
    assert_eq!(resend(&mut client, &acked).await, (0, acked.len() as u64));
}
