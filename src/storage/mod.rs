//! Durable state behind one trait, so that an embedded engine (sled, the
//! default) and a networked one can serve the same service.
//!
//! The trait is shaped for optimistic concurrency over a network: read a
//! record with its version, compute the new state in the caller, then
//! compare-and-swap it together with put-if-absent dedupe markers in one
//! atomic step. Nothing here knows about scoring or gRPC.

mod backend;
pub mod backup;
pub mod codec;
pub(crate) mod group_commit;
mod keys;
mod marker_buckets;
mod marker_filter;
mod redis_config;
mod redis_keys;
mod redis_link;
mod redis_shared;
mod redis_store;
mod sled_backup;
mod sled_commit;
mod sled_config;
mod sled_filter_fill;
mod sled_intelligence;
mod sled_record;
mod sled_store;

use std::future::Future;

pub use backend::{Backend, BackendKind};
pub use keys::{ContactKey, DedupeKey, Tenant};
pub use redis_config::RedisConfig;
pub use redis_store::RedisStore;
pub use sled_config::SledConfig;
pub use sled_store::SledStore;

use crate::domain::{
    Millis,
    stats::{Dims, StatCell},
};

/// Store-assigned version of a record, changed by every write.
pub type Version = u32;

/// Small per-tenant catalogs kept beside the contacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Catalog {
    Senders,
    SendPolicies,
}

/// A stored record: opaque bytes and the version to compare-and-swap against.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub version: Version,
    pub bytes: Vec<u8>,
}

/// A contact's record and which of the asked-for dedupe markers exist.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The contact's profile; `None` if it never existed or was erased.
    pub record: Option<Record>,
    /// What to compare-and-swap against: the record's version, also for an
    /// erased contact whose markers remain; `None` if nothing is stored.
    pub version: Option<Version>,
    /// One flag per marker asked for, in order.
    pub seen: Vec<bool>,
    /// The record as the store read it, for the commit that follows.
    pub read: AsRead,
}

/// A record as a store read it, handed back with the commit that follows
/// the read: sled compares and swaps whole values, and with the bytes it
/// read it need not read the record again to learn what to compare
/// against (a second `Tree::get`, 6% of a bulk event's server CPU). If the
/// record changed meanwhile the swap fails and the store reads it afresh,
/// as it would without. Opaque outside the storage layer; empty (the
/// default) for stores that compare versions, and for ops built without a
/// read.
#[derive(Clone, Debug, Default)]
pub struct AsRead(Option<Option<sled::IVec>>);

impl AsRead {
    /// What sled read: the record's bytes, or `None` if it was absent.
    pub(crate) fn sled(read: Option<sled::IVec>) -> Self {
        AsRead(Some(read))
    }

    /// The bytes read, if the store kept them (`Some(None)`: read absent).
    pub(crate) fn take_sled(&mut self) -> Option<Option<sled::IVec>> {
        self.0.take()
    }
}

/// Outcome of one compare-and-swap of a `commit_many`. Outcomes are per op
/// because a store that is not all-or-nothing across contacts (Redis) can
/// fail some ops of a call after others were written, and what was written
/// must still be treated as recorded: a retry finds its markers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Commit {
    Applied(Version),
    /// The record changed or a marker appeared since it was read: nothing was
    /// written; read again and retry.
    Conflict,
    /// Written, but not confirmed as durable as configured (Redis: fewer
    /// replicas than `wait_replicas` acknowledged in time). The write stands,
    /// so it counts as applied, and the call still fails with this error.
    Unconfirmed(Version, StoreError),
    /// This op failed; nothing of it is known to be written.
    Failed(StoreError),
}

/// Errors of the storage layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The engine cannot serve the request now (I/O error, disk full, node
    /// down); retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record no longer decodes.
    #[error("stored record of contact {contact:?} is corrupt: {reason}")]
    Corrupt { contact: String, reason: String },
    /// A bug or an unsupported operation in the engine.
    #[error("store failure: {0}")]
    Internal(String),
}

/// What [`Store::load_many`] reads for one contact.
#[derive(Clone, Debug)]
pub struct LoadRequest {
    pub key: ContactKey,
    pub markers: Vec<DedupeKey>,
}

/// One compare-and-swap: the contact's new record and the markers of the
/// events it applied.
#[derive(Clone, Debug)]
pub struct CommitOp {
    pub key: ContactKey,
    /// The version read; `None` if the record was absent.
    pub expected: Option<Version>,
    pub value: Vec<u8>,
    pub markers: Vec<DedupeKey>,
    /// The snapshot's [`Snapshot::read`], or the default if none was read.
    pub read: AsRead,
}

/// Time granularity of statistics cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// Per minute, route dimensions only: what route health reads.
    Minute,
    /// Per day, every dimension: what `QueryDeliveryStats` reads.
    Day,
}

impl Granularity {
    pub fn millis(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Day => 86_400_000,
        }
    }

    pub fn bucket(self, at: Millis) -> u32 {
        at.0.div_euclid(self.millis()).clamp(0, u32::MAX as i64) as u32
    }
}

/// Additions to one statistics cell.
#[derive(Clone, Debug, PartialEq)]
pub struct StatDelta {
    pub tenant: Tenant,
    pub granularity: Granularity,
    pub bucket: u32,
    pub dims: Dims,
    pub cell: StatCell,
}

