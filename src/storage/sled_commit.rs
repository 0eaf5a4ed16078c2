//! Writing a contact's record in the sled store: each op one
//! compare-and-swap of its record with the op's dedupe markers held inline,
//! a busy contact's markers then spilled to the shared buckets, and records
//! that no longer decode moved aside. `sled_store` opens the database and
//! answers the [`Store`] trait with these.

use sled::IVec;

use crate::{
    domain::Millis,
    storage::{
        Commit, CommitOp, ContactKey, DedupeKey, Record, StoreError, marker_buckets,
        note_quarantined,
        sled_record::{INLINE_MARKERS, StoredRecord},
        sled_store::{Open, QUARANTINE_PREFIX, record_key, tenant_key, to_store_error},
    },
};

#[cfg(doc)]
use crate::storage::Store;

impl Open {
    /// Moves the record under `key` aside to the quarantine prefix (see
    /// [`Store::quarantine`]); blocking. Takes no write gate: `read` calls it
    /// from writes that hold the gate already (a second shared hold could
    /// deadlock behind a waiting backup); the move is one atomic batch.
    pub(super) fn quarantine_now(&self, key: &ContactKey, reason: &str) -> Result<(), StoreError> {
        let record = record_key(key);
        let Some(raw) = self.tree.get(&record).map_err(to_store_error)? else {
            return Ok(());
        };
        let mut aside = tenant_key(QUARANTINE_PREFIX, &key.tenant, &key.contact_id);
        aside.push(0);
        aside.extend_from_slice(&Millis::now().0.to_be_bytes());
        // The raw bytes, then why, so the record can be studied or repaired.
        let mut value = (raw.len() as u32).to_le_bytes().to_vec();
        value.extend_from_slice(&raw);
        value.extend_from_slice(reason.as_bytes());
        let mut batch = sled::Batch::default();
        batch.insert(aside, value);
        batch.remove(record);
        self.tree.apply_batch(batch).map_err(to_store_error)?;
        note_quarantined(&key.tenant, reason, "prefix q");
        Ok(())
    }

    /// The raw and decoded record under `key`.
    pub(super) fn read(
        &self,
        key: &ContactKey,
    ) -> Result<Option<(IVec, StoredRecord)>, StoreError> {
        let Some(raw) = self.tree.get(record_key(key)).map_err(to_store_error)? else {
            return Ok(None);
        };
        match StoredRecord::decode(&raw) {
            Ok(record) => Ok(Some((raw, record))),
            Err(reason) => Err(self.moved_aside(key, reason)),
        }
    }

    /// The version and profile under `key`, the markers left undecoded.
    pub(super) fn read_head(&self, key: &ContactKey) -> Result<Option<Record>, StoreError> {
        let Some(raw) = self.tree.get(record_key(key)).map_err(to_store_error)? else {
            return Ok(None);
        };
        match StoredRecord::head(&raw) {
            Ok(head) => Ok(head.profile.map(|bytes| Record {
                version: head.version,
                bytes: bytes.to_vec(),
            })),
            Err(reason) => Err(self.moved_aside(key, reason)),
        }
    }

    /// Quarantines a record that does not decode: the caller's error.
    fn moved_aside(&self, key: &ContactKey, reason: String) -> StoreError {
        if let Err(e) = self.quarantine_now(key, &reason) {
            return e;
        }
        StoreError::Corrupt {
            contact: key.contact_id.clone(),
            reason,
        }
    }

