//! From a contact's profile to per-channel scores and a ranked best channel.
//!
//! score = (alpha + D) / (alpha + beta + D + F): the posterior mean of a Beta
//! prior updated with decayed deliveries D and weighted decayed failures F.
//! The full model is written up in `docs/scoring.md`.

use crate::domain::{
    Channel, ChannelState, ContactProfile, Millis, ScoringModel,
    address::{AddressId, AddressInfo, ResolvedAddress},
    decimals::Decimals,
    evidence::Evidence,
    profile::{AddressSlot, Route},
    route_outlook::Outlook,
    route_silence::{RouteSilence, RouteSilences},
    suppression::{Consent, FailureStreak, Suppression, suppression},
};

/// How reachable a contact is on one channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelAssessment {
    pub channel: Channel,
    /// Estimated delivery probability; 0 if the channel is not eligible.
    pub score: f64,
    /// `score` times the channel's ranking weight.
    pub weighted: f64,
    pub eligible: bool,
    pub confidence: f64,
    pub suppression: Option<Suppression>,
    pub opted_out: bool,
    pub consecutive_hard_fails: u32,
    pub consecutive_soft_fails: u32,
    pub engagement: f64,
    pub last_event: Option<Millis>,
    pub reasons: Vec<String>,
    /// The address to use: the best eligible one (or, if none is, the best
    /// of the ineligible). `None` when the channel has no known address.
    pub address: Option<ResolvedAddress>,
    /// Every known address of the channel, best first.
    pub addresses: Vec<AddressAssessment>,
    /// Why the channel cannot be used for reasons other than the contact's
    /// suppression: the address type, the sender, the send policy.
    pub restriction: Option<String>,
    /// The route of the chosen address's latest event that named one.
    pub last_route: Option<Route>,
    /// Set when the channel is in its quiet hours: when they end.
    pub quiet_until: Option<Millis>,
    /// Which quiet hours and whose local time, when they are on.
    pub quiet_reason: String,
}

/// How reachable one address of a channel is.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressAssessment {
    pub id: AddressId,
    pub info: AddressInfo,
    pub score: f64,
    pub eligible: bool,
    /// Why it is not eligible, or its evidence in short.
    pub reason: String,
}

impl ChannelAssessment {
    /// Makes the channel ineligible for a reason outside the contact's
    /// history (sender not cleared, policy), keeping the rest as evidence.
    pub fn restrict(&mut self, why: String) {
        if self.restriction.is_none() {
            self.restriction = Some(why.clone());
        }
        self.eligible = false;
        self.score = 0.0;
        self.weighted = 0.0;
        self.reasons.push(format!("not eligible: {why}"));
    }

    /// Why the channel is not eligible, in words.
    pub fn ineligible_reason(&self) -> String {
        if let Some(r) = &self.restriction {
            return r.clone();
        }
        match &self.suppression {
            Some(s) => s.to_string(),
            None => "no push permission on record".into(),
        }
    }
}

/// All four channels of one contact.
#[derive(Clone, Debug, PartialEq)]
pub struct Reachability {
    /// In [`Channel::ALL`] order.
    pub channels: Vec<ChannelAssessment>,
    /// Probability that at least one eligible channel reaches the contact.
    pub overall: f64,
}

/// The answer to "which channel?".
#[derive(Clone, Debug, PartialEq)]
pub struct BestChannel {
    pub channel: Option<Channel>,
    /// The address to use on it, if the channel has known addresses.
    pub address: Option<ResolvedAddress>,
    /// Not before this instant (quiet hours); `None`: now.
    pub send_after: Option<Millis>,
    /// The send policy applied.
    pub policy: String,
    pub ranked: Vec<ChannelAssessment>,
    pub reason: String,
}

/// Scores every channel of `profile` as seen at `now`, every silence a
/// full failure.
pub fn assess(profile: &ContactProfile, model: &ScoringModel, now: Millis) -> Reachability {
    assess_on(profile, model, now, &RouteSilences::default())
}

/// Scores every channel of `profile` as seen at `now`, silences on the
/// routes of `silences` weighing what those routes' receipts make them.
pub fn assess_on(
    profile: &ContactProfile,
    model: &ScoringModel,
    now: Millis,
    silences: &RouteSilences,
) -> Reachability {
    let channels: Vec<ChannelAssessment> = Channel::ALL
        .iter()
        .map(|&c| assess_addresses(c, profile, model, now, silences))
        .collect();
    Reachability {
        overall: overall(&channels),
        channels,
    }
}

/// Probability that at least one eligible channel reaches the contact.
fn overall(channels: &[ChannelAssessment]) -> f64 {
    let miss_all: f64 = channels
        .iter()
        .filter(|a| a.eligible)
        .map(|a| 1.0 - a.score)
        .product();
    1.0 - miss_all
}

