//! What the sled store keeps under a contact's key: the version, the encoded
//! profile, and the contact's own recent dedupe markers. Keeping the markers
//! in the record makes "apply these events once" a single-key
//! compare-and-swap, the cheapest atomic write sled has, and a lookup costs
//! no extra read. A contact with more than [`INLINE_MARKERS`] live markers
//! spills the rest into the shared buckets (`marker_buckets`).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::storage::{DedupeKey, Version, marker_buckets};

/// Live markers a record holds before new ones spill to the buckets (1 KiB
/// of suffixes at most): enough for the events of nearly every contact
/// within a dedupe window, so that almost every write stays a single-key
/// compare-and-swap. A spill costs a write per marker and a second swap of
/// the record.
pub const INLINE_MARKERS: usize = 128;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub version: Version,
    /// The encoded profile; `None` once the contact is erased (its markers
    /// stay, so that a redelivered old event cannot bring it back). Read
    /// and written as bytes (one copy) rather than serde's sequence of
    /// `u8`s (a call per byte); postcard writes both the same way.
    #[serde(with = "serde_bytes")]
    pub profile: Option<Vec<u8>>,
    /// Marker suffixes by generation, each list sorted.
    pub markers: Vec<(u32, Vec<u64>)>,
    /// Generations in which this contact's markers spilled to the buckets.
    pub spilled: Vec<u32>,
}

/// A record's leading fields, borrowed from its bytes: all a read needs.
/// The markers that follow are left undecoded (a read never looks at
/// them, and decoding a hundred varints per call showed in the profile of
/// `GetBestChannel`); writes decode the whole record.
#[derive(Debug, Deserialize)]
pub struct RecordHead<'a> {
    pub version: Version,
    #[serde(borrow)]
    pub profile: Option<&'a [u8]>,
}

pub fn suffix(marker: &DedupeKey) -> u64 {
    u64::from_be_bytes(marker_buckets::suffix(marker))
}

impl StoredRecord {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("record serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("record does not decode: {e}"))
    }