    /// Whether `marker` is in `generation`'s buckets: a read per level,
    /// unless the generation's filter rules it out (`marker_filter`).
    pub(super) fn in_buckets(
        &self,
        generation: u32,
        marker: &DedupeKey,
    ) -> Result<bool, StoreError> {
        let levels = self.layout.levels_for(generation, marker);
        let suffix = marker_buckets::suffix(marker);
        for &bits in levels.iter().rev() {
            let key = marker_buckets::bucket_key(generation, bits, marker);
            if let Some(bucket) = self.tree.get(key).map_err(to_store_error)?
                && marker_buckets::contains(&bucket, &suffix)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One op as a compare-and-swap of its record, the op's markers held
    /// inline: the swap is the one point at which the events are applied
    /// and remembered, together. If the markers take the record past
    /// `INLINE_MARKERS`, they then move to the buckets (`spill`).
    pub(super) fn try_commit(&self, mut op: CommitOp, now: Millis) -> Result<Commit, StoreError> {
        let live = self.layout.live_range(now);
        let generation = *live.end();
        let key = record_key(&op.key);
        let mut as_read = op.read.take_sled();
        loop {
            // First against the bytes the op was computed from; after a
            // lost swap, against what the store holds now.
            let current = match as_read.take() {
                Some(current) => current,
                None => self.tree.get(&key).map_err(to_store_error)?,
            };
            let Some(record) = next_record(&op, current.as_deref(), &live)? else {
                return Ok(Commit::Conflict);
            };
            let spills = record.inline_count() + op.markers.len() > INLINE_MARKERS;
            let version = record.version;
            let record = with_inline(record, generation, &op.markers);
            let swapped = self
                .tree
                .compare_and_swap(&key, current, Some(record.encode()))
                .map_err(to_store_error)?;
            if swapped.is_err() {
                // Lost to another write; `next_record` tells whether it was
                // a spill's (same version: go again) or another event's.
                continue;
            }
            if spills && let Err(e) = self.spill(&op.key, generation, &op.markers) {
                // The events are applied and their markers held inline,
                // so nothing is lost or counted twice: the record stays a
                // few markers over its share until they expire.
                tracing::warn!(error = %e, "moving a busy contact's markers to the buckets failed");
            }
            return Ok(Commit::Applied(version));
        }
    }

    /// Moves `markers`, held inline in `key`'s record since its last swap,
    /// to `generation`'s buckets, then drops them from the record. Every
    /// step is a single-key write, none a transaction: sled's transactions
    /// take its process-wide write lock, which waits for the flush in
    /// progress (a whole `fsync`) and holds back every other write, so a
    /// busy contact's spill stalled the whole store. In every state
    /// between the steps each marker is in the record or in a bucket its
    /// generation's levels name, so a crash in between loses nothing.
    fn spill(
        &self,
        key: &ContactKey,
        generation: u32,
        markers: &[DedupeKey],
    ) -> Result<(), StoreError> {
        let bits = {
            // Stores of a generation's metadata in the order it changed,
            // so an older count or level list never overwrites a newer.
            let _sizing = self.sizing.lock().unwrap_or_else(|e| e.into_inner());
            let (bits, meta) = self.layout.reserve(generation, markers);
            if let Some(meta) = meta {
                self.tree
                    .insert(marker_buckets::meta_key(generation), meta.encode())
                    .map_err(to_store_error)?;
            }
            bits
        };
        for marker in markers {
            let bucket_key = marker_buckets::bucket_key(generation, bits, marker);
            let suffix = marker_buckets::suffix(marker);
            self.tree
                .fetch_and_update(bucket_key, |bucket| {
                    let mut bucket = bucket.map(<[u8]>::to_vec).unwrap_or_default();
                    marker_buckets::insert(&mut bucket, &suffix);
                    Some(bucket)
                })
                .map_err(to_store_error)?;
        }
        let record_key = record_key(key);
        loop {
            let Some((raw, mut record)) = self.read(key)? else {
                return Ok(());
            };
            record.mark_spilled(generation);
            record.remove_inline(generation, markers);
            let swapped = self
                .tree
                .compare_and_swap(&record_key, Some(raw), Some(record.encode()))
                .map_err(to_store_error)?;
            if swapped.is_ok() {
                metrics::counter!("reach_dedupe_markers_spilled_total")
                    .increment(markers.len() as u64);
                return Ok(());
            }
        }
    }

    /// Every op as a compare-and-swap of its own record, not one transaction
    /// for all: an event needs its own contact's record and markers written
    /// together (one swap), not other contacts'; and a sled transaction
    /// takes sled's process-wide write lock, which waits for every read,
    /// write and flush in progress and holds back every new one.
    pub(super) fn commit_each(&self, ops: Vec<CommitOp>, now: Millis) -> Vec<Commit> {
        ops.into_iter()
            .map(|op| self.try_commit(op, now).unwrap_or_else(Commit::Failed))
            .collect()
    }
}

/// The record `op` would write over `current`, or `None` if `current` is
/// not at the version the op expects. Generations out of the window are
/// pruned on the way.
fn next_record(
    op: &CommitOp,
    current: Option<&[u8]>,
    live: &std::ops::RangeInclusive<u32>,
) -> Result<Option<StoredRecord>, StoreError> {
    let mut record = match current {
        Some(raw) => StoredRecord::decode(raw).map_err(|reason| StoreError::Corrupt {
            contact: op.key.contact_id.clone(),
            reason,
        })?,
        None => StoredRecord::default(),
    };
    if current.map(|_| record.version) != op.expected {
        return Ok(None);
    }
    record.prune(live);
    record.version = if current.is_some() {
        record.version.wrapping_add(1)
    } else {
        1
    };
    record.profile = Some(op.value.clone());
    Ok(Some(record))
}

fn with_inline(mut record: StoredRecord, generation: u32, markers: &[DedupeKey]) -> StoredRecord {
    record.add_inline(generation, markers);
    record
}
