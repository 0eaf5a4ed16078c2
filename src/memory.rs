//! What the allocator holds, as Prometheus gauges: RSS alone cannot tell a
//! leak (live heap growing) from fragmentation or pages the allocator keeps
//! for reuse (resident growing over a flat heap). The soak reads them to
//! split its RSS drift (docs/reliability.md). jemalloc is the global
//! allocator of the `reach` binary only (main.rs): in a library user or a
//! test binary these figures cover only what is allocated through it.

/// jemalloc's own figures, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes the program has allocated and not freed: the live heap.
    pub allocated: u64,
    /// Bytes in pages holding live allocations (allocated plus the unused
    /// part of those pages).
    pub active: u64,
    /// Bytes of the allocator's pages that may be resident, its own metadata
    /// and dirty pages not yet returned included: an upper bound (pages
    /// mapped but never touched count too), so it can exceed the RSS.
    pub resident: u64,
    /// Bytes of the allocator's own metadata.
    pub metadata: u64,
}

/// The allocator's figures now, or `None` when reach runs on the system
/// allocator (the `system-allocator` feature, for heap profilers).
#[cfg(not(feature = "system-allocator"))]
pub fn allocator_stats() -> Option<AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // jemalloc caches its statistics until the epoch advances.
    epoch::advance().ok()?;
    Some(AllocatorStats {
        allocated: stats::allocated::read().ok()? as u64,
        active: stats::active::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
        metadata: stats::metadata::read().ok()? as u64,
    })
}

#[cfg(feature = "system-allocator")]
pub fn allocator_stats() -> Option<AllocatorStats> {
    None
}

/// Sets the `reach_allocator_*_bytes` gauges from [`allocator_stats`].
pub fn publish() {
    let Some(s) = allocator_stats() else {
        return;
    };
    metrics::gauge!("reach_allocator_allocated_bytes").set(s.allocated as f64);
    metrics::gauge!("reach_allocator_active_bytes").set(s.active as f64);
    metrics::gauge!("reach_allocator_resident_bytes").set(s.resident as f64);
    metrics::gauge!("reach_allocator_metadata_bytes").set(s.metadata as f64);
}
