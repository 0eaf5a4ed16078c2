//! The route outlook: whether a contact's route delivers clearly worse over
//! the last hours than over the days before, and by how much, so that the
//! channel's score can say so for every ask, not only urgent ones.
//!
//! Route health (minute windows, `route_health.rs`) raises the alarm within
//! minutes for operators and urgent traffic; the outlook compares the last
//! hours (`outlook_window`) with the days before (`outlook_baseline`). Both
//! are counted by event time, so it answers for any `as_of`, including a
//! replay of last quarter: an hour is read only once it cannot hold anything
//! later than the ask (hours before the ask's, plus the current hour for an
//! ask about now).
//!
//! The baseline is the route's usual self: when its newest days already
//! deliver clearly below the older ones (an episode that began before the
//! recent window), those days are left out of it. Otherwise an episode of
//! more than a few days would become its own baseline: halfway through a
//! ten-day one the fourteen-day baseline is mostly degraded days, the drop
//! against it looks small, and the outlook would fall silent while the
//! route is still down.

use crate::domain::{Status, decimals::Decimals, route_health::RouteHealthConfig, stats::StatCell};

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

    fn remove(&mut self, other: DayTally) {
        self.delivered -= other.delivered;
        self.attempts -= other.attempts;
        self.explicit_failures -= other.explicit_failures;
        self.silent -= other.silent;
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
    /// Whole days before the recent window that were already below the
    /// baseline (left out of it); 0 when the drop is within the window.
    pub days_before: u32,
}

impl Outlook {
    /// Why a score is scaled; `route` is the route's name.
    pub fn reason(&self, route: &str) -> String {
        let since = match self.days_before {
            0 => String::new(),
            1 => " (and the day before)".to_string(),
            n => format!(" (and the {n} days before)"),
        };
        format!(
            "route {route} delivered {} over the last {}h{since} against {} before: score x {}",
            Decimals::<2>(self.recent_rate),
            self.window_hours,
            Decimals::<2>(self.baseline_rate),
            Decimals::<2>(self.factor)
        )
    }
}

/// The outlook of a route from its `recent` tallies and its baseline
/// `days` (oldest first); `None` when it delivers as usual, or when either
/// side has too few outcomes to say. The thresholds are route health's
/// (`min_samples`, `rate_drop`): a route is marked down on the same
/// evidence that would degrade it.
pub fn outlook(recent: DayTally, days: &[DayTally], config: &RouteHealthConfig) -> Option<Outlook> {
    if !config.outlook {
        return None;
    }
    let (baseline, days_before) = usual_days(days, config);
    let enough = |t: DayTally| t.attempts as u64 >= config.min_samples;
    if !enough(recent) || !enough(baseline) {
        return None;
    }
    let (recent_rate, baseline_rate) = (recent.rate()?, baseline.rate()?);
    (recent_rate < baseline_rate - config.rate_drop).then(|| Outlook {
        // The baseline is above rate_drop > 0 here, so the ratio is finite.
        factor: (recent_rate / baseline_rate).clamp(0.0, 1.0),
        recent_rate,
        baseline_rate,
        window_hours: config.outlook_window_hours(),
        days_before,
    })
}

/// The baseline days that describe the route's usual self, summed, and how
/// many of the newest were left out: of the runs of newest days that,
/// together, delivered clearly below the days before them (both sides with
/// `min_samples` outcomes), the one with the largest drop, which is where
/// the episode began (a longer run also drops clearly when it takes in a
/// few usual days, but by less); all of them when there is none, or when
/// the route has no outcomes on the baseline's first day.
fn usual_days(days: &[DayTally], config: &RouteHealthConfig) -> (DayTally, u32) {
    let enough = |t: &DayTally| t.attempts as u64 >= config.min_samples;
    let mut all = DayTally::default();
    for d in days {
        all.add(*d);
    }
    if days.first().is_none_or(DayTally::is_empty) {
        // A route younger than the baseline has no usual self yet: its
        // first days are not it (silences come in a receipt window after
        // their deliveries, so a new route's first days look better than
        // the route is).
        return (all, 0);
    }
    // Moving the split from the newest day back: `newer` holds the days
    // from `i` on, `before` the ones before.
    let (mut newer, mut before) = (DayTally::default(), all);
    let mut found = None;
    for i in (1..days.len()).rev() {
        newer.add(days[i]);
        before.remove(days[i]);
        if !enough(&before) {
            break;
        }
        if enough(&newer)
            && let Some(drop) = clear_drop(newer, before, config.rate_drop)
            && found.is_none_or(|(largest, _, _)| drop > largest)
        {
            found = Some((drop, before, (days.len() - i) as u32));
        }
    }
    found.map_or((all, 0), |(_, before, run)| (before, run))
}

