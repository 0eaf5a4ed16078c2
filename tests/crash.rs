//! Crash safety: the real binary is killed with SIGKILL at random moments
//! while several clients ingest (unary and bulk streams, overlapping
//! contacts, redelivered duplicates). After every restart each
//! acknowledged event is there exactly once (re-sending it reports a
//! duplicate); at the end, with every event sent once more, the profiles
//! equal those of a server that never crashed and saw each event once.
//!
//! CI runs 3 kills; `CRASH_KILLS=20 cargo test --release --test crash`
//! is the full run (docs/reliability.md).

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{DAY_MS, ProcessServer, TestServer, event, now_ms, request, resend, ts};
use reach::proto::{self, Channel, Status};

const WRITERS_UNARY: usize = 3;
const WRITERS_BULK: usize = 2;
const CONTACTS: usize = 24;

/// Every event ever sent (by id, one content per id) and those acknowledged.
#[derive(Default)]
struct Ledger {
    sent: BTreeMap<String, proto::ChannelEvent>,
    acked: HashSet<String>,
}

fn kills() -> usize {
    std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// A new event, or (one time in five) one already sent: a redelivery.
fn next_event(ledger: &Mutex<Ledger>, rng: &mut fastrand::Rng, id: String) -> proto::ChannelEvent {
    let ledger_guard = ledger.lock().unwrap();
    if !ledger_guard.sent.is_empty() && rng.u8(..5) == 0 {
        let n = rng.usize(..ledger_guard.sent.len());
        return ledger_guard.sent.values().nth(n).unwrap().clone();
    }
    drop(ledger_guard);
    let channel = [Channel::Sms, Channel::Email][rng.usize(..2)];
    let status = [Status::Delivered, Status::BouncedHard, Status::PendingRetry][rng.usize(..3)];
    let at = now_ms() - rng.i64(0..20 * DAY_MS);
    let e = event(
        &id,
        &format!("c{}", rng.usize(..CONTACTS)),
        channel,
        status,
        at,
    );
    ledger.lock().unwrap().sent.insert(id, e.clone());
    e
}

async fn write_until_killed(
    server: std::net::SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    round: usize,
    writer: usize,
    bulk: bool,
) {
    let mut client = common::connect(server).await;
    let mut rng = fastrand::Rng::with_seed((round * 100 + writer) as u64);
    for n in 0.. {
        let batch = if bulk { 1 + rng.usize(..40) } else { 1 };
        let events: Vec<_> = (0..batch)
            .map(|i| next_event(&ledger, &mut rng, format!("r{round}-w{writer}-{n}-{i}")))
            .collect();
        let ok = if bulk {
            client
                .record_events(tokio_stream::iter(events.clone().into_iter().map(request)))
                .await
                .is_ok_and(|r| r.into_inner().rejected == 0)
        } else {
            client
                .record_event(request(events[0].clone()))
                .await
                .is_ok()
        };
        if !ok {
            return; // the server is gone
        }
        let mut ledger = ledger.lock().unwrap();
        ledger.acked.extend(events.into_iter().map(|e| e.event_id));
    }
}

async fn reachability(client: &mut common::Client, contact: &str, as_of: i64) -> Vec<(i32, f64)> {
    client
        .get_reachability(proto::GetReachabilityRequest {
            contact_id: contact.into(),
            as_of: Some(ts(as_of)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .channels
        .iter()
        .map(|c| (c.channel, c.score))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = fastrand::Rng::with_seed(7);
    let rounds = kills();
    for round in 0..rounds {
        let server = ProcessServer::start(dir.path()).await;
        // Every event acknowledged before this start is there, once.
        let acked: Vec<_> = {
            let ledger = ledger.lock().unwrap();
            ledger
                .acked
                .iter()
                .map(|id| ledger.sent[id].clone())
                .collect()
        };
        let mut client = server.client().await;
        let (accepted, duplicates) = resend(&mut client, &acked).await;
        assert_eq!(
            (accepted, duplicates),
            (0, acked.len() as u64),
            "round {round}: an acknowledged event was lost"
        );
        let mut writers = Vec::new();
        for w in 0..WRITERS_UNARY + WRITERS_BULK {
            writers.push(tokio::spawn(write_until_killed(
                server.addr,
                ledger.clone(),
                round,
                w,
                w >= WRITERS_UNARY,
            )));
        }
        tokio::time::sleep(Duration::from_millis(150 + rng.u64(..600))).await;
        server.kill();
        for w in writers {
            w.await.unwrap();
        }
    }

    // Finally every event sent, acknowledged or not, once more: each is
    // now recorded exactly once, so the store must equal a reference
    // server that saw each event once and never crashed.
    let server = ProcessServer::start(dir.path()).await;
    let (all, acked_count) = {
        let ledger = ledger.lock().unwrap();
        (
            ledger.sent.values().cloned().collect::<Vec<_>>(),
            ledger.acked.len(),
        )
    };
    assert!(
        acked_count > 100,
        "the writers got too little done: {acked_count}"
    );
    let mut client = server.client().await;
    let (_, duplicates) = resend(&mut client, &all).await;
    assert!(duplicates >= acked_count as u64);
    let reference = TestServer::start().await;
    let mut reference_client = reference.client().await;
    let (accepted, _) = resend(&mut reference_client, &all).await;
    assert_eq!(accepted, all.len() as u64);
    let as_of = now_ms();
    for c in 0..CONTACTS {
        let contact = format!("c{c}");
        let got = common::profile(&mut client, &contact).await;
        let want = common::profile(&mut reference_client, &contact).await;
        let counts = |p: &proto::GetContactProfileResponse| {
            p.channels
                .iter()
                .map(|c| (c.channel, c.counts))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&got), counts(&want), "{contact}: counts");
        let (got, want) = (
            reachability(&mut client, &contact, as_of).await,
            reachability(&mut reference_client, &contact, as_of).await,
        );
        for ((gc, gs), (wc, ws)) in got.iter().zip(&want) {
            assert_eq!(gc, wc);
            assert!((gs - ws).abs() < 1e-9, "{contact}: score {gs} vs {ws}");
        }
    }
    eprintln!(
        "crash: {rounds} kills survived, {} events sent, {acked_count} acknowledged and checked",
        all.len()
    );
}
