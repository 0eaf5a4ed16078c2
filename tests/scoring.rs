//! The scoring rules, end to end through gRPC.

mod common;

use common::*;
use reach::proto::{Channel, Status};

const ALL: [Channel; 4] = [Channel::Sms, Channel::Email, Channel::Push, Channel::Voice];

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_contact_gets_priors_with_zero_confidence() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let r = reachability(&mut client, "nobody", None).await;
    assert_eq!(r.channels.len(), 4);
    for c in &r.channels {
        assert_eq!(c.confidence, 0.0);
        assert!(
            c.reasons[0].starts_with("no history: prior"),
            "{:?}",
            c.reasons
        );
    }
    // The default priors' means: working addresses (SMS 0.95, email 0.93,
    // voice 0.75) and a share that barely work (0.15): 6% for SMS, 10% for
    // email, 15% for voice.
    let near = |x: f64, want: f64| (x - want).abs() < 1e-9;
    assert!(near(channel_score(&r, Channel::Sms).score, 0.902));
    assert!(near(channel_score(&r, Channel::Email).score, 0.852));
    assert!(
        !channel_score(&r, Channel::Push).eligible,
        "no push permission on record"
    );
    let expected_overall = 1.0 - (1.0 - 0.902) * (1.0 - 0.852) * (1.0 - 0.66);
    assert!(near(r.overall_score, expected_overall));
    let b = best(&mut client, "nobody", &[]).await;
    assert_eq!(b.channel, Channel::Sms as i32);
    assert!(b.reason.contains("sms"), "{}", b.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_fails_suppress_at_the_threshold_and_a_delivery_resets() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t0 = now_ms() - 10 * DAY_MS;
    let bounce = |i: i64| {
        event(
            &format!("h{i}"),
            "erin",
            Channel::Email,
            Status::BouncedHard,
            t0 + i * DAY_MS,
        )
    };
    record(&mut client, bounce(0)).await;
    record(&mut client, bounce(1)).await;
    let email = channel_score(
        &reachability(&mut client, "erin", None).await,
        Channel::Email,
    );
    assert_eq!(email.consecutive_hard_fails, 2);
    assert!(email.eligible && !email.suppressed && email.score > 0.0);

    record(&mut client, bounce(2)).await;
    let email = channel_score(
        &reachability(&mut client, "erin", None).await,
        Channel::Email,
    );
    assert_eq!(email.consecutive_hard_fails, 3);
    assert!(email.suppressed && !email.eligible);
    assert_eq!(email.score, 0.0);
    let since = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(t0 as u64),
    );
    assert_eq!(
        email.suppression_reason,
        format!("3 consecutive hard bounces since {since}")
    );
    let b = best(&mut client, "erin", &[Channel::Email]).await;
    assert_eq!(b.channel, Channel::Unspecified as i32);
    assert!(
        b.reason.contains("3 consecutive hard bounces"),
        "{}",
        b.reason
    );

    // A delivery older than the bounces does not reset the streak...
    record(
        &mut client,
        event(
            "d-old",
            "erin",
            Channel::Email,
            Status::Delivered,
            t0 - DAY_MS,
        ),
    )
    .await;
    assert!(
        channel_score(
            &reachability(&mut client, "erin", None).await,
            Channel::Email
        )
        .suppressed
    );
    // ...a later one does.
    record(
        &mut client,
        event(
            "d-new",
            "erin",
            Channel::Email,
            Status::Delivered,
            t0 + 5 * DAY_MS,
        ),
    )
    .await;
    let email = channel_score(
        &reachability(&mut client, "erin", None).await,
        Channel::Email,
    );
    assert_eq!(email.consecutive_hard_fails, 0);
    assert!(email.eligible && email.score > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opt_in_also_clears_a_hard_fail_streak() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t0 = now_ms() - DAY_MS;
    for i in 0..3 {
        record(
            &mut client,
            event(
                &format!("h{i}"),
                "finn",
                Channel::Sms,
                Status::BouncedHard,
                t0 + i,
            ),
        )
        .await;
    }
    assert!(channel_score(&reachability(&mut client, "finn", None).await, Channel::Sms).suppressed);
    record(
        &mut client,
        event("in", "finn", Channel::Sms, Status::Optin, t0 + 10),
    )
    .await;
    assert!(channel_score(&reachability(&mut client, "finn", None).await, Channel::Sms).eligible);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_threshold_is_configurable() {
    let server = TestServer::start_with(|c| c.scoring.suppress_after_hard_fails = 5).await;
    let mut client = server.client().await;
    for i in 0..4 {
        record(
            &mut client,
            event(
                &format!("h{i}"),
                "gus",
                Channel::Voice,
                Status::BouncedHard,
                now_ms() - 100 + i,
            ),
        )
        .await;
    }
    let voice = channel_score(
        &reachability(&mut client, "gus", None).await,
        Channel::Voice,
    );
    assert_eq!(voice.consecutive_hard_fails, 4);
    assert!(voice.eligible);
    assert!(
        voice.reasons.iter().any(|r| r.contains("suppression at 5")),
        "{:?}",
        voice.reasons
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compliance_blocks_and_sender_errors_are_not_the_contacts_fault() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let before = channel_score(&reachability(&mut client, "hana", None).await, Channel::Sms);
    for i in 0..5 {
        record(
            &mut client,
            event(
                &format!("b{i}"),
                "hana",
                Channel::Sms,
                Status::BlockedCompliance,
                now_ms() - 1000 + i,
            ),
        )
        .await;
        record(
            &mut client,
            event(
                &format!("s{i}"),
                "hana",
                Channel::Sms,
                Status::SenderError,
                now_ms() - 1000 + i,
            ),
        )
        .await;
    }
    let after = channel_score(&reachability(&mut client, "hana", None).await, Channel::Sms);
    assert_eq!(after.score, before.score);
    assert_eq!(after.confidence, 0.0);
    assert_eq!(after.consecutive_hard_fails, 0);
    assert!(after.eligible && after.last_event_at.is_none());
    let p = profile(&mut client, "hana").await;
    assert_eq!(
        counts(&p, Channel::Sms),
        Default::default(),
        "no contact counter moved"
    );
    let sms = &p.channels[0];
    assert_eq!(
        (sms.blocked_compliance, sms.sender_errors),
        (5, 5),
        "kept on record for the sender"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opted_out_channel_is_never_recommended() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - DAY_MS;
    // SMS has the best history by far, then the contact opts out.
    for i in 0..20 {
        record(
            &mut client,
            event(
                &format!("d{i}"),
                "ivan",
                Channel::Sms,
                Status::Delivered,
                t + i,
            ),
        )
        .await;
    }
    record(
        &mut client,
        event("stop", "ivan", Channel::Sms, Status::Optout, t + 100),
    )
    .await;
    let b = best(&mut client, "ivan", &[]).await;
    assert_ne!(b.channel, Channel::Sms as i32);
    let sms = b
        .ranked
        .iter()
        .find(|c| c.channel == Channel::Sms as i32)
        .unwrap();
    assert!(sms.opted_out && sms.suppressed && !sms.eligible);
    assert_eq!(sms.score, 0.0);
    // Even when it is the only channel allowed.
    let only = best(&mut client, "ivan", &[Channel::Sms]).await;
    assert_eq!(only.channel, Channel::Unspecified as i32);
    assert!(only.reason.contains("opted out"), "{}", only.reason);
    // An opt-in earlier than the opt-out changes nothing; a later one does.
    record(
        &mut client,
        event("in-old", "ivan", Channel::Sms, Status::Optin, t + 50),
    )
    .await;
    assert_eq!(
        best(&mut client, "ivan", &[Channel::Sms]).await.channel,
        Channel::Unspecified as i32
    );
    record(
        &mut client,
        event("in-new", "ivan", Channel::Sms, Status::Optin, t + 200),
    )
    .await;
    assert_eq!(
        best(&mut client, "ivan", &[Channel::Sms]).await.channel,
        Channel::Sms as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complaint_suppresses_the_channel() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    record(
        &mut client,
        event(
            "spam",
            "jo",
            Channel::Email,
            Status::Complaint,
            now_ms() - 1000,
        ),
    )
    .await;
    let email = channel_score(&reachability(&mut client, "jo", None).await, Channel::Email);
    assert!(email.suppressed && !email.eligible);
    assert!(
        email.suppression_reason.starts_with("spam complaint at"),
        "{}",
        email.suppression_reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sent_is_not_delivered_and_silence_is_a_failure() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let prior = channel_score(&reachability(&mut client, "kim", None).await, Channel::Sms).score;
    for i in 0..10 {
        record(
            &mut client,
            event(
                &format!("s{i}"),
                "kim",
                Channel::Sms,
                Status::Sent,
                now_ms() - 1000 + i,
            ),
        )
        .await;
    }
    let sms = channel_score(&reachability(&mut client, "kim", None).await, Channel::Sms);
    assert_eq!(sms.score, prior, "SENT never raises the score");
    assert_eq!(sms.confidence, 0.0, "SENT is no evidence");
    assert_eq!(
        counts(&profile(&mut client, "kim").await, Channel::Sms).sent,
        10
    );

    record(
        &mut client,
        event(
            "u1",
            "kim",
            Channel::Sms,
            Status::Unconfirmed,
            now_ms() - 500,
        ),
    )
    .await;
    let sms = channel_score(&reachability(&mut client, "kim", None).await, Channel::Sms);
    assert!(
        sms.score < prior,
        "UNCONFIRMED is not delivered: {} vs {prior}",
        sms.score
    );
    let p = profile(&mut client, "kim").await;
    assert_eq!(counts(&p, Channel::Sms).delivered, 0);
    assert_eq!(counts(&p, Channel::Sms).unconfirmed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn silence_weighs_as_a_soft_failure_and_both_far_less_than_a_hard_bounce() {
    // One Beta prior (no bad-address share), so that the posterior is the
    // closed form below.
    let server = TestServer::start_with(|c| {
        c.scoring.email.prior_mean = 0.86;
        c.scoring.email.prior_strength = 2.0;
        c.scoring.email.bad_share = 0.0;
    })
    .await;
    let mut client = server.client().await;
    let t = now_ms() - 1000;
    let kinds = [
        ("soft", Status::PendingRetry),
        ("silent", Status::Unconfirmed),
        ("hard", Status::BouncedHard),
    ];
    for (contact, status) in kinds {
        record(&mut client, event("x", contact, Channel::Email, status, t)).await;
    }
    let score = |r: &reach::proto::GetReachabilityResponse| channel_score(r, Channel::Email).score;
    let soft = score(&reachability(&mut client, "soft", Some(t)).await);
    let silent = score(&reachability(&mut client, "silent", Some(t)).await);
    let hard = score(&reachability(&mut client, "hard", Some(t)).await);
    assert!(silent == soft && soft > hard, "{soft} {silent} {hard}");
    // The posterior: prior 0.86 x 2, the default weights 1 / 1 / 48 (a
    // route without others to compare it with returns its receipts).
    assert!((soft - 1.72 / 3.0).abs() < 1e-12);
    assert!((silent - 1.72 / 3.0).abs() < 1e-12);
    assert!((hard - 1.72 / 50.0).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread")]
async fn engagement_is_tracked_apart_from_delivery() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - 10_000;
    for i in 0..4 {
        record(
            &mut client,
            event(
                &format!("d{i}"),
                "lee",
                Channel::Email,
                Status::Delivered,
                t + i,
            ),
        )
        .await;
        record(
            &mut client,
            event(
                &format!("d{i}"),
                "max",
                Channel::Email,
                Status::Delivered,
                t + i,
            ),
        )
        .await;
    }
    for i in 0..3 {
        record(
            &mut client,
            event(
                &format!("o{i}"),
                "lee",
                Channel::Email,
                Status::Opened,
                t + 10 + i,
            ),
        )
        .await;
    }
    let lee = channel_score(
        &reachability(&mut client, "lee", Some(t + 100)).await,
        Channel::Email,
    );
    let max = channel_score(
        &reachability(&mut client, "max", Some(t + 100)).await,
        Channel::Email,
    );
    // Opens are not extra delivery evidence. (They do show the address
    // worked 9 ms later than max's last delivery, which churn weighs at
    // about 1e-10.)
    assert!(
        (lee.score - max.score).abs() < 1e-9,
        "opens are not extra delivery evidence: {} vs {}",
        lee.score,
        max.score
    );
    assert!(lee.engagement_score > max.engagement_score);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_eligibility_follows_permission_events() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - 10_000;
    let push = |r: &reach::proto::GetReachabilityResponse| channel_score(r, Channel::Push);
    assert!(!push(&reachability(&mut client, "mo", None).await).eligible);
    record(
        &mut client,
        event("grant", "mo", Channel::Push, Status::Optin, t),
    )
    .await;
    assert!(push(&reachability(&mut client, "mo", None).await).eligible);
    record(
        &mut client,
        event("revoke", "mo", Channel::Push, Status::Optout, t + 1),
    )
    .await;
    let p = push(&reachability(&mut client, "mo", None).await);
    assert!(!p.eligible && p.opted_out);
    // A delivery does not override a revoked permission; only a new grant does.
    record(
        &mut client,
        event("late", "mo", Channel::Push, Status::Delivered, t + 2),
    )
    .await;
    assert!(!push(&reachability(&mut client, "mo", None).await).eligible);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_answer_does_not_depend_on_arrival_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - 90 * DAY_MS;
    let statuses = [
        Status::Delivered,
        Status::BouncedHard,
        Status::PendingRetry,
        Status::Unconfirmed,
        Status::Opened,
        Status::Sent,
        Status::BouncedHard,
        Status::Delivered,
        Status::Optout,
        Status::Optin,
        Status::BouncedHard,
        Status::BouncedHard,
        Status::Clicked,
        Status::BlockedCompliance,
        Status::Complaint,
    ];
    let events: Vec<_> = statuses
        .iter()
        .enumerate()
        .flat_map(|(i, &s)| {
            ALL.iter().map(move |&c| {
                (
                    format!("e{i}-{}", c as i32),
                    c,
                    s,
                    t + (i as i64 % 7) * 3 * DAY_MS,
                )
            })
        })
        .collect();
    for (id, c, s, at) in &events {
        record(&mut client, event(id, "forward", *c, *s, *at)).await;
    }
    // Reverse order, and every event redelivered once on the way.
    for (id, c, s, at) in events.iter().rev() {
        record(&mut client, event(id, "backward", *c, *s, *at)).await;
        assert!(record(&mut client, event(id, "backward", *c, *s, *at)).await);
    }
    let as_of = now_ms();
    let (a, b) = (
        reachability(&mut client, "forward", Some(as_of)).await,
        reachability(&mut client, "backward", Some(as_of)).await,
    );
    assert!((a.overall_score - b.overall_score).abs() < 1e-9);
    for (x, y) in a.channels.iter().zip(&b.channels) {
        assert!((x.score - y.score).abs() < 1e-9);
        assert!((x.confidence - y.confidence).abs() < 1e-9);
        assert!((x.engagement_score - y.engagement_score).abs() < 1e-9);
        assert_eq!(
            (x.eligible, x.suppressed, x.consecutive_hard_fails),
            (y.eligible, y.suppressed, y.consecutive_hard_fails)
        );
        assert_eq!(x.suppression_reason, y.suppression_reason);
    }
    let (pa, pb) = (
        profile(&mut client, "forward").await,
        profile(&mut client, "backward").await,
    );
    for (x, y) in pa.channels.iter().zip(&pb.channels) {
        assert_eq!(x.counts, y.counts);
        assert!((x.decayed_delivered - y.decayed_delivered).abs() < 1e-9);
        assert!((x.decayed_hard_fails - y.decayed_hard_fails).abs() < 1e-9);
        assert_eq!(x.recent_hard_fails, y.recent_hard_fails);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn old_evidence_fades_with_the_half_life() {
    let server =
        TestServer::start_with(|c| c.scoring.half_life = std::time::Duration::from_secs(86_400))
            .await;
    let mut client = server.client().await;
    let t = now_ms() - 20 * DAY_MS;
    record(
        &mut client,
        event("h", "nia", Channel::Sms, Status::BouncedHard, t),
    )
    .await;
    let fresh = channel_score(
        &reachability(&mut client, "nia", Some(t)).await,
        Channel::Sms,
    );
    let faded = channel_score(
        &reachability(&mut client, "nia", Some(t + 20 * DAY_MS)).await,
        Channel::Sms,
    );
    assert!(
        fresh.score < 0.7 && (faded.score - 0.902).abs() < 0.01,
        "{} {}",
        fresh.score,
        faded.score
    );
    assert!(faded.confidence < fresh.confidence / 100.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_not_heard_from_goes_stale_at_its_channels_churn() {
    // Evidence that barely fades, so that churn is what moves the score;
    // one Beta prior of mean 0.5, so that the floor (the prior's mean) is
    // far below a working address's score.
    let server = TestServer::start_with(|c| {
        c.scoring.half_life = std::time::Duration::from_secs(100 * 365 * 86_400);
        c.scoring.sms.churn_per_year = 0.24;
        c.scoring.sms.bad_share = 0.0;
        c.scoring.sms.prior_mean = 0.5;
        c.scoring.sms.prior_strength = 2.0;
    })
    .await;
    let mut client = server.client().await;
    let t = now_ms() - 1200 * DAY_MS;
    for i in 0..3 {
        record(
            &mut client,
            event(
                &format!("d{i}"),
                "ola",
                Channel::Sms,
                Status::Delivered,
                t + i,
            ),
        )
        .await;
    }
    let at = |days: i64| t + 2 + days * DAY_MS;
    let fresh = reachability(&mut client, "ola", Some(at(0))).await;
    let year = reachability(&mut client, "ola", Some(at(365))).await;
    let (fresh, year) = (
        channel_score(&fresh, Channel::Sms),
        channel_score(&year, Channel::Sms),
    );
    assert!(
        // (The evidence fades by 0.7% over the year: 1e-4 on the score.)
        (year.score - 0.76 * fresh.score).abs() < 1e-3,
        "{} {}",
        year.score,
        fresh.score
    );
    assert!(
        year.reasons.iter().any(|r| r
            .starts_with("last known to work 365 days ago: still in use with probability 0.76")),
        "{:?}",
        year.reasons
    );
    assert!(
        !fresh
            .reasons
            .iter()
            .any(|r| r.contains("last known to work")),
        "{:?}",
        fresh.reasons
    );
    // Never below an address never tried: three years would take 56%
    // (0.8 x 0.44 = 0.35); the prior's mean is 0.5.
    let old = channel_score(
        &reachability(&mut client, "ola", Some(at(3 * 365))).await,
        Channel::Sms,
    );
    assert!((old.score - 0.5).abs() < 1e-9, "{}", old.score);
    // A failure is not news that the address works: the clock runs on.
    record(
        &mut client,
        event("s", "ola", Channel::Sms, Status::PendingRetry, at(300)),
    )
    .await;
    let after_failure = channel_score(
        &reachability(&mut client, "ola", Some(at(365))).await,
        Channel::Sms,
    );
    assert!(after_failure.score < year.score);
    // A delivery is: the address works again as of then.
    record(
        &mut client,
        event("d3", "ola", Channel::Sms, Status::Delivered, at(364)),
    )
    .await;
    let heard = channel_score(
        &reachability(&mut client, "ola", Some(at(365))).await,
        Channel::Sms,
    );
    assert!(
        heard.score > after_failure.score + 0.1
            && !heard
                .reasons
                .iter()
                .any(|r| r.contains("last known to work")),
        "{} {:?}",
        heard.score,
        heard.reasons
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ranking_uses_channel_weights_then_the_configured_order() {
    let server = TestServer::start_with(|c| {
        c.scoring.sms.weight = 0.5;
        for m in [&mut c.scoring.email, &mut c.scoring.voice] {
            m.prior_mean = 0.9;
            m.bad_share = 0.0;
        }
        c.scoring.channel_order = vec![
            reach::domain::Channel::Voice,
            reach::domain::Channel::Email,
            reach::domain::Channel::Sms,
            reach::domain::Channel::Push,
        ];
    })
    .await;
    let mut client = server.client().await;
    let b = best(&mut client, "ola", &[]).await;
    // email and voice tie at 0.9; voice comes first in the configured order.
    let order: Vec<i32> = b.ranked.iter().map(|c| c.channel).collect();
    assert_eq!(
        order,
        vec![
            Channel::Voice as i32,
            Channel::Email as i32,
            Channel::Sms as i32,
            Channel::Push as i32
        ]
    );
    // SMS: the default prior's mean 0.902, weighted 0.5.
    assert!((b.ranked[2].weighted_score - 0.451).abs() < 1e-9);
    let only = best(&mut client, "ola", &[Channel::Email, Channel::Sms]).await;
    assert_eq!(only.channel, Channel::Email as i32);
    assert_eq!(only.ranked.len(), 2);
}
