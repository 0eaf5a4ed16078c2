//! Ingestion through gRPC: idempotency, validation, bulk streams.

mod common;

use common::*;
use reach::proto::{self, Channel, Status};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_event_counts_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let e = event(
        "e1",
        "alice",
        Channel::Sms,
        Status::Delivered,
        now_ms() - 1000,
    );
    assert!(!record(&mut client, e.clone()).await);
    assert!(
        record(&mut client, e.clone()).await,
        "second copy is a duplicate"
    );
    // Same event id for another contact is another event.
    let mut other = e.clone();
    other.contact_id = "bob".into();
    assert!(!record(&mut client, other).await);
    assert_eq!(
        counts(&profile(&mut client, "alice").await, Channel::Sms).delivered,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_are_recognised_after_a_restart() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let e = event(
        "e1",
        "alice",
        Channel::Email,
        Status::BouncedHard,
        now_ms() - 1000,
    );
    assert!(!record(&mut client, e.clone()).await);
    drop(client);
    let server = server.restart().await;
    let mut client = server.client().await;
    assert!(record(&mut client, e).await);
    let p = profile(&mut client, "alice").await;
    assert_eq!(counts(&p, Channel::Email).bounced_hard, 1);
}

/// Each malformed event is refused with INVALID_ARGUMENT naming the field,
/// and leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_events_name_the_field_and_write_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let good = || event("e1", "carol", Channel::Sms, Status::Delivered, now_ms());
    let cases: Vec<(&str, proto::ChannelEvent)> = vec![
        (
            "event.event_id",
            proto::ChannelEvent {
                event_id: String::new(),
                ..good()
            },
        ),
        (
            "event.contact_id",
            proto::ChannelEvent {
                contact_id: String::new(),
                ..good()
            },
        ),
        (
            "event.event_id",
            proto::ChannelEvent {
                event_id: "x".repeat(257),
                ..good()
            },
        ),
        (
            "event.channel",
            proto::ChannelEvent {
                channel: 0,
                ..good()
            },
        ),
        (
            "event.channel",
            proto::ChannelEvent {
                channel: 99,
                ..good()
            },
        ),
        (
            "event.status",
            proto::ChannelEvent {
                status: 0,
                ..good()
            },
        ),
        (
            "event.status",
            proto::ChannelEvent {
                status: -3,
                ..good()
            },
        ),
        (
            "event.occurred_at",
            proto::ChannelEvent {
                occurred_at: None,
                ..good()
            },
        ),
        (
            "event.occurred_at",
            proto::ChannelEvent {
                occurred_at: Some(ts(now_ms() + 3_600_000)),
                ..good()
            },
        ),
        (
            "event.occurred_at",
            proto::ChannelEvent {
                occurred_at: Some(ts(-5_000)),
                ..good()
            },
        ),
        (
            "event.occurred_at",
            proto::ChannelEvent {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: 2_000_000_000,
                }),
                ..good()
            },
        ),
        (
            "event.sent_at",
            proto::ChannelEvent {
                sent_at: Some(ts(now_ms() + 60_000)),
                ..good()
            },
        ),
        (
            "event.country",
            proto::ChannelEvent {
                country: "USA".into(),
                ..good()
            },
        ),
        (
            "event.carrier",
            proto::ChannelEvent {
                carrier: "c".repeat(129),
                ..good()
            },
        ),
    ];
    for (field, e) in cases {
        let status = client.record_event(request(e)).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
        let violations = status
            .get_details_bad_request()
            .expect("bad request details")
            .field_violations;
        assert_eq!(violations[0].field, field);
    }
    let missing = client
        .record_event(proto::RecordEventRequest { event: None })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().contains("event"));

    let nothing = client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "carol".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(nothing.code(), Code::NotFound);
    // The rejected event did not leave a dedupe marker either.
    assert!(!record(&mut client, good()).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_validate_the_contact_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for contact_id in [String::new(), "x".repeat(300)] {
        let status = client
            .get_reachability(proto::GetReachabilityRequest {
                contact_id: contact_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("contact_id"));
    }
    let status = client
        .get_best_channel(proto::GetBestChannelRequest {
            contact_id: "a".into(),
            allowed_channels: vec![1, 17],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("allowed_channels[1]"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_event_in_a_bulk_stream_is_reported_not_fatal() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - 10_000;
    let mut events: Vec<proto::RecordEventRequest> = (0..10)
        .map(|i| {
            request(event(
                &format!("b{i}"),
                "dave",
                Channel::Email,
                Status::Delivered,
                t + i,
            ))
        })
        .collect();
    events[3].event.as_mut().unwrap().status = 0;
    events[7] = events[5].clone(); // a repeat inside the stream
    let reply = client
        .record_events(tokio_stream::iter(events))
        .await
        .expect("bulk")
        .into_inner();
    assert_eq!(
        (reply.accepted, reply.duplicates, reply.rejected),
        (8, 1, 1)
    );
    assert_eq!(reply.errors.len(), 1);
    assert_eq!(reply.errors[0].index, 3);
    assert_eq!(reply.errors[0].event_id, "b3");
    assert_eq!(reply.errors[0].field, "event.status");
    assert_eq!(
        counts(&profile(&mut client, "dave").await, Channel::Email).delivered,
        8
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_streams_span_chunks_and_dedupe_against_earlier_ingest() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - 60_000;
    // 2,500 events over 50 contacts: several chunks, many events per contact.
    let make = move |i: i64| {
        let status = if i % 5 == 0 {
            Status::BouncedHard
        } else {
            Status::Delivered
        };
        request(event(
            &format!("k{i}"),
            &format!("c{}", i % 50),
            Channel::Sms,
            status,
            t + i,
        ))
    };
    let reply = client
        .record_events(tokio_stream::iter((0..2500).map(make)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (reply.accepted, reply.duplicates, reply.rejected),
        (2500, 0, 0)
    );
    // Replaying an overlapping range: the old half is all duplicates.
    let reply = client
        .record_events(tokio_stream::iter((1250..3750).map(make)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.accepted, reply.duplicates), (1250, 1250));
    let p = profile(&mut client, "c0").await;
    let c = counts(&p, Channel::Sms);
    assert_eq!(
        (c.delivered, c.bounced_hard),
        (0, 75),
        "c0 gets only multiples of 50, all multiples of 5"
    );
    let c = counts(&profile(&mut client, "c1").await, Channel::Sms);
    assert_eq!(c.delivered + c.bounced_hard, 75);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_stream_reports_at_most_a_hundred_errors_but_counts_all() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let bad = (0..150).map(|i| {
        request(event(
            &format!("x{i}"),
            "",
            Channel::Sms,
            Status::Delivered,
            now_ms(),
        ))
    });
    let reply = client
        .record_events(tokio_stream::iter(bad))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.rejected, 150);
    assert_eq!(reply.errors.len(), 100);
    assert_eq!(reply.errors[99].index, 99);
    assert_eq!(reply.errors[0].field, "event.contact_id");
}
