//! Property tests of the scoring model's invariants: bounded scores, arrival
//! order irrelevant, deliveries never lower and hard fails never raise a score.

use proptest::prelude::*;
use reach::domain::{
    Channel, ChannelEvent, ContactProfile, Millis, ScoringModel, Status,
    address::{AddressId, AddressInfo, ResolvedAddress},
    event::{EventAddress, EventMetadata},
    scoring::{assess, best_channel},
};

const DAY: i64 = 86_400_000;
const BASE: i64 = 1_790_000_000_000;
const NOW: Millis = Millis(BASE + 400 * DAY);

const STATUSES: [Status; 13] = [
    Status::Sent,
    Status::Delivered,
    Status::PendingRetry,
    Status::BouncedHard,
    Status::BlockedCompliance,
    Status::SenderError,
    Status::OptOut,
    Status::OptIn,
    Status::Complaint,
    Status::Unconfirmed,
    Status::Opened,
    Status::Clicked,
    Status::Replied,
];

fn event(channel: Channel, status: Status, at: i64) -> ChannelEvent {
    ChannelEvent {
        event_id: String::new(),
        contact_id: "c".into(),
        channel,
        status,
        occurred_at: Millis(at),
        sent_at: None,
        metadata: EventMetadata::default(),
        address: EventAddress::default(),
    }
}

/// Events name no address (0) or one of two addresses per channel.
fn addressed(mut e: ChannelEvent, address: u8) -> ChannelEvent {
    if address > 0 {
        e.address.resolved = Some(ResolvedAddress {
            id: AddressId([address; 16]),
            info: AddressInfo {
                hint: format!("address {address}"),
                ..AddressInfo::default()
            },
        });
    }
    e
}

/// Events over a year, with coarse times so that ties happen.
fn events() -> impl Strategy<Value = Vec<ChannelEvent>> {
    let one = (
        0usize..4,
        0usize..STATUSES.len(),
        0i64..365,
        0i64..3,
        0u8..3,
    )
        .prop_map(|(c, s, day, ms, address)| {
            addressed(
                event(Channel::ALL[c], STATUSES[s], BASE + day * DAY + ms),
                address,
            )
        });
    prop::collection::vec(one, 0..80)
}

fn profile_of(events: &[ChannelEvent], model: &ScoringModel) -> ContactProfile {
    let mut p = ContactProfile::default();
    for e in events {
        p.apply(e, model);
    }
    p
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn scores_stay_in_unit_interval(events in events()) {
        let model = ScoringModel::default();
        let reach = assess(&profile_of(&events, &model), &model, NOW);
        prop_assert!((0.0..=1.0).contains(&reach.overall));
        for a in &reach.channels {
            prop_assert!((0.0..=1.0).contains(&a.score), "{a:?}");
            prop_assert!((0.0..=1.0).contains(&a.confidence), "{a:?}");
            prop_assert!((0.0..=1.0).contains(&a.engagement), "{a:?}");
        }
    }

    #[test]
    fn arrival_order_does_not_matter(events in events(), seed in any::<u64>()) {
        let model = ScoringModel::default();
        let mut shuffled = events.clone();
        // Fisher-Yates with a seeded LCG: any permutation is reachable.
        let mut state = seed;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let (p1, p2) = (profile_of(&events, &model), profile_of(&shuffled, &model));
        let (r1, r2) = (assess(&p1, &model, NOW), assess(&p2, &model, NOW));
        prop_assert!(close(r1.overall, r2.overall));
        for (a, b) in r1.channels.iter().zip(&r2.channels) {
            prop_assert!(close(a.score, b.score) && close(a.confidence, b.confidence) && close(a.engagement, b.engagement));
            prop_assert_eq!(a.eligible, b.eligible);
            prop_assert_eq!(&a.suppression, &b.suppression);
            prop_assert_eq!(a.consecutive_hard_fails, b.consecutive_hard_fails);
            prop_assert_eq!(a.last_event, b.last_event);
            prop_assert_eq!(a.address.as_ref().map(|x| x.id), b.address.as_ref().map(|x| x.id));
        }
        for c in Channel::ALL {
            let (s1, s2) = (p1.channel(c), p2.channel(c));
            prop_assert_eq!(s1.map(|s| &s.counts), s2.map(|s| &s.counts));
            prop_assert_eq!(s1.map(|s| &s.hard_fails), s2.map(|s| &s.hard_fails));
            prop_assert_eq!(s1.map(|s| &s.consent), s2.map(|s| &s.consent));
            prop_assert_eq!(s1.map(|s| &s.sender_side), s2.map(|s| &s.sender_side));
        }
        let allowed = [];
        let (b1, b2) = (best_channel(r1, &allowed, &model), best_channel(r2, &allowed, &model));
        prop_assert_eq!(b1.channel, b2.channel);
    }

    #[test]
    fn delivery_never_lowers_and_hard_fail_never_raises(
        events in events(),
        c in 0usize..4,
        day in 0i64..365,
    ) {
        let model = ScoringModel::default();
        let channel = Channel::ALL[c];
        let before = profile_of(&events, &model);
        let score_of = |p: &ContactProfile| assess(p, &model, NOW).channels[c].score;

        let mut delivered = before.clone();
        delivered.apply(&event(channel, Status::Delivered, BASE + day * DAY), &model);
        prop_assert!(score_of(&delivered) >= score_of(&before) - 1e-12);

        let mut bounced = before.clone();
        bounced.apply(&event(channel, Status::BouncedHard, BASE + day * DAY), &model);
        prop_assert!(score_of(&bounced) <= score_of(&before) + 1e-12);
    }

    #[test]
    fn sender_side_events_change_nothing_the_contact_is_scored_on(events in events(), c in 0usize..4, day in 0i64..365) {
        let model = ScoringModel::default();
        let before = profile_of(&events, &model);
        let mut after = before.clone();
        after.apply(&event(Channel::ALL[c], Status::BlockedCompliance, BASE + day * DAY), &model);
        after.apply(&event(Channel::ALL[c], Status::SenderError, BASE + day * DAY), &model);
        let (r1, r2) = (assess(&before, &model, NOW), assess(&after, &model, NOW));
        prop_assert_eq!(r1.overall, r2.overall);
        for (a, b) in r1.channels.iter().zip(&r2.channels) {
            prop_assert_eq!(a.score, b.score);
            prop_assert_eq!(a.consecutive_hard_fails, b.consecutive_hard_fails);
        }
    }
}

/// The case proptest found when churn came in: one delivery long ago on a
/// channel with no other history must not score below the prior.
#[test]
fn an_old_delivery_does_not_lower_a_channel_with_no_other_history() {
    let model = ScoringModel::default();
    for (c, channel) in Channel::ALL.into_iter().enumerate() {
        let before = profile_of(&[], &model);
        let mut after = before.clone();
        after.apply(&event(channel, Status::Delivered, BASE), &model);
        let score_of = |p: &ContactProfile| assess(p, &model, NOW).channels[c].score;
        assert!(
            score_of(&after) >= score_of(&before) - 1e-12,
            "{channel}: {} < {}",
            score_of(&after),
            score_of(&before)
        );
    }
}
