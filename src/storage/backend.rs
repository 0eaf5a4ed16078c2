//! The store the server runs on, chosen by `store.backend`: the embedded
//! sled store (the default) or a Redis Cluster.

use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        Millis,
        stats::{Dims, StatCell},
    },
    storage::{
        Catalog, Commit, CommitOp, ContactKey, Deadline, LoadRequest, Record, RedisStore,
        SledConfig, SledStore, Snapshot, StatDelta, Store, StoreError, Tenant,
    },
};

/// Which engine keeps the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// sled in `data_dir`: one replica, nothing else to run.
    #[default]
    Sled,
    /// A Redis Cluster (`store.redis`): stateless replicas.
    Redis,
}

pub enum Backend {
    Sled(SledStore),
    /// Boxed: the Redis store is much larger than sled's handle.
    Redis(Box<RedisStore>),
}

impl Backend {
    /// Opens the configured store: sled in `data_dir` (blocking work moved
    /// off the runtime), or a connection to the Redis Cluster.
    pub async fn open(
        data_dir: std::path::PathBuf,
        config: &SledConfig,
    ) -> Result<Backend, StoreError> {
        match config.backend {
            BackendKind::Sled => {
                let config = config.clone();
                tokio::task::spawn_blocking(move || SledStore::open(&data_dir, &config))
                    .await
                    .map_err(|e| StoreError::Internal(format!("store opener panicked: {e}")))?
                    .map(Backend::Sled)
            }
            BackendKind::Redis => RedisStore::connect(config)
                .await
                .map(|store| Backend::Redis(Box::new(store))),
        }
    }

    pub fn sled(&self) -> Option<&SledStore> {
        match self {
            Backend::Sled(store) => Some(store),
            Backend::Redis(_) => None,
        }
    }

    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            Backend::Sled(_) => None,
            Backend::Redis(store) => Some(store.as_ref()),
        }
    }
}

/// Forwards one [`Store`] method: sled's trait method, or the Redis
/// store's `<name>_impl`.
macro_rules! forward {
    ($self:ident, $sled:ident => $sled_call:expr, $redis:ident => $redis_call:expr) => {
        match $self {
            Backend::Sled($sled) => $sled_call.await,
            Backend::Redis($redis) => $redis_call.await,
        }
    };
}

impl Store for Backend {
    async fn load_many(
        &self,
        requests: &[LoadRequest],
        now: Millis,
    ) -> Result<Vec<Snapshot>, StoreError> {
        forward!(self, s => s.load_many(requests, now), r => r.load_many_impl(requests))
    }

    async fn get(&self, key: &ContactKey) -> Result<Option<Record>, StoreError> {
        forward!(self, s => s.get(key), r => r.get_impl(key))
    }

    async fn commit_many(
        &self,
        ops: Vec<CommitOp>,
        now: Millis,
    ) -> Result<Vec<Commit>, StoreError> {
        forward!(self, s => s.commit_many(ops, now), r => r.commit_many_impl(ops))
    }

    async fn delete(&self, key: &ContactKey) -> Result<bool, StoreError> {
        forward!(self, s => s.delete(key), r => r.delete_impl(key))
    }

    async fn quarantine(&self, key: &ContactKey, reason: &str) -> Result<(), StoreError> {
        forward!(self, s => s.quarantine(key, reason), r => r.quarantine_impl(key, reason))
    }

    async fn put_dead_letter(
        &self,
        tenant: &Tenant,
        id: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        forward!(self,
            s => s.put_dead_letter(tenant, id, value),
            r => r.put_dead_letter_impl(tenant, id, value))
    }

    async fn list_dead_letters(
        &self,
        tenant: &Tenant,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        forward!(self,
            s => s.list_dead_letters(tenant, after, limit),
            r => r.list_dead_letters_impl(tenant, after, limit))
    }

