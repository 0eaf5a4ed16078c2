//! Dedupe markers packed into hash buckets, in time generations.
//!
//! sled spends about 140 bytes of disk per key whatever its size, so one key
//! per marker would cost more than the marker. Instead a marker (a 128-bit
//! digest) goes into bucket `digest[..4] >> (32 - bits)` of its generation,
//! whose value is a sorted array of the digests' last 8 bytes.
//!
//! A generation covers a quarter of the dedupe window. It starts with as
//! many buckets as the previous generation's marker count asks for (about 24
//! markers a bucket); if it fills past 48 a bucket it adds a level with 16
//! times the buckets, and new markers go there. Lookups check every level
//! (one in the steady state), and bucket values stay a few hundred bytes at
//! any scale. A generation is dropped whole once its newest marker is older
//! than the window: a marker lives between one and 1.25 windows. Each
//! generation has a filter in memory (`marker_filter`) that rules out most
//! markers it does not hold, sparing their bucket reads.

use std::{collections::BTreeMap, sync::RwLock, time::Duration};

use crate::{
    domain::Millis,
    storage::{
        DedupeKey,
        marker_filter::{MarkerFilter, part_bytes},
    },
};

const BUCKET_PREFIX: u8 = b'm';
const META_PREFIX: u8 = b'g';
const GENERATIONS_PER_WINDOW: i64 = 4;
/// Markers a bucket aims at: bigger amortizes sled's per-key cost, smaller
/// keeps the value rewritten by each insert short.
const TARGET_PER_BUCKET: u64 = 24;
/// Fill at which a generation adds a level.
const MAX_PER_BUCKET: u64 = 48;
/// Bits a new level adds (16 times the buckets).
const LEVEL_STEP: u8 = 4;
const MAX_LEVELS: usize = 4;
const MIN_BITS: u8 = 6;
const MAX_BITS: u8 = 24;
/// Bucket bits of a generation with no history to size it from.
const DEFAULT_BITS: u8 = 10;
/// Markers counted between two stores of a generation's count.
const PERSIST_EVERY: u64 = 256;
pub const SUFFIX_BYTES: usize = 8;
/// A generation is dropped this long after it stopped being live, so that no
/// read that picked it up just before can miss it.
const DROP_GRACE_MS: i64 = 60_000;

/// Bucket bits of each level of a generation, oldest level first.
pub type Levels = Vec<u8>;

/// Which generations exist, their levels and marker counts, and the
/// filters that spare a lookup the bucket reads (`marker_filter`).
pub struct MarkerLayout {
    window_ms: i64,
    span_ms: i64,
    generations: RwLock<Generations>,
}

struct Generations {
    by_number: BTreeMap<u32, Generation>,
    /// Bytes of every filter, and the most they may take
    /// (`store.marker_filter_mib`).
    filter_bytes: u64,
    filter_budget: u64,
}

struct Generation {
    meta: GenerationMeta,
    /// None once the budget could not hold it: the buckets are read.
    filter: Option<MarkerFilter>,
}

impl Generations {
    /// A filter for about `capacity` markers if the budget has room for it.
    fn new_filter(&mut self, capacity: u64, complete: bool) -> Option<MarkerFilter> {
        let bytes = part_bytes(capacity);
        (self.filter_bytes + bytes <= self.filter_budget).then(|| {
            self.filter_bytes += bytes;
            self.publish();
            MarkerFilter::new(capacity, complete)
        })
    }

    fn publish(&self) {
        metrics::gauge!("reach_marker_filter_bytes").set(self.filter_bytes as f64);
    }

