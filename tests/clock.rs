//! Clock and ordering edges, deterministic whatever the arrival order
//! (docs/scoring.md, "Order, duplicates and time"): same-millisecond events
//! with different statuses, events at the epoch and decades old, and the
//! future-skew limit.

mod common;

use common::*;
use prost_types::Timestamp;
use reach::proto::{self, Channel, Status};
use tonic::Code;

/// Records `events` for `contact` in the given order.
async fn history(client: &mut Client, contact: &str, events: &[(Status, i64)]) {
    for (i, (status, at)) in events.iter().enumerate() {
        let e = event(
            &format!("{contact}-{status:?}-{i}"),
            contact,
            Channel::Sms,
            *status,
            *at,
        );
        record(client, e).await;
    }
}

fn sms(r: &proto::GetReachabilityResponse) -> proto::ChannelScore {
    r.channels
        .iter()
        .find(|c| c.channel == Channel::Sms as i32)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn same_millisecond_ties_resolve_the_same_in_either_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - 3_600_000;
    let as_of = Some(now_ms());
    // A delivery and a hard bounce in the same millisecond: the failure
    // wins the tie (the streak counts it), in either order.
    let pair = [(Status::Delivered, t), (Status::BouncedHard, t)];
    history(&mut client, "tie-a", &pair).await;
    history(&mut client, "tie-b", &[pair[1], pair[0]]).await;
    let (a, b) = (
        sms(&reachability(&mut client, "tie-a", as_of).await),
        sms(&reachability(&mut client, "tie-b", as_of).await),
    );
    assert_eq!(a.consecutive_hard_fails, 1);
    assert_eq!(a.consecutive_hard_fails, b.consecutive_hard_fails);
    assert!((a.score - b.score).abs() < 1e-12);

    // Opt-out and opt-in in the same millisecond: opt-out is law.
    let consent = [(Status::Optin, t), (Status::Optout, t)];
    history(&mut client, "consent-a", &consent).await;
    history(&mut client, "consent-b", &[consent[1], consent[0]]).await;
    for contact in ["consent-a", "consent-b"] {
        let score = sms(&reachability(&mut client, contact, as_of).await);
        assert!(score.opted_out && !score.eligible, "{contact}: {score:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn old_events_count_for_what_the_decay_leaves() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // The epoch itself is a valid time; a millisecond before is not.
    history(&mut client, "ancient", &[(Status::BouncedHard, 0)]).await;
    let before = event("pre-epoch", "ancient", Channel::Sms, Status::Delivered, -1);
    let err = client.record_event(request(before)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Fifty-six years old: recorded and counted, but it weighs nothing
    // against the prior (2^-340 at a 60-day half-life).
    let old = sms(&reachability(&mut client, "ancient", None).await);
    let fresh = sms(&reachability(&mut client, "nobody", None).await);
    assert!((old.score - fresh.score).abs() < 1e-9, "{old:?}");
    let p = profile(&mut client, "ancient").await;
    assert_eq!(counts(&p, Channel::Sms).bounced_hard, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_future_skew_limit_is_five_minutes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let soon = event(
        "soon",
        "skew",
        Channel::Sms,
        Status::Delivered,
        now_ms() + 240_000,
    );
    assert!(!record(&mut client, soon).await);
    let late = event(
        "late",
        "skew",
        Channel::Sms,
        Status::Delivered,
        now_ms() + 360_000,
    );
    let err = client.record_event(request(late)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("event.occurred_at"));
    let mut overflow = event("overflow", "skew", Channel::Sms, Status::Delivered, 0);
    overflow.occurred_at = Some(Timestamp {
        seconds: 253_402_300_800, // year 10000
        nanos: 0,
    });
    let err = client.record_event(request(overflow)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
