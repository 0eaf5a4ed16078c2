//! Delivery intelligence through gRPC: message latency, the silence sweep
//! and late receipts, soft-fail escalation, route health and urgent
//! ranking, delivery statistics, and the action stream.

mod common;

use std::time::Duration;

use common::*;
use reach::proto::{self, ActionKind, Channel, Dimension, Status};

const SECOND: i64 = 1000;
const HOUR: i64 = 3_600_000;

fn routed(
    mut e: proto::ChannelEvent,
    message: &str,
    carrier: &str,
    campaign: &str,
) -> proto::ChannelEvent {
    e.message_id = message.into();
    e.carrier = carrier.into();
    e.country = "US".into();
    e.campaign_id = campaign.into();
    e
}

/// A SENT and a DELIVERED `latency_ms` later, as one bulk stream.
fn delivered_after(
    contact: &str,
    message: &str,
    carrier: &str,
    sent_ms: i64,
    latency_ms: i64,
) -> Vec<proto::ChannelEvent> {
    vec![
        routed(
            event(
                &format!("{message}-s"),
                contact,
                Channel::Sms,
                Status::Sent,
                sent_ms,
            ),
            message,
            carrier,
            "otp",
        ),
        routed(
            event(
                &format!("{message}-d"),
                contact,
                Channel::Sms,
                Status::Delivered,
                sent_ms + latency_ms,
            ),
            message,
            carrier,
            "otp",
        ),
    ]
}

