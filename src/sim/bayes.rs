//! The Bayes reference: the best any model could predict from what the
//! sender has seen, because it knows how the simulated world works (how
//! addresses are drawn, when they die, what a dead address returns, which
//! routes drop receipts, when the carrier episode is) and computes the exact
//! posterior predictive of each message from the channel's seen outcomes.
//!
//! It is not a model to ship: it is the world's own rules, which no sender
//! knows. It bounds what reach could reach on a scenario: where the
//! reference itself misses a target, no scoring of the same evidence meets
//! it, and the gap between reach and the reference is what a better model
//! could still take back.

use crate::{
    domain::{Channel, Millis},
    sim::population::{
        BAD_MEAN, BAD_SPREAD, DEAD_HARD_SHARE, DEAD_P, GOOD_SPREAD, INTERNATIONAL_SHARE,
        LOST_RECEIPT_SHARE, SOFT_SHARE, Scenario, SimContact, around, world,
    },
};

/// An outcome the sender saw, with the time its message was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenOutcome {
    pub sent: Millis,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Soft,
    Unconfirmed,
    Hard,
}

/// The prior over an address's delivery probability on a grid of values.
struct Prior {
    p: Vec<f64>,
    weight: Vec<f64>,
    death_chance: f64,
}

const GRID: usize = 100;
const SAMPLES: usize = 20_000;

pub struct BayesReference {
    priors: Vec<(Channel, Prior)>,
}

impl Default for BayesReference {
    fn default() -> Self {
        Self::new()
    }
}

impl BayesReference {
    /// The priors of the world's channels, from the simulator's own draws
    /// (a fixed seed: the reference is the same in every run).
    pub fn new() -> Self {
        let mut rng = fastrand::Rng::with_seed(7);
        let priors = Channel::ALL
            .into_iter()
            .map(|channel| {
                let w = world(channel);
                let mut weight = vec![0.0; GRID];
                for _ in 0..SAMPLES {
                    let p = if rng.f64() < w.bad_share {
                        around(&mut rng, BAD_MEAN, BAD_SPREAD)
                    } else {
                        around(&mut rng, w.good_mean, GOOD_SPREAD)
                    };
                    weight[((p * GRID as f64) as usize).min(GRID - 1)] += 1.0 / SAMPLES as f64;
                }
                let p = (0..GRID).map(|i| (i as f64 + 0.5) / GRID as f64).collect();
                let prior = Prior {
                    p,
                    weight,
                    death_chance: w.death_chance,
                };
                (channel, prior)
            })
            .collect();
        BayesReference { priors }
    }

    /// The probability that a message on `channel` sent at `at` is
    /// delivered, given the channel's earlier outcomes `seen` (in the order
    /// they were sent). Whether the contact sits behind the receipt-dropping
    /// international route is read from the route's name in the events;
    /// when routes are not named (`--without named-routes`), both cases are
    /// weighed by how well they explain the outcomes.
    pub fn predict(
        &self,
        c: &SimContact,
        channel: Channel,
        seen: &[SeenOutcome],
        at: Millis,
        s: &Scenario,
    ) -> f64 {
        let Some((_, prior)) = self.priors.iter().find(|(ch, _)| *ch == channel) else {
            return 0.0;
        };
        let lossy = channel == Channel::Sms && s.effects.lost_receipts;
        let (total, delivered) = if lossy && s.effects.named_routes {
            // The events name the route: the contact is known to be abroad or not.
            let lost = if c.international {
                LOST_RECEIPT_SHARE
            } else {
                0.0
            };
            Self::weigh(prior, c, channel, seen, at, s, lost)
        } else if lossy {
            let domestic = Self::weigh(prior, c, channel, seen, at, s, 0.0);
            let abroad = Self::weigh(prior, c, channel, seen, at, s, LOST_RECEIPT_SHARE);
            let (d, a) = (1.0 - INTERNATIONAL_SHARE, INTERNATIONAL_SHARE);
            (d * domestic.0 + a * abroad.0, d * domestic.1 + a * abroad.1)
        } else {
            Self::weigh(prior, c, channel, seen, at, s, 0.0)
        };
        if total > 0.0 { delivered / total } else { 0.0 }
    }

