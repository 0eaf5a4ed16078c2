//! Which dedupe markers a generation's buckets may hold, kept in memory.
//!
//! A busy contact (one past its record's share of markers) has its markers
//! in the shared buckets, so each of its new events read a bucket per level
//! of every generation it spilled into, only to learn what nearly every new
//! event learns: not seen before. A Bloom filter per generation answers that
//! from memory: "no" is certain, and "maybe" (a new marker about once in
//! 200, and every marker already spilled) reads the buckets as before.
//!
//! A filter answers only once it is complete: one made with its generation
//! (when this process spills the generation's first marker) is; one for a
//! generation that already held markers when the store opened is once its
//! buckets have been read (`sled_filter_scan`). Markers are added before
//! their bucket is written, so a complete filter never misses one.

use fastbloom::BloomFilter;

use crate::storage::marker_buckets::SUFFIX_BYTES;

/// False positives each part aims at, at its capacity.
const FALSE_POSITIVES: f64 = 0.005;
/// Markers the first part is sized for at least.
const MIN_CAPACITY: u64 = 4096;

pub struct MarkerFilter {
    /// Oldest first; each twice the capacity of the one before, so that a
    /// generation that outgrows its sizing keeps its false positives.
    parts: Vec<Part>,
    complete: bool,
}

struct Part {
    bloom: BloomFilter,
    capacity: u64,
    len: u64,
}

impl Part {
    fn new(capacity: u64) -> Self {
        Part {
            bloom: BloomFilter::with_false_pos(FALSE_POSITIVES).expected_items(capacity as usize),
            capacity,
            len: 0,
        }
    }
}

/// Bytes a part sized for `capacity` markers takes.
pub fn part_bytes(capacity: u64) -> u64 {
    let bits = fastbloom::optimal_size(capacity.max(MIN_CAPACITY) as usize, FALSE_POSITIVES);
    (bits as u64).div_ceil(64) * 8
}

/// The hash a marker is filed under: the suffix is already the tail of a
/// 128-bit BLAKE3 digest, uniform, so it is used as it is.
fn hash(suffix: &[u8; SUFFIX_BYTES]) -> u64 {
    u64::from_le_bytes(*suffix)
}

impl MarkerFilter {
    /// A filter sized for about `capacity` markers; `complete` if its
    /// generation holds no marker yet.
    pub fn new(capacity: u64, complete: bool) -> Self {
        MarkerFilter {
            parts: vec![Part::new(capacity.max(MIN_CAPACITY))],
            complete,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.bloom.num_bits() as u64 / 8)
            .sum()
    }

    /// Capacity of the part the next marker would need if the newest is
    /// full, or `None` if it has room.
    pub fn needs_part(&self) -> Option<u64> {
        let newest = self.parts.last().expect("a filter has a part");
        (newest.len >= newest.capacity).then(|| newest.capacity * 2)
    }

    /// Adds a marker; the caller makes room first (`needs_part`, `grow`).
    pub fn insert(&mut self, suffix: &[u8; SUFFIX_BYTES]) {
        let newest = self.parts.last_mut().expect("a filter has a part");
        newest.bloom.insert_hash(hash(suffix));
        newest.len += 1;
    }

    pub fn grow(&mut self, capacity: u64) {
        self.parts.push(Part::new(capacity));
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn set_complete(&mut self) {
        self.complete = true;
    }

    /// False only if the generation's buckets certainly lack the marker.
    pub fn may_hold(&self, suffix: &[u8; SUFFIX_BYTES]) -> bool {
        let hash = hash(suffix);
        !self.complete || self.parts.iter().any(|p| p.bloom.contains_hash(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suffixes(seed: u64, n: u64) -> Vec<[u8; 8]> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| rng.u64(..).to_le_bytes()).collect()
    }

    fn add(filter: &mut MarkerFilter, suffix: &[u8; 8]) {
        if let Some(capacity) = filter.needs_part() {
            filter.grow(capacity);
        }
        filter.insert(suffix);
    }

    #[test]
    fn a_filter_outgrowing_its_sizing_misses_nothing_and_stays_selective() {
        let mut filter = MarkerFilter::new(100, true);
        let members = suffixes(1, 50_000);
        for s in &members {
            add(&mut filter, s);
        }
        assert!(filter.parts.len() > 1, "it grew");
        assert!(
            members.iter().all(|s| filter.may_hold(s)),
            "no false negative"
        );
        let strangers = suffixes(2, 100_000);
        let false_positives = strangers.iter().filter(|s| filter.may_hold(s)).count();
        // Every part at its aim at most: a few parts of 0.5% each.
        assert!(false_positives < 2_500, "{false_positives} of 100,000");
        assert_eq!(
            filter.bytes(),
            filter
                .parts
                .iter()
                .map(|p| part_bytes(p.capacity))
                .sum::<u64>()
        );
    }

    #[test]
    fn an_incomplete_filter_rules_nothing_out() {
        let mut filter = MarkerFilter::new(10, false);
        assert!(filter.may_hold(&[7; 8]));
        filter.set_complete();
        assert!(!filter.may_hold(&[7; 8]));
        filter.insert(&[7; 8]);
        assert!(filter.may_hold(&[7; 8]));
    }
}