/// A message whose receipt window ends at `at`: the silence sweep looks at
/// it then.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Deadline {
    pub at: Millis,
    pub tenant: String,
    pub contact_id: String,
    pub message_id: String,
    /// The route and campaign of the message, for statistics.
    pub dims: Dims,
}

/// Durable per-contact records and dedupe markers.
///
/// Calls take many contacts at once so that an engine can serve a bulk
/// ingest chunk in one round trip; each contact's operation stays atomic on
/// its own.
pub trait Store: Send + Sync + 'static {
    /// Reads each contact's record and checks which of its markers exist.
    /// `now` decides which marker generations are still live.
    fn load_many(
        &self,
        requests: &[LoadRequest],
        now: Millis,
    ) -> impl Future<Output = Result<Vec<Snapshot>, StoreError>> + Send;

    /// Reads a contact's record.
    fn get(
        &self,
        key: &ContactKey,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// For each op, atomically: if the record is still at `expected` and none
    /// of its markers exists, writes the value and puts every marker;
    /// otherwise writes nothing for that op and returns [`Commit::Conflict`].
    /// An error of the whole call means no op was written; an op that failed
    /// beside others that were written is reported per op.
    fn commit_many(
        &self,
        ops: Vec<CommitOp>,
        now: Millis,
    ) -> impl Future<Output = Result<Vec<Commit>, StoreError>> + Send;

    /// Removes a contact's record (markers stay). Returns whether it existed.
    fn delete(&self, key: &ContactKey) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Moves a contact's record that no longer decodes aside, for
    /// inspection (`reach_corrupt_records_total`, the log), so that the
    /// contact starts afresh instead of failing forever. Durable after the
    /// next `sync`.
    fn quarantine(
        &self,
        key: &ContactKey,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a dead letter under `id` (overwriting one with the same id, so
    /// a redelivered request is kept once). Returns whether the id was new.
    /// Durable after the next `sync`.
    fn put_dead_letter(
        &self,
        tenant: &Tenant,
        id: &str,
        value: &[u8],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Up to `limit` dead letters of `tenant` with ids after `after`, in id order.
    fn list_dead_letters(
        &self,
        tenant: &Tenant,
        after: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, StoreError>> + Send;

    /// Removes a dead letter; whether it existed.
    fn delete_dead_letter(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a catalog entry (a sender, a send policy) under `id`,
    /// replacing any. Durable after the next `sync`.
    fn put_entry(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
        id: &str,
        value: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A catalog entry of `tenant`, if stored.
    fn get_entry(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
        id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Every entry of a catalog of `tenant`, in id order.
    fn list_entries(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, StoreError>> + Send;

    /// Adds the deltas to their statistics cells and takes each one written
    /// out of `deltas`: after an error, the deltas left were not written, so
    /// retrying them counts nothing twice.
    fn add_stats(
        &self,
        deltas: &mut Vec<StatDelta>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Day cells of `tenant` in `[from, to]` (day numbers since the epoch).
    fn day_stats(
        &self,
        tenant: &Tenant,
        from: u32,
        to: u32,
    ) -> impl Future<Output = Result<Vec<(u32, Dims, StatCell)>, StoreError>> + Send;

    /// Minute cells of every tenant in `[from, to]` (minutes since the epoch).
    fn minute_stats(
        &self,
        from: u32,
        to: u32,
    ) -> impl Future<Output = Result<Vec<(Tenant, u32, Dims, StatCell)>, StoreError>> + Send;

    /// Drops minute cells before `before` (a minute number).
    fn trim_minute_stats(
        &self,
        before: u32,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Notes a message's receipt deadline for the silence sweep (idempotent).
    fn put_deadline(
        &self,
        deadline: &Deadline,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` deadlines at or before `now`, earliest first.
    fn due_deadlines(
        &self,
        now: Millis,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Deadline>, StoreError>> + Send;

    fn delete_deadline(
        &self,
        deadline: &Deadline,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Appends actions to `tenant`'s outbox; returns their sequence numbers
    /// (increasing, never reused). Durable after the next `sync`.
    fn append_actions(
        &self,
        tenant: &Tenant,
        actions: &[(Millis, Vec<u8>)],
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;

    /// Up to `limit` actions of `tenant` after sequence `after`.
    fn actions_after(
        &self,
        tenant: &Tenant,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(u64, Millis, Vec<u8>)>, StoreError>> + Send;

    /// Drops actions (of every tenant) that happened before `before`.
    fn trim_actions(
        &self,
        before: Millis,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Resolves once every write completed before the call is durable.
    /// Concurrent callers share one flush.
    fn sync(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops dedupe markers older than the dedupe window, a whole generation
    /// at a time. Returns how many generations were dropped.
    fn expire_markers(&self, now: Millis)
    -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Flushes everything; called once at shutdown.
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many contacts a write reads, prepares and commits at a time. A
    /// networked store wants all of a call's contacts in one round trip;
    /// an embedded one wants a few, so that a contact's leaf is still in
    /// the processor's cache when the swap walks down to it again.
    fn contacts_per_pass(&self) -> usize {
        usize::MAX
    }
}

/// Says that a record was moved aside by [`Store::quarantine`]: the metric
/// and the error line every store writes, `place` naming where it went.
pub(crate) fn note_quarantined(tenant: &Tenant, reason: &str, place: &str) {
    metrics::counter!("reach_corrupt_records_total").increment(1);
    tracing::error!(
        tenant = tenant.as_str(),
        reason,
        "a stored contact record does not decode: moved aside ({place}) and the contact starts afresh"
    );
}
