//! A simulated population with hidden ground truth. Each contact's history
//! is generated from its own seeded generator, so contact `i` of a scenario
//! is the same whatever the population size or the order it is asked for.
//!
//! What the world does (and what reach only sees through events):
//! - every channel a contact has carries a true delivery probability;
//! - a channel can die mid-period (number ported or disconnected, mailbox
//!   abandoned, push token expired): its probability falls to near zero and
//!   failures turn into hard bounces;
//! - contacts opt out; senders honour it and send no more on that channel;
//! - one SMS carrier has a degradation episode;
//! - some contacts sit behind international routes that drop most receipts
//!   (delivered, but the sender sees silence: UNCONFIRMED);
//! - one campaign goes out from an unregistered sender and is partly blocked
//!   (BLOCKED_COMPLIANCE: the sender's fault, not the contact's);
//! - email opens happen on a share of deliveries, apart from delivery.

use fastrand::Rng;

use crate::domain::{Channel, Millis, Status};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// The knobs of a scenario; `Scenario::default()` is the documented one.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub contacts: u64,
    pub seed: u64,
    /// The simulated period ends here (must be in the past for the API).
    pub end: Millis,
    pub days: i64,
    /// Mean messages per contact over the period.
    pub messages_per_contact: f64,
    pub effects: Effects,
}

/// The world's effects, each of which can be switched off to measure what
/// it costs the model. Switching one off draws the same random numbers, so
/// the populations compared are otherwise identical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effects {
    /// Channels that die mid-period.
    pub deaths: bool,
    /// The carrier degradation episode.
    pub degradation: bool,
    /// International routes that drop receipts.
    pub lost_receipts: bool,
    /// The campaign from an unregistered sender.
    pub compliance: bool,
    /// The international route shows under its own name in the events (as
    /// in a real sender's receipts, which name the destination network);
    /// without it, its contacts' SMS carry their domestic carrier's name.
    pub named_routes: bool,
}

impl Default for Effects {
    fn default() -> Self {
        Effects {
            deaths: true,
            degradation: true,
            lost_receipts: true,
            compliance: true,
            named_routes: true,
        }
    }
}

impl Effects {
    /// Switches off the named effects (`deaths`, `degradation`,
    /// `lost-receipts`, `compliance`, `named-routes`).
    pub fn without(mut self, names: &[String]) -> Result<Self, String> {
        for name in names {
            match name.as_str() {
                "deaths" => self.deaths = false,
                "degradation" => self.degradation = false,
                "lost-receipts" => self.lost_receipts = false,
                "compliance" => self.compliance = false,
                "named-routes" => self.named_routes = false,
                other => return Err(format!("unknown effect {other:?}")),
            }
        }
        Ok(self)
    }
}

impl Scenario {
    pub fn new(contacts: u64, seed: u64, end: Millis) -> Self {
        Scenario {
            contacts,
            seed,
            end,
            days: 120,
            messages_per_contact: 12.0,
            effects: Effects::default(),
        }
    }

    pub fn start(&self) -> Millis {
        Millis(self.end.0 - self.days * DAY)
    }
}

/// One channel of a contact as the world has it.
#[derive(Clone, Debug)]
pub struct TrueChannel {
    pub channel: Channel,
    /// Delivery probability while alive.
    pub p: f64,
    /// When the address dies (ported, abandoned, expired), if it does.
    pub dies_at: Option<Millis>,
    /// When the contact opts out, if it does.
    pub opts_out_at: Option<Millis>,
}

/// A message the sender decides to send, and what truly happened.
#[derive(Clone, Debug)]
pub struct Message {
    pub id: String,
    pub channel: Channel,
    pub at: Millis,
    /// The hidden truth: did it reach the contact?
    pub delivered: bool,
    /// The carrier blocked it for the sender's registration: no outcome
    /// about the contact.
    pub blocked: bool,
}

/// An event as a provider reports it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub at: Millis,
    pub channel: Channel,
    pub status: Status,
    pub message_id: String,
    pub sent_at: Option<Millis>,
    pub carrier: &'static str,
    pub campaign_id: &'static str,
    pub sender_id: &'static str,
}

/// Everything about one simulated contact.
#[derive(Clone, Debug)]
pub struct SimContact {
    pub id: String,
    pub channels: Vec<TrueChannel>,
    pub carrier: &'static str,
    pub international: bool,
    pub messages: Vec<Message>,
    /// Every event the sender sees, in time order.
    pub events: Vec<Observed>,
}

impl SimContact {
    pub fn truth(&self, channel: Channel) -> Option<&TrueChannel> {
        self.channels.iter().find(|c| c.channel == channel)
    }