    /// Adds `suffixes` to `generation`'s filter, growing it while the
    /// budget allows and dropping it (the buckets are then read) once not.
    fn add(&mut self, generation: u32, suffixes: impl Iterator<Item = [u8; SUFFIX_BYTES]>) {
        let Some(entry) = self.by_number.get_mut(&generation) else {
            return;
        };
        let Some(filter) = &mut entry.filter else {
            return;
        };
        let bytes_before = self.filter_bytes;
        for suffix in suffixes {
            if let Some(capacity) = filter.needs_part() {
                let bytes = part_bytes(capacity);
                if self.filter_bytes + bytes > self.filter_budget {
                    self.filter_bytes -= filter.bytes();
                    entry.filter = None;
                    tracing::warn!(
                        generation,
                        "the dedupe markers' filters are at store.marker_filter_mib: a busy contact's events read their markers' buckets"
                    );
                    break;
                }
                self.filter_bytes += bytes;
                filter.grow(capacity);
            }
            filter.insert(&suffix);
        }
        if self.filter_bytes != bytes_before {
            self.publish();
        }
    }

    fn remove(&mut self, generation: u32) {
        if let Some(Generation {
            filter: Some(filter),
            ..
        }) = self.by_number.remove(&generation)
        {
            self.filter_bytes -= filter.bytes();
        }
        self.publish();
    }
}

/// A generation's stored metadata: its levels and markers written so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationMeta {
    pub levels: Levels,
    pub count: u64,
}

impl GenerationMeta {
    pub fn new(bits: u8) -> Self {
        GenerationMeta {
            levels: vec![bits],
            count: 0,
        }
    }

    /// Bits of the level new markers go to.
    pub fn bits(&self) -> u8 {
        *self.levels.last().expect("a generation has a level")
    }

    /// `count(8) levels(n)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.count.to_le_bytes().to_vec();
        out.extend_from_slice(&self.levels);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (count, levels) = bytes.split_at_checked(8)?;
        (!levels.is_empty()).then(|| GenerationMeta {
            count: u64::from_le_bytes(count.try_into().expect("8 bytes")),
            levels: levels.to_vec(),
        })
    }

    /// Adds a level if the current one is past its fill; true if it did.
    pub fn grow_if_full(&mut self) -> bool {
        let bits = self.bits();
        let full = self.count > (1u64 << bits) * MAX_PER_BUCKET;
        if full && bits < MAX_BITS && self.levels.len() < MAX_LEVELS {
            self.levels.push((bits + LEVEL_STEP).min(MAX_BITS));
            return true;
        }
        false
    }

    /// Bits for the generation after this one.
    pub fn next_bits(&self) -> u8 {
        bits_for(self.count)
    }
}

/// Bucket bits for about `count` markers at the target fill.
fn bits_for(count: u64) -> u8 {
    let buckets = count.div_ceil(TARGET_PER_BUCKET).max(1);
    (64 - (buckets - 1).leading_zeros()).clamp(MIN_BITS as u32, MAX_BITS as u32) as u8
}

