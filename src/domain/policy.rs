//! Send policies: per tenant and campaign type, which channels a kind of
//! traffic may use, in what order, above what score, and what to do in a
//! channel's quiet hours. [`choose`] turns a contact's ranked channels and
//! a policy into the answer "send on this channel, to this address, now (or
//! after this time)", with the reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{
    Channel, ChannelAssessment, Millis, ScoringModel,
    decimals::Decimals,
    quiet_hours::QuietWindow,
    scoring::{BestChannel, Reachability, highest_weighted_reason},
};

/// What to do when a channel is in its quiet hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuietHoursMode {
    /// The best channel, with the earliest allowed `send_after`.
    #[default]
    Wait,
    /// The best channel allowed now; wait only if none is.
    NextChannel,
    /// Quiet hours do not apply (one-time passwords, alerts asked for).
    Ignore,
}

/// One send policy (`[policies.<campaign_type>]`, or SetSendPolicy).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendPolicy {
    /// Channels the traffic may use; empty: all.
    pub allowed_channels: Vec<Channel>,
    /// Tie-break order between equal scores; empty: `scoring.channel_order`.
    pub preference: Vec<Channel>,
    /// Strict order: the first eligible channel of the chain is chosen.
    pub fallback_chain: Vec<Channel>,
    /// Channels scoring under this are not used.
    pub min_score: f64,
    /// Avoid degraded routes (as GetBestChannel's `urgent`).
    pub urgent: bool,
    pub quiet_hours_mode: QuietHoursMode,
    /// Per-channel quiet hours replacing the server's `[quiet_hours]`.
    pub quiet_hours: BTreeMap<Channel, QuietWindow>,
}

/// The name of the policy of requests without a campaign type.
pub const DEFAULT_POLICY: &str = "default";

impl SendPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(format!("min_score {} is not within 0..1", self.min_score));
        }
        for (name, list) in [
            ("allowed_channels", &self.allowed_channels),
            ("preference", &self.preference),
            ("fallback_chain", &self.fallback_chain),
        ] {
            let mut seen = list.clone();
            seen.sort();
            seen.dedup();
            if seen.len() != list.len() {
                return Err(format!("{name} lists a channel twice"));
            }
        }
        if let Some(c) = self
            .fallback_chain
            .iter()
            .find(|c| !self.allowed_channels.is_empty() && !self.allowed_channels.contains(c))
        {
            return Err(format!(
                "fallback_chain has {c}, which allowed_channels excludes"
            ));
        }
        Ok(())
    }

    fn allows(&self, channel: Channel) -> bool {
        self.allowed_channels.is_empty() || self.allowed_channels.contains(&channel)
    }

    fn rank(&self, channel: Channel, model: &ScoringModel) -> usize {
        if self.preference.is_empty() {
            model.order_rank(channel)
        } else {
            self.preference
                .iter()
                .position(|&c| c == channel)
                .unwrap_or(usize::MAX)
        }
    }
}

/// Chooses a channel for `reach` under `policy`, among the channels the
/// caller allows (`allowed`, all if empty). Each assessment's
/// `quiet_until` must already be set (see the engine).
pub fn choose(
    reach: Reachability,
    allowed: &[Channel],
    policy: &SendPolicy,
    policy_name: &str,
    model: &ScoringModel,
) -> BestChannel {
    let mut ranked: Vec<ChannelAssessment> = reach
        .channels
        .into_iter()
        .filter(|a| {
            (allowed.is_empty() || allowed.contains(&a.channel)) && policy.allows(a.channel)
        })
        .collect();
    for a in &mut ranked {
        if a.eligible && a.score < policy.min_score {
            let why = format!(
                "score {} is under policy {policy_name}'s minimum {}",
                Decimals::<2>(a.score),
                Decimals::<2>(policy.min_score)
            );
            a.restrict(why);
        }
    }
    ranked.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(b.weighted.total_cmp(&a.weighted))
            .then(
                policy
                    .rank(a.channel, model)
                    .cmp(&policy.rank(b.channel, model)),
            )
    });
    // The order in which channels are considered.
    let order: Vec<usize> = if policy.fallback_chain.is_empty() {
        (0..ranked.len()).filter(|&i| ranked[i].eligible).collect()
    } else {
        policy
            .fallback_chain
            .iter()
            .filter_map(|c| ranked.iter().position(|a| a.channel == *c))
            .filter(|&i| ranked[i].eligible)
            .collect()
    };
    let Some(&first) = order.first() else {
        return nothing_eligible(ranked, policy, policy_name);
    };
    let (pick, send_after) = match policy.quiet_hours_mode {
        QuietHoursMode::Ignore => (first, None),
        QuietHoursMode::Wait => (first, ranked[first].quiet_until),
        QuietHoursMode::NextChannel => {
            match order.iter().find(|&&i| ranked[i].quiet_until.is_none()) {
                Some(&now) => (now, None),
                None => {
                    let soonest = *order
                        .iter()
                        .min_by_key(|&&i| ranked[i].quiet_until)
                        .expect("order is not empty");
                    (soonest, ranked[soonest].quiet_until)
                }
            }
        }
    };
    let reason = explain(
        &ranked,
        &order,
        pick,
        send_after,
        policy,
        policy_name,
        model,
    );
    let best = &ranked[pick];
    BestChannel {
        channel: Some(best.channel),
        address: best.address.clone(),
        send_after,
        policy: policy_name.to_string(),
        reason,
        ranked,
    }
}

