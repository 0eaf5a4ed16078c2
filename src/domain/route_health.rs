//! Route health: per route (channel x carrier x country), a recent window of
//! outcomes and latencies compared with a threshold and with the route's own
//! baseline. A route turns degraded when its p95 latency is over the
//! threshold or its delivery rate falls well below its baseline, with enough
//! samples; it recovers only once clearly back (hysteresis), so it does not
//! flap around the line.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::stats::StatCell;

/// Route-health tunables (`[route_health]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteHealthConfig {
    /// The recent window judged.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The history before the window that is the route's own baseline.
    #[serde(with = "humantime_serde")]
    pub baseline: Duration,
    /// Outcomes (or latencies) the window needs before it is judged.
    pub min_samples: u64,
    /// p95 send-to-receipt latency above which a route is degraded.
    #[serde(with = "humantime_serde")]
    pub p95_latency: Duration,
    /// Drop of the delivery rate below the baseline that degrades a route
    /// (absolute, e.g. 0.2: from 0.95 to under 0.75).
    pub rate_drop: f64,
    /// A degraded route recovers when latency is under this share of the
    /// threshold and its rate within this share of `rate_drop` of baseline.
    pub recover_margin: f64,
    /// How often routes are judged (actions are emitted on changes).
    #[serde(with = "humantime_serde")]
    pub evaluate_every: Duration,
    /// Scale a channel's score down while its contact's route delivers
    /// clearly below its own baseline over the last hours (see
    /// `route_outlook.rs`), for every ask, not only urgent ones.
    pub outlook: bool,
    /// Weigh a silence on a route that loses receipts (far more silences
    /// per explicit failure than the channel's other routes, over the
    /// outlook's baseline days) as the share of a failure that the route's
    /// failures explain (see `route_silence.rs`).
    pub silence_by_route: bool,
    /// The recent window of the outlook, in whole hours. Six: long enough
    /// for a route's outcomes to say something, short enough that a score
    /// follows a carrier's outage (and its end) within hours rather than
    /// a day (docs/evaluation.md, "The route outlook").
    #[serde(with = "humantime_serde")]
    pub outlook_window: Duration,
    /// The whole days before the window's first day whose delivery rate is
    /// a route's baseline for the outlook.
    #[serde(with = "humantime_serde")]
    pub outlook_baseline: Duration,
    /// How far back route day cells are kept in memory, so that asks
    /// `as_of` the past get their outlook too (a replay of last quarter
    /// needs a quarter). At least `outlook_baseline` plus two days.
    #[serde(with = "humantime_serde")]
    pub outlook_history: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl RouteHealthConfig {
    /// Whole hours of the outlook's window (at least one).
    pub fn outlook_window_hours(&self) -> u32 {
        (self
            .outlook_window
            .as_secs()
            .div_ceil(3600)
            .clamp(1, 24 * 365)) as u32
    }

    /// Whole days of the outlook's baseline (at least one).
    pub fn outlook_baseline_days(&self) -> u32 {
        whole_days(self.outlook_baseline).max(1)
    }

    /// Days of route cells to keep for the outlook.
    pub fn outlook_days(&self) -> u32 {
        whole_days(self.outlook_history).max(self.outlook_baseline_days().saturating_add(2))
    }
}

fn whole_days(d: Duration) -> u32 {
    d.as_secs().div_ceil(DAY.as_secs()).min(u32::MAX as u64 / 2) as u32
}

impl Default for RouteHealthConfig {
    fn default() -> Self {
        RouteHealthConfig {
            window: Duration::from_secs(15 * 60),
            baseline: Duration::from_secs(6 * 3600),
            min_samples: 20,
            p95_latency: Duration::from_secs(30),
            rate_drop: 0.2,
            recover_margin: 0.5,
            evaluate_every: Duration::from_secs(10),
            outlook: true,
            silence_by_route: true,
            outlook_window: Duration::from_secs(6 * 3600),
            outlook_baseline: 14 * DAY,
            outlook_history: 16 * DAY,
        }
    }
}