/// A channel whose contact's route delivers clearly below its own baseline
/// (`outlooks[channel]`: the route's name and outlook) is less likely to
/// reach the contact now whatever the contact's own record says: its score
/// and weighted score are scaled by the outlook's factor, with the reason.
pub fn apply_route_outlook(reach: &mut Reachability, outlooks: &[Option<(String, Outlook)>; 4]) {
    let mut changed = false;
    for a in &mut reach.channels {
        if let Some((route, outlook)) = &outlooks[a.channel.index()] {
            a.score *= outlook.factor;
            a.weighted *= outlook.factor;
            a.reasons.push(outlook.reason(route));
            changed = true;
        }
    }
    if changed {
        reach.overall = overall(&reach.channels);
    }
}

/// Scores a channel as its best eligible address; a channel without known
/// addresses is scored from the events that named none.
fn assess_addresses(
    channel: Channel,
    profile: &ContactProfile,
    model: &ScoringModel,
    now: Millis,
    silences: &RouteSilences,
) -> ChannelAssessment {
    let slots: Vec<&AddressSlot> = profile.addresses_of(channel).collect();
    if slots.is_empty() {
        let state = profile.channel(channel);
        let silence = silences.of(channel, state.and_then(|s| s.last_route.as_ref()));
        return assess_channel(channel, state, None, None, model, now, silence);
    }
    let channel_wide = profile.channel_consent(channel);
    let mut candidates: Vec<ChannelAssessment> = slots
        .iter()
        .map(|slot| {
            let mut a = assess_channel(
                channel,
                Some(&slot.state),
                Some(&channel_wide),
                slot.info.refusal(channel),
                model,
                now,
                silences.of(channel, slot.state.last_route.as_ref()),
            );
            a.address = Some(ResolvedAddress {
                id: slot.id,
                info: slot.info.clone(),
            });
            a
        })
        .collect();
    // Best first: eligible, then score, then the most recently active, then
    // the id, so that the choice never depends on insertion order.
    candidates.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(b.score.total_cmp(&a.score))
            .then(b.last_event.cmp(&a.last_event))
            .then(address_id(a).cmp(&address_id(b)))
    });
    let summaries: Vec<AddressAssessment> = candidates
        .iter()
        .map(|a| {
            let address = a.address.clone().expect("address candidate");
            AddressAssessment {
                id: address.id,
                info: address.info,
                score: a.score,
                eligible: a.eligible,
                reason: if a.eligible {
                    a.reasons[0].clone()
                } else {
                    a.ineligible_reason()
                },
            }
        })
        .collect();
    let eligible = summaries.iter().filter(|s| s.eligible).count();
    let mut best = candidates.swap_remove(0);
    let hint = &summaries[0].info.hint;
    best.reasons.insert(
        0,
        if eligible > 0 {
            format!(
                "address {hint}: best of {} known address{} ({eligible} eligible)",
                summaries.len(),
                if summaries.len() == 1 { "" } else { "es" }
            )
        } else {
            format!(
                "none of {} known address{} is eligible",
                summaries.len(),
                if summaries.len() == 1 { "" } else { "es" }
            )
        },
    );
    best.addresses = summaries;
    best
}

fn address_id(a: &ChannelAssessment) -> Option<AddressId> {
    a.address.as_ref().map(|x| x.id)
}

