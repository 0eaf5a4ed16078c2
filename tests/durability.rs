//! Durability and concurrency: acknowledged events survive SIGKILL,
//! concurrent writers lose nothing, erasure erases.

mod common;

use std::sync::Arc;

use common::*;
use reach::proto::{self, Channel, Status};
use tokio::sync::Mutex;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(dir.path()).await;
    let t = now_ms() - 60_000;
    let acked = Arc::new(Mutex::new(Vec::new()));
    // Eight concurrent writers over overlapping contacts, unary and bulk.
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let mut client = server.client().await;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40i64 {
                let e = event(
                    &format!("w{w}-{i}"),
                    &format!("c{}", i % 5),
                    Channel::Sms,
                    Status::Delivered,
                    t + i,
                );
                if client.record_event(request(e.clone())).await.is_ok() {
                    acked.lock().await.push(e);
                }
            }
            let bulk: Vec<_> = (0..100i64)
                .map(|i| {
                    event(
                        &format!("bulk{w}-{i}"),
                        &format!("c{}", i % 5),
                        Channel::Email,
                        Status::Delivered,
                        t + i,
                    )
                })
                .collect();
            let reply = client
                .record_events(tokio_stream::iter(bulk.clone().into_iter().map(request)))
                .await;
            if reply.is_ok() {
                acked.lock().await.extend(bulk);
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    server.kill();

    let server = ProcessServer::start(dir.path()).await;
    let mut client = server.client().await;
    let acked = acked.lock().await.clone();
    assert_eq!(acked.len(), 8 * 140);
    let mut sms = 0;
    let mut email = 0;
    for c in 0..5 {
        let p = profile(&mut client, &format!("c{c}")).await;
        sms += counts(&p, Channel::Sms).delivered;
        email += counts(&p, Channel::Email).delivered;
    }
    assert_eq!(
        (sms, email),
        (8 * 40, 8 * 100),
        "every acknowledged event is there exactly once"
    );
    for e in acked.iter().take(200) {
        assert!(
            record(&mut client, e.clone()).await,
            "re-sent acknowledged event is a duplicate"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_to_one_contact_lose_nothing() {
    let server = TestServer::start().await;
    let t = now_ms() - 60_000;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..50i64 {
                let status = if i % 10 == 0 {
                    Status::PendingRetry
                } else {
                    Status::Delivered
                };
                let e = event(&format!("w{w}-{i}"), "hot", Channel::Push, status, t + i);
                assert!(!record(&mut client, e).await);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut client = server.client().await;
    let c = counts(&profile(&mut client, "hot").await, Channel::Push);
    assert_eq!((c.delivered, c.pending_retry), (16 * 45, 16 * 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_removes_the_contact_but_not_its_dedupe_markers() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let e = event("e1", "pia", Channel::Email, Status::Optout, now_ms() - 1000);
    record(&mut client, e.clone()).await;
    let delete = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            client
                .delete_contact(proto::DeleteContactRequest {
                    contact_id: "pia".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .existed
        }
    };
    assert!(delete(&mut client).await);
    assert!(!delete(&mut client).await, "erasure is idempotent");
    let status = client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "pia".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let r = reachability(&mut client, "pia", None).await;
    assert!(
        r.channels
            .iter()
            .all(|c| c.confidence == 0.0 && !c.opted_out)
    );
    // A redelivered old event cannot bring the erased contact back.
    assert!(record(&mut client, e).await);
    assert_eq!(
        client
            .get_contact_profile(proto::GetContactProfileRequest {
                contact_id: "pia".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // Erasure is durable.
    drop(client);
    let server = server.restart().await;
    let mut client = server.client().await;
    assert!(
        client
            .get_contact_profile(proto::GetContactProfileRequest {
                contact_id: "pia".into()
            })
            .await
            .is_err()
    );
}
