//! Event time as milliseconds since the Unix epoch, the only clock the model
//! knows. Scores depend on `occurred_at`, never on arrival time.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Millis(since_epoch.as_millis() as i64)
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Millis(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    pub fn saturating_sub(self, d: Duration) -> Self {
        Millis(
            self.0
                .saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }
}

/// RFC 3339 in UTC to the second, e.g. `2026-11-20T10:00:00Z`: what reasons show.
/// 10000-01-01T00:00:00Z: RFC 3339 has four-digit years only.
const YEAR_10000_MS: i64 = 253_402_300_800_000;

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // humantime refuses years past 9999 with fmt::Error, which would
        // panic whoever formats (a validation message about a bad time).
        if self.0 >= YEAR_10000_MS {
            return write!(f, "{} ms after the epoch (after year 9999)", self.0);
        }
        let at = if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        } else {
            UNIX_EPOCH
        };
        write!(f, "{}", humantime::format_rfc3339_seconds(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rfc3339_seconds() {
        assert_eq!(
            Millis(1_795_168_800_000).to_string(),
            "2026-11-20T10:00:00Z"
        );
    }

    #[test]
    fn displays_times_past_year_9999_without_failing() {
        assert_eq!(
            Millis(YEAR_10000_MS - 1000).to_string(),
            "9999-12-31T23:59:59Z"
        );
        assert!(
            Millis(YEAR_10000_MS)
                .to_string()
                .contains("after year 9999")
        );
        assert!(Millis(i64::MAX).to_string().contains("after year 9999"));
    }
}
