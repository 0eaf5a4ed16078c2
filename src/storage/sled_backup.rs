//! Backup and restore of the sled store.
//!
//! sled has no point-in-time snapshot, and one event touches several keys
//! (the contact's record, spilled dedupe markers, statistics, the outbox),
//! so a copy taken under live writes could hold half of one. The backup
//! therefore takes the write gate exclusively: in-flight writes finish, new
//! ones wait, reads go on. The pause is the time to copy the entries into
//! the backup file on local disk (reported); the file is streamed to the
//! client after the gate is released.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use crate::storage::{
    SledConfig, SledStore, StoreError,
    backup::{BackupRecord, BackupStats, BackupWriter, read},
    sled_store::to_store_error,
};

/// Entries per batch when restoring.
const RESTORE_BATCH: usize = 10_000;

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("backup i/o: {e}"))
}

impl SledStore {
    /// Writes a consistent snapshot of every tree, the id counter and
    /// `files` (name, content) to `out`. Blocking; returns what was written
    /// and how long writes were paused.
    pub fn backup_blocking<W: Write>(
        &self,
        out: W,
        files: &[(&str, Vec<u8>)],
    ) -> Result<(W, BackupStats, Duration), StoreError> {
        let mut writer = BackupWriter::new(out).map_err(io_error)?;
        for (name, content) in files {
            writer.file(name, content).map_err(io_error)?;
        }
        let gate = self
            .writes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let paused = Instant::now();
        let open = self.live()?;
        // generate_id returns the next id and advances; the restored store
        // continues after it, so no sequence number is ever reused.
        let next_id = open.db.generate_id().map_err(to_store_error)?;
        writer.next_id(next_id).map_err(io_error)?;
        for name in open.db.tree_names() {
            let tree = open.db.open_tree(&name).map_err(to_store_error)?;
            writer.tree(&name).map_err(io_error)?;
            for entry in tree.iter() {
                let (key, value) = entry.map_err(to_store_error)?;
                writer.entry(&key, &value).map_err(io_error)?;
            }
        }
        drop(gate);
        let pause = paused.elapsed();
        let (out, stats) = writer.finish().map_err(io_error)?;
        Ok((out, stats, pause))
    }

    /// Restores the backup at `backup` into `dir`, which must be empty or
    /// absent. The file is verified whole first, so a damaged backup
    /// leaves `dir` untouched.
    pub fn restore(
        backup: &Path,
        dir: &Path,
        config: &SledConfig,
    ) -> Result<BackupStats, StoreError> {
        let open = || {
            std::fs::File::open(backup)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", backup.display())))
        };
        read(open()?, |_| Ok(()))?;
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?
                .next()
                .is_some()
        {
            return Err(StoreError::Unavailable(format!(
                "{} is not empty: restore into a new directory (move the old one aside first)",
                dir.display()
            )));
        }
        let store = SledStore::open(dir, config)?;
        let live = store.live()?;
        let mut tree: Option<sled::Tree> = None;
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        let flush = |tree: &Option<sled::Tree>, batch: &mut sled::Batch, pending: &mut usize| {
            if let Some(tree) = tree {
                tree.apply_batch(std::mem::take(batch))
                    .map_err(to_store_error)?;
            }
            *pending = 0;
            Ok::<_, StoreError>(())
        };
        let stats = read(open()?, |record| {
            match record {
                BackupRecord::Tree(name) => {
                    flush(&tree, &mut batch, &mut pending)?;
                    tree = Some(live.db.open_tree(name).map_err(to_store_error)?);
                }
                BackupRecord::Entry(key, value) => {
                    batch.insert(key, value);
                    pending += 1;
                    if pending == RESTORE_BATCH {
                        flush(&tree, &mut batch, &mut pending)?;
                    }
                }
                BackupRecord::File(name, content) => write_file(dir, &name, &content)?,
                BackupRecord::NextId(next) => {
                    while live.db.generate_id().map_err(to_store_error)? < next {}
                }
            }
            Ok(())
        })?;
        flush(&tree, &mut batch, &mut pending)?;
        drop(tree);
        drop(live);
        store.flush_blocking()?;
        Ok(stats)
    }
}

/// Writes a data-directory file from the backup; only plain names, so a
/// crafted backup cannot write outside `dir`.
fn write_file(dir: &Path, name: &str, content: &[u8]) -> Result<(), StoreError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        return Err(StoreError::Internal(format!(
            "backup names a file {name:?} outside the data directory"
        )));
    }
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Catalog, Store, Tenant};

    #[tokio::test]
    async fn restore_gives_back_every_entry_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let config = SledConfig::default();
        let store = SledStore::open(dir.path().join("a"), &config).unwrap();
        let tenant = Tenant::new("acme").unwrap();
        for i in 0..25_000 {
            let id = format!("sender-{i}");
            store
                .put_entry(Catalog::Senders, &tenant, &id, id.as_bytes())
                .await
                .unwrap();
        }
        let seqs = store
            .append_actions(&tenant, &[(crate::domain::Millis(1), b"x".to_vec())])
            .await
            .unwrap();
        let file = dir.path().join("backup");
        let out = std::fs::File::create(&file).unwrap();
        let files = [("address-hash.key", vec![1u8; 32])];
        let (_, stats, _) = store.backup_blocking(out, &files).unwrap();
        assert!(stats.entries >= 25_001);

        let restored_dir = dir.path().join("b");
        SledStore::restore(&file, &restored_dir, &config).unwrap();
        assert_eq!(
            std::fs::read(restored_dir.join("address-hash.key")).unwrap(),
            vec![1u8; 32]
        );
        let restored = SledStore::open(&restored_dir, &config).unwrap();
        let listed = restored
            .list_entries(Catalog::Senders, &tenant)
            .await
            .unwrap();
        assert_eq!(listed.len(), 25_000);
        let next = restored
            .append_actions(&tenant, &[(crate::domain::Millis(2), b"y".to_vec())])
            .await
            .unwrap();
        assert!(next[0] > seqs[0], "sequence numbers continue");

        // Not into a directory in use, and not from a damaged file.
        assert!(SledStore::restore(&file, &restored_dir, &config).is_err());
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&file, bytes).unwrap();
        let fresh = dir.path().join("c");
        assert!(SledStore::restore(&file, &fresh, &config).is_err());
        assert!(!fresh.exists(), "a damaged backup restores nothing");
    }
}
