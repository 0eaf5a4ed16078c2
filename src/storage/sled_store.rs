//! The embedded default store: sled, with group-committed durability.
//!
//! Layout, in tree `reach`:
//! - `p tenant 0x00 contact` -> a [`StoredRecord`]: version, encoded profile
//!   and the contact's recent dedupe markers;
//! - `m generation bits bucket` -> markers that spilled out of records with
//!   more than `INLINE_MARKERS` of them (see `marker_buckets`);
//! - `g generation` -> that generation's bucket levels and marker count;
//! - `d tenant 0x00 id` -> a dead-lettered provider event.
//!
//! Applying events is one compare-and-swap of the contact's record
//! (`sled_commit`): sled's
//! cheapest atomic write, which takes no global lock, so readers and writers
//! run side by side. A busy contact's spill to the buckets follows the swap,
//! key by key. Batches and transactions take sled's process-wide write lock,
//! which waits for every write and flush in progress (a whole `fsync`) and
//! holds back every new one, so the serving path and its background work
//! (bulk chunks, spills, the outbox, the statistics, the trims) write key by
//! key; a batch is left to rare work (quarantine, marker expiry, restore). `sync` waits for a flush shared by
//! every concurrent writer (`group_commit`).

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock, RwLockReadGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;

use crate::{
    domain::{
        Millis,
        stats::{Dims, StatCell},
    },
    storage::{
        AsRead, Catalog, Commit, CommitOp, ContactKey, Deadline, LoadRequest, Record, SledConfig,
        Snapshot, StatDelta, Store, StoreError, Tenant,
        group_commit::GroupCommit,
        marker_buckets::{self, MarkerLayout},
        sled_filter_fill, sled_intelligence as intelligence,
    },
};

/// Contacts a write reads, prepares and swaps at a time
/// ([`Store::contacts_per_pass`]): a bulk chunk's few hundred contacts read
/// all before any was swapped left each swap to walk sled's tree again
/// through leaves the processor's cache had dropped meanwhile.
const CONTACTS_PER_PASS: usize = 16;

pub struct SledStore {
    dir: PathBuf,
    /// What a reopen opens with; boxed, as it is read only then (and holds
    /// the Redis settings too).
    config: Box<SledConfig>,
    /// The open database; `None` only while it is being reopened.
    open: ArcSwapOption<Open>,
    /// A flush failed (disk full, read-only remount): sled refuses every
    /// later write, so the store must be reopened once the disk takes
    /// writes again (`recover_blocking`).
    failed: AtomicBool,
    /// Every write holds it shared; a backup or a reopen holds it
    /// exclusively, so it falls between whole writes (see `sled_backup`).
    pub(super) writes: Arc<RwLock<()>>,
}

/// One opening of the sled database (its records written by `sled_commit`).
pub(super) struct Open {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) layout: Arc<MarkerLayout>,
    group: GroupCommit,
    /// Held while the outbox allocates and inserts sequence numbers, so
    /// that they become visible in order.
    outbox_order: Mutex<()>,
    /// Orders the stores of marker generations' metadata (`spill`).
    pub(super) sizing: Mutex<()>,
}

/// Shared hold on the write gate. A poisoned lock only means a writer
/// panicked; the unit it guards cannot be inconsistent.
fn writing(gate: &RwLock<()>) -> RwLockReadGuard<'_, ()> {
    gate.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const RECORD_PREFIX: u8 = b'p';
const DEAD_LETTER_PREFIX: u8 = b'd';
const SENDER_PREFIX: u8 = b's';
const POLICY_PREFIX: u8 = b'y';
/// `q tenant 0x00 contact 0x00 millis`: records moved aside as corrupt.
pub(super) const QUARANTINE_PREFIX: u8 = b'q';

fn catalog_prefix(catalog: Catalog) -> u8 {
    match catalog {
        Catalog::Senders => SENDER_PREFIX,
        Catalog::SendPolicies => POLICY_PREFIX,
    }
}
/// Keys removed per batch when dropping a generation of spilled markers.
const EXPIRY_CHUNK: usize = 10_000;

/// How [`to_store_error`] begins the reason of an I/O error.
const IO_ERROR: &str = "i/o error: ";

pub(super) fn to_store_error(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::Unavailable(format!("{IO_ERROR}{io}")),
        sled::Error::Corruption { at, .. } => {
            StoreError::Internal(format!("sled reports corruption at {at:?}"))
        }
        other => StoreError::Internal(other.to_string()),
    }
}

