//! Sender health: the share of a sender's (and each campaign's) outcomes
//! that are compliance blocks or sender errors, over a rolling window. A
//! spike means carriers are filtering the sender or the integration is
//! broken; it says nothing about the contacts, whose scores it never touches.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Status, stats::StatCell};

/// `[sender_health]` in the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SenderHealthConfig {
    /// The rolling window judged.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Outcomes the window needs before it is judged.
    pub min_samples: u64,
    /// Share of blocks and sender errors that raises an alert.
    pub alert_rate: f64,
    /// Share under which an alert clears (below `alert_rate`, so that a rate
    /// hovering at the threshold does not flap).
    pub clear_rate: f64,
}

impl Default for SenderHealthConfig {
    fn default() -> Self {
        SenderHealthConfig {
            window: Duration::from_secs(3600),
            min_samples: 20,
            alert_rate: 0.10,
            clear_rate: 0.05,
        }
    }
}

impl SenderHealthConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.window.as_secs() < 60 {
            return Err("sender_health.window must be at least 1m".into());
        }
        let ok = |r: f64| (0.0..=1.0).contains(&r);
        if !ok(self.alert_rate) || !ok(self.clear_rate) || self.clear_rate > self.alert_rate {
            return Err("sender_health: need 0 <= clear_rate <= alert_rate <= 1".into());
        }
        Ok(())
    }
}

/// The compliance figures of one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ComplianceRate {
    pub outcomes: u64,
    pub blocked_compliance: u64,
    pub sender_errors: u64,
    pub rate: f64,
}

impl ComplianceRate {
    pub fn of(cell: &StatCell) -> Self {
        let n = |s| cell.count(s).max(0) as u64;
        let blocked_compliance = n(Status::BlockedCompliance);
        let sender_errors = n(Status::SenderError);
        let outcomes = cell.attempts().max(0) as u64 + blocked_compliance + sender_errors;
        let rate = if outcomes == 0 {
            0.0
        } else {
            (blocked_compliance + sender_errors) as f64 / outcomes as f64
        };
        ComplianceRate {
            outcomes,
            blocked_compliance,
            sender_errors,
            rate,
        }
    }
}

/// Whether a window alerts, given whether it alerted before, and why.
pub fn judge(rate: &ComplianceRate, alerting: bool, config: &SenderHealthConfig) -> (bool, String) {
    if rate.outcomes < config.min_samples {
        return (
            alerting && rate.rate >= config.clear_rate,
            format!(
                "{} outcomes in the window, {} needed to judge",
                rate.outcomes, config.min_samples
            ),
        );
    }
    let describe = format!(
        "{:.0}% of {} outcomes were compliance blocks ({}) or sender errors ({}) over {}",
        rate.rate * 100.0,
        rate.outcomes,
        rate.blocked_compliance,
        rate.sender_errors,
        humantime::format_duration(config.window)
    );
    let now_alerting = if alerting {
        rate.rate >= config.clear_rate
    } else {
        rate.rate >= config.alert_rate
    };
    (now_alerting, describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(delivered: i64, blocked: i64) -> StatCell {
        let mut c = StatCell::default();
        c.add(Status::Delivered, delivered);
        c.add(Status::BlockedCompliance, blocked);
        c
    }

    #[test]
    fn alerts_on_a_spike_and_clears_with_hysteresis() {
        let config = SenderHealthConfig::default();
        let judge_cell = |d, b, was| judge(&ComplianceRate::of(&cell(d, b)), was, &config).0;
        assert!(!judge_cell(95, 4, false), "4% is fine");
        assert!(judge_cell(80, 20, false), "20% alerts");
        assert!(judge_cell(92, 8, true), "8% keeps an alert on");
        assert!(!judge_cell(92, 8, false), "8% does not raise one");
        assert!(!judge_cell(97, 3, true), "3% clears");
        assert!(!judge_cell(5, 5, false), "too few samples");
    }
}
