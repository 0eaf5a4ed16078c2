//! Delivery statistics: counts per taxonomy class and a latency histogram,
//! per group of dimensions and time bucket. Cells only ever add, so they can
//! be pre-aggregated as events arrive and summed at query time: a query's
//! cost grows with the number of distinct groups, not of events.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Status, latency::LatencyHistogram};

/// What statistics are grouped by (besides time).
#[expect(
    clippy::derived_hash_with_manual_eq,
    reason = "the manual `eq` is the derived one's relation, computed without `memcmp` on empty fields"
)]
#[derive(Clone, Debug, Default, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dims {
    pub channel: Option<Channel>,
    pub carrier: String,
    pub country: String,
    pub campaign_id: String,
    pub campaign_type: String,
    pub lifecycle_stage: String,
    pub sender_id: String,
}

/// Field by field, as derived, except that empty strings are equal without
/// a look at their bytes. Most of an event's dimensions are empty, and the
/// derived comparison calls `memcmp` with length 0 on two empty strings'
/// dangling pointers: glibc's AVX-512 `memcmp` then makes a masked load from
/// an unmapped page, and the CPU's fault suppression takes a slow assist. On
/// the statistics' write path that was 6% of a bulk write's CPU (`perf
/// annotate` of the server during `reach bench run --scenarios bulk`,
/// 2026-12-03: the samples on the masked load).
impl PartialEq for Dims {
    fn eq(&self, other: &Self) -> bool {
        fn same(a: &str, b: &str) -> bool {
            a.len() == b.len() && (a.is_empty() || a == b)
        }
        self.channel == other.channel
            && same(&self.carrier, &other.carrier)
            && same(&self.country, &other.country)
            && same(&self.campaign_id, &other.campaign_id)
            && same(&self.campaign_type, &other.campaign_type)
            && same(&self.lifecycle_stage, &other.lifecycle_stage)
            && same(&self.sender_id, &other.sender_id)
    }
}

/// One dimension of [`Dims`], or the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Channel,
    Carrier,
    Country,
    CampaignId,
    CampaignType,
    LifecycleStage,
    SenderId,
    Day,
}

impl Dims {
    /// The value of `dimension` (the day is not part of `Dims`).
    pub fn value(&self, dimension: Dimension) -> String {
        match dimension {
            Dimension::Channel => self
                .channel
                .map(|c| c.name().to_string())
                .unwrap_or_default(),
            Dimension::Carrier => self.carrier.clone(),
            Dimension::Country => self.country.clone(),
            Dimension::CampaignId => self.campaign_id.clone(),
            Dimension::CampaignType => self.campaign_type.clone(),
            Dimension::LifecycleStage => self.lifecycle_stage.clone(),
            Dimension::SenderId => self.sender_id.clone(),
            Dimension::Day => String::new(),
        }
    }

    /// Only the route: channel, carrier, country.
    pub fn route(&self) -> Dims {
        Dims {
            channel: self.channel,
            carrier: self.carrier.clone(),
            country: self.country.clone(),
            ..Dims::default()
        }
    }
}

/// Counts per class (signed: a late receipt withdraws an UNCONFIRMED) and
/// send-to-receipt latencies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatCell {
    pub counts: [i64; 13],
    pub latency: LatencyHistogram,
}

fn slot(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|&s| s == status)
        .expect("every status is in ALL")
}

impl StatCell {
    pub fn add(&mut self, status: Status, delta: i64) {
        self.counts[slot(status)] += delta;
    }

    pub fn count(&self, status: Status) -> i64 {
        self.counts[slot(status)]
    }

    pub fn merge(&mut self, other: &StatCell) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.latency.merge(&other.latency);
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0) && self.latency.total() == 0
    }

    /// Messages with a contact-side outcome: delivered, hard, soft, unconfirmed.
    pub fn attempts(&self) -> i64 {
        [
            Status::Delivered,
            Status::BouncedHard,
            Status::PendingRetry,
            Status::Unconfirmed,
        ]
        .into_iter()
        .map(|s| self.count(s).max(0))
        .sum()
    }

    /// Delivered over attempts; `None` without attempts.
    pub fn delivery_rate(&self) -> Option<f64> {
        let attempts = self.attempts();
        (attempts > 0).then(|| self.count(Status::Delivered).max(0) as f64 / attempts as f64)
    }

    pub fn sparse_counts(&self) -> Vec<(u8, i64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .map(|(i, c)| (i as u8, *c))
            .collect()
    }

    pub fn from_sparse(counts: &[(u8, i64)], latency: &[(u8, u64)]) -> Self {
        let mut cell = StatCell {
            latency: LatencyHistogram::from_sparse(latency),
            ..StatCell::default()
        };
        for &(i, c) in counts {
            if let Some(slot) = cell.counts.get_mut(i as usize) {
                *slot += c;
            }
        }
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_add_up() {
        let mut a = StatCell::default();
        a.add(Status::Delivered, 3);
        a.add(Status::BouncedHard, 1);
        a.latency.record(2_000);
        let mut b = StatCell::default();
        b.add(Status::Unconfirmed, 1);
        b.add(Status::Unconfirmed, -1);
        b.add(Status::BlockedCompliance, 2);
        a.merge(&b);
        assert_eq!(a.attempts(), 4);
        assert_eq!(a.delivery_rate(), Some(0.75));
        assert_eq!(a.count(Status::BlockedCompliance), 2);
        assert_eq!(
            StatCell::from_sparse(&a.sparse_counts(), &a.latency.sparse()),
            a
        );
        assert_eq!(StatCell::default().delivery_rate(), None);
    }

    #[test]
    fn dims_are_equal_exactly_when_every_field_is() {
        let fields = |d: &Dims| {
            (
                d.channel,
                d.carrier.clone(),
                d.country.clone(),
                d.campaign_id.clone(),
                d.campaign_type.clone(),
                d.lifecycle_stage.clone(),
                d.sender_id.clone(),
            )
        };
        let mut all = vec![Dims::default()];
        for value in ["", "a", "b", "ab"] {
            for field in 0..6 {
                let mut d = Dims {
                    channel: Some(Channel::Sms),
                    ..Dims::default()
                };
                let slot = match field {
                    0 => &mut d.carrier,
                    1 => &mut d.country,
                    2 => &mut d.campaign_id,
                    3 => &mut d.campaign_type,
                    4 => &mut d.lifecycle_stage,
                    _ => &mut d.sender_id,
                };
                *slot = value.to_string();
                all.push(d);
            }
        }
        for a in &all {
            for b in &all {
                assert_eq!(a == b, fields(a) == fields(b), "{a:?} vs {b:?}");
                assert_eq!(a == b, a.cmp(b).is_eq(), "eq agrees with Ord");
            }
        }
    }
}
