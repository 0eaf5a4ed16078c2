//! The tunables of the scoring model, with their defaults. `docs/scoring.md`
//! explains each one; every field is a `[scoring]` key in the config file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Millis, suppression::RECENT_FAILS};

/// Parameters of the scoring model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringModel {
    /// Evidence loses half its weight every `half_life`.
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// Failure weight of one hard bounce.
    pub hard_fail_weight: f64,
    /// Failure weight of one soft failure (PENDING_RETRY).
    pub soft_fail_weight: f64,
    /// Failure weight of one UNCONFIRMED (silence past the receipt window)
    /// on a route that returns its receipts; on one that loses them it is
    /// scaled down (`route_health.silence_by_route`).
    pub unconfirmed_weight: f64,
    /// Consecutive hard fails (since the last delivery or opt-in) that suppress a channel.
    pub suppress_after_hard_fails: u32,
    /// Soft failures in a row that count as one hard fail toward suppression
    /// (0: soft failures never escalate).
    pub soft_fails_per_hard_fail: u32,
    /// Decayed evidence at which confidence reaches 0.5: confidence = n / (n + this).
    pub confidence_half_evidence: f64,
    /// Prior mean of the engagement rate (opens, clicks, replies per delivery).
    pub engagement_prior_mean: f64,
    /// Prior strength (pseudo-deliveries) of the engagement rate.
    pub engagement_prior_strength: f64,
    /// Push is eligible only with permission on record (an opt-in, a delivery or
    /// an engagement): without a device token there is nothing to push to.
    pub push_requires_permission: bool,
    /// For urgent traffic, the factor on the weighted score of a channel whose
    /// contact's last route is degraded.
    pub urgent_degraded_factor: f64,
    /// Tie-break order of the ranking, first wins.
    pub channel_order: Vec<Channel>,
    pub sms: ChannelModel,
    pub email: ChannelModel,
    pub push: ChannelModel,
    pub voice: ChannelModel,
}

/// Per-channel prior and ranking weight.
///
/// The prior is a Beta distribution over the address's delivery rate, or,
/// with `bad_share > 0`, a mixture of two: most addresses work (`prior_mean`,
/// `prior_strength`) and a share does not (`bad_mean`, `bad_strength`). A
/// list of addresses is like that, and one Beta cannot say "probably one of
/// the good ones" after a single failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelModel {
    /// Mean delivery rate of working addresses (the whole prior's mean if
    /// `bad_share` is 0).
    pub prior_mean: f64,
    /// How many outcomes that prior is worth: its alpha + beta.
    pub prior_strength: f64,
    /// Multiplier on the score for ranking (e.g. below 1 for a costly channel).
    pub weight: f64,
    /// Share of addresses that barely work, before any evidence (0: one Beta prior).
    #[serde(default)]
    pub bad_share: f64,
    /// Their mean delivery rate.
    #[serde(default = "default_bad_mean")]
    pub bad_mean: f64,
    /// How many outcomes their prior is worth.
    #[serde(default = "default_bad_strength")]
    pub bad_strength: f64,
    /// Share of addresses that stop working within a year of last working
    /// (numbers ported or reassigned, mailboxes abandoned, apps removed):
    /// the score is the chance the address is still in use, counted from
    /// the last delivery, engagement or opt-in, times its posterior.
    #[serde(default)]
    pub churn_per_year: f64,
}

fn default_bad_mean() -> f64 {
    0.15
}

fn default_bad_strength() -> f64 {
    20.0
}

impl ChannelModel {
    fn new(prior_mean: f64, prior_strength: f64, bad_share: f64, churn_per_year: f64) -> Self {
        ChannelModel {
            prior_mean,
            prior_strength,
            weight: 1.0,
            bad_share,
            bad_mean: default_bad_mean(),
            bad_strength: default_bad_strength(),
            churn_per_year,
        }
    }

