//! When a channel must not be used for a contact: a streak of hard fails, a
//! spam complaint or an opt-out. All of it is decided by `occurred_at`, so the
//! same events in any order give the same answer.

use std::fmt;

use crate::domain::Millis;

/// How many of the most recent hard fails are kept exactly. Older ones are
/// summarized (count, first, last), which keeps a contact's state bounded and
/// the streak exact for any threshold up to this many.
pub const RECENT_HARD_FAILS: usize = 10;

/// Hard fails and the latest event that ended a streak (a delivery, an
/// engagement or an opt-in).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HardFailLog {
    pub last_cleared: Option<Millis>,
    /// The most recent hard fails, oldest first.
    pub recent: Vec<Millis>,
    /// Hard fails pushed out of `recent`, all older than every entry in it.
    pub older: u32,
    pub older_first: Option<Millis>,
    pub older_last: Option<Millis>,
}

/// Hard fails since the streak was last cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streak {
    pub count: u32,
    /// Time of the first hard fail of the streak.
    pub since: Option<Millis>,
}

impl HardFailLog {
    pub fn record_fail(&mut self, at: Millis) {
        let pos = self.recent.partition_point(|&t| t <= at);
        self.recent.insert(pos, at);
        if self.recent.len() > RECENT_HARD_FAILS {
            let evicted = self.recent.remove(0);
            self.older += 1;
            self.older_first = Some(self.older_first.map_or(evicted, |t| t.min(evicted)));
            self.older_last = Some(self.older_last.map_or(evicted, |t| t.max(evicted)));
        }
    }

    pub fn record_clear(&mut self, at: Millis) {
        self.last_cleared = Some(self.last_cleared.map_or(at, |t| t.max(at)));
    }

    /// Hard fails at or after the last clearing event. A fail with the same
    /// timestamp as a delivery counts: on a tie the failure wins.
    pub fn streak(&self) -> Streak {
        let counts = |t: Millis| self.last_cleared.is_none_or(|c| t >= c);
        let in_recent: Vec<Millis> = self.recent.iter().copied().filter(|&t| counts(t)).collect();
        let older_counted = match (self.older_first, self.older_last) {
            (Some(first), _) if counts(first) => self.older,
            // Some older fails count, some do not: the exact split was summarized
            // away. Every recent fail counts then, so the streak is already past
            // any threshold; report the lower bound.
            (_, Some(last)) if counts(last) => 1,
            _ => 0,
        };
        let since = if older_counted > 0 {
            self.older_first
                .filter(|&t| counts(t))
                .or(in_recent.first().copied())
        } else {
            in_recent.first().copied()
        };
        Streak {
            count: in_recent.len() as u32 + older_counted,
            since,
        }
    }
}

/// The latest consent-related events of a channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Consent {
    pub last_opt_out: Option<Millis>,
    pub last_opt_in: Option<Millis>,
    pub last_complaint: Option<Millis>,
    /// Latest evidence the contact can receive on the channel at all (opt-in,
    /// delivery, engagement): what push eligibility needs.
    pub last_permission: Option<Millis>,
}

impl Consent {
    /// The opt-out in force, if any. On a tie with an opt-in the opt-out wins:
    /// opt-out is law, a doubtful opt-in is not consent.
    pub fn opted_out(&self) -> Option<Millis> {
        self.last_opt_out
            .filter(|&out| self.last_opt_in.is_none_or(|opt_in| out >= opt_in))
    }

    /// The spam complaint in force: one not followed by an opt-in.
    pub fn complained(&self) -> Option<Millis> {
        self.last_complaint
            .filter(|&c| self.last_opt_in.is_none_or(|opt_in| c >= opt_in))
    }
}

/// Why a channel is suppressed.
#[derive(Clone, Debug, PartialEq)]
pub enum Suppression {
    OptedOut { at: Millis },
    Complained { at: Millis },
    HardFails { count: u32, since: Millis },
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suppression::OptedOut { at } => write!(f, "opted out at {at}"),
            Suppression::Complained { at } => write!(f, "spam complaint at {at}"),
            Suppression::HardFails { count, since } => {
                write!(f, "{count} consecutive hard bounces since {since}")
            }
        }
    }
}

/// The suppression in force, most serious first.
pub fn suppression(consent: &Consent, streak: Streak, threshold: u32) -> Option<Suppression> {
    if let Some(at) = consent.opted_out() {
        return Some(Suppression::OptedOut { at });
    }
    if let Some(at) = consent.complained() {
        return Some(Suppression::Complained { at });
    }
    match streak.since {
        Some(since) if streak.count >= threshold => Some(Suppression::HardFails {
            count: streak.count,
            since,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streak_counts_fails_after_the_last_clear() {
        let mut log = HardFailLog::default();
        for t in [10, 20, 30] {
            log.record_fail(Millis(t));
        }
        log.record_clear(Millis(15));
        assert_eq!(
            log.streak(),
            Streak {
                count: 2,
                since: Some(Millis(20))
            }
        );
        log.record_clear(Millis(30));
        assert_eq!(log.streak().count, 1, "a fail tied with a delivery counts");
    }

    #[test]
    fn streak_is_exact_beyond_the_recent_window() {
        let mut log = HardFailLog::default();
        for t in 0..25 {
            log.record_fail(Millis(100 + t));
        }
        assert_eq!(
            log.streak(),
            Streak {
                count: 25,
                since: Some(Millis(100))
            }
        );
        log.record_clear(Millis(50));
        assert_eq!(log.streak().count, 25);
        log.record_clear(Millis(1000));
        assert_eq!(log.streak().count, 0);
    }

    #[test]
    fn opt_out_wins_a_tie() {
        let consent = Consent {
            last_opt_out: Some(Millis(5)),
            last_opt_in: Some(Millis(5)),
            ..Consent::default()
        };
        assert_eq!(consent.opted_out(), Some(Millis(5)));
    }
}
