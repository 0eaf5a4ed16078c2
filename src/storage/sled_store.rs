//! The embedded default store: sled, with group-committed durability.
//!
//! Layout: tree `profiles` maps `tenant 0x00 contact` to a 4-byte version
//! followed by the encoded profile; dedupe markers live in generation trees
//! (see `marker_generations`). A commit is one sled transaction over the
//! profile and the marker trees, so a profile update and its markers are
//! recovered together or not at all.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::{
    domain::Millis,
    storage::{
        Commit, ContactKey, DedupeKey, Record, Snapshot, Store, StoreError, Version,
        group_commit::GroupCommit, marker_generations::MarkerGenerations,
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
    profiles: sled::Tree,
    markers: MarkerGenerations,
    group: GroupCommit,
}

const VERSION_BYTES: usize = 4;

pub(super) fn to_store_error(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::Unavailable(format!("i/o error: {io}")),
        sled::Error::Corruption { at, .. } => {
            StoreError::Internal(format!("sled reports corruption at {at:?}"))
        }
        other => StoreError::Internal(other.to_string()),
    }
}

fn split_record(value: &[u8]) -> Record {
    let mut version = [0u8; VERSION_BYTES];
    let len = value.len().min(VERSION_BYTES);
    version[..len].copy_from_slice(&value[..len]);
    Record {
        version: Version::from_le_bytes(version),
        bytes: value.get(VERSION_BYTES..).unwrap_or_default().to_vec(),
    }
}

fn join_record(version: Version, value: &[u8]) -> Vec<u8> {
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
        let profiles = db.open_tree("profiles").map_err(to_store_error)?;
        let markers = MarkerGenerations::open(&db, config.dedupe_window)?;
        let flush_db = db.clone();
        let group = GroupCommit::start("reach-flusher", move || {
            flush_db.flush().map(drop).map_err(|e| e.to_string())
        })
        .map_err(|e| StoreError::Internal(format!("cannot start flusher: {e}")))?;
        Ok(SledStore {
            db,
            profiles,
            markers,
            group,
        })
    }

    /// Writes records (as version 1) and markers with plain batches, no
    /// transaction and no flush: only for offline bulk loading of a store that
    /// nothing else is using (`reach bench preload`).
    pub fn bulk_insert(
        &self,
        records: &[(ContactKey, Vec<u8>)],
        markers: &[DedupeKey],
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in records {
            batch.insert(key.to_bytes(), join_record(1, value));
        }
        self.profiles.apply_batch(batch).map_err(to_store_error)?;
        let mut batch = sled::Batch::default();
        for marker in markers {
            batch.insert(&marker.0, &[]);
        }
        self.markers.live(now)?[0]
            .apply_batch(batch)
            .map_err(to_store_error)
    }

    /// Flushes everything to disk, blocking the calling thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(to_store_error)
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(to_store_error)
    }
}

enum Abort {
    Conflict,
}

impl Store for SledStore {
    async fn load(
        &self,
        key: &ContactKey,
        markers: &[DedupeKey],
        now: Millis,
    ) -> Result<Snapshot, StoreError> {
        let record = self.get(key).await?;
        let live = if markers.is_empty() {
            Vec::new()
        } else {
            self.markers.live(now)?
        };
        let mut seen = Vec::with_capacity(markers.len());
        for marker in markers {
            let mut found = false;
            for generation in &live {
                if generation.contains_key(marker.0).map_err(to_store_error)? {
                    found = true;
                    break;
                }
            }
            seen.push(found);
        }
        Ok(Snapshot { record, seen })
    }

    async fn get(&self, key: &ContactKey) -> Result<Option<Record>, StoreError> {
        let value = self.profiles.get(key.to_bytes()).map_err(to_store_error)?;
        Ok(value.map(|v| split_record(&v)))
    }

