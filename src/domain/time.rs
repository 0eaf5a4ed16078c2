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
impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
}