/// `prefix tenant 0x00 name`: the tenant alphabet excludes 0x00, so keys of
/// different tenants never collide and a tenant's keys share a prefix.
pub(super) fn tenant_key(prefix: u8, tenant: &Tenant, name: &str) -> Vec<u8> {
    let (tenant, name) = (tenant.as_str().as_bytes(), name.as_bytes());
    let mut bytes = Vec::with_capacity(2 + tenant.len() + name.len());
    bytes.push(prefix);
    bytes.extend_from_slice(tenant);
    bytes.push(0);
    bytes.extend_from_slice(name);
    bytes
}

pub(super) fn record_key(key: &ContactKey) -> Vec<u8> {
    tenant_key(RECORD_PREFIX, &key.tenant, &key.contact_id)
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Blocking: sled recovers its log here.
    pub fn open(dir: impl Into<PathBuf>, config: &SledConfig) -> Result<Self, StoreError> {
        let dir = dir.into();
        let open = Arc::new(Open::start(&dir, config)?);
        sled_filter_fill::spawn(&open);
        Ok(SledStore {
            dir,
            config: Box::new(config.clone()),
            open: ArcSwapOption::new(Some(open)),
            failed: AtomicBool::new(false),
            writes: Arc::new(RwLock::new(())),
        })
    }

    /// The open database, or UNAVAILABLE while it is being reopened.
    pub(super) fn live(&self) -> Result<Arc<Open>, StoreError> {
        self.open.load_full().ok_or_else(|| {
            StoreError::Unavailable(
                "the store is reopening after a failed write to disk; retry shortly".into(),
            )
        })
    }

    /// Flushes everything to disk, blocking the calling thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.live()?.db.flush().map(drop).map_err(to_store_error)
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.live()?.db.size_on_disk().map_err(to_store_error)
    }

    /// Bytes of every key and value of every tree: what the store holds.
    /// [`Self::size_on_disk`] is larger by the log sled has not reclaimed
    /// yet (rewritten pages wait in their segments until a segment is
    /// cleaned). Blocking: reads the whole store.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let db = &self.live()?.db;
        let mut total = 0u64;
        for name in db.tree_names() {
            let tree = db.open_tree(&name).map_err(to_store_error)?;
            for item in tree.iter() {
                let (key, value) = item.map_err(to_store_error)?;
                total += (key.len() + value.len()) as u64;
            }
        }
        Ok(total)
    }

    /// Whether a flush failed and the store waits to be reopened.
    pub fn needs_recovery(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Passes a write's result on, marking the store for reopening if sled
    /// met an I/O error. sled keeps the first error of a failed flush and
    /// returns it from every later write until it is reopened, and which
    /// call meets it first is a race: a group commit's flush, or the next
    /// compare-and-swap, or a statistics write (a store left unmarked
    /// refused writes for good after the disk had room again).
    fn noticed<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            self.notice(e);
        }
        result
    }

    fn notice(&self, e: &StoreError) {
        let io = matches!(e, StoreError::Unavailable(reason) if reason.starts_with(IO_ERROR));
        if io && !self.failed.swap(true, Ordering::SeqCst) {
            metrics::gauge!("reach_store_failed").set(1.0);
            tracing::error!(
                error = %e,
                "a write to disk failed: writes are refused (UNAVAILABLE) until the data directory takes writes again, then the store reopens by itself"
            );
        }
    }

    /// After a failed flush sled refuses every write until it is reopened.
    /// Once the data directory takes writes again (a probe file of
    /// `PROBE_BYTES` is written and synced), this waits for writes in
    /// flight, closes the database and opens it again: what was
    /// acknowledged is on disk, what failed was never acknowledged. Reads
    /// go on from the old opening until the swap. Blocking; returns whether
    /// it reopened.
    pub fn recover_blocking(&self) -> Result<bool, StoreError> {
        if !self.needs_recovery() || !probe_writable(&self.dir) {
            return Ok(false);
        }
        // Writers hold the gate while they use the opening, so once it is
        // held exclusively none is mid-write; after the swap new calls get
        // UNAVAILABLE. The gate is let go before waiting, so the marker
        // expiry (which takes it per chunk) can finish and let go too.
        let old = {
            let _all = self
                .writes
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.open.swap(None)
        };
        if let Some(mut old) = old {
            // Readers finish with the old opening before it closes: sled
            // holds a lock on its directory.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(open) => {
                        drop(open);
                        break;
                    }
                    Err(still_used) if std::time::Instant::now() < deadline => {
                        old = still_used;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still_used) => {
                        self.open.store(Some(still_used));
                        return Err(StoreError::Unavailable(
                            "cannot reopen the store: still in use".into(),
                        ));
                    }
                }
            }
        }
        let open = Arc::new(Open::start(&self.dir, &self.config)?);
        sled_filter_fill::spawn(&open);
        self.open.store(Some(open));
        self.failed.store(false, Ordering::SeqCst);
        Ok(true)
    }
}