/// How far `newer` delivered below `before`, when that is more than
/// `rate_drop` by at least [`SURE`] standard errors. The days are searched
/// for the split with the largest drop, and on a route of a few dozen
/// outcomes a day chance alone makes some split look like one: the usual
/// days would be left out, the baseline raised, and the outlook then cut
/// the scores of a route delivering as it always does.
fn clear_drop(newer: DayTally, before: DayTally, rate_drop: f64) -> Option<f64> {
    let (n, b) = (newer.rate()?, before.rate()?);
    let (an, ab) = (newer.attempts as f64, before.attempts as f64);
    let pooled = (newer.delivered.min(newer.attempts) + before.delivered.min(before.attempts))
        as f64
        / (an + ab);
    let se = (pooled * (1.0 - pooled) * (1.0 / an + 1.0 / ab)).sqrt();
    (b - n - rate_drop > SURE * se).then_some(b - n)
}

/// Standard errors by which a drop must exceed `rate_drop` to leave days
/// out of the baseline (about 1 in 40 by chance, for one split).
const SURE: f64 = 2.0;

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
        let o = outlook(tally(60, 100), &[tally(950, 1000)], &config).expect("degraded");
        assert!((o.factor - 0.60 / 0.95).abs() < 1e-9, "{o:?}");
        let reason = o.reason("sms/carrier-b/US");
        assert!(reason.contains("0.60 over the last 6h"), "{reason}");
    }

    #[test]
    fn small_drops_thin_evidence_and_a_disabled_outlook_change_nothing() {
        let config = RouteHealthConfig::default();
        // 0.80 against 0.95: under the 0.2 drop that marks a route down.
        assert_eq!(outlook(tally(80, 100), &[tally(950, 1000)], &config), None);
        // Too few outcomes on either side.
        assert_eq!(outlook(tally(1, 10), &[tally(950, 1000)], &config), None);
        assert_eq!(outlook(tally(10, 100), &[tally(9, 10)], &config), None);
        let off = RouteHealthConfig {
            outlook: false,
            ..RouteHealthConfig::default()
        };
        assert_eq!(outlook(tally(10, 100), &[tally(950, 1000)], &off), None);
    }

    #[test]
    fn an_episode_older_than_the_window_stays_out_of_the_baseline() {
        let config = RouteHealthConfig::default();
        // Five usual days at 0.83, then nine at 0.50, and the last hours too:
        // over all fourteen the baseline would be 0.62, a drop of 0.12 that
        // says nothing.
        let mut days = vec![tally(83, 100); 5];
        days.extend(vec![tally(50, 100); 9]);
        let o = outlook(tally(50, 100), &days, &config).expect("still degraded");
        assert!((o.baseline_rate - 0.83).abs() < 1e-9, "{o:?}");
        assert!((o.factor - 0.50 / 0.83).abs() < 1e-9, "{o:?}");
        assert_eq!(o.days_before, 9);
        assert!(
            o.reason("sms/carrier-b/US")
                .contains("(and the 9 days before)")
        );
        // Once the route is back, nothing to say.
        assert_eq!(outlook(tally(83, 100), &days, &config), None);
    }

    #[test]
    fn a_drop_that_chance_explains_leaves_the_baseline_whole() {
        let config = RouteHealthConfig::default();
        // A route of 30 outcomes a day: 0.40 usually, and its newest day
        // at 0.10, 0.30 below, but within chance for 30 outcomes.
        let mut days = vec![tally(12, 30); 13];
        days.push(tally(3, 30));
        let (baseline, left_out) = usual_days(&days, &config);
        assert_eq!((left_out, baseline.attempts), (0, 14 * 30));
        // The same drop over 300 outcomes a day is no accident.
        let mut days = vec![tally(120, 300); 13];
        days.push(tally(30, 300));
        let (baseline, left_out) = usual_days(&days, &config);
        assert_eq!((left_out, baseline.attempts), (1, 13 * 300));
    }

    #[test]
    fn usual_noise_and_a_past_dip_stay_in_the_baseline() {
        let config = RouteHealthConfig::default();
        let noisy: Vec<DayTally> = (0..14)
            .map(|d| tally(if d % 2 == 0 { 90 } else { 80 }, 100))
            .collect();
        let o = outlook(tally(50, 100), &noisy, &config).expect("degraded today");
        assert_eq!(o.days_before, 0);
        assert!((o.baseline_rate - 0.85).abs() < 1e-9, "{o:?}");
        // A bad day a week ago, usual days since: the newest days are not
        // below the older ones, so the whole window is the baseline.
        let mut dip = vec![tally(90, 100); 14];
        dip[6] = tally(20, 100);
        let o = outlook(tally(40, 100), &dip, &config).expect("degraded today");
        assert_eq!(o.days_before, 0);
        assert!((o.baseline_rate - (90.0 * 13.0 + 20.0) / 1400.0).abs() < 1e-9);
        // A route younger than the baseline is judged on all its days.
        let mut young = vec![DayTally::default(); 10];
        young.extend(vec![tally(80, 100); 2]);
        young.extend(vec![tally(40, 100); 2]);
        let o = outlook(tally(30, 100), &young, &config).expect("below its days");
        assert_eq!((o.days_before, o.baseline_rate), (0, 0.6));
        // Days too thin to judge on their own are pooled, not dropped.
        let thin = vec![tally(9, 10); 14];
        let o = outlook(tally(40, 100), &thin, &config).expect("degraded today");
        assert_eq!((o.days_before, o.baseline_rate), (0, 0.9));
    }
}