impl MarkerLayout {
    /// Reads the generation metadata stored in `tree`. The generations it
    /// names get filters to be filled from their buckets
    /// ([`Self::unfilled`]), as far as `filter_budget` bytes go.
    pub fn open(tree: &sled::Tree, window: Duration, filter_budget: u64) -> sled::Result<Self> {
        let window_ms = (window.as_millis() as i64).max(GENERATIONS_PER_WINDOW);
        let mut generations = Generations {
            by_number: BTreeMap::new(),
            filter_bytes: 0,
            filter_budget,
        };
        for entry in tree.scan_prefix([META_PREFIX]) {
            let (key, value) = entry?;
            if let (Some(generation), Some(meta)) =
                (generation_of_meta_key(&key), GenerationMeta::decode(&value))
            {
                generations
                    .by_number
                    .insert(generation, Generation { meta, filter: None });
            }
        }
        // Newest first: they are the ones read longest. Sized for their
        // count (stored every `PERSIST_EVERY` markers) and a quarter more;
        // the current one's filter grows as it does.
        let numbers: Vec<u32> = generations.by_number.keys().rev().copied().collect();
        for generation in numbers {
            let count = generations.by_number[&generation].meta.count;
            let filter = generations.new_filter(count.saturating_add(count / 4), false);
            generations
                .by_number
                .get_mut(&generation)
                .expect("listed above")
                .filter = filter;
        }
        generations.publish();
        Ok(MarkerLayout {
            window_ms,
            span_ms: window_ms / GENERATIONS_PER_WINDOW,
            generations: RwLock::new(generations),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Generations> {
        self.generations.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Generations> {
        self.generations.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn generation(&self, now: Millis) -> u32 {
        now.0.div_euclid(self.span_ms).clamp(0, u32::MAX as i64) as u32
    }

    /// End of a generation plus the window: when its markers have all expired.
    fn expires_at(&self, generation: u32) -> i64 {
        (generation as i64 + 1) * self.span_ms + self.window_ms
    }

    /// The generations whose markers are still within the window at `now`.
    pub fn live_range(&self, now: Millis) -> std::ops::RangeInclusive<u32> {
        let current = self.generation(now);
        let oldest = (0..=current)
            .rev()
            .take_while(|&g| self.expires_at(g) > now.0)
            .last()
            .unwrap_or(current);
        oldest..=current
    }

    /// Generations whose markers have all expired (with a grace period).
    pub fn expired(&self, now: Millis) -> Vec<u32> {
        self.read()
            .by_number
            .keys()
            .copied()
            .filter(|&g| self.expires_at(g) + DROP_GRACE_MS <= now.0)
            .collect()
    }

    /// Levels of a generation's buckets to read for `marker`: none if
    /// nothing spilled into the generation or its filter rules the marker
    /// out.
    pub fn levels_for(&self, generation: u32, marker: &DedupeKey) -> Levels {
        let generations = self.read();
        match generations.by_number.get(&generation) {
            Some(entry)
                if entry
                    .filter
                    .as_ref()
                    .is_none_or(|f| f.may_hold(&suffix(marker))) =>
            {
                entry.meta.levels.clone()
            }
            _ => Levels::new(),
        }
    }

    /// Counts `markers` into `generation` (created sized after the
    /// generation before it, with a filter that holds them) and returns the
    /// bits of the level they go to, with the metadata to store when it
    /// must be: when the generation is new or gains a level (readers must
    /// know a level before any marker is in it), and each [`PERSIST_EVERY`]
    /// markers, so that the count a restart reads (to size the next
    /// generation) is nearly current. The caller stores it before writing
    /// the markers, and stores the reservations in the order they were made
    /// (see `SledStore`).
    pub fn reserve(&self, generation: u32, markers: &[DedupeKey]) -> (u8, Option<GenerationMeta>) {
        let mut generations = self.write();
        let fresh = !generations.by_number.contains_key(&generation);
        if fresh {
            let previous = generations.by_number.range(..generation).next_back();
            let (bits, expected) = previous.map_or(
                (DEFAULT_BITS, (1 << DEFAULT_BITS) * TARGET_PER_BUCKET),
                |(_, previous)| (previous.meta.next_bits(), previous.meta.count),
            );
            // Nothing of the generation is stored yet: its filter is
            // complete from the start.
            let filter = generations.new_filter(expected, true);
            let meta = GenerationMeta::new(bits);
            generations
                .by_number
                .insert(generation, Generation { meta, filter });
        }
        generations.add(generation, markers.iter().map(suffix));
        let meta = &mut generations
            .by_number
            .get_mut(&generation)
            .expect("inserted above")
            .meta;
        let before = meta.count;
        meta.count = meta.count.saturating_add(markers.len() as u64);
        let grew = meta.grow_if_full();
        let persist = fresh || grew || before / PERSIST_EVERY != meta.count / PERSIST_EVERY;
        (meta.bits(), persist.then(|| meta.clone()))
    }

    /// Generations whose filters wait to be filled from their buckets.
    pub fn unfilled(&self) -> Vec<u32> {
        let generations = self.read();
        generations
            .by_number
            .iter()
            .filter(|(_, g)| g.filter.as_ref().is_some_and(|f| !f.is_complete()))
            .map(|(&number, _)| number)
            .rev()
            .collect()
    }

    /// Adds suffixes read from `generation`'s buckets to its filter; false
    /// if it has none to fill any more (expired, or over the budget).
    pub fn fill(&self, generation: u32, suffixes: &[[u8; SUFFIX_BYTES]]) -> bool {
        let mut generations = self.write();
        generations.add(generation, suffixes.iter().copied());
        generations
            .by_number
            .get(&generation)
            .is_some_and(|g| g.filter.is_some())
    }

    /// Lets `generation`'s filter answer, once every bucket it had when
    /// the store opened is in it (what was spilled since went in on the
    /// way, in [`Self::reserve`]).
    pub fn filled(&self, generation: u32) {
        if let Some(Generation {
            filter: Some(filter),
            ..
        }) = self.write().by_number.get_mut(&generation)
        {
            filter.set_complete();
        }
    }

    pub fn forget(&self, generation: u32) {
        self.write().remove(generation);
    }
}

pub fn meta_key(generation: u32) -> [u8; 5] {
    let mut key = [META_PREFIX; 5];
    key[1..].copy_from_slice(&generation.to_be_bytes());
    key
}

fn generation_of_meta_key(key: &[u8]) -> Option<u32> {
    match key {
        [META_PREFIX, rest @ ..] => Some(u32::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// Prefix of every bucket key of `generation`.
pub fn generation_prefix(generation: u32) -> [u8; 5] {
    let mut key = [BUCKET_PREFIX; 5];
    key[1..].copy_from_slice(&generation.to_be_bytes());
    key
}

pub fn bucket_key(generation: u32, bits: u8, marker: &DedupeKey) -> [u8; 9] {
    let head = u32::from_be_bytes(marker.0[..4].try_into().expect("4 bytes"));
    let bucket = if bits == 0 {
        0
    } else {
        head >> (32 - u32::from(bits))
    };
    let mut key = [0u8; 9];
    key[..5].copy_from_slice(&generation_prefix(generation));
    key[5..].copy_from_slice(&bucket.to_be_bytes());
    key
}

pub fn suffix(marker: &DedupeKey) -> [u8; SUFFIX_BYTES] {
    marker.0[16 - SUFFIX_BYTES..]
        .try_into()
        .expect("suffix bytes")
}

fn position(bucket: &[u8], suffix: &[u8; SUFFIX_BYTES]) -> Result<usize, usize> {
    let n = bucket.len() / SUFFIX_BYTES;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match bucket[mid * SUFFIX_BYTES..(mid + 1) * SUFFIX_BYTES].cmp(suffix) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

pub fn contains(bucket: &[u8], suffix: &[u8; SUFFIX_BYTES]) -> bool {
    position(bucket, suffix).is_ok()
}

/// Inserts `suffix` keeping the bucket sorted; false if it was there.
pub fn insert(bucket: &mut Vec<u8>, suffix: &[u8; SUFFIX_BYTES]) -> bool {
    match position(bucket, suffix) {
        Ok(_) => false,
        Err(i) => {
            bucket.splice(i * SUFFIX_BYTES..i * SUFFIX_BYTES, suffix.iter().copied());
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_sorted_and_find_their_members() {
        let mut bucket = Vec::new();
        let suffixes: Vec<[u8; 8]> = (0..50u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes())
            .collect();
        for s in &suffixes {
            assert!(insert(&mut bucket, s));
        }
        assert!(!insert(&mut bucket, &suffixes[7]));
        assert!(suffixes.iter().all(|s| contains(&bucket, s)));
        assert!(!contains(&bucket, &[1, 2, 3, 4, 5, 6, 7, 8]));
        let chunks: Vec<&[u8]> = bucket.chunks(8).collect();
        assert!(chunks.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bits_follow_the_previous_generation() {
        let meta = |count| GenerationMeta {
            levels: vec![8],
            count,
        };
        assert_eq!(meta(0).next_bits(), MIN_BITS);
        assert_eq!(meta(24 * 1024).next_bits(), 10);
        assert_eq!(meta(24 * 1024 + 1).next_bits(), 11);
        assert_eq!(meta(u64::MAX).next_bits(), MAX_BITS);
        assert_eq!(GenerationMeta::decode(&meta(77).encode()), Some(meta(77)));
    }

    fn layout(filter_budget: u64) -> MarkerLayout {
        MarkerLayout {
            window_ms: 4_000,
            span_ms: 1_000,
            generations: RwLock::new(Generations {
                by_number: BTreeMap::new(),
                filter_bytes: 0,
                filter_budget,
            }),
        }
    }

    fn markers(prefix: &str, n: usize) -> Vec<DedupeKey> {
        let key = crate::storage::ContactKey::new(&crate::storage::Tenant::default(), "c");
        (0..n)
            .map(|i| DedupeKey::new(&key, &format!("{prefix}{i}")))
            .collect()
    }

    #[test]
    fn a_new_generation_filters_out_what_it_never_held() {
        let layout = layout(1 << 20);
        let held = markers("held", 3_000);
        for chunk in held.chunks(10) {
            layout.reserve(7, chunk);
        }
        assert!(held.iter().all(|m| !layout.levels_for(7, m).is_empty()));
        let strangers = markers("new", 10_000);
        let read = strangers
            .iter()
            .filter(|m| !layout.levels_for(7, m).is_empty())
            .count();
        assert!(
            read < 150,
            "{read} of 10,000 new markers read their buckets"
        );
        assert!(
            layout.levels_for(8, &strangers[0]).is_empty(),
            "nothing spilled there"
        );
        layout.forget(7);
        assert_eq!(layout.read().filter_bytes, 0);
    }

    #[test]
    fn past_the_budget_a_generation_is_read_in_its_buckets() {
        let one_part = part_bytes((1 << DEFAULT_BITS) * TARGET_PER_BUCKET);
        for budget in [0, one_part] {
            let layout = layout(budget);
            // Past the first part's capacity: a second would pass the budget.
            let held = markers("held", 30_000);
            for chunk in held.chunks(100) {
                layout.reserve(3, chunk);
            }
            assert_eq!(layout.read().filter_bytes, 0, "budget {budget}");
            let stranger = markers("new", 1);
            assert_eq!(
                layout.levels_for(3, &stranger[0]),
                layout.read().by_number[&3].meta.levels
            );
            assert!(held.iter().all(|m| !layout.levels_for(3, m).is_empty()));
        }
    }

    #[test]
    fn a_generation_stored_before_the_opening_answers_once_filled() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let mut meta = GenerationMeta::new(8);
        meta.count = 500;
        tree.insert(meta_key(5), meta.encode()).unwrap();
        let layout = MarkerLayout::open(&tree, Duration::from_secs(4), 1 << 20).unwrap();
        assert_eq!(layout.unfilled(), [5]);
        let (stored, spilled, stranger) =
            (markers("old", 1), markers("since", 1), markers("new", 1));
        // Spilled since the opening: in the filter on its way to a bucket.
        layout.reserve(5, &spilled);
        assert!(
            !layout.levels_for(5, &stranger[0]).is_empty(),
            "not filled yet"
        );
        assert!(layout.fill(5, &[suffix(&stored[0])]));
        layout.filled(5);
        assert!(layout.unfilled().is_empty());
        assert!(layout.levels_for(5, &stranger[0]).is_empty());
        assert!(!layout.levels_for(5, &stored[0]).is_empty());
        assert!(!layout.levels_for(5, &spilled[0]).is_empty());
    }

    #[test]
    fn a_filling_generation_adds_levels() {
        let mut meta = GenerationMeta::new(10);
        meta.count = 48 * 1024;
        assert!(!meta.grow_if_full());
        meta.count += 1;
        assert!(meta.grow_if_full());
        assert_eq!(meta.levels, [10, 14]);
        meta.count = u64::MAX;
        while meta.grow_if_full() {}
        assert_eq!(meta.levels.len(), MAX_LEVELS);
    }
}