    /// The version and profile of an encoded record, without copying the
    /// profile. A `Vec<u8>` and a `&[u8]` are the same bytes in postcard (a
    /// length, then the bytes), so the head reads what `encode` wrote.
    pub fn head(bytes: &[u8]) -> Result<RecordHead<'_>, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("record does not decode: {e}"))
    }

    /// Whether `marker` is held inline in one of the `live` generations.
    pub fn holds(&self, live: &RangeInclusive<u32>, marker: &DedupeKey) -> bool {
        let suffix = suffix(marker);
        self.markers
            .iter()
            .any(|(g, suffixes)| live.contains(g) && suffixes.binary_search(&suffix).is_ok())
    }

    /// Live generations this contact spilled markers into.
    pub fn spilled_in<'a>(
        &'a self,
        live: &'a RangeInclusive<u32>,
    ) -> impl Iterator<Item = u32> + 'a {
        self.spilled.iter().copied().filter(|g| live.contains(g))
    }

    /// Drops generations that are no longer live.
    pub fn prune(&mut self, live: &RangeInclusive<u32>) {
        self.markers.retain(|(g, _)| live.contains(g));
        self.spilled.retain(|g| live.contains(g));
    }

    pub fn inline_count(&self) -> usize {
        self.markers.iter().map(|(_, s)| s.len()).sum()
    }

    /// Adds markers to `generation` inline.
    pub fn add_inline(&mut self, generation: u32, markers: &[DedupeKey]) {
        let slot = match self.markers.iter().position(|(g, _)| *g == generation) {
            Some(i) => i,
            None => {
                self.markers.push((generation, Vec::new()));
                self.markers.len() - 1
            }
        };
        let suffixes = &mut self.markers[slot].1;
        for marker in markers {
            let s = suffix(marker);
            if let Err(i) = suffixes.binary_search(&s) {
                suffixes.insert(i, s);
            }
        }
    }

    /// Drops `markers` from `generation`'s inline list (once they are in
    /// the buckets), and the list if it empties.
    pub fn remove_inline(&mut self, generation: u32, markers: &[DedupeKey]) {
        if let Some(slot) = self.markers.iter().position(|(g, _)| *g == generation) {
            let suffixes = &mut self.markers[slot].1;
            for marker in markers {
                if let Ok(i) = suffixes.binary_search(&suffix(marker)) {
                    suffixes.remove(i);
                }
            }
            if suffixes.is_empty() {
                self.markers.remove(slot);
            }
        }
    }

    pub fn mark_spilled(&mut self, generation: u32) {
        if !self.spilled.contains(&generation) {
            self.spilled.push(generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{ContactKey, Tenant};

    #[test]
    fn profile_bytes_are_written_as_a_plain_byte_vector_was() {
        // The layout of records on disk before `serde_bytes`.
        #[derive(Serialize)]
        struct Before {
            version: Version,
            profile: Option<Vec<u8>>,
            markers: Vec<(u32, Vec<u64>)>,
            spilled: Vec<u32>,
        }
        let record = StoredRecord {
            version: 70_000,
            profile: Some((0..=255).collect()),
            markers: vec![(3, vec![5, 1 << 40])],
            spilled: vec![2],
        };
        let before = Before {
            version: record.version,
            profile: record.profile.clone(),
            markers: record.markers.clone(),
            spilled: record.spilled.clone(),
        };
        let old = postcard::to_stdvec(&before).unwrap();
        assert_eq!(record.encode(), old);
        assert_eq!(StoredRecord::decode(&old).unwrap(), record);
    }

    #[test]
    fn a_head_reads_the_version_and_profile_of_every_record_shape() {
        let long: Vec<u8> = (0..=255).cycle().take(700).collect();
        for record in [
            StoredRecord::default(),
            StoredRecord {
                version: u32::MAX,
                profile: Some(long.clone()),
                markers: vec![(7, vec![1, u64::MAX]), (8, vec![])],
                spilled: vec![7],
            },
            StoredRecord {
                version: 300,
                profile: None,
                markers: vec![(9, vec![42])],
                spilled: vec![],
            },
        ] {
            let encoded = record.encode();
            let head = StoredRecord::head(&encoded).unwrap();
            assert_eq!(head.version, record.version);
            assert_eq!(head.profile, record.profile.as_deref());
        }
        assert!(StoredRecord::head(b"\xffnot a record at all").is_err());
        assert!(StoredRecord::head(&[]).is_err());
    }

    #[test]
    fn inline_markers_round_trip_and_expire_by_generation() {
        let key = ContactKey::new(&Tenant::default(), "c");
        let m: Vec<DedupeKey> = (0..5)
            .map(|i| DedupeKey::new(&key, &format!("e{i}")))
            .collect();
        let mut record = StoredRecord {
            version: 3,
            profile: Some(vec![2, 0, 0]),
            ..StoredRecord::default()
        };
        record.add_inline(10, &m[..3]);
        record.add_inline(11, &m[3..]);
        record.add_inline(11, &m[3..]);
        assert_eq!(record.inline_count(), 5);
        let mut spilled = record.clone();
        spilled.remove_inline(11, &m[3..]);
        spilled.remove_inline(12, &m[..1]);
        assert_eq!(
            spilled.markers,
            record.markers[..1],
            "generation 11 emptied"
        );
        let encoded = record.encode();
        let decoded = StoredRecord::decode(&encoded).unwrap();
        assert_eq!(decoded, record);
        let head = StoredRecord::head(&encoded).unwrap();
        assert_eq!((head.version, head.profile), (3, Some(&[2u8, 0, 0][..])));
        assert!(decoded.holds(&(10..=11), &m[0]) && decoded.holds(&(11..=11), &m[4]));
        assert!(
            !decoded.holds(&(11..=11), &m[0]),
            "generation 10 is no longer live"
        );
        let mut pruned = decoded;
        pruned.mark_spilled(10);
        pruned.prune(&(11..=11));
        assert_eq!(pruned.inline_count(), 2);
        assert!(pruned.spilled.is_empty());
    }
}