/// The judgement of one route.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub degraded: bool,
    /// Why it is degraded (or why it is still degraded); empty if healthy.
    pub reason: String,
}

/// Judges a route from its `window` and `baseline` cells, given whether it
/// was degraded before.
pub fn judge(
    window: &StatCell,
    baseline: &StatCell,
    was_degraded: bool,
    config: &RouteHealthConfig,
) -> Verdict {
    let threshold_ms = config.p95_latency.as_millis() as f64;
    let latency_samples = window.latency.total();
    let p95 = (latency_samples >= config.min_samples)
        .then(|| window.latency.quantile(0.95))
        .flatten();
    let enough_outcomes = |cell: &StatCell| cell.attempts() as u64 >= config.min_samples;
    let rates = (enough_outcomes(window) && enough_outcomes(baseline))
        .then(|| Some((window.delivery_rate()?, baseline.delivery_rate()?)))
        .flatten();
    let healthy = |latency_factor: f64, drop_factor: f64| {
        let slow = p95.is_some_and(|p| p > threshold_ms * latency_factor);
        let dropped = rates.is_some_and(|(now, base)| now < base - config.rate_drop * drop_factor);
        (slow, dropped)
    };
    // To enter: over the line. To leave: clearly back under it.
    let (slow, dropped) = if was_degraded {
        let (slow, dropped) = healthy(
            config.recover_margin.max(0.0),
            config.recover_margin.max(0.0),
        );
        // Without fresh samples a degraded route stays degraded.
        if p95.is_none() && rates.is_none() {
            return Verdict {
                degraded: true,
                reason: "no recent samples since it degraded".into(),
            };
        }
        (slow, dropped)
    } else {
        healthy(1.0, 1.0)
    };
    let mut reasons = Vec::new();
    if slow {
        reasons.push(format!(
            "p95 latency {:.1}s over {:.0}s",
            p95.unwrap_or_default() / 1000.0,
            threshold_ms / 1000.0
        ));
    }
    if dropped && let Some((now, base)) = rates {
        reasons.push(format!(
            "delivery rate {now:.2} against a baseline of {base:.2}"
        ));
    }
    Verdict {
        degraded: slow || dropped,
        reason: reasons.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Status;

    fn cell(delivered: i64, failed: i64, latency_ms: i64) -> StatCell {
        let mut c = StatCell::default();
        c.add(Status::Delivered, delivered);
        c.add(Status::BouncedHard, failed);
        for _ in 0..delivered {
            c.latency.record(latency_ms);
        }
        c
    }

    #[test]
    fn slow_or_failing_routes_degrade_and_recover_with_hysteresis() {
        let config = RouteHealthConfig::default();
        let baseline = cell(500, 10, 2_000);
        assert!(!judge(&cell(100, 2, 2_000), &baseline, false, &config).degraded);
        let slow = judge(&cell(100, 2, 45_000), &baseline, false, &config);
        assert!(
            slow.degraded && slow.reason.contains("p95 latency"),
            "{}",
            slow.reason
        );
        let failing = judge(&cell(50, 50, 2_000), &baseline, false, &config);
        assert!(
            failing.degraded && failing.reason.contains("delivery rate"),
            "{}",
            failing.reason
        );
        // 25 s: under the 30 s line, but not under 15 s: still degraded.
        assert!(judge(&cell(100, 2, 25_000), &baseline, true, &config).degraded);
        assert!(!judge(&cell(100, 2, 25_000), &baseline, false, &config).degraded);
        assert!(!judge(&cell(100, 2, 2_000), &baseline, true, &config).degraded);
        // Too few samples: no verdict either way.
        assert!(!judge(&cell(5, 5, 60_000), &baseline, false, &config).degraded);
        assert!(judge(&StatCell::default(), &baseline, true, &config).degraded);
    }
}