/// Scores one channel state; `state` is `None` for a channel with no
/// history. An address's state also takes its channel's consent
/// (`channel_wide`) and can be refused outright by the address type.
/// `silence`: the state's route loses receipts (its name and how much of a
/// failure a silence is there).
pub fn assess_channel(
    channel: Channel,
    state: Option<&ChannelState>,
    channel_wide: Option<&Consent>,
    refusal: Option<String>,
    model: &ScoringModel,
    now: Millis,
    silence: Option<(&str, &RouteSilence)>,
) -> ChannelAssessment {
    let default_state = ChannelState::default();
    let state = state.unwrap_or(&default_state);
    let consent = match channel_wide {
        Some(wide) => state.consent.merged(wide),
        None => state.consent.clone(),
    };
    let prior = model.channel(channel);
    let ev = state.evidence.at(now, model.half_life_ms());
    let failures = model.hard_fail_weight * ev.hard_fails
        + model.soft_fail_weight * ev.soft_fails
        + model.unconfirmed_weight * silence.map_or(1.0, |(_, s)| s.share) * ev.unconfirmed;
    let amount = ev.delivered + failures;
    let still_in_use = prior.still_in_use(state.last_cleared, now);
    let from_evidence = prior.posterior(ev.delivered, failures);
    // An address known to have worked is never scored below one never
    // tried: the prior stands for an address of unknown age, churn
    // included. (Without the floor, a year-old delivery would lower the
    // score of a channel with no other history, and a delivery must never
    // lower a score.)
    let posterior = (still_in_use * from_evidence).max(from_evidence.min(prior.mean()));

    let (streak, suppressed) = suppression_with(state, &consent, model);
    let no_permission = channel == Channel::Push
        && model.push_requires_permission
        && consent.last_permission.is_none();
    let eligible = suppressed.is_none() && !no_permission && refusal.is_none();
    let score = if eligible { posterior } else { 0.0 };

    let mut reasons = Vec::new();
    reasons.push(evidence_reason(
        &ev,
        amount,
        failures,
        from_evidence,
        prior.mean(),
        model,
    ));
    if let Some(counts) = counts_reason(state) {
        reasons.push(counts);
    }
    if let Some((route, s)) = silence.filter(|_| ev.unconfirmed > 0.0) {
        reasons.push(s.reason(route));
    }
    if posterior < from_evidence * STALE_REASON_BELOW
        && let Some(last) = state.last_cleared
    {
        reasons.push(format!(
            "last known to work {} days ago: still in use with probability {} (churn {}% a year), score {}",
            (now.0 - last.0) / 86_400_000,
            Decimals::<2>(still_in_use),
            Decimals::<0>(prior.churn_per_year * 100.0),
            Decimals::<2>(posterior)
        ));
    }
    match (&suppressed, streak.hard.since) {
        (Some(s), _) => reasons.push(format!("suppressed: {s}")),
        (None, Some(since)) if streak.hard.count > 0 => reasons.push(format!(
            "{} consecutive hard bounce{} since {since} (suppression at {})",
            streak.hard.count,
            plural(streak.hard.count),
            model.suppress_after_hard_fails
        )),
        _ => {}
    }
    if suppressed.is_none() && streak.soft.count > 0 && model.soft_fails_per_hard_fail > 0 {
        reasons.push(format!(
            "{} soft failure{} in a row (every {} count as one hard bounce)",
            streak.soft.count,
            plural(streak.soft.count),
            model.soft_fails_per_hard_fail
        ));
    }
    if no_permission {
        reasons.push("no push permission on record (no opt-in, delivery or engagement)".into());
    }
    if let Some(why) = &refusal {
        reasons.push(format!("not eligible: {why}"));
    }
    let side = &state.sender_side;
    if side.blocked_compliance + side.sender_error > 0 {
        reasons.push(format!(
            "{} compliance block{} and {} sender error{} not counted against the contact",
            side.blocked_compliance,
            plural(side.blocked_compliance),
            side.sender_error,
            plural(side.sender_error)
        ));
    }

    let engagement_alpha = model.engagement_prior_mean * model.engagement_prior_strength;
    let engagement = (engagement_alpha + ev.engaged)
        / (model.engagement_prior_strength + ev.delivered.max(ev.engaged));

    ChannelAssessment {
        channel,
        score,
        weighted: score * prior.weight,
        eligible,
        confidence: amount / (amount + model.confidence_half_evidence),
        opted_out: consent.opted_out().is_some(),
        suppression: suppressed,
        consecutive_hard_fails: streak.hard.count,
        consecutive_soft_fails: streak.soft.count,
        engagement,
        last_event: state.last_event,
        reasons,
        address: None,
        addresses: Vec::new(),
        restriction: refusal,
        last_route: state.last_route.clone(),
        quiet_until: None,
        quiet_reason: String::new(),
    }
}

/// Staleness is explained once it takes more than 1.5% off the score
/// (about three weeks at 24% a year).
const STALE_REASON_BELOW: f64 = 0.985;

/// A channel's failure streak and the suppression in force, without the
/// rest of an assessment (what the write path checks on every event).
pub fn channel_suppression(
    state: &ChannelState,
    model: &ScoringModel,
) -> (FailureStreak, Option<Suppression>) {
    suppression_with(state, &state.consent, model)
}

/// As [`channel_suppression`], under `consent` (an address's own merged
/// with its channel's).
pub fn suppression_with(
    state: &ChannelState,
    consent: &Consent,
    model: &ScoringModel,
) -> (FailureStreak, Option<Suppression>) {
    let streak = FailureStreak::new(
        state.hard_fails.streak(state.last_cleared),
        state.soft_fails.streak(state.last_cleared),
        model.soft_fails_per_hard_fail,
    );
    let suppressed = suppression(
        consent,
        streak,
        model.suppress_after_hard_fails,
        model.soft_fails_per_hard_fail,
    );
    (streak, suppressed)
}