    /// The chance that an address last known to work at `last_worked` still
    /// works at `now` (1 if it never did: then there is nothing to go stale,
    /// and the prior speaks for a first message).
    pub fn still_in_use(&self, last_worked: Option<Millis>, now: Millis) -> f64 {
        match last_worked {
            Some(t) if now.0 > t.0 && self.churn_per_year > 0.0 => {
                let years = (now.0 - t.0) as f64 / YEAR_MS;
                (1.0 - self.churn_per_year).powf(years)
            }
            _ => 1.0,
        }
    }

    /// The score with no history: the prior's mean.
    pub fn mean(&self) -> f64 {
        (1.0 - self.bad_share) * self.prior_mean + self.bad_share * self.bad_mean
    }

    /// The posterior mean delivery rate after `delivered` successes and
    /// `failed` (weighted) failures, both decayed and fractional: each
    /// component's Beta posterior mean, weighted by how well the component
    /// explains the evidence (its Beta-binomial marginal likelihood).
    pub fn posterior(&self, delivered: f64, failed: f64) -> f64 {
        let component = |mean: f64, strength: f64| {
            let (a, b) = (mean * strength, (1.0 - mean) * strength);
            let posterior = (a + delivered) / (a + b + delivered + failed);
            let log_likelihood = ln_beta(a + delivered, b + failed) - ln_beta(a, b);
            (posterior, log_likelihood)
        };
        let (good, good_ll) = component(self.prior_mean, self.prior_strength);
        if self.bad_share <= 0.0 {
            return good;
        }
        let (bad, bad_ll) = component(self.bad_mean, self.bad_strength);
        let log_odds_bad = self.bad_share.ln() + bad_ll - (1.0 - self.bad_share).ln() - good_ll;
        let p_good = 1.0 / (1.0 + log_odds_bad.exp());
        p_good * good + (1.0 - p_good) * bad
    }
}

const YEAR_MS: f64 = 365.0 * 86_400_000.0;

fn ln_beta(a: f64, b: f64) -> f64 {
    libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b)
}

impl Default for ScoringModel {
    fn default() -> Self {
        ScoringModel {
            // Fitted with `reach eval` on the default simulated scenario
            // (docs/evaluation.md): an address's rate does not drift while
            // it works, so history stays informative for a year (what
            // changes an address is churn, counted apart, not the age of its
            // evidence); a hard bounce says the address is gone (deliveries
            // before it describe an address that no longer works), so it
            // outweighs dozens of them (48); silence is a failure like a soft one
            // where receipts come back, and weighs less on a route that
            // loses them (`route_silence.rs`).
            half_life: Duration::from_secs(365 * 24 * 3600),
            hard_fail_weight: 48.0,
            soft_fail_weight: 1.0,
            unconfirmed_weight: 1.0,
            suppress_after_hard_fails: 3,
            soft_fails_per_hard_fail: 5,
            confidence_half_evidence: 3.0,
            engagement_prior_mean: 0.2,
            engagement_prior_strength: 2.0,
            push_requires_permission: true,
            urgent_degraded_factor: 0.25,
            channel_order: vec![Channel::Push, Channel::Email, Channel::Sms, Channel::Voice],
            // A list is mostly working addresses and a share that barely
            // work (bad_mean, bad_strength: 0.15 x 20): a tenth of e-mail
            // addresses, fewer phone numbers for SMS (6%: a number that
            // takes no texts is rarer than a dead mailbox), more push
            // tokens and voice numbers (15%: apps never opened, lines
            // nobody answers). The means (0.90 / 0.85 / 0.745 / 0.66) are
            // close to the single-Beta priors this replaced (0.88 / 0.86 /
            // 0.78 / 0.68 x 2); what changes is that evidence sorts an
            // address into one kind or the other (a first failure: SMS
            // 0.52; a delivery then a failure: 0.83), which scored better on
            // every figure of `reach eval` (docs/evaluation.md, "The mixture
            // as the default"). Each kind is worth 60 and 20 outcomes: on
            // that scenario a working address's rate lies within about 0.02
            // of its channel's mean, and the weaker priors tried before (10
            // and 2, then 30 and 20) scored worse (docs/evaluation.md,
            // "Sharper priors"); a sender whose list spreads wider should
            // fit its own (`reach eval --config`).
            //
            // Churn a year: about a quarter of phone numbers and e-mail
            // addresses stop reaching their owner within a year of last
            // working, and app installs go faster (push tokens expire).
            // Measured on the same scenario: better Brier, calibration and
            // best-channel choice than no churn (and than half or twice
            // these rates). The discount stops at the prior's mean
            // (src/domain/scoring.rs).
            sms: ChannelModel::new(0.95, 60.0, 0.06, 0.24),
            email: ChannelModel::new(0.93, 60.0, 0.10, 0.30),
            push: ChannelModel::new(0.85, 60.0, 0.15, 0.45),
            voice: ChannelModel::new(0.75, 60.0, 0.15, 0.24),
        }
    }
}