    /// The true delivery probability of `channel` at `at` (0 if the contact
    /// has no such channel); degradation episodes included.
    pub fn true_p(&self, channel: Channel, at: Millis, scenario: &Scenario) -> f64 {
        let Some(c) = self.truth(channel) else {
            return 0.0;
        };
        let p = if c.dies_at.is_some_and(|d| at >= d) {
            DEAD_P
        } else {
            c.p
        };
        p * self.route_factor(channel, at, scenario)
    }

    /// The factor a degradation episode puts on `channel`'s delivery
    /// probability at `at` (1 outside episodes).
    pub fn route_factor(&self, channel: Channel, at: Millis, scenario: &Scenario) -> f64 {
        if channel == Channel::Sms
            && self.route(channel, scenario) == DEGRADED_CARRIER
            && scenario.effects.degradation
            && degraded(at, scenario)
        {
            DEGRADED_FACTOR
        } else {
            1.0
        }
    }

    /// The route `channel`'s messages take, as the events name it: the
    /// international gateway for the SMS of a contact abroad (when routes
    /// are named), the contact's carrier otherwise.
    pub fn route(&self, channel: Channel, scenario: &Scenario) -> &'static str {
        if channel == Channel::Sms && self.international && scenario.effects.named_routes {
            INTERNATIONAL_ROUTE
        } else {
            self.carrier
        }
    }

    /// Whether the contact has opted out of `channel` by `at`.
    pub fn opted_out(&self, channel: Channel, at: Millis) -> bool {
        self.truth(channel)
            .and_then(|c| c.opts_out_at)
            .is_some_and(|o| o <= at)
    }
}

/// How a channel's addresses are drawn. Public, with the constants below,
/// for the Bayes reference of `reach eval` (src/sim/bayes.rs), which knows
/// how the world works but not each contact's draw.
#[derive(Clone, Copy, Debug)]
pub struct ChannelWorld {
    /// Mean delivery probability of a working address.
    pub good_mean: f64,
    /// Share of addresses that barely work (around `BAD_MEAN`).
    pub bad_share: f64,
    /// Chance that the address dies at a uniformly random moment of the period.
    pub death_chance: f64,
}

pub fn world(channel: Channel) -> ChannelWorld {
    let (good_mean, bad_share, death_chance) = match channel {
        Channel::Sms => (0.95, 0.06, 0.08),
        Channel::Voice => (0.75, 0.10, 0.08),
        Channel::Email => (0.93, 0.08, 0.10),
        Channel::Push => (0.85, 0.10, 0.15),
    };
    ChannelWorld {
        good_mean,
        bad_share,
        death_chance,
    }
}

/// Spread of a working address's probability around its channel's mean.
pub const GOOD_SPREAD: f64 = 0.06;
pub const BAD_MEAN: f64 = 0.15;
pub const BAD_SPREAD: f64 = 0.12;
/// Delivery probability of a dead address.
pub const DEAD_P: f64 = 0.02;
/// Share of a dead address's failures that are hard bounces.
pub const DEAD_HARD_SHARE: f64 = 0.9;
/// Share of the other failures reported as PENDING_RETRY (the rest: UNCONFIRMED).
pub const SOFT_SHARE: f64 = 0.7;
/// Share of contacts behind an international SMS route.
pub const INTERNATIONAL_SHARE: f64 = 0.04;
/// The international SMS route's name in the events (with `named_routes`).
pub const INTERNATIONAL_ROUTE: &str = "intl-gateway";
/// Share of receipts an international SMS route drops.
pub const LOST_RECEIPT_SHARE: f64 = 0.6;
const DEGRADED_CARRIER: &str = "carrier-b";
const DEGRADED_FACTOR: f64 = 0.6;
const CARRIERS: [&str; 3] = ["carrier-a", "carrier-b", "carrier-c"];
const BLOCKED_CAMPAIGN: &str = "promo-unregistered";

fn degraded(at: Millis, s: &Scenario) -> bool {
    let day = (at.0 - s.start().0) / DAY;
    (60..70).contains(&day)
}

fn blocked_window(at: Millis, s: &Scenario) -> bool {
    let day = (at.0 - s.start().0) / DAY;
    (30..40).contains(&day)
}

/// A probability drawn around `mean` (Beta-like, by averaging uniforms).
pub fn around(rng: &mut Rng, mean: f64, spread: f64) -> f64 {
    let u = (rng.f64() + rng.f64() + rng.f64()) / 3.0 - 0.5;
    (mean + u * 2.0 * spread).clamp(0.01, 0.995)
}

