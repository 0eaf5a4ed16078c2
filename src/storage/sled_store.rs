//! The embedded default store: sled, one writer thread, group-committed
//! durability.
//!
//! Layout, all in tree `reach` so that one sled batch updates a profile and
//! its markers atomically:
//! - `p tenant 0x00 contact` -> 4-byte version, then the encoded profile;
//! - `m generation bucket` -> packed dedupe markers (see `marker_buckets`);
//! - `g generation` -> that generation's bucket bits and marker count.
//!
//! Reads run on the caller's thread; writes go to the writer thread
//! (`sled_writer`), and `sync` waits for a shared flush (`group_commit`).

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    domain::Millis,
    storage::{
        Commit, CommitOp, ContactKey, LoadRequest, Record, Snapshot, Store, StoreError, Version,
        group_commit::GroupCommit,
        marker_buckets::{self, MarkerLayout},
        sled_writer::{Job, SledWriter},
    },
};

/// Settings of the sled store (`[store]` in the config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SledConfig {
    /// sled's page cache, in MiB. The main lever on memory use.
    pub cache_capacity_mib: u64,
    /// How long a recorded event id is remembered for deduplication.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            cache_capacity_mib: 64,
            dedupe_window: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    layout: Arc<MarkerLayout>,
    writer: SledWriter,
    group: GroupCommit,
}

const VERSION_BYTES: usize = 4;
const RECORD_PREFIX: u8 = b'p';

pub(super) fn to_store_error(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::Unavailable(format!("i/o error: {io}")),
        sled::Error::Corruption { at, .. } => {
            StoreError::Internal(format!("sled reports corruption at {at:?}"))
        }
        other => StoreError::Internal(other.to_string()),
    }
}

/// `p tenant 0x00 contact_id`: the tenant alphabet excludes 0x00, so keys of
/// different tenants never collide and a tenant's keys share a prefix.
pub(super) fn record_key(key: &ContactKey) -> Vec<u8> {
    let (tenant, contact) = (key.tenant.as_str().as_bytes(), key.contact_id.as_bytes());
    let mut bytes = Vec::with_capacity(2 + tenant.len() + contact.len());
    bytes.push(RECORD_PREFIX);
    bytes.extend_from_slice(tenant);
    bytes.push(0);
    bytes.extend_from_slice(contact);
    bytes
}

pub(super) fn split_version(value: &[u8]) -> (Version, &[u8]) {
    let mut version = [0u8; VERSION_BYTES];
    let len = value.len().min(VERSION_BYTES);
    version[..len].copy_from_slice(&value[..len]);
    (
        Version::from_le_bytes(version),
        value.get(VERSION_BYTES..).unwrap_or_default(),
    )
}

pub(super) fn join_record(version: Version, value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(VERSION_BYTES + value.len());
    stored.extend_from_slice(&version.to_le_bytes());
    stored.extend_from_slice(value);
    stored
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Blocking: sled recovers its log here.
    pub fn open(dir: impl Into<PathBuf>, config: &SledConfig) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir.into())
            .cache_capacity(config.cache_capacity_mib.saturating_mul(1024 * 1024))
            .open()
            .map_err(to_store_error)?;
        let tree = db.open_tree("reach").map_err(to_store_error)?;
        let layout =
            Arc::new(MarkerLayout::open(&tree, config.dedupe_window).map_err(to_store_error)?);
        let writer = SledWriter::start(tree.clone(), layout.clone())
            .map_err(|e| StoreError::Internal(format!("cannot start the writer: {e}")))?;
        let flush_db = db.clone();
        let group = GroupCommit::start("reach-flusher", move || {
            flush_db.flush().map(drop).map_err(|e| e.to_string())
        })
        .map_err(|e| StoreError::Internal(format!("cannot start the flusher: {e}")))?;
        Ok(SledStore {
            db,
            tree,
            layout,
            writer,
            group,
        })
    }

    /// Flushes everything to disk, blocking the calling thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(to_store_error)
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(to_store_error)
    }

    fn record(&self, key: &ContactKey) -> Result<Option<Record>, StoreError> {
        let value = self.tree.get(record_key(key)).map_err(to_store_error)?;
        Ok(value.map(|v| {
            let (version, bytes) = split_version(&v);
            Record {
                version,
                bytes: bytes.to_vec(),
            }
        }))
    }
}