fn nothing_eligible(
    ranked: Vec<ChannelAssessment>,
    policy: &SendPolicy,
    name: &str,
) -> BestChannel {
    let why: Vec<String> = ranked
        .iter()
        .map(|a| format!("{}: {}", a.channel, a.ineligible_reason()))
        .collect();
    let scope = if policy.fallback_chain.is_empty() {
        String::new()
    } else {
        format!(" in policy {name}'s fallback chain")
    };
    BestChannel {
        channel: None,
        address: None,
        send_after: None,
        policy: name.to_string(),
        reason: format!("no eligible channel{scope}: {}", why.join("; ")),
        ranked,
    }
}

fn explain(
    ranked: &[ChannelAssessment],
    order: &[usize],
    pick: usize,
    send_after: Option<Millis>,
    policy: &SendPolicy,
    name: &str,
    model: &ScoringModel,
) -> String {
    let best = &ranked[pick];
    let eligible = ranked.iter().filter(|a| a.eligible).count();
    let mut parts = Vec::new();
    if policy.fallback_chain.is_empty() {
        parts.push(highest_weighted_reason(best, eligible, model));
    } else {
        let chain: Vec<String> = policy
            .fallback_chain
            .iter()
            .map(|c| c.to_string())
            .collect();
        let skipped: Vec<String> = policy
            .fallback_chain
            .iter()
            .take_while(|&&c| c != best.channel)
            .filter_map(|c| ranked.iter().find(|a| a.channel == *c))
            .map(|a| {
                if a.eligible {
                    format!("{} in quiet hours", a.channel)
                } else {
                    format!("{} not eligible ({})", a.channel, a.ineligible_reason())
                }
            })
            .collect();
        let step = if skipped.is_empty() {
            "first".to_string()
        } else {
            format!("after {}", skipped.join(", "))
        };
        parts.push(format!(
            "{}: {step} in policy {name}'s fallback chain {} (score {})",
            best.channel,
            chain.join(" -> "),
            Decimals::<3>(best.score)
        ));
    }
    if let Some(address) = &best.address {
        parts.push(format!("to {}", address.info.hint));
    }
    match (send_after, policy.quiet_hours_mode) {
        (Some(at), QuietHoursMode::NextChannel) => parts.push(format!(
            "every usable channel is in quiet hours; the earliest allowed is {} at {at}",
            best.channel
        )),
        (Some(at), _) => parts.push(format!(
            "in quiet hours ({}): send after {at}",
            best.quiet_reason
        )),
        (None, QuietHoursMode::NextChannel) => {
            let waited: Vec<String> = order
                .iter()
                .take_while(|&&i| i != pick)
                .filter(|&&i| ranked[i].quiet_until.is_some())
                .map(|&i| ranked[i].channel.to_string())
                .collect();
            if !waited.is_empty() {
                parts.push(format!(
                    "chosen over {} which {} in quiet hours",
                    waited.join(", "),
                    if waited.len() == 1 { "is" } else { "are" }
                ));
            }
        }
        (None, QuietHoursMode::Ignore) if best.quiet_until.is_some() => {
            parts.push(format!("policy {name} ignores quiet hours"));
        }
        _ => {}
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContactProfile, scoring::assess};

    fn equal_priors() -> ScoringModel {
        let mut model = ScoringModel::default();
        model.email = model.sms.clone();
        model
    }

    #[test]
    fn preference_breaks_ties_and_the_chain_overrides_scores() {
        let model = equal_priors();
        let reach = || assess(&ContactProfile::default(), &model, Millis(1_000));
        let by_default = choose(reach(), &[], &SendPolicy::default(), "default", &model);
        assert_eq!(
            by_default.channel,
            Some(Channel::Email),
            "{}",
            by_default.reason
        );
        let prefer_sms = SendPolicy {
            preference: vec![Channel::Sms, Channel::Email],
            ..SendPolicy::default()
        };
        assert_eq!(
            choose(reach(), &[], &prefer_sms, "p", &model).channel,
            Some(Channel::Sms)
        );
        let chain = SendPolicy {
            fallback_chain: vec![Channel::Voice, Channel::Sms],
            ..SendPolicy::default()
        };
        let chosen = choose(reach(), &[], &chain, "otp", &model);
        assert_eq!(
            chosen.channel,
            Some(Channel::Voice),
            "voice scores lowest but leads the chain"
        );
        let allowed_only = SendPolicy {
            allowed_channels: vec![Channel::Voice],
            ..SendPolicy::default()
        };
        let ranked = choose(reach(), &[], &allowed_only, "v", &model).ranked;
        assert_eq!(ranked.len(), 1);
    }

    #[test]
    fn a_policy_validates_its_lists() {
        let bad = SendPolicy {
            allowed_channels: vec![Channel::Sms],
            fallback_chain: vec![Channel::Sms, Channel::Email],
            ..SendPolicy::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("allowed_channels excludes")
        );
        let score = SendPolicy {
            min_score: 1.5,
            ..SendPolicy::default()
        };
        assert!(score.validate().is_err());
    }
}