async fn bulk(client: &mut Client, events: Vec<proto::ChannelEvent>) {
    let reply = client
        .record_events(tokio_stream::iter(events.into_iter().map(request)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.rejected, 0, "{:?}", reply.errors);
}

async fn route(client: &mut Client, carrier: &str) -> proto::RouteHealth {
    let routes = client
        .get_route_health(proto::GetRouteHealthRequest {
            carrier: carrier.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .routes;
    assert_eq!(routes.len(), 1, "{routes:?}");
    routes.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_is_recorded_per_message_and_its_percentiles_are_right() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    // 100 messages with latencies 1..=100 seconds.
    let mut events = Vec::new();
    for i in 1..=100 {
        events.extend(delivered_after(
            &format!("lat{i}"),
            &format!("m{i}"),
            "fastcarrier",
            now - 200 * SECOND,
            i * SECOND,
        ));
    }
    bulk(&mut client, events).await;
    let p = profile(&mut client, "lat42").await;
    assert_eq!(p.messages.len(), 1);
    assert_eq!(p.messages[0].latency_ms, Some(42_000));
    assert_eq!(p.messages[0].outcome, Status::Delivered as i32);

    let r = route(&mut client, "fastcarrier").await;
    assert_eq!(r.latency_samples, 100);
    for (got, truth) in [
        (r.latency_p50_ms, 50_000.0),
        (r.latency_p95_ms, 95_000.0),
        (r.latency_p99_ms, 99_000.0),
    ] {
        let got = got.unwrap();
        assert!(
            (got - truth).abs() / truth < 0.2,
            "{got} vs {truth}: within one 20% bucket"
        );
    }
    assert_eq!(r.delivery_rate, Some(1.0));
    assert!(r.degraded, "a p95 of 95 s is over the 30 s threshold");
}

#[tokio::test(flavor = "multi_thread")]
async fn silence_becomes_unconfirmed_and_a_late_receipt_corrects_it() {
    let server =
        TestServer::start_with(|c| c.lifecycle.sweep_every = Duration::from_millis(100)).await;
    let mut client = server.client().await;
    let t0 = now_ms() - 100 * HOUR;
    let sent = |contact: &str| {
        routed(
            event("s", contact, Channel::Sms, Status::Sent, t0),
            "msg-1",
            "c1",
            "promo",
        )
    };
    let late = |contact: &str| {
        routed(
            event(
                "d",
                contact,
                Channel::Sms,
                Status::Delivered,
                t0 + 80 * HOUR,
            ),
            "msg-1",
            "c1",
            "promo",
        )
    };

    // In time: the receipt arrives with the send, the sweep finds nothing.
    bulk(&mut client, vec![sent("in-time"), late("in-time")]).await;
    // Silent: past the 72 h SMS window, the sweep declares it UNCONFIRMED...
    record(&mut client, sent("silent")).await;
    let mut swept = None;
    for _ in 0..100 {
        let p = profile(&mut client, "silent").await;
        if counts(&p, Channel::Sms).unconfirmed == 1 {
            swept = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let swept = swept.expect("the sweep declared the message UNCONFIRMED");
    assert_eq!(
        swept.messages[0].unconfirmed_at,
        Some(ts(t0 + 72 * HOUR)),
        "at the deadline, not when swept"
    );
    let silent = channel_score(
        &reachability(&mut client, "silent", None).await,
        Channel::Sms,
    );
    assert!(
        silent.score < 0.9,
        "silence counts as a partial failure: {}",
        silent.score
    );

    // ...and the late receipt replaces it: same as if it had come in time.
    record(&mut client, late("silent")).await;
    let as_of = now_ms();
    let (a, b) = (
        reachability(&mut client, "in-time", Some(as_of)).await,
        reachability(&mut client, "silent", Some(as_of)).await,
    );
    let (a, b) = (
        channel_score(&a, Channel::Sms),
        channel_score(&b, Channel::Sms),
    );
    assert!(
        (a.score - b.score).abs() < 1e-9 && (a.confidence - b.confidence).abs() < 1e-9,
        "{a:?}\n{b:?}"
    );
    let (pa, pb) = (
        profile(&mut client, "in-time").await,
        profile(&mut client, "silent").await,
    );
    assert_eq!(counts(&pa, Channel::Sms), counts(&pb, Channel::Sms));
    assert_eq!(counts(&pb, Channel::Sms).unconfirmed, 0);
    assert_eq!(pb.messages[0].latency_ms, Some(80 * HOUR));
    // The statistics agree: one delivered, no unconfirmed left.
    let total = stats_totals(&mut client, t0).await;
    assert_eq!((total.delivered, total.unconfirmed, total.sent), (2, 0, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_failures_escalate_to_suppression() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - HOUR;
    for i in 0..4 {
        record(
            &mut client,
            event(
                &format!("s{i}"),
                "soft",
                Channel::Email,
                Status::PendingRetry,
                t + i,
            ),
        )
        .await;
    }
    let email = channel_score(
        &reachability(&mut client, "soft", None).await,
        Channel::Email,
    );
    assert_eq!((email.consecutive_soft_fails, email.suppressed), (4, false));
    assert!(
        email
            .reasons
            .iter()
            .any(|r| r.contains("4 soft failures in a row")),
        "{:?}",
        email.reasons
    );
    // The fifth counts as a hard fail; with two hard bounces that makes three.
    record(
        &mut client,
        event("s4", "soft", Channel::Email, Status::PendingRetry, t + 4),
    )
    .await;
    record(
        &mut client,
        event("h0", "soft", Channel::Email, Status::BouncedHard, t + 5),
    )
    .await;
    assert!(
        !channel_score(
            &reachability(&mut client, "soft", None).await,
            Channel::Email
        )
        .suppressed
    );
    record(
        &mut client,
        event("h1", "soft", Channel::Email, Status::BouncedHard, t + 6),
    )
    .await;
    let email = channel_score(
        &reachability(&mut client, "soft", None).await,
        Channel::Email,
    );
    assert!(email.suppressed, "{email:?}");
    assert!(
        email.suppression_reason.contains("5 soft failures"),
        "{}",
        email.suppression_reason
    );
    // A delivery clears both streaks.
    record(
        &mut client,
        event("d", "soft", Channel::Email, Status::Delivered, t + 7),
    )
    .await;
    let email = channel_score(
        &reachability(&mut client, "soft", None).await,
        Channel::Email,
    );
    assert_eq!(
        (
            email.suppressed,
            email.consecutive_soft_fails,
            email.consecutive_hard_fails
        ),
        (false, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_degrades_and_recovers_with_actions_and_urgent_traffic_avoids_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    // A contact with a strong SMS history through "slowcarrier" and a weaker email.
    for i in 0..4 {
        bulk(
            &mut client,
            delivered_after(
                "otp-user",
                &format!("hist{i}"),
                "slowcarrier",
                now - 3 * HOUR - i * SECOND,
                2 * SECOND,
            ),
        )
        .await;
    }
    record(
        &mut client,
        event(
            "e1",
            "otp-user",
            Channel::Email,
            Status::Delivered,
            now - HOUR,
        ),
    )
    .await;
    assert_eq!(
        best(&mut client, "otp-user", &[]).await.channel,
        Channel::Sms as i32
    );

    // 30 messages on the route take 45 s each: p95 over 30 s.
    let mut events = Vec::new();
    for i in 0..30 {
        events.extend(delivered_after(
            &format!("slow{i}"),
            &format!("slow{i}"),
            "slowcarrier",
            now - 60 * SECOND,
            45 * SECOND,
        ));
    }
    bulk(&mut client, events).await;
    let r = route(&mut client, "slowcarrier").await;
    assert!(r.degraded && r.reason.contains("p95 latency"), "{r:?}");
    let degraded = watch(&mut client, 0, &[ActionKind::RouteDegraded], 1).await;
    assert_eq!(degraded[0].carrier, "slowcarrier");

    // Urgent traffic now avoids the degraded route; normal traffic does not care.
    let urgent = client
        .get_best_channel(proto::GetBestChannelRequest {
            contact_id: "otp-user".into(),
            urgent: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(urgent.channel, Channel::Email as i32);
    let sms = urgent
        .ranked
        .iter()
        .find(|c| c.channel == Channel::Sms as i32)
        .unwrap();
    assert!(
        sms.reasons
            .iter()
            .any(|r| r.contains("route sms/slowcarrier/US degraded")),
        "{:?}",
        sms.reasons
    );
    assert_eq!(
        best(&mut client, "otp-user", &[]).await.channel,
        Channel::Sms as i32
    );

    // 600 fast deliveries: p95 back well under the line, the route recovers.
    let mut events = Vec::new();
    for i in 0..600 {
        events.extend(delivered_after(
            &format!("fast{i}"),
            &format!("fast{i}"),
            "slowcarrier",
            now - 30 * SECOND,
            SECOND,
        ));
    }
    bulk(&mut client, events).await;
    let r = route(&mut client, "slowcarrier").await;
    assert!(!r.degraded, "{r:?}");
    let recovered = watch(
        &mut client,
        degraded[0].sequence,
        &[ActionKind::RouteRecovered],
        1,
    )
    .await;
    assert!(recovered[0].reason.contains("recovered"));
    let urgent = client
        .get_best_channel(proto::GetBestChannelRequest {
            contact_id: "otp-user".into(),
            urgent: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(urgent.channel, Channel::Sms as i32);
}

/// Outcomes of single SMS messages on `carrier`, one contact each, at `at_ms`.
fn route_outcomes(
    carrier: &str,
    tag: &str,
    at_ms: i64,
    delivered: usize,
    failed: usize,
) -> Vec<proto::ChannelEvent> {
    route_mix(
        carrier,
        tag,
        at_ms,
        &[
            (Status::Delivered, delivered),
            (Status::PendingRetry, failed),
        ],
    )
}

/// `n` single SMS messages of each status on `carrier`, one contact each.
fn route_mix(
    carrier: &str,
    tag: &str,
    at_ms: i64,
    mix: &[(Status, usize)],
) -> Vec<proto::ChannelEvent> {
    mix.iter()
        .flat_map(|&(status, n)| std::iter::repeat_n(status, n))
        .enumerate()
        .map(|(i, status)| {
            let id = format!("{tag}-{i}");
            routed(
                event(&id, &id, Channel::Sms, status, at_ms),
                &id,
                carrier,
                "promo",
            )
        })
        .collect()
}

async fn sms_reasons(
    client: &mut Client,
    contact: &str,
    as_of_ms: Option<i64>,
) -> (f64, Vec<String>) {
    let sms = channel_score(&reachability(client, contact, as_of_ms).await, Channel::Sms);
    (sms.score, sms.reasons)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_that_delivers_far_below_its_baseline_lowers_its_channels_for_every_ask() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    let day = 24 * HOUR;
    // A contact whose own record favours SMS through "flaky", 20 days ago.
    let mut own = Vec::new();
    for i in 0..4 {
        let id = format!("own{i}");
        own.push(routed(
            event(
                &id,
                "loyal",
                Channel::Sms,
                Status::Delivered,
                now - 20 * day - i * SECOND,
            ),
            &id,
            "flaky",
            "promo",
        ));
    }
    own.push(event(
        "own-mail",
        "loyal",
        Channel::Email,
        Status::Delivered,
        now - 20 * day,
    ));
    bulk(&mut client, own).await;
    // The route's baseline: everything delivered, 25 messages a day, 2 to 9 days ago.
    for k in 2..=9 {
        bulk(
            &mut client,
            route_outcomes("flaky", &format!("base{k}"), now - k * day, 25, 0),
        )
        .await;
    }
    // What the contact's record alone says, and with a healthy route.
    let four_days_ago = Some(now - 4 * day);
    let (before, reasons) = sms_reasons(&mut client, "loyal", four_days_ago).await;
    assert!(
        !reasons.iter().any(|r| r.contains("route sms/flaky")),
        "{reasons:?}"
    );
    assert_eq!(
        best(&mut client, "loyal", &[]).await.channel,
        Channel::Sms as i32
    );

    // In the last two hours the route delivered 20 of 50: 0.40 against 1.00.
    bulk(
        &mut client,
        route_outcomes("flaky", "burst", now - 2 * HOUR, 20, 30),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (after, reasons) = loop {
        let (score, reasons) = sms_reasons(&mut client, "loyal", None).await;
        if reasons.iter().any(|r| r.contains("route sms/flaky/US")) {
            break (score, reasons);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no route outlook: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = reasons
        .iter()
        .find(|r| r.contains("route sms/flaky/US"))
        .unwrap();
    assert!(
        reason.contains("delivered 0.40 over the last 6h against 1.00 before: score x 0.40"),
        "{reason}"
    );
    assert!(after < before * 0.45, "{after} vs {before}");
    // Every ask, not only urgent ones: the best channel moves to email.
    let answer = best(&mut client, "loyal", &[]).await;
    assert_eq!(answer.channel, Channel::Email as i32, "{answer:?}");
    let sms = answer
        .ranked
        .iter()
        .find(|c| c.channel == Channel::Sms as i32)
        .unwrap();
    assert!(
        sms.reasons.iter().any(|r| r.contains("score x 0.40")),
        "{:?}",
        sms.reasons
    );
    // As of four days ago the burst had not happened: nothing later leaks
    // in, and the contact's own evidence is what it was.
    let (then, reasons) = sms_reasons(&mut client, "loyal", four_days_ago).await;
    assert!(
        (then - before).abs() < 1e-9,
        "{then} vs {before}: {reasons:?}"
    );
    // Other carriers are not touched.
    bulk(
        &mut client,
        vec![routed(
            event(
                "steady-1",
                "steady",
                Channel::Sms,
                Status::Delivered,
                now - 20 * day,
            ),
            "steady-1",
            "solid",
            "promo",
        )],
    )
    .await;
    let (_, reasons) = sms_reasons(&mut client, "steady", None).await;
    assert!(
        !reasons.iter().any(|r| r.contains("route sms/")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_degradation_older_than_the_window_stays_out_of_the_baseline() {
    // A day-long window: the window's first day is then always yesterday,
    // whatever the hour the test runs at, and the days below fall where
    // the comments say.
    let server = TestServer::start_with(|c| {
        c.route_health.outlook_window = Duration::from_secs(24 * 3600);
    })
    .await;
    let mut client = server.client().await;
    let now = now_ms();
    let day = 24 * HOUR;
    bulk(
        &mut client,
        vec![routed(
            event(
                "long-own",
                "patient",
                Channel::Sms,
                Status::Delivered,
                now - 20 * day,
            ),
            "long-own",
            "slow-fade",
            "promo",
        )],
    )
    .await;
    // Usual days 11 to 15 days ago (24 of 24 delivered; the oldest is
    // the baseline's first day), then nine days at half (2 to 10 days
    // ago), and the last 24 hours at half too. Over the whole fourteen
    // days the baseline would be 0.68 and the window only 0.18 below it:
    // no outlook, while the route is down.
    for k in 2..=15 {
        let delivered = if k >= 11 { 24 } else { 12 };
        bulk(
            &mut client,
            route_outcomes(
                "slow-fade",
                &format!("d{k}"),
                now - k * day,
                delivered,
                24 - delivered,
            ),
        )
        .await;
    }
    bulk(
        &mut client,
        route_outcomes("slow-fade", "today", now - 2 * HOUR, 12, 12),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reason = loop {
        let (_, reasons) = sms_reasons(&mut client, "patient", None).await;
        if let Some(r) = reasons
            .iter()
            .find(|r| r.contains("route sms/slow-fade/US"))
        {
            break r.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no route outlook: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        reason.contains(
            "delivered 0.50 over the last 24h (and the 9 days before) against 1.00 before: score x 0.50"
        ),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silence_on_a_route_that_loses_receipts_weighs_less_than_on_one_that_returns_them() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    let day = 24 * HOUR;
    // Two routes that return their receipts (3 silences per 7 explicit
    // failures) and one that loses most: 15 silences per explicit failure.
    for k in 2..=9 {
        for carrier in ["home-a", "home-b"] {
            let mix = [
                (Status::Delivered, 20),
                (Status::PendingRetry, 6),
                (Status::BouncedHard, 1),
                (Status::Unconfirmed, 3),
            ];
            let tag = format!("{carrier}{k}");
            bulk(&mut client, route_mix(carrier, &tag, now - k * day, &mix)).await;
        }
        let mix = [
            (Status::Delivered, 8),
            (Status::PendingRetry, 1),
            (Status::Unconfirmed, 15),
        ];
        let tag = format!("abroad{k}");
        bulk(&mut client, route_mix("abroad", &tag, now - k * day, &mix)).await;
    }
    // The same record on each: three deliveries and two silences, and on
    // the lossy route a contact with the deliveries alone.
    for (contact, carrier, silences) in [
        ("home", "home-a", 2),
        ("away", "abroad", 2),
        ("away-clean", "abroad", 0),
    ] {
        let statuses = [Status::Delivered; 3]
            .into_iter()
            .chain([Status::Unconfirmed; 2].into_iter().take(silences));
        let events = statuses
            .enumerate()
            .map(|(i, status)| {
                let id = format!("{contact}-{i}");
                let at = now - 30 * day + i as i64 * day;
                routed(
                    event(&id, contact, Channel::Sms, status, at),
                    &id,
                    carrier,
                    "promo",
                )
            })
            .collect();
        bulk(&mut client, events).await;
    }
    let lossy = "route sms/abroad/US returns";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (away, reasons) = loop {
        let (score, reasons) = sms_reasons(&mut client, "away", None).await;
        if reasons.iter().any(|r| r.contains(lossy)) {
            break (score, reasons);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "route not judged: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = reasons.iter().find(|r| r.contains(lossy)).unwrap();
    // 120 silences and 8 explicit failures against the usual 3 per 7.
    assert!(
        reason.contains("15.0 silences per explicit failure against 0.4 usual"),
        "{reason}"
    );
    let (home, home_reasons) = sms_reasons(&mut client, "home", None).await;
    assert!(
        !home_reasons.iter().any(|r| r.contains("returns")),
        "{home_reasons:?}"
    );
    let (clean, _) = sms_reasons(&mut client, "away-clean", None).await;
    // A silence says less where receipts get lost, but never that the
    // message was delivered.
    assert!(home < away && away < clean, "{home} {away} {clean}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_stats_group_and_filter_a_known_data_set() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let today = now_ms() - HOUR;
    let yesterday = today - 24 * HOUR;
    let ev = |id: &str, status: Status, at: i64, campaign: &str, sender: &str, carrier: &str| {
        let mut e = event(id, &format!("c-{id}"), Channel::Sms, status, at);
        e.campaign_id = campaign.into();
        e.sender_id = sender.into();
        e.carrier = carrier.into();
        e.campaign_type = "promo".into();
        e
    };
    let mut events = Vec::new();
    for i in 0..6 {
        events.push(ev(
            &format!("a-d{i}"),
            Status::Delivered,
            today,
            "spring",
            "longcode-1",
            "tmo",
        ));
    }
    for i in 0..2 {
        events.push(ev(
            &format!("a-h{i}"),
            Status::BouncedHard,
            today,
            "spring",
            "longcode-1",
            "tmo",
        ));
    }
    for i in 0..4 {
        events.push(ev(
            &format!("a-b{i}"),
            Status::BlockedCompliance,
            today,
            "spring",
            "longcode-2",
            "att",
        ));
    }
    for i in 0..3 {
        events.push(ev(
            &format!("b-d{i}"),
            Status::Delivered,
            yesterday,
            "summer",
            "longcode-1",
            "att",
        ));
    }
    events.push(ev(
        "b-e0",
        Status::SenderError,
        yesterday,
        "summer",
        "longcode-2",
        "att",
    ));
    let mut email = event("m0", "c-m0", Channel::Email, Status::Delivered, today);
    email.campaign_id = "spring".into();
    events.push(email);
    bulk(&mut client, events).await;

    let query = |group_by: Vec<Dimension>, filters: Vec<proto::DimensionFilter>| {
        proto::QueryDeliveryStatsRequest {
            from: Some(ts(yesterday)),
            to: Some(ts(today)),
            group_by: group_by.into_iter().map(|d| d as i32).collect(),
            filters,
        }
    };
    let sms_only = vec![proto::DimensionFilter {
        dimension: Dimension::Channel as i32,
        values: vec!["sms".into()],
    }];
    let rows = client
        .query_delivery_stats(query(
            vec![Dimension::CampaignId, Dimension::SenderId],
            sms_only.clone(),
        ))
        .await
        .unwrap()
        .into_inner()
        .rows;
    let summary: Vec<(String, String, i64, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            let c = r.counts.unwrap();
            (
                r.group[0].value.clone(),
                r.group[1].value.clone(),
                c.delivered,
                c.bounced_hard,
                c.blocked_compliance,
                c.sender_error,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("spring".into(), "longcode-1".into(), 6, 2, 0, 0),
            ("spring".into(), "longcode-2".into(), 0, 0, 4, 0),
            ("summer".into(), "longcode-1".into(), 3, 0, 0, 0),
            ("summer".into(), "longcode-2".into(), 0, 0, 0, 1),
        ],
        "compliance blocks and sender errors show up per sender and campaign"
    );
    assert_eq!(rows[0].delivery_rate, Some(0.75));
    assert_eq!(
        rows[1].attempts, 0,
        "compliance blocks are not attempts on the contact"
    );

    let by_day = client
        .query_delivery_stats(query(vec![Dimension::Day], vec![]))
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(by_day.len(), 2);
    assert_eq!(by_day[0].counts.unwrap().delivered, 3);
    assert_eq!(
        by_day[1].counts.unwrap().delivered,
        7,
        "6 SMS and 1 email today"
    );

    let att = vec![proto::DimensionFilter {
        dimension: Dimension::Carrier as i32,
        values: vec!["att".into()],
    }];
    let total = client
        .query_delivery_stats(query(vec![], att))
        .await
        .unwrap()
        .into_inner()
        .rows;
    let c = total[0].counts.unwrap();
    assert_eq!(
        (c.delivered, c.blocked_compliance, c.sender_error),
        (3, 4, 1)
    );

    let bad = client
        .query_delivery_stats(query(vec![Dimension::Unspecified], vec![]))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("group_by[0]"));
}

/// Three hard bounces in a campaign for each of `contacts`: per contact, a
/// fallback suggestion per bounce and one suppression.
async fn bounce_contacts(client: &mut Client, prefix: &str, contacts: usize) {
    let t = now_ms() - HOUR;
    for c in 0..contacts {
        for i in 0..3 {
            let mut e = event(
                &format!("{prefix}{c}-{i}"),
                &format!("{prefix}{c}"),
                Channel::Email,
                Status::BouncedHard,
                t + i,
            );
            e.campaign_id = "newsletter".into();
            record(client, e).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_resumes_without_gaps_or_repeats_also_across_a_restart() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    bounce_contacts(&mut client, "w", 2).await;
    // Per contact: 3 fallback suggestions and 1 suppression.
    let first = watch(&mut client, 0, &[], 8).await;
    let kinds = |actions: &[proto::Action], kind: ActionKind| {
        actions.iter().filter(|a| a.kind == kind as i32).count()
    };
    assert_eq!(kinds(&first, ActionKind::ContactChannelSuppressed), 2);
    assert_eq!(kinds(&first, ActionKind::FallbackSuggested), 6);
    let suppressed = first
        .iter()
        .find(|a| a.kind == ActionKind::ContactChannelSuppressed as i32)
        .unwrap();
    assert!(
        suppressed.reason.contains("verify the address"),
        "{}",
        suppressed.reason
    );
    let fallback = first
        .iter()
        .find(|a| a.kind == ActionKind::FallbackSuggested as i32)
        .unwrap();
    assert_eq!(
        fallback.suggested_channel,
        Channel::Sms as i32,
        "{}",
        fallback.reason
    );
    assert_eq!(fallback.campaign_id, "newsletter");

    // Read half, disconnect, more actions happen, resume from the last seen.
    let seen = &first[..5];
    bounce_contacts(&mut client, "x", 1).await;
    let rest = watch(&mut client, seen.last().unwrap().sequence, &[], 3 + 4).await;
    let mut all: Vec<u64> = seen.iter().chain(&rest).map(|a| a.sequence).collect();
    let expected: Vec<u64> = first
        .iter()
        .map(|a| a.sequence)
        .chain(rest[3..].iter().map(|a| a.sequence))
        .collect();
    assert_eq!(all, expected, "every action exactly once, in order");

    // Across a restart: the outbox is durable and sequences keep increasing.
    let last = *all.last().unwrap();
    drop(client);
    let server = server.restart().await;
    let mut client = server.client().await;
    let replay = watch(&mut client, 0, &[], all.len()).await;
    assert_eq!(replay.iter().map(|a| a.sequence).collect::<Vec<_>>(), all);
    bounce_contacts(&mut client, "y", 1).await;
    let after_restart = watch(&mut client, last, &[], 4).await;
    assert!(after_restart.iter().all(|a| a.sequence > last));
    all.extend(after_restart.iter().map(|a| a.sequence));
    let mut deduped = all.clone();
    deduped.dedup();
    assert_eq!(deduped, all);
    // A filtered watch only sees its kinds.
    let only = watch(&mut client, 0, &[ActionKind::ContactChannelSuppressed], 4).await;
    assert!(
        only.iter()
            .all(|a| a.kind == ActionKind::ContactChannelSuppressed as i32)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmapped_provider_code_is_one_action_also_when_redelivered() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let unmapped = |event_id: &str, code: &str| proto::ProviderEventRequest {
        provider: "twilio".into(),
        native: Some(proto::NativeFields {
            status: "undelivered".into(),
            error_code: code.into(),
            ..Default::default()
        }),
        contact_id: "c-unmapped".into(),
        event_id: event_id.into(),
        ..Default::default()
    };
    // The provider redelivers u1 (as webhooks are, on a timeout), then sends u2.
    for request in [
        unmapped("u1", "39998"),
        unmapped("u1", "39998"),
        unmapped("u2", "39997"),
    ] {
        let reply = client.record_provider_event(request).await.unwrap();
        assert!(reply.into_inner().results[0].dead_lettered);
    }
    let actions = watch(&mut client, 0, &[ActionKind::UnmappedProviderCode], 2).await;
    let seen: Vec<(&str, &str)> = actions
        .iter()
        .map(|a| (a.provider.as_str(), a.code.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("twilio", "undelivered/39998"),
            ("twilio", "undelivered/39997")
        ]
    );
}