fn maybe_time(rng: &mut Rng, chance: f64, s: &Scenario) -> Option<Millis> {
    (rng.f64() < chance).then(|| Millis(s.start().0 + rng.i64(0..s.days * DAY)))
}

/// Receipt window after which silence is reported as UNCONFIRMED.
fn window(channel: Channel) -> i64 {
    match channel {
        Channel::Sms => 72 * HOUR,
        Channel::Email | Channel::Push => 24 * HOUR,
        Channel::Voice => 2 * HOUR,
    }
}

/// Contact `i` of the scenario.
pub fn contact(s: &Scenario, i: u64) -> SimContact {
    let mut rng = Rng::with_seed(s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i);
    let mut channels = Vec::new();
    let has_phone = rng.f64() < 0.95;
    let mut add = |rng: &mut Rng, channel: Channel| {
        let w = world(channel);
        let p = if rng.f64() < w.bad_share {
            around(rng, BAD_MEAN, BAD_SPREAD)
        } else {
            around(rng, w.good_mean, GOOD_SPREAD)
        };
        channels.push(TrueChannel {
            channel,
            p,
            dies_at: maybe_time(rng, w.death_chance, s).filter(|_| s.effects.deaths),
            opts_out_at: maybe_time(rng, 0.03, s),
        });
    };
    if has_phone {
        add(&mut rng, Channel::Sms);
        add(&mut rng, Channel::Voice);
    }
    if rng.f64() < 0.90 {
        add(&mut rng, Channel::Email);
    }
    if rng.f64() < 0.40 {
        add(&mut rng, Channel::Push);
    }
    let carrier = CARRIERS[rng.usize(0..CARRIERS.len())];
    let international = rng.f64() < INTERNATIONAL_SHARE;
    let mut c = SimContact {
        id: format!("sim-{i:08}"),
        channels,
        carrier,
        international,
        messages: Vec::new(),
        events: Vec::new(),
    };
    simulate(&mut c, &mut rng, s);
    c
}

/// Sends the contact's messages and records what the sender would see.
fn simulate(c: &mut SimContact, rng: &mut Rng, s: &Scenario) {
    // Push needs a registered token: an opt-in when the app is installed.
    if c.truth(Channel::Push).is_some() {
        c.events.push(observed(
            s.start(),
            Channel::Push,
            Status::OptIn,
            String::new(),
            None,
            c.carrier,
            "",
        ));
    }
    for ch in c.channels.clone() {
        if let Some(at) = ch.opts_out_at {
            c.events.push(observed(
                at,
                ch.channel,
                Status::OptOut,
                String::new(),
                None,
                c.carrier,
                "",
            ));
        }
    }
    let n = poisson(rng, s.messages_per_contact);
    let mut times: Vec<i64> = (0..n).map(|_| rng.i64(0..s.days * DAY)).collect();
    times.sort_unstable();
    for (k, offset) in times.into_iter().enumerate() {
        let at = Millis(s.start().0 + offset);
        // The sender's channel mix, among the channels it may still use.
        let usable: Vec<Channel> = c
            .channels
            .iter()
            .map(|t| t.channel)
            .filter(|&ch| !c.opted_out(ch, at))
            .collect();
        if usable.is_empty() {
            continue;
        }
        let channel = pick_channel(rng, &usable);
        let id = format!("{}-m{k}", c.id);
        let p = c.true_p(channel, at, s);
        let blocked = channel == Channel::Sms
            && blocked_window(at, s)
            && rng.f64() < 0.25
            && s.effects.compliance;
        let delivered = !blocked && rng.f64() < p;
        let campaign = if channel == Channel::Sms && blocked_window(at, s) {
            BLOCKED_CAMPAIGN
        } else {
            "regular"
        };
        let dead = c
            .truth(channel)
            .and_then(|t| t.dies_at)
            .is_some_and(|d| at >= d);
        let (status, after) = if blocked {
            (Status::BlockedCompliance, rng.i64(1_000..30_000))
        } else if delivered {
            let receipt_lost = channel == Channel::Sms
                && c.international
                && rng.f64() < LOST_RECEIPT_SHARE
                && s.effects.lost_receipts;
            if receipt_lost {
                (Status::Unconfirmed, window(channel))
            } else {
                (Status::Delivered, rng.i64(2_000..90_000))
            }
        } else if dead && rng.f64() < DEAD_HARD_SHARE {
            (Status::BouncedHard, rng.i64(2_000..60_000))
        } else if rng.f64() < SOFT_SHARE {
            (Status::PendingRetry, rng.i64(2_000..60_000))
        } else {
            (Status::Unconfirmed, window(channel))
        };
        let outcome_at = Millis(at.0 + after);
        if outcome_at < s.end {
            let mut e = observed(
                outcome_at,
                channel,
                status,
                id.clone(),
                Some(at),
                c.route(channel, s),
                campaign,
            );
            e.sender_id = if campaign == BLOCKED_CAMPAIGN {
                "+15550199"
            } else {
                "+15550100"
            };
            c.events.push(e);
            if delivered && channel == Channel::Email && rng.f64() < 0.3 {
                let opened_at = Millis(outcome_at.0 + rng.i64(60_000..6 * HOUR));
                if opened_at < s.end {
                    c.events.push(observed(
                        opened_at,
                        channel,
                        Status::Opened,
                        id.clone(),
                        Some(at),
                        c.route(channel, s),
                        campaign,
                    ));
                }
            }
        }
        c.messages.push(Message {
            id,
            channel,
            at,
            delivered,
            blocked,
        });
    }
    c.events.sort_by_key(|e| e.at);
}