impl ScoringModel {
    pub fn channel(&self, channel: Channel) -> &ChannelModel {
        match channel {
            Channel::Sms => &self.sms,
            Channel::Email => &self.email,
            Channel::Push => &self.push,
            Channel::Voice => &self.voice,
        }
    }

    pub fn half_life_ms(&self) -> f64 {
        self.half_life.as_millis() as f64
    }

    /// Position of `channel` in the tie-break order.
    pub fn order_rank(&self, channel: Channel) -> usize {
        self.channel_order
            .iter()
            .position(|&c| c == channel)
            .unwrap_or(usize::MAX)
    }

    /// Checks that the parameters describe a usable model.
    pub fn validate(&self) -> Result<(), String> {
        if self.half_life.is_zero() {
            return Err("scoring.half_life must be positive".into());
        }
        let weights = [
            ("hard_fail_weight", self.hard_fail_weight),
            ("soft_fail_weight", self.soft_fail_weight),
            ("unconfirmed_weight", self.unconfirmed_weight),
        ];
        for (name, w) in weights {
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!(
                    "scoring.{name} must be a finite number >= 0, got {w}"
                ));
            }
        }
        let max = RECENT_FAILS as u32;
        if !(1..=max).contains(&self.suppress_after_hard_fails) {
            return Err(format!(
                "scoring.suppress_after_hard_fails must be in 1..={max}"
            ));
        }
        if !(0.0..=1.0).contains(&self.urgent_degraded_factor) {
            return Err("scoring.urgent_degraded_factor must be in [0, 1]".into());
        }
        if !(self.confidence_half_evidence.is_finite() && self.confidence_half_evidence > 0.0) {
            return Err("scoring.confidence_half_evidence must be positive".into());
        }
        check_prior(
            "engagement_prior",
            self.engagement_prior_mean,
            self.engagement_prior_strength,
        )?;
        for channel in Channel::ALL {
            let m = self.channel(channel);
            check_prior(channel.name(), m.prior_mean, m.prior_strength)?;
            check_prior(channel.name(), m.bad_mean, m.bad_strength)?;
            if !(0.0..1.0).contains(&m.bad_share) {
                return Err(format!("scoring.{channel}.bad_share must be in [0, 1)"));
            }
            if !(0.0..1.0).contains(&m.churn_per_year) {
                return Err(format!(
                    "scoring.{channel}.churn_per_year must be in [0, 1)"
                ));
            }
            if !(m.weight.is_finite() && m.weight >= 0.0) {
                return Err(format!(
                    "scoring.{channel}.weight must be a finite number >= 0"
                ));
            }
        }
        let mut order = self.channel_order.clone();
        order.sort();
        if order != Channel::ALL {
            return Err(
                "scoring.channel_order must list each of sms, email, push, voice once".into(),
            );
        }
        Ok(())
    }
}

