//! Filling the dedupe markers' filters (`marker_filter`) of the generations
//! that already held markers when the store opened: their buckets are read
//! on a thread of their own, a chunk at a time, so that start-up does not
//! wait for it and a reopen (which waits for every holder of the opening)
//! waits for one chunk at most. Until a generation's filter is filled its
//! buckets are read, as without one.

use std::{
    sync::{Arc, Weak},
    time::Instant,
};

use crate::storage::{
    marker_buckets::{self, SUFFIX_BYTES},
    sled_store::Open,
};

/// Buckets read per hold of the opening (a few hundred bytes each).
const BUCKETS_PER_CHUNK: usize = 1024;

/// Starts filling the filters `open` left unfilled, if any.
pub(super) fn spawn(open: &Arc<Open>) {
    let pending = open.layout.unfilled();
    if pending.is_empty() {
        return;
    }
    let open = Arc::downgrade(open);
    let spawned = std::thread::Builder::new()
        .name("reach-marker-filters".into())
        .spawn(move || {
            for generation in pending {
                let started = Instant::now();
                match fill(&open, generation) {
                    Ok(Some(markers)) => tracing::info!(
                        generation,
                        markers,
                        seconds = started.elapsed().as_secs_f64(),
                        "filled a dedupe generation's filter from its buckets"
                    ),
                    // Closed, expired or over the budget: nothing to do.
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        generation,
                        "cannot read a dedupe generation's buckets into its filter: its markers are looked up in the buckets"
                    ),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start filling the dedupe markers' filters: their markers are looked up in the buckets");
    }
}

/// Reads `generation`'s buckets into its filter; the markers read once it
/// is filled, `None` if it stopped first.
fn fill(opening: &Weak<Open>, generation: u32) -> sled::Result<Option<u64>> {
    let prefix = marker_buckets::generation_prefix(generation);
    let mut from = prefix.to_vec();
    let mut markers = 0u64;
    loop {
        let Some(open) = opening.upgrade() else {
            return Ok(None);
        };
        let mut suffixes = Vec::new();
        let (mut last, mut buckets) = (None, 0);
        for entry in open.tree.range(from.as_slice()..).take(BUCKETS_PER_CHUNK) {
            let (key, bucket) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            suffixes.extend(
                bucket
                    .chunks_exact(SUFFIX_BYTES)
                    .map(|s| <[u8; SUFFIX_BYTES]>::try_from(s).expect("suffix bytes")),
            );
            last = Some(key);
            buckets += 1;
        }
        markers += suffixes.len() as u64;
        if !open.layout.fill(generation, &suffixes) {
            return Ok(None);
        }
        match last {
            // A full chunk: the generation may have more keys after it.
            Some(last) if buckets == BUCKETS_PER_CHUNK => {
                from = last.to_vec();
                from.push(0);
            }
            _ => {
                open.layout.filled(generation);
                return Ok(Some(markers));
            }
        }
    }
}