fn observed(
    at: Millis,
    channel: Channel,
    status: Status,
    message_id: String,
    sent_at: Option<Millis>,
    carrier: &'static str,
    campaign_id: &'static str,
) -> Observed {
    Observed {
        at,
        channel,
        status,
        message_id,
        sent_at,
        carrier,
        campaign_id,
        sender_id: "",
    }
}

fn pick_channel(rng: &mut Rng, usable: &[Channel]) -> Channel {
    let weight = |c: &Channel| match c {
        Channel::Sms => 45,
        Channel::Email => 40,
        Channel::Push => 10,
        Channel::Voice => 5,
    };
    let total: u32 = usable.iter().map(weight).sum();
    let mut roll = rng.u32(0..total);
    for c in usable {
        if roll < weight(c) {
            return *c;
        }
        roll -= weight(c);
    }
    usable[0]
}

fn poisson(rng: &mut Rng, mean: f64) -> usize {
    // Knuth's method; means here are small.
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p = rng.f64();
    while p > limit {
        k += 1;
        p *= rng.f64();
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_an_effect_off_changes_only_that_effect() {
        let s = Scenario::new(1000, 7, Millis(1_790_000_000_000));
        let mut calm = s.clone();
        calm.effects = Effects::default().without(&["deaths".into()]).unwrap();
        let (a, b) = (contact(&s, 3), contact(&calm, 3));
        assert_eq!(a.messages.len(), b.messages.len());
        assert!(b.channels.iter().all(|c| c.dies_at.is_none()));
        let dead = (0..1000)
            .filter(|&i| contact(&s, i).channels.iter().any(|c| c.dies_at.is_some()))
            .count();
        assert!(dead > 100, "{dead}");
        assert!(Effects::default().without(&["weather".into()]).is_err());
    }

    #[test]
    fn the_international_route_is_named_in_the_events_unless_switched_off() {
        let s = Scenario::new(1000, 7, Millis(1_790_000_000_000));
        let mut hidden = s.clone();
        hidden.effects = Effects::default()
            .without(&["named-routes".into()])
            .unwrap();
        let sms_routes = |s: &Scenario, international: bool| {
            (0..1000)
                .map(|i| contact(s, i))
                .filter(|c| c.international == international)
                .flat_map(|c| c.events)
                .filter(|e| e.channel == Channel::Sms && !e.message_id.is_empty())
                .map(|e| e.carrier)
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            sms_routes(&s, true).into_iter().collect::<Vec<_>>(),
            [INTERNATIONAL_ROUTE]
        );
        assert!(!sms_routes(&s, false).contains(INTERNATIONAL_ROUTE));
        assert!(!sms_routes(&hidden, true).contains(INTERNATIONAL_ROUTE));
    }

    #[test]
    fn contacts_are_reproducible_and_plausible() {
        let s = Scenario::new(1000, 7, Millis(1_790_000_000_000));
        let a = contact(&s, 42);
        let b = contact(&s, 42);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let all: Vec<SimContact> = (0..1000).map(|i| contact(&s, i)).collect();
        let messages: usize = all.iter().map(|c| c.messages.len()).sum();
        assert!((10_000..14_000).contains(&messages), "{messages}");
        let delivered = all
            .iter()
            .flat_map(|c| &c.messages)
            .filter(|m| m.delivered)
            .count() as f64
            / messages as f64;
        assert!((0.75..0.95).contains(&delivered), "{delivered}");
        assert!(
            all.iter()
                .all(|c| c.events.windows(2).all(|w| w[0].at <= w[1].at))
        );
    }
}
