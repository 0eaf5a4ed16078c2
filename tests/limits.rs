//! Limits through gRPC: load shedding past the concurrency limit, message
//! size, the per-stream event cap and the request timeout.

mod common;

use std::time::Duration;

use common::*;
use reach::proto::{self, Channel, Status};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// Opens a RecordEvents stream that stays open until the sender is dropped.
async fn open_stream(
    client: &Client,
    first: proto::RecordEventRequest,
) -> (
    mpsc::Sender<proto::RecordEventRequest>,
    tokio::task::JoinHandle<Result<proto::RecordEventsResponse, tonic::Status>>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(first).await.unwrap();
    let mut client = client.clone();
    let call = tokio::spawn(async move {
        client
            .record_events(ReceiverStream::new(rx))
            .await
            .map(|r| r.into_inner())
    });
    (tx, call)
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_concurrency_limit_calls_are_shed_not_queued() {
    let server = TestServer::start_with(|c| c.max_concurrent_calls = 2).await;
    let client = server.client().await;
    let now = now_ms();
    let stream = |i: usize| {
        let e = event(&format!("e{i}"), "c1", Channel::Sms, Status::Delivered, now);
        open_stream(&client, request(e))
    };
    let mut open = vec![stream(0).await, stream(1).await];
    // Until both streams hold their slots (a busy machine can take a
    // while), a probe is answered, and a stream that arrives while a probe
    // holds a slot is refused and opened again. Then a probe is refused at
    // once; one that hangs was queued.
    let waiting = std::time::Instant::now();
    loop {
        for (i, slot) in open.iter_mut().enumerate() {
            if slot.1.is_finished() {
                let (_, refused) = std::mem::replace(slot, stream(i).await);
                let refused = refused.await.unwrap().unwrap_err();
                assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
            }
        }
        let mut prober = client.clone();
        let probe = prober.get_best_channel(proto::GetBestChannelRequest {
            contact_id: "c1".into(),
            ..Default::default()
        });
        let answer = match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Err(_) => panic!("queued, not refused"),
            Ok(Err(status)) if status.code() == Code::ResourceExhausted => {
                if open.iter().all(|(_, call)| !call.is_finished()) {
                    break;
                }
                format!("{status:?}")
            }
            Ok(answer) => format!("{answer:?}"),
        };
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "never refused: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once the streams end, calls are served again.
    for (tx, call) in open {
        drop(tx);
        let reply = call.await.unwrap().unwrap();
        assert_eq!(reply.accepted, 1);
    }
    let best = best(&mut client.clone(), "c1", &[]).await;
    assert_eq!(best.channel, Channel::Sms as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_messages_and_streams_are_refused() {
    let server = TestServer::start_with(|c| {
        c.max_message_bytes = 64 * 1024;
        c.limits.max_events_per_stream = 10;
    })
    .await;
    let mut client = server.client().await;
    let status = client
        .record_provider_event(proto::ProviderEventRequest {
            provider: "twilio".into(),
            body: vec![b'a'; 100 * 1024],
            content_type: "application/x-www-form-urlencoded".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    let now = now_ms();
    let events: Vec<_> = (0..15)
        .map(|i| {
            request(event(
                &format!("s{i}"),
                "c2",
                Channel::Email,
                Status::Delivered,
                now - i,
            ))
        })
        .collect();
    let status = client
        .record_events(tokio_stream::iter(events.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("at most 10 events"), "{status:?}");
    // The first ten were recorded: sending them again finds duplicates only.
    let again = client
        .record_events(tokio_stream::iter(events.into_iter().take(10)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.accepted, again.duplicates), (0, 10));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_the_request_timeout_is_cut() {
    let server = TestServer::start_with(|c| c.request_timeout = Duration::from_millis(300)).await;
    let client = server.client().await;
    let e = event("t1", "c3", Channel::Sms, Status::Delivered, now_ms());
    let (tx, call) = open_stream(&client, request(e)).await;
    let status = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("cut by the server, not hanging")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    drop(tx);
}