fn evidence_reason(
    ev: &Evidence,
    amount: f64,
    failures: f64,
    posterior: f64,
    prior_mean: f64,
    model: &ScoringModel,
) -> String {
    if amount == 0.0 {
        return format!("no history: prior {}", Decimals::<2>(prior_mean));
    }
    format!(
        "posterior {} from {} delivered vs {} failed (decayed, half-life {}) on prior {}",
        Decimals::<2>(posterior),
        Decimals::<2>(ev.delivered),
        Decimals::<2>(failures),
        DaysOrExact(model.half_life),
        Decimals::<2>(prior_mean)
    )
}

/// A duration as "60d" rather than humantime's "1month 29days 13h 26m
/// 24s" (it counts a month as 30.44 days), exact otherwise.
struct DaysOrExact(std::time::Duration);

impl std::fmt::Display for DaysOrExact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DAY: u64 = 24 * 3600;
        let d = self.0;
        if d.as_secs() >= DAY && d.as_secs().is_multiple_of(DAY) && d.subsec_nanos() == 0 {
            write!(f, "{}d", d.as_secs() / DAY)
        } else {
            write!(f, "{}", humantime::format_duration(d))
        }
    }
}

/// "events: 3 delivered, 1 hard bounced", written into one string (every
/// channel of every answer has one).
fn counts_reason(state: &ChannelState) -> Option<String> {
    let c = &state.counts;
    // Sized for the common three or four counts, and written with itoa: the
    // string growing and `write!`'s formatting machinery made this small
    // text 5% of a `GetBestChannel`'s server CPU.
    let mut text = String::with_capacity(96);
    let mut digits = itoa::Buffer::new();
    for (n, what) in [
        (c.delivered, "delivered"),
        (c.bounced_hard, "hard bounced"),
        (c.pending_retry, "soft failed"),
        (c.unconfirmed, "unconfirmed"),
        (c.sent, "sent without a final receipt counted"),
        (c.opened + c.clicked + c.replied, "engagement events"),
    ] {
        if n > 0 {
            text.push_str(if text.is_empty() { "events: " } else { ", " });
            text.push_str(digits.format(n));
            text.push(' ');
            text.push_str(what);
        }
    }
    (!text.is_empty()).then_some(text)
}

/// Why `best` was chosen over the other `eligible` channels by weight.
pub fn highest_weighted_reason(
    best: &ChannelAssessment,
    eligible: usize,
    model: &ScoringModel,
) -> String {
    format!(
        "{}: highest weighted score {} (score {}, weight {}) of {eligible} eligible channel{}",
        best.channel,
        Decimals::<3>(best.weighted),
        Decimals::<3>(best.score),
        Decimals::<2>(model.channel(best.channel).weight),
        plural(eligible as u32)
    )
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// For urgent traffic (OTP, fraud alerts): a channel whose contact's last
/// route is degraded (`degraded[channel]` says why) is likely to arrive too
/// late, so its weighted score is cut by `urgent_degraded_factor` and the
/// reason is given.
pub fn apply_urgency(
    reach: &mut Reachability,
    degraded: &[Option<String>; 4],
    model: &ScoringModel,
) {
    for a in &mut reach.channels {
        if let Some(why) = &degraded[a.channel.index()] {
            a.weighted *= model.urgent_degraded_factor;
            a.reasons.push(format!(
                "urgent: {why}; ranked at {} of its score",
                Decimals::<2>(model.urgent_degraded_factor)
            ));
        }
    }
}

/// Ranks the `allowed` channels (all if empty) and picks the best eligible one.
pub fn best_channel(reach: Reachability, allowed: &[Channel], model: &ScoringModel) -> BestChannel {
    let mut ranked: Vec<ChannelAssessment> = reach
        .channels
        .into_iter()
        .filter(|a| allowed.is_empty() || allowed.contains(&a.channel))
        .collect();
    ranked.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(b.weighted.total_cmp(&a.weighted))
            .then(
                model
                    .order_rank(a.channel)
                    .cmp(&model.order_rank(b.channel)),
            )
    });
    let eligible = ranked.iter().filter(|a| a.eligible).count();
    let Some(best) = ranked.first().filter(|a| a.eligible) else {
        let why: Vec<String> = ranked
            .iter()
            .map(|a| format!("{}: {}", a.channel, a.ineligible_reason()))
            .collect();
        return BestChannel {
            channel: None,
            address: None,
            send_after: None,
            policy: String::new(),
            reason: format!("no eligible channel: {}", why.join("; ")),
            ranked,
        };
    };
    let reason = highest_weighted_reason(best, eligible, model);
    BestChannel {
        channel: Some(best.channel),
        address: best.address.clone(),
        send_after: None,
        policy: String::new(),
        reason,
        ranked,
    }
}