    async fn commit(
        &self,
        key: &ContactKey,
        expected: Option<Version>,
        value: &[u8],
        markers: &[DedupeKey],
        now: Millis,
    ) -> Result<Commit, StoreError> {
        let key = key.to_bytes();
        let live = self.markers.live(now)?;
        let mut trees: Vec<&sled::Tree> = Vec::with_capacity(1 + live.len());
        trees.push(&self.profiles);
        trees.extend(live.iter());
        let result = trees.as_slice().transaction(|views| {
            let (profiles, generations) = views.split_first().expect("profiles tree");
            let current = profiles.get(&key)?.map(|v| split_record(&v).version);
            if current != expected {
                return Err(ConflictableTransactionError::Abort(Abort::Conflict));
            }
            for marker in markers {
                for generation in generations {
                    if generation.get(marker.0)?.is_some() {
                        return Err(ConflictableTransactionError::Abort(Abort::Conflict));
                    }
                }
            }
            for marker in markers {
                generations[0].insert(&marker.0, &[])?;
            }
            let version = current.map_or(1, |v| v.wrapping_add(1));
            profiles.insert(key.as_slice(), join_record(version, value))?;
            Ok(version)
        });
        match result {
            Ok(version) => Ok(Commit::Applied(version)),
            Err(TransactionError::Abort(Abort::Conflict)) => Ok(Commit::Conflict),
            Err(TransactionError::Storage(e)) => Err(to_store_error(e)),
        }
    }

    async fn delete(&self, key: &ContactKey) -> Result<bool, StoreError> {
        let old = self
            .profiles
            .remove(key.to_bytes())
            .map_err(to_store_error)?;
        Ok(old.is_some())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.group.sync().await.map_err(StoreError::Unavailable)
    }

    async fn expire_markers(&self, now: Millis) -> Result<usize, StoreError> {
        self.markers.expire(now)
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
    use crate::storage::Tenant;

    const DAY: i64 = 86_400_000;

    fn store(dir: &std::path::Path) -> SledStore {
        SledStore::open(dir, &SledConfig::default()).unwrap()
    }

    #[tokio::test]
    async fn compare_and_swap_with_markers() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let key = ContactKey::new(&Tenant::default(), "c1");
        let m1 = DedupeKey::new(&key, "e1");
        let now = Millis(1_000 * DAY);
        assert_eq!(
            s.commit(&key, None, b"a", &[m1], now).await.unwrap(),
            Commit::Applied(1)
        );
        // Stale version or an existing marker: nothing is written.
        assert_eq!(
            s.commit(&key, None, b"b", &[], now).await.unwrap(),
            Commit::Conflict
        );
        let m2 = DedupeKey::new(&key, "e2");
        assert_eq!(
            s.commit(&key, Some(1), b"b", &[m2, m1], now).await.unwrap(),
            Commit::Conflict
        );
        let snap = s.load(&key, &[m1, m2], now).await.unwrap();
        assert_eq!(
            snap.record,
            Some(Record {
                version: 1,
                bytes: b"a".to_vec()
            })
        );
        assert_eq!(snap.seen, vec![true, false]);
        assert!(s.delete(&key).await.unwrap());
        assert_eq!(s.get(&key).await.unwrap(), None);
        assert!(
            s.load(&key, &[m1], now).await.unwrap().seen[0],
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
        s.commit(&key, None, b"a", &[marker], t0).await.unwrap();
        let window_later = Millis(t0.0 + 30 * DAY - 1);
        assert!(s.load(&key, &[marker], window_later).await.unwrap().seen[0]);
        assert_eq!(s.expire_markers(window_later).await.unwrap(), 0);
        let much_later = Millis(t0.0 + 40 * DAY);
        assert!(!s.load(&key, &[marker], much_later).await.unwrap().seen[0]);
        assert_eq!(s.expire_markers(much_later).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = ContactKey::new(&Tenant::default(), "c1");
        let marker = DedupeKey::new(&key, "e1");
        let now = Millis(1_000 * DAY);
        {
            let s = store(dir.path());
            s.commit(&key, None, b"a", &[marker], now).await.unwrap();
            s.sync().await.unwrap();
        }
        let s = store(dir.path());
        let snap = s.load(&key, &[marker], now).await.unwrap();
        assert_eq!(snap.record.unwrap().bytes, b"a");
        assert!(snap.seen[0]);
    }
}
