//! The route outlook: whether a contact's route delivers clearly worse over
//! the last day than over the days before, and by how much, so that the
//! channel's score can say so for every ask, not only urgent ones.
//!
//! Route health (minute windows, `route_health.rs`) raises the alarm within
//! minutes for operators and urgent traffic; the outlook compares the last
//! hours (`outlook_window`) with the days before (`outlook_baseline`). Both
//! are counted by event time, so it answers for any `as_of`, including a
//! replay of last quarter: an hour is read only once it cannot hold anything
//! later than the ask (hours before the ask's, plus the current hour for an
//! ask about now).

use crate::domain::{Status, route_health::RouteHealthConfig, stats::StatCell};

/// Outcomes of one route on one day: what a delivery rate needs, and the
/// mix of failures that tells a route losing receipts (`route_silence.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayTally {
    pub delivered: i64,
    pub attempts: i64,
    /// Soft and hard bounces: failures the route reported.
    pub explicit_failures: i64,
    /// UNCONFIRMED: no receipt within the window.
    pub silent: i64,
}

impl DayTally {
    pub fn of(cell: &StatCell) -> DayTally {
        let count = |s: Status| cell.count(s).max(0);
        DayTally {
            delivered: count(Status::Delivered),
            attempts: cell.attempts(),
            explicit_failures: count(Status::BouncedHard) + count(Status::PendingRetry),
            silent: count(Status::Unconfirmed),
        }
    }

    pub fn add(&mut self, other: DayTally) {
        self.delivered += other.delivered;
        self.attempts += other.attempts;
        self.explicit_failures += other.explicit_failures;
        self.silent += other.silent;
    }

    pub fn is_empty(&self) -> bool {
        *self == DayTally::default()
    }

    fn rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.delivered.min(self.attempts) as f64 / self.attempts as f64)
    }
}

/// A route that delivers clearly below its own baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Outlook {
    /// Recent rate over baseline rate, in [0, 1): what a channel's score on
    /// this route is multiplied by.
    pub factor: f64,
    pub recent_rate: f64,
    pub baseline_rate: f64,
    /// The recent window's length.
    pub window_hours: u32,
}

impl Outlook {
    /// Why a score is scaled; `route` is the route's name.
    pub fn reason(&self, route: &str) -> String {
        format!(
            "route {route} delivered {:.2} over the last {}h against {:.2} before: score x {:.2}",
            self.recent_rate, self.window_hours, self.baseline_rate, self.factor
        )
    }
}

/// The outlook of a route from its `recent` and `baseline` tallies; `None`
/// when it delivers as usual, or when either has too few outcomes to say.
/// The thresholds are route health's (`min_samples`, `rate_drop`): a route
/// is marked down on the same evidence that would degrade it.
pub fn outlook(
    recent: DayTally,
    baseline: DayTally,
    config: &RouteHealthConfig,
) -> Option<Outlook> {
    let enough = |t: DayTally| t.attempts as u64 >= config.min_samples;
    if !config.outlook || !enough(recent) || !enough(baseline) {
        return None;
    }
    let (recent_rate, baseline_rate) = (recent.rate()?, baseline.rate()?);
    (recent_rate < baseline_rate - config.rate_drop).then(|| Outlook {
        // The baseline is above rate_drop > 0 here, so the ratio is finite.
        factor: (recent_rate / baseline_rate).clamp(0.0, 1.0),
        recent_rate,
        baseline_rate,
        window_hours: config.outlook_window_hours(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(delivered: i64, attempts: i64) -> DayTally {
        DayTally {
            delivered,
            attempts,
            ..DayTally::default()
        }
    }

    #[test]
    fn a_clear_drop_scales_by_the_ratio_of_rates() {
        let config = RouteHealthConfig::default();
        let o = outlook(tally(60, 100), tally(950, 1000), &config).expect("degraded");
        assert!((o.factor - 0.60 / 0.95).abs() < 1e-9, "{o:?}");
        let reason = o.reason("sms/carrier-b/US");
        assert!(reason.contains("0.60 over the last 24h"), "{reason}");
    }

    #[test]
    fn small_drops_thin_evidence_and_a_disabled_outlook_change_nothing() {
        let config = RouteHealthConfig::default();
        // 0.80 against 0.95: under the 0.2 drop that marks a route down.
        assert_eq!(outlook(tally(80, 100), tally(950, 1000), &config), None);
        // Too few outcomes on either side.
        assert_eq!(outlook(tally(1, 10), tally(950, 1000), &config), None);
        assert_eq!(outlook(tally(10, 100), tally(9, 10), &config), None);
        let off = RouteHealthConfig {
            outlook: false,
            ..RouteHealthConfig::default()
        };
        assert_eq!(outlook(tally(10, 100), tally(950, 1000), &off), None);
    }
}
