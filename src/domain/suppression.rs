//! When a channel must not be used for a contact: a streak of failures, a
//! spam complaint or an opt-out. All of it is decided by `occurred_at`, so the
//! same events in any order give the same answer.
//!
//! A streak counts the failures at or after the latest clearing event (a
//! delivery, an engagement or an opt-in). Hard fails count one each; soft
//! failures escalate: every `soft_fails_per_hard_fail` of them in the streak
//! count as one hard fail.

use std::fmt;

use crate::domain::Millis;

/// How many of the most recent failures of each kind are kept exactly.
/// Older ones are summarized (count, first, last), which keeps a contact's
/// state bounded and the streak exact for any threshold up to this many.
pub const RECENT_FAILS: usize = 10;

/// Failures of one kind (hard or soft) on one channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FailLog {
    /// The most recent failures, oldest first.
    pub recent: Vec<Millis>,
    /// Failures pushed out of `recent`, all older than every entry in it.
    pub older: u32,
    pub older_first: Option<Millis>,
    pub older_last: Option<Millis>,
}

/// Failures of one kind since the streak was last cleared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Streak {
    pub count: u32,
    /// Time of the first failure of the streak.
    pub since: Option<Millis>,
}

impl FailLog {
    pub fn record(&mut self, at: Millis) {
        let pos = self.recent.partition_point(|&t| t <= at);
        self.recent.insert(pos, at);
        if self.recent.len() > RECENT_FAILS {
            let evicted = self.recent.remove(0);
            self.older += 1;
            self.older_first = Some(self.older_first.map_or(evicted, |t| t.min(evicted)));
            self.older_last = Some(self.older_last.map_or(evicted, |t| t.max(evicted)));
        }
    }

    /// Failures at or after `cleared`. A failure with the same timestamp as
    /// a clearing event counts: on a tie the failure wins.
    pub fn streak(&self, cleared: Option<Millis>) -> Streak {
        let counts = |t: Millis| cleared.is_none_or(|c| t >= c);
        let in_recent: Vec<Millis> = self.recent.iter().copied().filter(|&t| counts(t)).collect();
        let older_counted = match (self.older_first, self.older_last) {
            (Some(first), _) if counts(first) => self.older,
            // Some older failures count, some do not: the exact split was
            // summarized away. Every recent one counts then, so the streak is
            // already past any threshold; report the lower bound.
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

/// The failure streak of a channel, hard and soft together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureStreak {
    pub hard: Streak,
    pub soft: Streak,
    /// Hard fails plus escalated soft failures: what suppression counts.
    pub effective: u32,
}

impl FailureStreak {
    pub fn new(hard: Streak, soft: Streak, soft_per_hard: u32) -> Self {
        let escalated = soft.count.checked_div(soft_per_hard).unwrap_or(0);
        FailureStreak {
            hard,
            soft,
            effective: hard.count + escalated,
        }
    }

    /// When the streak began: its first counted failure.
    pub fn since(&self) -> Option<Millis> {
        let soft = if self.effective > self.hard.count {
            self.soft.since
        } else {
            None
        };
        [self.hard.since, soft].into_iter().flatten().min()
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
    /// The consent of an address under its channel's: the latest of each
    /// kind of event from either (a channel-wide opt-out covers every
    /// address of the channel; a later channel-wide opt-in re-permits them).
    pub fn merged(&self, channel_wide: &Consent) -> Consent {
        let latest = |a: Option<Millis>, b: Option<Millis>| a.max(b);
        Consent {
            last_opt_out: latest(self.last_opt_out, channel_wide.last_opt_out),
            last_opt_in: latest(self.last_opt_in, channel_wide.last_opt_in),
            last_complaint: latest(self.last_complaint, channel_wide.last_complaint),
            last_permission: latest(self.last_permission, channel_wide.last_permission),
        }
    }

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
    OptedOut {
        at: Millis,
    },
    Complained {
        at: Millis,
    },
    Failures {
        hard: u32,
        soft: u32,
        soft_per_hard: u32,
        since: Millis,
    },
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suppression::OptedOut { at } => write!(f, "opted out at {at}"),
            Suppression::Complained { at } => write!(f, "spam complaint at {at}"),
            Suppression::Failures {
                hard,
                soft,
                soft_per_hard,
                since,
            } => {
                if *soft_per_hard == 0 || *soft < *soft_per_hard {
                    write!(f, "{hard} consecutive hard bounces since {since}")
                } else {
                    write!(
                        f,
                        "{hard} hard bounces and {soft} soft failures in a row (every {soft_per_hard} soft count as one hard) since {since}"
                    )
                }
            }
        }
    }
}

/// The suppression in force, most serious first.
pub fn suppression(
    consent: &Consent,
    streak: FailureStreak,
    threshold: u32,
    soft_per_hard: u32,
) -> Option<Suppression> {
    if let Some(at) = consent.opted_out() {
        return Some(Suppression::OptedOut { at });
    }
    if let Some(at) = consent.complained() {
        return Some(Suppression::Complained { at });
    }
    match streak.since() {
        Some(since) if streak.effective >= threshold => Some(Suppression::Failures {
            hard: streak.hard.count,
            soft: streak.soft.count,
            soft_per_hard,
            since,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(times: &[i64]) -> FailLog {
        let mut log = FailLog::default();
        for &t in times {
            log.record(Millis(t));
        }
        log
    }

    #[test]
    fn streak_counts_fails_after_the_last_clear() {
        let log = log(&[10, 20, 30]);
        assert_eq!(
            log.streak(Some(Millis(15))),
            Streak {
                count: 2,
                since: Some(Millis(20))
            }
        );
        assert_eq!(
            log.streak(Some(Millis(30))).count,
            1,
            "a fail tied with a delivery counts"
        );
        assert_eq!(log.streak(None).count, 3);
    }

    #[test]
    fn streak_is_exact_beyond_the_recent_window() {
        let log = log(&(100..125).collect::<Vec<_>>());
        assert_eq!(
            log.streak(None),
            Streak {
                count: 25,
                since: Some(Millis(100))
            }
        );
        assert_eq!(log.streak(Some(Millis(50))).count, 25);
        assert_eq!(log.streak(Some(Millis(1000))).count, 0);
    }

    #[test]
    fn soft_failures_escalate() {
        let hard = log(&[50]).streak(None);
        let soft = log(&[10, 20, 30, 40, 60]).streak(None);
        let streak = FailureStreak::new(hard, soft, 5);
        assert_eq!(streak.effective, 2);
        assert_eq!(streak.since(), Some(Millis(10)));
        assert_eq!(
            FailureStreak::new(hard, soft, 0).effective,
            1,
            "0 turns escalation off"
        );
        let four = FailureStreak::new(Streak::default(), log(&[1, 2, 3, 4]).streak(None), 5);
        assert_eq!((four.effective, four.since()), (0, None));
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