fn check_prior(name: &str, mean: f64, strength: f64) -> Result<(), String> {
    if !(mean > 0.0 && mean < 1.0) {
        return Err(format!(
            "scoring.{name} prior mean must be in (0, 1), got {mean}"
        ));
    }
    if !(strength.is_finite() && strength > 0.0) {
        return Err(format!(
            "scoring.{name} prior strength must be positive, got {strength}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mixture_prior_tells_bad_luck_from_a_bad_address() {
        let single = ChannelModel::new(0.88, 2.0, 0.0, 0.0);
        assert!(
            (single.posterior(0.0, 1.0) - 1.76 / 3.0).abs() < 1e-12,
            "one Beta: as before"
        );
        let mixture = ChannelModel::new(0.95, 12.0, 0.08, 0.0);
        assert!((mixture.mean() - (0.92 * 0.95 + 0.08 * 0.15)).abs() < 1e-12);
        assert!((mixture.posterior(0.0, 0.0) - mixture.mean()).abs() < 1e-12);
        // A first failure is as likely a bad address (8% of them, failing
        // 85% of the time) as a good one's bad luck (5%); three say bad; a
        // failure among deliveries is bad luck.
        let one_failure = mixture.posterior(0.0, 1.0);
        assert!((0.3..0.7).contains(&one_failure), "{one_failure}");
        assert!(mixture.posterior(0.0, 3.0) < 0.25);
        assert!(mixture.posterior(3.0, 1.0) > 0.85);
        // Monotone in the evidence.
        let mut last = 1.0;
        for f in 0..10 {
            let p = mixture.posterior(2.0, f as f64 * 0.5);
            assert!(p <= last + 1e-12);
            last = p;
        }
        assert!(mixture.posterior(3.0, 1.0) > mixture.posterior(2.0, 1.0));
    }

    #[test]
    fn an_address_goes_stale_from_when_it_last_worked() {
        let m = ChannelModel::new(0.95, 30.0, 0.10, 0.24);
        let day = 86_400_000;
        let now = Millis(1_000 * day);
        assert_eq!(
            m.still_in_use(None, now),
            1.0,
            "never worked: the prior speaks"
        );
        assert_eq!(m.still_in_use(Some(now), now), 1.0);
        assert_eq!(
            m.still_in_use(Some(Millis(now.0 + day)), now),
            1.0,
            "later than now"
        );
        let year = m.still_in_use(Some(Millis(now.0 - 365 * day)), now);
        assert!((year - 0.76).abs() < 1e-12, "{year}");
        let month = m.still_in_use(Some(Millis(now.0 - 30 * day)), now);
        assert!(month > year && month < 1.0);
        let off = ChannelModel::new(0.95, 30.0, 0.10, 0.0);
        assert_eq!(off.still_in_use(Some(Millis(0)), now), 1.0);
    }

    #[test]
    fn defaults_are_valid() {
        ScoringModel::default().validate().unwrap();
    }

    #[test]
    fn the_default_sms_prior_reads_evidence_as_its_comment_says() {
        let sms = ScoringModel::default().sms;
        let near = |x: f64, want: f64| (x - want).abs() < 0.005;
        assert!(near(sms.mean(), 0.902), "{}", sms.mean());
        assert!(
            near(sms.posterior(0.0, 1.0), 0.52),
            "{}",
            sms.posterior(0.0, 1.0)
        );
        assert!(
            near(sms.posterior(1.0, 1.0), 0.83),
            "{}",
            sms.posterior(1.0, 1.0)
        );
    }

    #[test]
    fn rejects_bad_values() {
        let m = ScoringModel {
            suppress_after_hard_fails: 0,
            ..ScoringModel::default()
        };
        assert!(m.validate().is_err());
        let mut m = ScoringModel::default();
        m.channel_order.pop();
        assert!(m.validate().is_err());
        let mut m = ScoringModel::default();
        m.sms.prior_mean = 1.0;
        assert!(m.validate().is_err());
        let mut m = ScoringModel::default();
        m.push.churn_per_year = 1.0;
        assert!(m.validate().is_err());
    }
}
