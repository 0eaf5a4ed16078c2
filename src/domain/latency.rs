//! Latency histograms with fixed log-scale buckets: bounded memory whatever
//! the number of samples, mergeable by addition, and real percentiles to
//! within one bucket (each bucket is 20% wider than the one before).

/// Upper bound of bucket 0, in milliseconds.
const FIRST_MS: f64 = 100.0;
const GROWTH: f64 = 1.2;
/// Enough buckets to go past 7 days.
pub const BUCKETS: usize = 88;

/// Counts per bucket. Bucket `i` holds latencies in `[bound(i-1), bound(i))`,
/// the last one everything above.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyHistogram {
    counts: [u64; BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: [0; BUCKETS],
        }
    }
}

/// Upper bound of bucket `i`, in milliseconds.
pub fn bound(i: usize) -> f64 {
    FIRST_MS * GROWTH.powi(i as i32)
}

pub fn bucket_of(latency_ms: i64) -> usize {
    if latency_ms < FIRST_MS as i64 {
        return 0;
    }
    let i = ((latency_ms as f64 / FIRST_MS).ln() / GROWTH.ln()).floor() as usize + 1;
    i.min(BUCKETS - 1)
}

impl LatencyHistogram {
    pub fn record(&mut self, latency_ms: i64) {
        self.counts[bucket_of(latency_ms.max(0))] += 1;
    }

    pub fn add_bucket(&mut self, bucket: usize, count: u64) {
        if let Some(slot) = self.counts.get_mut(bucket) {
            *slot = slot.saturating_add(count);
        }
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Non-empty buckets as (bucket, count), for compact storage.
    pub fn sparse(&self) -> Vec<(u8, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u8, *c))
            .collect()
    }

    pub fn from_sparse(buckets: &[(u8, u64)]) -> Self {
        let mut h = LatencyHistogram::default();
        for &(i, c) in buckets {
            h.add_bucket(i as usize, c);
        }
        h
    }

    /// The latency at quantile `q` (0..1) in milliseconds, interpolated
    /// within its bucket; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0.0;
        for (i, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if seen + count as f64 >= rank {
                let low = if i == 0 { 0.0 } else { bound(i - 1) };
                let high = bound(i);
                let within = (rank - seen) / count as f64;
                return Some(low + (high - low) * within);
            }
            seen += count as f64;
        }
        Some(bound(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_land_within_a_bucket_of_the_truth() {
        let mut h = LatencyHistogram::default();
        // 1..=1000 seconds, uniformly.
        for s in 1..=1000 {
            h.record(s * 1000);
        }
        for (q, truth) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = h.quantile(q).unwrap();
            assert!((got - truth).abs() / truth < 0.2, "q{q}: {got} vs {truth}");
        }
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
        let round = LatencyHistogram::from_sparse(&h.sparse());
        assert_eq!(round, h);
    }

    #[test]
    fn buckets_cover_a_week() {
        assert!(bound(BUCKETS - 2) > 7.0 * 86_400_000.0);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(99), 0);
        assert_eq!(bucket_of(100), 1);
        assert_eq!(bucket_of(i64::MAX / 2), BUCKETS - 1);
    }
}
