//! The bad-input matrix, over real gRPC: each malformed request gets its
//! documented error and writes nothing; a 100k-event stream with every
//! tenth event bad records exactly the good ones; an abandoned stream
//! leaves no event half-applied and a resend completes it exactly once.

mod common;

use common::*;
use prost_types::Timestamp;
use reach::proto::{self, Channel, Status};
use tonic::Code;

fn good(id: &str) -> proto::ChannelEvent {
    event(
        id,
        "matrix",
        Channel::Sms,
        Status::Delivered,
        now_ms() - 1_000,
    )
}

/// (what, the request, the field the error must name)
fn matrix() -> Vec<(&'static str, proto::ChannelEvent, &'static str)> {
    let mut cases = Vec::new();
    let mut e = good("a");
    e.contact_id = "c".repeat(257);
    cases.push(("oversized contact_id", e, "event.contact_id"));
    let mut e = good(&"e".repeat(300));
    e.contact_id = "matrix".into();
    cases.push(("oversized event_id", e, "event.event_id"));
    let mut e = good("b");
    e.channel = 99;
    cases.push(("channel out of range", e, "event.channel"));
    let mut e = good("c");
    e.status = -3;
    cases.push(("status out of range", e, "event.status"));
    let mut e = good("d");
    e.occurred_at = Some(Timestamp {
        seconds: -1,
        nanos: 0,
    });
    cases.push(("before 1970", e, "event.occurred_at"));
    let mut e = good("e");
    e.occurred_at = Some(Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    });
    cases.push(("overflowing timestamp", e, "event.occurred_at"));
    let mut e = good("f");
    e.occurred_at = Some(Timestamp {
        seconds: 1_790_000_000,
        nanos: 2_000_000_000,
    });
    cases.push(("nanos out of range", e, "event.occurred_at"));
    let mut e = good("g");
    e.occurred_at = Some(Timestamp {
        seconds: i64::MIN,
        nanos: -1,
    });
    cases.push(("minimum timestamp", e, "event.occurred_at"));
    let mut e = good("h");
    e.sent_at = Some(ts(now_ms() + 3_600_000));
    cases.push(("sent after it happened", e, "event.sent_at"));
    let mut e = good("i");
    e.address = "not a phone number".into();
    cases.push(("invalid address", e, "event.address"));
    let mut e = good("j");
    e.country = "USA".into();
    cases.push(("country not ISO alpha-2", e, "event.country"));
    cases
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_event_names_its_field_and_writes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (what, e, field) in matrix() {
        let err = client.record_event(request(e)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(field), "{what}: {}", err.message());
    }
    // Nothing of any of them was stored.
    let err = client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "matrix".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_provider_bodies_are_refused_and_write_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let bodies: [(&str, &str, &[u8]); 4] = [
        (
            "twilio",
            "application/x-www-form-urlencoded",
            b"MessageSid=SM1&MessageStatus=\xff\xfe",
        ),
        ("sendgrid", "application/json", b"\xff\xfe[not utf-8"),
        ("sendgrid", "application/json", b"{\"truncated\": "),
        ("smpp", "text/plain", b"id:1 \xc3\x28 stat:DELIVRD"),
    ];
    for (provider, content_type, body) in bodies {
        let err = client
            .record_provider_event(proto::ProviderEventRequest {
                provider: provider.into(),
                content_type: content_type.into(),
                body: body.to_vec(),
                contact_id: "prov".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{provider}: {err:?}");
    }
    let err = client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "prov".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_thousand_event_stream_with_every_tenth_bad() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - 3_600_000;
    const N: usize = 100_000;
    let events = (0..N).map(move |i| {
        let mut e = event(
            &format!("big-{i}"),
            &format!("c{}", i % 1000),
            Channel::Email,
            Status::Delivered,
            t + i as i64,
        );
        if i % 10 == 9 {
            e.channel = 42; // bad
        }
        request(e)
    });
    let reply = client
        .record_events(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.accepted, 90_000);
    assert_eq!(reply.rejected, 10_000);
    assert_eq!(reply.errors.len(), 100);
    assert!(reply.errors.iter().all(|e| e.index % 10 == 9));
    assert_eq!(reply.errors[0].field, "event.channel");
    // Exactly the good ones: a contact's events are i = c (mod 1000), all
    // bad when c ends in 9, all good otherwise.
    for c in [0, 498, 999] {
        let want = if c % 10 == 9 { 0 } else { 100 };
        let got = match client
            .get_contact_profile(proto::GetContactProfileRequest {
                contact_id: format!("c{c}"),
            })
            .await
        {
            Ok(p) => counts(&p.into_inner(), Channel::Email).delivered,
            Err(e) if e.code() == Code::NotFound => 0,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(got, want, "c{c}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_stream_is_completed_exactly_once_by_a_resend() {
    let server = TestServer::start().await;
    let t = now_ms() - 3_600_000;
    let all: Vec<_> = (0..5_000)
        .map(|i| {
            event(
                &format!("ab-{i}"),
                &format!("ab{}", i % 10),
                Channel::Sms,
                Status::Delivered,
                t + i,
            )
        })
        .collect();
    // Send 3,000 events, then drop the stream without finishing it.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut client = server.client().await;
    let call = tokio::spawn(async move {
        client
            .record_events(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    for e in all.iter().take(3_000) {
        tx.send(request(e.clone())).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    call.abort();
    drop(tx);
    let _ = call.await;

    // Nothing was acknowledged; whatever was applied is whole, and a
    // resend of the whole stream leaves each event counted exactly once.
    let mut client = server.client().await;
    let reply = client
        .record_events(tokio_stream::iter(all.clone().into_iter().map(request)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.accepted + reply.duplicates, 5_000);
    assert!(reply.duplicates <= 3_000, "{reply:?}");
    for c in 0..10 {
        let p = profile(&mut client, &format!("ab{c}")).await;
        assert_eq!(counts(&p, Channel::Sms).delivered, 500, "ab{c}");
    }
}