impl Store for SledStore {
    async fn load_many(
        &self,
        requests: &[LoadRequest],
        now: Millis,
    ) -> Result<Vec<Snapshot>, StoreError> {
        let live = self.layout.live(now);
        let mut snapshots = Vec::with_capacity(requests.len());
        for request in requests {
            let mut seen = Vec::with_capacity(request.markers.len());
            for marker in &request.markers {
                let suffix = marker_buckets::suffix(marker);
                let mut found = false;
                'generations: for (generation, levels) in &live {
                    for &bits in levels.iter().rev() {
                        let key = marker_buckets::bucket_key(*generation, bits, marker);
                        if let Some(bucket) = self.tree.get(key).map_err(to_store_error)?
                            && marker_buckets::contains(&bucket, &suffix)
                        {
                            found = true;
                            break 'generations;
                        }
                    }
                }
                seen.push(found);
            }
            snapshots.push(Snapshot {
                record: self.record(&request.key)?,
                seen,
            });
        }
        Ok(snapshots)
    }

    async fn get(&self, key: &ContactKey) -> Result<Option<Record>, StoreError> {
        self.record(key)
    }

    async fn commit_many(
        &self,
        ops: Vec<CommitOp>,
        now: Millis,
    ) -> Result<Vec<Commit>, StoreError> {
        self.writer
            .submit(|reply| Job::Commit { ops, now, reply })
            .await
    }

    async fn delete(&self, key: &ContactKey) -> Result<bool, StoreError> {
        let key = record_key(key);
        self.writer.submit(|reply| Job::Delete { key, reply }).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.group.sync().await.map_err(StoreError::Unavailable)
    }

    async fn expire_markers(&self, now: Millis) -> Result<usize, StoreError> {
        self.writer.submit(|reply| Job::Expire { now, reply }).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.db
            .flush_async()
            .await
            .map(drop)
            .map_err(to_store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{DedupeKey, Tenant};

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
        assert_eq!(
            s.commit_many(vec![op(&key, None, b"a", &[m1])], now)
                .await
                .unwrap(),
            [Commit::Applied(1)]
        );
        // A stale version or an existing marker: nothing is written for that op.
        let results = s
            .commit_many(
                vec![
                    op(&key, None, b"b", &[]),
                    op(&key, Some(1), b"b", &[m2, m1]),
                ],
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
        assert_eq!(s.get(&key).await.unwrap(), None);
        assert!(
            load(&s, &key, &[m1], now).await.seen[0],
            "markers outlive erasure"
        );
    }

    #[tokio::test]
    async fn markers_expire_by_whole_generations() {
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
        assert_eq!(s.expire_markers(window_later).await.unwrap(), 0);
        let much_later = Millis(t0.0 + 40 * DAY);
        assert!(!load(&s, &key, &[marker], much_later).await.seen[0]);
        assert_eq!(s.expire_markers(much_later).await.unwrap(), 1);
        assert_eq!(
            s.tree.scan_prefix([b'm']).count(),
            0,
            "bucket keys are gone"
        );
    }

    #[tokio::test]
    async fn many_markers_stay_findable_across_generations_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = ContactKey::new(&Tenant::default(), "c1");
        let markers: Vec<DedupeKey> = (0..5_000)
            .map(|i| DedupeKey::new(&key, &format!("e{i}")))
            .collect();
        let t0 = Millis(1_000 * DAY);
        let t1 = Millis(t0.0 + 9 * DAY);
        {
            let s = store(dir.path());
            s.commit_many(vec![op(&key, None, b"a", &markers[..2_500])], t0)
                .await
                .unwrap();
            // The next generation is sized from this one's count.
            s.commit_many(vec![op(&key, Some(1), b"b", &markers[2_500..])], t1)
                .await
                .unwrap();
            s.sync().await.unwrap();
        }
        let s = store(dir.path());
        let snap = load(&s, &key, &markers, t1).await;
        assert!(snap.seen.iter().all(|&seen| seen));
        // 2,500 markers in a first generation of 2^10 buckets... no level
        // needed yet; a bigger one grows levels and stays findable.
        let many: Vec<DedupeKey> = (0..60_000)
            .map(|i| DedupeKey::new(&key, &format!("m{i}")))
            .collect();
        let t2 = Millis(t1.0 + 9 * DAY);
        s.commit_many(vec![op(&key, Some(2), b"c", &many)], t2)
            .await
            .unwrap();
        let levels = s.layout.live(t2)[0].1.clone();
        assert!(levels.len() >= 2, "{levels:?}");
        assert!(
            load(&s, &key, &many, t2)
                .await
                .seen
                .iter()
                .all(|&seen| seen)
        );
        let other = DedupeKey::new(&key, "never");
        assert!(!load(&s, &key, &[other], t1).await.seen[0]);
        assert_eq!(snap.record.unwrap().version, 2);
    }
}