    /// The probability of the seen outcomes on a route dropping `lost` of
    /// the receipts, and of those outcomes and a delivery at `at`.
    fn weigh(
        prior: &Prior,
        c: &SimContact,
        channel: Channel,
        seen: &[SeenOutcome],
        at: Millis,
        s: &Scenario,
        lost: f64,
    ) -> (f64, f64) {
        let death_chance = if s.effects.deaths {
            prior.death_chance
        } else {
            0.0
        };
        let period = (s.end.0 - s.start().0) as f64;
        // Where the death falls among the seen messages: before the first,
        // between two, after the last but before `at`, or not by `at`.
        let k = seen.len();
        let mut bounds = Vec::with_capacity(k + 2);
        bounds.push(s.start().0);
        bounds.extend(seen.iter().map(|o| o.sent.0));
        bounds.push(at.0);
        let dies_in: Vec<f64> = bounds
            .windows(2)
            .map(|w| death_chance * (w[1] - w[0]).max(0) as f64 / period)
            .collect();
        let alive_at = 1.0 - dies_in.iter().sum::<f64>();
        let factors: Vec<f64> = seen
            .iter()
            .map(|o| c.route_factor(channel, o.sent, s))
            .collect();
        let factor_now = c.route_factor(channel, at, s);

        let (mut total, mut delivered) = (0.0, 0.0);
        let mut alive = vec![1.0; k + 1];
        let mut dead = vec![1.0; k + 1];
        for (&p, &w) in prior.p.iter().zip(&prior.weight) {
            if w == 0.0 {
                continue;
            }
            // alive[j]: the first j outcomes as an alive address's;
            // dead[j]: the outcomes from j on as a dead address's.
            for (j, o) in seen.iter().enumerate() {
                alive[j + 1] = alive[j] * likelihood(o.outcome, p * factors[j], false, lost);
            }
            for (j, o) in seen.iter().enumerate().rev() {
                dead[j] = dead[j + 1] * likelihood(o.outcome, DEAD_P * factors[j], true, lost);
            }
            let dead_by_now: f64 = (0..=k).map(|j| dies_in[j] * alive[j] * dead[j]).sum();
            let alive_now = alive_at * alive[k];
            total += w * (alive_now + dead_by_now);
            delivered += w * (alive_now * p + dead_by_now * DEAD_P) * factor_now;
        }
        (total, delivered)
    }
}

/// The chance of seeing `outcome` from an address delivering with
/// probability `q`, dead or not, on a route dropping `lost` of its receipts.
fn likelihood(outcome: Outcome, q: f64, dead: bool, lost: f64) -> f64 {
    let hard = if dead { DEAD_HARD_SHARE } else { 0.0 };
    match outcome {
        Outcome::Delivered => q * (1.0 - lost),
        Outcome::Hard => (1.0 - q) * hard,
        Outcome::Soft => (1.0 - q) * (1.0 - hard) * SOFT_SHARE,
        Outcome::Unconfirmed => q * lost + (1.0 - q) * (1.0 - hard) * (1.0 - SOFT_SHARE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::population::{Scenario, contact};

    fn seen(day: i64, outcome: Outcome, s: &Scenario) -> SeenOutcome {
        SeenOutcome {
            sent: Millis(s.start().0 + day * 86_400_000),
            outcome,
        }
    }

    #[test]
    fn evidence_moves_the_prediction_the_way_the_world_works() {
        let s = Scenario::new(10, 1, Millis(200 * 86_400_000));
        let c = (0..10)
            .map(|i| contact(&s, i))
            .find(|c| c.truth(Channel::Email).is_some())
            .unwrap();
        let b = BayesReference::new();
        let at = Millis(s.start().0 + 50 * 86_400_000);
        let nothing = b.predict(&c, Channel::Email, &[], at, &s);
        let w = world(Channel::Email);
        let mean = (1.0 - w.bad_share) * w.good_mean + w.bad_share * BAD_MEAN;
        // Without evidence: the population's mean, less the share dead by day 50.
        assert!(
            nothing < mean && nothing > mean - 0.05,
            "{nothing} vs {mean}"
        );
        let delivered = b.predict(
            &c,
            Channel::Email,
            &[seen(10, Outcome::Delivered, &s)],
            at,
            &s,
        );
        let soft = b.predict(&c, Channel::Email, &[seen(10, Outcome::Soft, &s)], at, &s);
        let hard = b.predict(&c, Channel::Email, &[seen(10, Outcome::Hard, &s)], at, &s);
        assert!(delivered > nothing && soft < nothing, "{delivered} {soft}");
        // Only dead addresses hard bounce in this world.
        assert!((hard - DEAD_P).abs() < 1e-9, "{hard}");
        // A delivery after the hard bounce is a dead address's rare luck.
        let both = [
            seen(10, Outcome::Hard, &s),
            seen(20, Outcome::Delivered, &s),
        ];
        assert!((b.predict(&c, Channel::Email, &both, at, &s) - DEAD_P).abs() < 1e-9);
    }
}