    async fn delete_dead_letter(&self, tenant: &Tenant, id: &str) -> Result<bool, StoreError> {
        forward!(self,
            s => s.delete_dead_letter(tenant, id),
            r => r.delete_dead_letter_impl(tenant, id))
    }

    async fn put_entry(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
        id: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        forward!(self,
            s => s.put_entry(catalog, tenant, id, value),
            r => r.put_entry_impl(catalog, tenant, id, value))
    }

    async fn get_entry(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        forward!(self,
            s => s.get_entry(catalog, tenant, id),
            r => r.get_entry_impl(catalog, tenant, id))
    }

    async fn list_entries(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        forward!(self,
            s => s.list_entries(catalog, tenant),
            r => r.list_entries_impl(catalog, tenant))
    }

    async fn add_stats(&self, deltas: &mut Vec<StatDelta>) -> Result<(), StoreError> {
        forward!(self, s => s.add_stats(deltas), r => r.add_stats_impl(deltas))
    }

    async fn day_stats(
        &self,
        tenant: &Tenant,
        from: u32,
        to: u32,
    ) -> Result<Vec<(u32, Dims, StatCell)>, StoreError> {
        forward!(self,
            s => s.day_stats(tenant, from, to),
            r => r.day_stats_impl(tenant, from, to))
    }

    async fn minute_stats(
        &self,
        from: u32,
        to: u32,
    ) -> Result<Vec<(Tenant, u32, Dims, StatCell)>, StoreError> {
        forward!(self, s => s.minute_stats(from, to), r => r.minute_stats_impl(from, to))
    }

    async fn trim_minute_stats(&self, before: u32) -> Result<usize, StoreError> {
        // Redis minute keys carry a TTL (`store.redis.minute_stats_ttl`).
        forward!(self, s => s.trim_minute_stats(before), _r => std::future::ready(Ok(0)))
    }

    async fn put_deadline(&self, deadline: &Deadline) -> Result<(), StoreError> {
        forward!(self, s => s.put_deadline(deadline), r => r.put_deadline_impl(deadline))
    }

    async fn due_deadlines(&self, now: Millis, limit: usize) -> Result<Vec<Deadline>, StoreError> {
        forward!(self,
            s => s.due_deadlines(now, limit),
            r => r.due_deadlines_impl(now, limit))
    }

    async fn delete_deadline(&self, deadline: &Deadline) -> Result<(), StoreError> {
        forward!(self, s => s.delete_deadline(deadline), r => r.delete_deadline_impl(deadline))
    }

    async fn append_actions(
        &self,
        tenant: &Tenant,
        actions: &[(Millis, Vec<u8>)],
    ) -> Result<Vec<u64>, StoreError> {
        forward!(self,
            s => s.append_actions(tenant, actions),
            r => r.append_actions_impl(tenant, actions))
    }

    async fn actions_after(
        &self,
        tenant: &Tenant,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Millis, Vec<u8>)>, StoreError> {
        forward!(self,
            s => s.actions_after(tenant, after, limit),
            r => r.actions_after_impl(tenant, after, limit))
    }

    async fn trim_actions(&self, before: Millis) -> Result<usize, StoreError> {
        forward!(self, s => s.trim_actions(before), r => r.trim_actions_impl(before))
    }

    async fn sync(&self) -> Result<(), StoreError> {
        forward!(self, s => s.sync(), r => r.sync_impl())
    }

    async fn expire_markers(&self, now: Millis) -> Result<usize, StoreError> {
        // Redis markers carry a TTL: they expire one by one, by the server.
        forward!(self, s => s.expire_markers(now), _r => std::future::ready(Ok(0)))
    }

    async fn close(&self) -> Result<(), StoreError> {
        forward!(self, s => s.close(), _r => std::future::ready(Ok(())))
    }

    fn contacts_per_pass(&self) -> usize {
        match self {
            Backend::Sled(s) => s.contacts_per_pass(),
            // One round trip for the whole call.
            Backend::Redis(_) => usize::MAX,
        }
    }
}