/// Opens sled, waiting up to 2 s for its directory lock: right after a
/// previous opening in this process closed (a reopen, a test), sled's I/O
/// threads may still be letting go of it.
fn open_db(dir: &std::path::Path, config: &SledConfig) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_capacity_mib.saturating_mul(1024 * 1024))
            .flush_every_ms(Some(cleaning_interval_ms(config)))
            .open();
        match opened {
            // sled reports its lock as an `Other` error with this text (its
            // own tests block on the lock for the same reason).
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.map_err(to_store_error),
        }
    }
}

/// `store.cleaning_interval` in sled's whole milliseconds (the config
/// refuses less than one).
fn cleaning_interval_ms(config: &SledConfig) -> u64 {
    u64::try_from(config.cleaning_interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Bytes the data directory must take before a reopen is tried.
const PROBE_BYTES: usize = 4 << 20;

fn probe_writable(dir: &std::path::Path) -> bool {
    use std::io::Write;
    let path = dir.join(".reach-probe");
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    written.is_ok()
}

impl Open {
    fn start(dir: &std::path::Path, config: &SledConfig) -> Result<Self, StoreError> {
        let db = open_db(dir, config)?;
        let tree = db.open_tree("reach").map_err(to_store_error)?;
        let filter_budget = config.marker_filter_mib.saturating_mul(1024 * 1024);
        let layout = MarkerLayout::open(&tree, config.dedupe_window, filter_budget)
            .map_err(to_store_error)?;
        let flush_db = db.clone();
        // sled's flush on Linux ends in sync_file_range, which makes the
        // written pages durable but not the file's growth (its size and
        // extents): a log that grew since the last fsync of sled's own
        // background flusher (every 500 ms) could lose acknowledged writes
        // to a power cut or a journal abort. fdatasync of the log file, on
        // any descriptor of it, makes them durable too.
        let log = std::fs::File::open(dir.join("db"))
            .map_err(|e| StoreError::Unavailable(format!("opening sled's log file: {e}")))?;
        let group = GroupCommit::start("reach-flusher", config.commit_gather, move || {
            flush_db.flush().map_err(|e| e.to_string())?;
            log.sync_data().map_err(|e| format!("i/o error: {e}"))
        })
        .map_err(|e| StoreError::Internal(format!("cannot start the flusher: {e}")))?;
        Ok(Open {
            db,
            tree,
            layout: Arc::new(layout),
            group,
            outbox_order: Mutex::new(()),
            sizing: Mutex::new(()),
        })
    }
}

/// Drops every expired generation of spilled markers, a chunk of keys per batch.
fn expire(
    tree: &sled::Tree,
    layout: &MarkerLayout,
    gate: &RwLock<()>,
    now: Millis,
) -> Result<usize, StoreError> {
    let expired = layout.expired(now);
    for &generation in &expired {
        // Readers stop probing it first; then its keys go.
        layout.forget(generation);
        let mut keys = tree
            .scan_prefix(marker_buckets::generation_prefix(generation))
            .keys();
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for key in keys.by_ref().take(EXPIRY_CHUNK) {
                batch.remove(key.map_err(to_store_error)?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            let _writing = writing(gate);
            tree.apply_batch(batch).map_err(to_store_error)?;
        }
        let _writing = writing(gate);
        tree.remove(marker_buckets::meta_key(generation))
            .map_err(to_store_error)?;
    }
    Ok(expired.len())
}

impl Store for SledStore {
    fn contacts_per_pass(&self) -> usize {
        CONTACTS_PER_PASS
    }

    async fn load_many(
        &self,
        requests: &[LoadRequest],
        now: Millis,
    ) -> Result<Vec<Snapshot>, StoreError> {
        let s = self.live()?;
        let live = s.layout.live_range(now);
        let mut snapshots = Vec::with_capacity(requests.len());
        for request in requests {
            let (raw, record) = s.read(&request.key)?.unzip();
            let mut seen = Vec::with_capacity(request.markers.len());
            for marker in &request.markers {
                let mut found = record.as_ref().is_some_and(|r| r.holds(&live, marker));
                if !found && let Some(r) = &record {
                    for generation in r.spilled_in(&live) {
                        if s.in_buckets(generation, marker)? {
                            found = true;
                            break;
                        }
                    }
                }
                seen.push(found);
            }
            snapshots.push(Snapshot {
                version: record.as_ref().map(|r| r.version),
                record: record.and_then(|r| {
                    r.profile.map(|bytes| Record {
                        version: r.version,
                        bytes,
                    })
                }),
                seen,
                read: AsRead::sled(raw),
            });
        }
        Ok(snapshots)
    }

    async fn get(&self, key: &ContactKey) -> Result<Option<Record>, StoreError> {
        self.live()?.read_head(key)
    }

    async fn commit_many(
        &self,
        mut ops: Vec<CommitOp>,
        now: Millis,
    ) -> Result<Vec<Commit>, StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        if ops.len() == 1 {
            // A single op's error is the call's: nothing was written.
            return Ok(vec![self.noticed(s.try_commit(ops.remove(0), now))?]);
        }
        let commits = s.commit_each(ops, now);
        for commit in &commits {
            if let Commit::Failed(e) = commit {
                self.notice(e);
            }
        }
        Ok(commits)
    }

    async fn delete(&self, key: &ContactKey) -> Result<bool, StoreError> {
        let s = self.live()?;
        // Erasure keeps a tombstone with the markers: a compare-and-swap loop
        // against concurrent writers of the same contact.
        let _writing = writing(&self.writes);
        loop {
            let Some((raw, mut record)) = s.read(key)? else {
                return Ok(false);
            };
            if record.profile.is_none() {
                return Ok(false);
            }
            record.profile = None;
            record.version = record.version.wrapping_add(1);
            let swapped = self.noticed(
                s.tree
                    .compare_and_swap(record_key(key), Some(raw), Some(record.encode()))
                    .map_err(to_store_error),
            )?;
            if swapped.is_ok() {
                return Ok(true);
            }
        }
    }

    async fn quarantine(&self, key: &ContactKey, reason: &str) -> Result<(), StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(s.quarantine_now(key, reason))
    }

    async fn put_dead_letter(
        &self,
        tenant: &Tenant,
        id: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(
            s.tree
                .insert(tenant_key(DEAD_LETTER_PREFIX, tenant, id), value)
                .map(|before| before.is_none())
                .map_err(to_store_error),
        )
    }

    async fn list_dead_letters(
        &self,
        tenant: &Tenant,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let s = self.live()?;
        let prefix = tenant_key(DEAD_LETTER_PREFIX, tenant, "");
        let mut start = tenant_key(DEAD_LETTER_PREFIX, tenant, after);
        if !after.is_empty() {
            // Strictly after `after`.
            start.push(0);
        }
        let mut letters = Vec::new();
        for entry in s.tree.range(start..) {
            let (key, value) = entry.map_err(to_store_error)?;
            let Some(id) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            if letters.len() == limit {
                break;
            }
            letters.push((String::from_utf8_lossy(id).into_owned(), value.to_vec()));
        }
        Ok(letters)
    }

    async fn delete_dead_letter(&self, tenant: &Tenant, id: &str) -> Result<bool, StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        let old = self.noticed(
            s.tree
                .remove(tenant_key(DEAD_LETTER_PREFIX, tenant, id))
                .map_err(to_store_error),
        )?;
        Ok(old.is_some())
    }

    async fn put_entry(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
        id: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(
            s.tree
                .insert(tenant_key(catalog_prefix(catalog), tenant, id), value)
                .map(drop)
                .map_err(to_store_error),
        )
    }

    async fn get_entry(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let s = self.live()?;
        s.tree
            .get(tenant_key(catalog_prefix(catalog), tenant, id))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(to_store_error)
    }

    async fn list_entries(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let s = self.live()?;
        let prefix = tenant_key(catalog_prefix(catalog), tenant, "");
        s.tree
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, value) = entry.map_err(to_store_error)?;
                let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                Ok((id, value.to_vec()))
            })
            .collect()
    }

    async fn add_stats(&self, deltas: &mut Vec<StatDelta>) -> Result<(), StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(intelligence::add_stats(&s.tree, deltas))
    }

    async fn day_stats(
        &self,
        tenant: &Tenant,
        from: u32,
        to: u32,
    ) -> Result<Vec<(u32, Dims, StatCell)>, StoreError> {
        let s = self.live()?;
        intelligence::day_stats(&s.tree, tenant, from, to)
    }

    async fn minute_stats(
        &self,
        from: u32,
        to: u32,
    ) -> Result<Vec<(Tenant, u32, Dims, StatCell)>, StoreError> {
        let s = self.live()?;
        intelligence::minute_stats(&s.tree, from, to)
    }

    async fn trim_minute_stats(&self, before: u32) -> Result<usize, StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(intelligence::trim_minute_stats(&s.tree, before))
    }

    async fn put_deadline(&self, deadline: &Deadline) -> Result<(), StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(intelligence::put_deadline(&s.tree, deadline))
    }

    async fn due_deadlines(&self, now: Millis, limit: usize) -> Result<Vec<Deadline>, StoreError> {
        let s = self.live()?;
        intelligence::due_deadlines(&s.tree, now, limit)
    }

    async fn delete_deadline(&self, deadline: &Deadline) -> Result<(), StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(intelligence::delete_deadline(&s.tree, deadline))
    }

    async fn append_actions(
        &self,
        tenant: &Tenant,
        actions: &[(Millis, Vec<u8>)],
    ) -> Result<Vec<u64>, StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(intelligence::append_actions(
            &s.db,
            &s.tree,
            &s.outbox_order,
            tenant,
            actions,
        ))
    }

    async fn actions_after(
        &self,
        tenant: &Tenant,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Millis, Vec<u8>)>, StoreError> {
        let s = self.live()?;
        intelligence::actions_after(&s.tree, tenant, after, limit)
    }

    async fn trim_actions(&self, before: Millis) -> Result<usize, StoreError> {
        let _writing = writing(&self.writes);
        let s = self.live()?;
        self.noticed(intelligence::trim_actions(&s.tree, before))
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let s = self.live()?;
        let synced = s.group.sync().await.map_err(StoreError::Unavailable);
        if let Err(e) = &synced
            && !self.failed.swap(true, Ordering::SeqCst)
        {
            metrics::gauge!("reach_store_failed").set(1.0);
            tracing::error!(
                error = %e,
                "a flush to disk failed: writes are refused (UNAVAILABLE) until the data directory takes writes again, then the store reopens by itself"
            );
        }
        synced
    }

    async fn expire_markers(&self, now: Millis) -> Result<usize, StoreError> {
        // The task holds the opening itself (not a tree handle), so that a
        // reopen waits for it.
        let (s, gate) = (self.live()?, self.writes.clone());
        let expired = tokio::task::spawn_blocking(move || expire(&s.tree, &s.layout, &gate, now))
            .await
            .map_err(|e| StoreError::Internal(format!("expiry task failed: {e}")))?;
        self.noticed(expired)
    }

    async fn close(&self) -> Result<(), StoreError> {
        let s = self.live()?;
        s.db.flush_async().await.map(drop).map_err(to_store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        DedupeKey, Version,
        sled_record::{INLINE_MARKERS, StoredRecord},
    };

    const DAY: i64 = 86_400_000;

    fn store(dir: &std::path::Path) -> SledStore {
        SledStore::open(dir, &SledConfig::default()).unwrap()
    }

    fn op(
        key: &ContactKey,
        expected: Option<Version>,
        value: &[u8],
        markers: &[DedupeKey],
    ) -> CommitOp {
        CommitOp {
            key: key.clone(),
            expected,
            value: value.to_vec(),
            markers: markers.to_vec(),
            read: AsRead::default(),
        }
    }

    async fn load(s: &SledStore, key: &ContactKey, markers: &[DedupeKey], now: Millis) -> Snapshot {
        let request = LoadRequest {
            key: key.clone(),
            markers: markers.to_vec(),
        };
        s.load_many(&[request], now).await.unwrap().remove(0)
    }

    #[tokio::test]
    async fn compare_and_swap_with_markers() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let key = ContactKey::new(&Tenant::default(), "c1");
        let (m1, m2) = (DedupeKey::new(&key, "e1"), DedupeKey::new(&key, "e2"));
        let now = Millis(1_000 * DAY);
        let applied = s.commit_many(vec![op(&key, None, b"a", &[m1])], now).await;
        assert_eq!(applied.unwrap(), [Commit::Applied(1)]);
        // A stale version: nothing is written for that op.
        let results = s
            .commit_many(
                vec![op(&key, None, b"b", &[]), op(&key, Some(7), b"b", &[m2])],
                now,
            )
            .await
            .unwrap();
        assert_eq!(results, [Commit::Conflict, Commit::Conflict]);
        let snap = load(&s, &key, &[m1, m2], now).await;
        assert_eq!(
            snap.record,
            Some(Record {
                version: 1,
                bytes: b"a".to_vec()
            })
        );
        assert_eq!(snap.seen, vec![true, false]);
        // Two ops on one contact in one call: the second sees the first.
        let results = s
            .commit_many(
                vec![op(&key, Some(1), b"c", &[m2]), op(&key, Some(2), b"d", &[])],
                now,
            )
            .await
            .unwrap();
        assert_eq!(results, [Commit::Applied(2), Commit::Applied(3)]);
        assert!(s.delete(&key).await.unwrap());
        assert!(!s.delete(&key).await.unwrap());
        assert_eq!(s.get(&key).await.unwrap(), None);
        let erased = load(&s, &key, &[m1], now).await;
        assert!(erased.seen[0], "markers outlive erasure");
        assert_eq!((erased.record, erased.version), (None, Some(4)));
        let revived = s.commit_many(vec![op(&key, Some(4), b"e", &[])], now).await;
        assert_eq!(revived.unwrap(), [Commit::Applied(5)]);
    }

    /// A commit compares against the bytes its snapshot read; when they
    /// went stale meanwhile it reads the record again, so a change in
    /// between is a conflict, never overwritten.
    #[tokio::test]
    async fn a_commit_against_what_was_read_sees_a_change_since() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let key = ContactKey::new(&Tenant::default(), "c1");
        let [m1, m2, m3] = ["e1", "e2", "e3"].map(|e| DedupeKey::new(&key, e));
        let now = Millis(1_000 * DAY);
        let with_read = |snap: Snapshot, value: &[u8], markers: &[DedupeKey]| CommitOp {
            read: snap.read,
            ..op(&key, snap.version, value, markers)
        };

        // Read absent, then created by another writer: a conflict.
        let absent = load(&s, &key, &[m1], now).await;
        let other = s.commit_many(vec![op(&key, None, b"x", &[m3])], now).await;
        assert_eq!(other.unwrap(), [Commit::Applied(1)]);
        let late = s
            .commit_many(vec![with_read(absent, b"a", &[m1])], now)
            .await;
        assert_eq!(late.unwrap(), [Commit::Conflict]);

        // Read at version 1 and unchanged: applied, every marker kept.
        let fresh = load(&s, &key, &[m1], now).await;
        let applied = s
            .commit_many(vec![with_read(fresh, b"a", &[m1])], now)
            .await;
        assert_eq!(applied.unwrap(), [Commit::Applied(2)]);

        // Read at version 2, then rewritten by another writer: a conflict,
        // and the other writer's record stands.
        let stale = load(&s, &key, &[m2], now).await;
        let other = s.commit_many(vec![op(&key, Some(2), b"b", &[])], now).await;
        assert_eq!(other.unwrap(), [Commit::Applied(3)]);
        let late = s
            .commit_many(vec![with_read(stale, b"c", &[m2])], now)
            .await;
        assert_eq!(late.unwrap(), [Commit::Conflict]);
        let snap = load(&s, &key, &[m1, m2, m3], now).await;
        assert_eq!(snap.seen, vec![true, false, true]);
        assert_eq!(
            snap.record,
            Some(Record {
                version: 3,
                bytes: b"b".to_vec()
            })
        );
    }

    /// A reader that resumes after the last sequence it saw, as a watcher
    /// does, meets every action while writers append at once: no sequence
    /// becomes visible before a lower one.
    #[test]
    fn concurrent_appends_become_visible_in_sequence_order() {
        const WRITERS: usize = 16;
        const EACH: usize = 2_000;
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let open = s.live().unwrap();
        let tenant = Tenant::default();
        let finished = std::sync::atomic::AtomicUsize::new(0);
        let (mut last, mut seen) = (0, 0);
        std::thread::scope(|scope| {
            for _ in 0..WRITERS {
                scope.spawn(|| {
                    for _ in 0..EACH {
                        let action = [(Millis(1), b"x".to_vec())];
                        let o = &open;
                        intelligence::append_actions(
                            &o.db,
                            &o.tree,
                            &o.outbox_order,
                            &tenant,
                            &action,
                        )
                        .unwrap();
                    }
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
            loop {
                let writers_done = finished.load(Ordering::SeqCst) == WRITERS;
                let page = intelligence::actions_after(&open.tree, &tenant, last, 100).unwrap();
                if let Some(&(seq, _, _)) = page.last() {
                    last = seq;
                }
                seen += page.len();
                if writers_done && page.is_empty() {
                    break;
                }
            }
        });
        assert_eq!(seen, WRITERS * EACH, "a watcher skipped actions");
    }

    #[tokio::test]
    async fn any_write_that_meets_an_io_error_marks_the_store_for_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let conflict: Result<(), _> = Err(StoreError::Internal("a bug".into()));
        assert!(s.noticed(conflict).is_err());
        let lost_node: Result<(), _> = Err(StoreError::Unavailable("node down".into()));
        assert!(s.noticed(lost_node).is_err());
        assert!(!s.needs_recovery(), "only sled's I/O errors mark it");
        let full = to_store_error(sled::Error::Io(std::io::Error::from(
            std::io::ErrorKind::StorageFull,
        )));
        assert!(s.noticed(Err::<(), _>(full)).is_err());
        assert!(s.needs_recovery());
        // The disk takes writes (it always did here): reopened, unmarked.
        assert!(s.recover_blocking().unwrap());
        assert!(!s.needs_recovery());
    }

    #[tokio::test]
    async fn live_bytes_count_every_key_and_value_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let empty = s.live_bytes().unwrap();
        let b = Tenant::new("b").unwrap();
        s.put_dead_letter(&b, "x", &[0u8; 100]).await.unwrap();
        let one = s.live_bytes().unwrap();
        assert!(one > empty + 100, "{empty} then {one}");
        // Overwriting adds log but no live data.
        s.put_dead_letter(&b, "x", &[1u8; 100]).await.unwrap();
        assert_eq!(s.live_bytes().unwrap(), one);
        assert!(s.delete_dead_letter(&b, "x").await.unwrap());
        assert_eq!(s.live_bytes().unwrap(), empty);
    }

    #[tokio::test]
    async fn dead_letters_page_by_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (a, b) = (Tenant::default(), Tenant::new("other").unwrap());
        for id in ["c", "a", "b"] {
            s.put_dead_letter(&a, id, id.as_bytes()).await.unwrap();
        }
        s.put_dead_letter(&b, "z", b"z").await.unwrap();
        let page = s.list_dead_letters(&a, "", 2).await.unwrap();
        assert_eq!(
            page,
            [
                ("a".to_string(), b"a".to_vec()),
                ("b".to_string(), b"b".to_vec())
            ]
        );
        let rest = s.list_dead_letters(&a, "b", 10).await.unwrap();
        assert_eq!(rest, [("c".to_string(), b"c".to_vec())]);
        assert!(s.delete_dead_letter(&a, "a").await.unwrap());
        assert!(!s.delete_dead_letter(&a, "a").await.unwrap());
        assert_eq!(s.list_dead_letters(&b, "", 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn markers_expire_after_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let key = ContactKey::new(&Tenant::default(), "c1");
        let marker = DedupeKey::new(&key, "e1");
        let t0 = Millis(1_000 * DAY);
        s.commit_many(vec![op(&key, None, b"a", &[marker])], t0)
            .await
            .unwrap();
        let window_later = Millis(t0.0 + 30 * DAY - 1);
        assert!(load(&s, &key, &[marker], window_later).await.seen[0]);
        let much_later = Millis(t0.0 + 40 * DAY);
        assert!(!load(&s, &key, &[marker], much_later).await.seen[0]);
    }

    /// Writers racing on a few busy contacts (every write past the first
    /// 128 spills): each applied event is remembered, after a reopen too,
    /// and every record is back to its inline share.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_spills_remember_every_marker() {
        const WRITERS: usize = 8;
        const EACH: usize = 150;
        let dir = tempfile::tempdir().unwrap();
        let t0 = Millis(1_000 * DAY);
        let keys: Vec<ContactKey> = (0..3)
            .map(|c| ContactKey::new(&Tenant::default(), &format!("busy{c}")))
            .collect();
        {
            let s = Arc::new(store(dir.path()));
            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let (s, keys) = (s.clone(), keys.clone());
                writers.push(tokio::spawn(async move {
                    for i in 0..EACH {
                        let key = &keys[(w + i) % keys.len()];
                        let marker = DedupeKey::new(key, &format!("w{w}-{i}"));
                        loop {
                            let snap = load(&s, key, &[marker], t0).await;
                            assert!(!snap.seen[0]);
                            let ops = vec![op(key, snap.version, b"p", &[marker])];
                            match s.commit_many(ops, t0).await.unwrap()[..] {
                                [Commit::Applied(_)] => break,
                                [Commit::Conflict] => continue,
                                ref other => panic!("{other:?}"),
                            }
                        }
                    }
                }));
            }
            for writer in writers {
                writer.await.unwrap();
            }
            for (w, i) in (0..WRITERS).flat_map(|w| (0..EACH).map(move |i| (w, i))) {
                let key = &keys[(w + i) % keys.len()];
                let marker = DedupeKey::new(key, &format!("w{w}-{i}"));
                assert!(load(&s, key, &[marker], t0).await.seen[0], "w{w}-{i} lost");
            }
            s.sync().await.unwrap();
        }
        let s = store(dir.path());
        let live = s.live().unwrap();
        let mut applied = 0;
        for key in &keys {
            let markers: Vec<DedupeKey> = (0..WRITERS)
                .flat_map(|w| (0..EACH).map(move |i| (w, i)))
                .filter(|(w, i)| &keys[(w + i) % keys.len()] == key)
                .map(|(w, i)| DedupeKey::new(key, &format!("w{w}-{i}")))
                .collect();
            let snap = load(&s, key, &markers, t0).await;
            assert!(snap.seen.iter().all(|&seen| seen), "a marker was lost");
            assert_eq!(snap.version, Some(markers.len() as Version));
            let (_, record) = live.read(key).unwrap().unwrap();
            assert_eq!(record.inline_count(), INLINE_MARKERS);
            applied += markers.len();
        }
        assert_eq!(applied, WRITERS * EACH);
    }

    /// A crash between a busy contact's swap and its spill leaves markers
    /// inline past the record's share: they are still found, and later
    /// spills move only their own markers.
    #[tokio::test]
    async fn a_record_left_past_its_share_still_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let key = ContactKey::new(&Tenant::default(), "crashed");
        let t0 = Millis(1_000 * DAY);
        let generation = s.live().unwrap().layout.generation(t0);
        let held: Vec<DedupeKey> = (0..INLINE_MARKERS + 12)
            .map(|i| DedupeKey::new(&key, &format!("e{i}")))
            .collect();
        let mut record = StoredRecord {
            version: 7,
            profile: Some(b"p".to_vec()),
            ..StoredRecord::default()
        };
        record.add_inline(generation, &held);
        s.live()
            .unwrap()
            .tree
            .insert(record_key(&key), record.encode())
            .unwrap();
        assert!(load(&s, &key, &held, t0).await.seen.iter().all(|&x| x));
        let next = DedupeKey::new(&key, "next");
        let applied = s
            .commit_many(vec![op(&key, Some(7), b"q", &[next])], t0)
            .await;
        assert_eq!(applied.unwrap(), [Commit::Applied(8)]);
        let mut all = held.clone();
        all.push(next);
        assert!(load(&s, &key, &all, t0).await.seen.iter().all(|&x| x));
        let (_, record) = s.live().unwrap().read(&key).unwrap().unwrap();
        assert_eq!(record.inline_count(), held.len());
        assert_eq!(record.spilled, [generation]);
    }

    #[tokio::test]
    async fn a_busy_contact_spills_to_buckets_that_expire_whole() {
        let dir = tempfile::tempdir().unwrap();
        let key = ContactKey::new(&Tenant::default(), "busy");
        let markers: Vec<DedupeKey> = (0..5_000)
            .map(|i| DedupeKey::new(&key, &format!("e{i}")))
            .collect();
        let t0 = Millis(1_000 * DAY);
        {
            let s = store(dir.path());
            let mut version = None;
            for chunk in markers.chunks(100) {
                match s
                    .commit_many(vec![op(&key, version, b"a", chunk)], t0)
                    .await
                    .unwrap()[..]
                {
                    [Commit::Applied(v)] => version = Some(v),
                    ref other => panic!("{other:?}"),
                }
            }
            // The generation began in this opening: its filter answers.
            let never = DedupeKey::new(&key, "never");
            let generation = s.live().unwrap().layout.generation(t0);
            assert!(
                s.live()
                    .unwrap()
                    .layout
                    .levels_for(generation, &never)
                    .is_empty()
            );
            let snap = load(&s, &key, &markers, t0).await;
            assert!(snap.seen.iter().all(|&seen| seen), "every marker found");
            s.sync().await.unwrap();
        }
        let s = store(dir.path());
        let snap = load(&s, &key, &markers, t0).await;
        assert!(
            snap.seen.iter().all(|&seen| seen),
            "every marker found after reopen"
        );
        // The generation's filter is filled from its buckets, then answers.
        let live = s.live().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !live.layout.unfilled().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the filter was not filled"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let generation = live.layout.generation(t0);
        let never = DedupeKey::new(&key, "never");
        assert!(live.layout.levels_for(generation, &never).is_empty());
        drop(live);
        let snap = load(&s, &key, &markers, t0).await;
        assert!(
            snap.seen.iter().all(|&seen| seen),
            "every marker found through the filled filter"
        );
        assert!(
            !load(&s, &key, &[DedupeKey::new(&key, "never")], t0)
                .await
                .seen[0]
        );
        assert!(s.live().unwrap().tree.scan_prefix([b'm']).count() > 0);
        let much_later = Millis(t0.0 + 40 * DAY);
        assert_eq!(s.expire_markers(much_later).await.unwrap(), 1);
        assert_eq!(
            s.live().unwrap().tree.scan_prefix([b'm']).count(),
            0,
            "bucket keys dropped whole"
        );
        assert!(!load(&s, &key, &markers[..10], much_later).await.seen[0]);
    }
}
