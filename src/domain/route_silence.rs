//! What a silence says on a route.
//!
//! An UNCONFIRMED (no receipt within the route's window) is a failure on a
//! route whose receipts come back. On a route that drops receipts (some
//! international routes and aggregators do) most silences are deliveries
//! whose receipt never came, and weighing them as failures marks working
//! contacts as unreachable. Which kind of route a contact is on shows in the
//! route's own mix of outcomes: every route has failures that never return
//! a receipt, in about the same proportion to its explicit failures (soft
//! and hard bounces); a route with far more silences per explicit failure
//! than its channel's other routes is losing receipts. A silence there
//! weighs the share of the route's silences that its failures explain.
//!
//! Silence is never counted as a delivery: on a route that loses receipts
//! it only says less about the contact.

use crate::domain::{Channel, decimals::Decimals, profile::Route, route_outlook::DayTally};

/// How much of a failure one silence on a route is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RouteSilence {
    /// Share of the route's silences that failures explain, in (0, 1]:
    /// what a silence's failure weight is multiplied by.
    pub share: f64,
    /// The route's silences per explicit failure.
    pub ratio: f64,
    /// The channel's usual silences per explicit failure.
    pub usual: f64,
}

impl RouteSilence {
    /// Why a silence weighs less; `route` is the route's name.
    pub fn reason(&self, route: &str) -> String {
        format!(
            "route {route} returns {} silences per explicit failure against {} usual on the channel: it loses receipts, a silence there weighs {} of a failure",
            Decimals::<1>(self.ratio),
            Decimals::<1>(self.usual),
            Decimals::<2>(self.share)
        )
    }
}

/// The routes of one contact whose silences weigh less, with their names;
/// a route not listed returns its receipts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteSilences(Vec<(Channel, Route, String, RouteSilence)>);

impl RouteSilences {
    /// Notes that silences on `channel`'s `route` (named `name`) weigh `silence`.
    pub fn insert(&mut self, channel: Channel, route: &Route, name: String, silence: RouteSilence) {
        self.0.push((channel, route.clone(), name, silence));
    }

    /// How silence weighs on `route` of `channel`, with the route's name;
    /// `None` where it is a full failure.
    pub fn of(&self, channel: Channel, route: Option<&Route>) -> Option<(&str, &RouteSilence)> {
        let route = route?;
        self.0
            .iter()
            .find(|(c, r, _, _)| {
                *c == channel && r.carrier == route.carrier && r.country == route.country
            })
            .map(|(_, _, name, s)| (name.as_str(), s))
    }
}

/// Silences per explicit failure, once a tally has enough of both to say.
fn ratio(t: DayTally, min_samples: u64) -> Option<f64> {
    (t.explicit_failures.max(0) as u64 >= min_samples)
        .then(|| t.silent.max(0) as f64 / t.explicit_failures as f64)
}

/// The usual silences per explicit failure of a channel: the median over
/// its routes that have `min_samples` explicit failures, each route weighed
/// by its outcomes, so that a few lossy routes do not move it. `None` with
/// no such route.
pub fn usual_ratio(routes: impl IntoIterator<Item = DayTally>, min_samples: u64) -> Option<f64> {
    let mut ratios: Vec<(f64, i64)> = routes
        .into_iter()
        .filter_map(|t| ratio(t, min_samples).map(|r| (r, t.attempts)))
        .collect();
    ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: i64 = ratios.iter().map(|(_, w)| w).sum();
    let mut seen = 0;
    ratios.into_iter().find_map(|(r, w)| {
        seen += w;
        (2 * seen >= total).then_some(r)
    })
}

/// What a silence weighs on a route with outcomes `route`, given its
/// channel's `usual` ratio; `None` when silence is a full failure there
/// (receipts come back, or too few outcomes to say otherwise).
///
/// The failures a route's explicit failures imply are bounded from above
/// (three standard deviations over the usual count, plus three), so that a
/// route is judged to lose receipts only on clear evidence, and by no more
/// than the evidence shows.
pub fn route_silence(
    route: DayTally,
    usual: Option<f64>,
    min_samples: u64,
) -> Option<RouteSilence> {
    let usual = usual?;
    let silent = route.silent.max(0) as f64;
    if (route.silent.max(0) as u64) < min_samples {
        return None;
    }
    let explicit = route.explicit_failures.max(0) as f64;
    let expected = usual * explicit;
    let explained = expected + 3.0 * expected.sqrt() + 3.0;
    let share = explained / silent;
    (share < 1.0).then(|| RouteSilence {
        share,
        ratio: silent / explicit.max(1.0),
        usual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(delivered: i64, explicit_failures: i64, silent: i64) -> DayTally {
        DayTally {
            delivered,
            attempts: delivered + explicit_failures + silent,
            explicit_failures,
            silent,
        }
    }

    #[test]
    fn the_usual_ratio_is_the_outcome_weighted_median_of_routes_with_enough_failures() {
        let routes = [
            tally(9_000, 700, 300), // 0.43
            tally(9_000, 600, 300), // 0.5
            tally(500, 30, 500),    // 16.7: a lossy route, small
            tally(100, 5, 100),     // too few explicit failures to count
        ];
        assert_eq!(usual_ratio(routes, 20), Some(0.5));
        assert_eq!(usual_ratio([tally(10, 5, 5)], 20), None);
    }

    #[test]
    fn a_route_with_far_more_silence_than_failures_explain_weighs_it_less() {
        let lossy = route_silence(tally(4_000, 350, 2_800), Some(0.43), 20).expect("lossy");
        // 0.43 x 350 = 150.5 silent failures, bounded at 190 of 2,800.
        assert!((lossy.share - 190.3 / 2_800.0).abs() < 0.001, "{lossy:?}");
        assert!(
            lossy
                .reason("sms/intl-gateway")
                .contains("8.0 silences per explicit failure")
        );
        // A route like the others, a thin one, and an unknown channel usual.
        assert_eq!(route_silence(tally(9_000, 700, 300), Some(0.43), 20), None);
        assert_eq!(route_silence(tally(10, 0, 10), Some(0.43), 20), None);
        assert_eq!(route_silence(tally(4_000, 350, 2_800), None, 20), None);
    }

    #[test]
    fn a_route_that_never_reports_a_failure_still_keeps_some_weight_on_silence() {
        let s = route_silence(tally(0, 0, 1_000), Some(0.43), 20).expect("lossy");
        assert!((s.share - 0.003).abs() < 1e-9 && s.share > 0.0, "{s:?}");
    }
}
