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
//! than the window: a marker lives between one and 1.25 windows.

use std::{collections::BTreeMap, sync::RwLock, time::Duration};

use crate::{domain::Millis, storage::DedupeKey};

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

/// Which generations exist, their levels and marker counts.
pub struct MarkerLayout {
    window_ms: i64,
    span_ms: i64,
    generations: RwLock<BTreeMap<u32, GenerationMeta>>,
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
    /// Reads the generation metadata stored in `tree`.
    pub fn open(tree: &sled::Tree, window: Duration) -> sled::Result<Self> {
        let window_ms = (window.as_millis() as i64).max(GENERATIONS_PER_WINDOW);
        let mut generations = BTreeMap::new();
        for entry in tree.scan_prefix([META_PREFIX]) {
            let (key, value) = entry?;
            if let (Some(generation), Some(meta)) =
                (generation_of_meta_key(&key), GenerationMeta::decode(&value))
            {
                generations.insert(generation, meta);
            }
        }
        Ok(MarkerLayout {
            window_ms,
            span_ms: window_ms / GENERATIONS_PER_WINDOW,
            generations: RwLock::new(generations),
        })
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
        let generations = self.generations.read().unwrap_or_else(|e| e.into_inner());
        generations
            .keys()
            .copied()
            .filter(|&g| self.expires_at(g) + DROP_GRACE_MS <= now.0)
            .collect()
    }

    /// Levels of a generation's buckets (empty if nothing spilled into it).
    pub fn levels(&self, generation: u32) -> Levels {
        let generations = self.generations.read().unwrap_or_else(|e| e.into_inner());
        generations
            .get(&generation)
            .map(|meta| meta.levels.clone())
            .unwrap_or_default()
    }

    /// Counts `n` more markers into `generation` (created sized after the
    /// generation before it) and returns the bits of the level they go to,
    /// with the metadata to store when it must be: when the generation is
    /// new or gains a level (readers must know a level before any marker
    /// is in it), and each [`PERSIST_EVERY`] markers, so that the count a
    /// restart reads (to size the next generation) is nearly current. The
    /// caller stores it before writing the markers, and stores the
    /// reservations in the order they were made (see `SledStore`).
    pub fn reserve(&self, generation: u32, n: u64) -> (u8, Option<GenerationMeta>) {
        let mut generations = self.generations.write().unwrap_or_else(|e| e.into_inner());
        let fresh = !generations.contains_key(&generation);
        if fresh {
            let bits = generations
                .range(..generation)
                .next_back()
                .map_or(DEFAULT_BITS, |(_, previous)| previous.next_bits());
            generations.insert(generation, GenerationMeta::new(bits));
        }
        let meta = generations.get_mut(&generation).expect("inserted above");
        let before = meta.count;
        meta.count = meta.count.saturating_add(n);
        let grew = meta.grow_if_full();
        let persist = fresh || grew || before / PERSIST_EVERY != meta.count / PERSIST_EVERY;
        (meta.bits(), persist.then(|| meta.clone()))
    }

    pub fn forget(&self, generation: u32) {
        self.generations
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&generation);
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
