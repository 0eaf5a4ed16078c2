//! The Redis Cluster store: stateless reach replicas over a distributed
//! engine (Redis 7 or Valkey), selected by `store.backend = "redis"`.
//!
//! Per-contact updates are optimistic: [`Store::load_many`] reads the
//! profile with its version, the engine computes the new state, and a Lua
//! script compare-and-swaps it together with the dedupe markers (checked
//! absent, then set with a TTL: the dedupe window). All keys of one contact
//! share a hash tag, so the script never crosses slots. No WATCH/MULTI: the
//! connection is multiplexed between every task of the process.
//!
//! What is not per contact lives in [`super::redis_shared`].

use std::{collections::HashSet, sync::Arc};

use futures_util::future::{join_all, try_join_all};
use redis::{
    ErrorKind, RedisError, Script, ServerErrorKind, Value,
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr},
};

use crate::{
    domain::Millis,
    storage::{
        AsRead, Commit, CommitOp, ContactKey, LoadRequest, Record, SledConfig, Snapshot,
        StoreError, Version, redis_keys::KeySpace, redis_link::Link,
    },
};

/// Reads a contact's version and profile and which markers exist.
/// KEYS: contact hash, markers. Returns [version or "", profile or "", 0/1...].
const LOAD: &str = r"
local r = redis.call('HMGET', KEYS[1], 'v', 'd')
local out = {r[1] or '', r[2] or ''}
for i = 2, #KEYS do out[#out + 1] = redis.call('EXISTS', KEYS[i]) end
return out
";

/// The compare-and-swap. KEYS: contact hash, markers. ARGV: expected
/// version ("" if none), new profile, marker TTL in ms. Returns the new
/// version, or -1 if the version moved or a marker exists (nothing written).
const COMMIT: &str = r"
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then return -1 end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -1 end
end
local next = ((tonumber(v) or 0) + 1) % 4294967296
redis.call('HSET', KEYS[1], 'v', next, 'd', ARGV[2])
for i = 2, #KEYS do redis.call('SET', KEYS[i], '1', 'PX', ARGV[3], 'NX') end
return next
";

/// Erases the profile, keeping (and bumping) the version so that a
/// concurrent compare-and-swap against the old one fails. Returns 1 if a
/// profile existed.
const DELETE: &str = r"
if redis.call('HEXISTS', KEYS[1], 'd') == 0 then return 0 end
redis.call('HDEL', KEYS[1], 'd')
redis.call('HSET', KEYS[1], 'v', ((tonumber(redis.call('HGET', KEYS[1], 'v')) or 0) + 1) % 4294967296)
return 1
";

/// Moves the profile to `q` with the reason in `qr` (the latest one only).
const QUARANTINE: &str = r"
local d = redis.call('HGET', KEYS[1], 'd')
if not d then return 0 end
redis.call('HSET', KEYS[1], 'q', d, 'qr', ARGV[1])
redis.call('HDEL', KEYS[1], 'd')
redis.call('HSET', KEYS[1], 'v', ((tonumber(redis.call('HGET', KEYS[1], 'v')) or 0) + 1) % 4294967296)
return 1
";

pub struct RedisStore {
    pub(super) link: Arc<Link>,
    pub(super) keys: KeySpace,
    pub(super) config: super::RedisConfig,
    dedupe_ttl_ms: u64,
    /// This replica's statistics shard.
    pub(super) stat_shard: u32,
    pub(super) scripts: Scripts,
}

/// The Lua scripts, hashed once (they run by `EVALSHA`).
pub(super) struct Scripts {
    load: Script,
    commit: Script,
    delete: Script,
    quarantine: Script,
    pub(super) add_counters: Script,
    pub(super) append_actions: Script,
    pub(super) put_dead_letter: Script,
    pub(super) delete_dead_letter: Script,
}

/// Redis errors as store errors: anything about reaching the cluster
/// (I/O, timeouts, failover in progress, a node loading) is UNAVAILABLE and
/// worth retrying; a script or type error is a bug.
pub(super) fn to_store_error(e: RedisError) -> StoreError {
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::ResponseError)
        | ErrorKind::UnexpectedReturnType
        | ErrorKind::Parse
        | ErrorKind::InvalidClientConfig => StoreError::Internal(format!("redis: {e}")),
        _ => StoreError::Unavailable(format!("redis: {e}")),
    }
}

impl RedisStore {
    /// Connects to the cluster (failing if no seed node answers).
    pub async fn connect(config: &SledConfig) -> Result<Self, StoreError> {
        let redis = config.redis.clone();
        if redis.nodes.is_empty() {
            return Err(StoreError::Internal(
                "store.redis.nodes is empty: name at least one node of the cluster".into(),
            ));
        }
        let client = redis::cluster::ClusterClient::builder(redis.nodes.clone())
            .connection_timeout(redis.connect_timeout)
            .response_timeout(redis.response_timeout)
            .retries(2)
            .min_retry_wait(50)
            .max_retry_wait(500)
            .build()
            .map_err(to_store_error)?;
        let link = Link::open(client).await.map_err(to_store_error)?;
        Ok(RedisStore {
            link,
            keys: KeySpace::new(&redis.key_prefix),
            stat_shard: fastrand::u32(0..redis.stat_shards.max(1)),
            config: redis,
            dedupe_ttl_ms: config.dedupe_window.as_millis().max(1) as u64,
            scripts: Scripts {
                load: Script::new(LOAD),
                commit: Script::new(COMMIT),
                delete: Script::new(DELETE),
                quarantine: Script::new(QUARANTINE),
                add_counters: Script::new(super::redis_shared::ADD_COUNTERS),
                append_actions: Script::new(super::redis_shared::APPEND_ACTIONS),
                put_dead_letter: Script::new(super::redis_shared::PUT_DEAD_LETTER),
                delete_dead_letter: Script::new(super::redis_shared::DELETE_DEAD_LETTER),
            },
        })
    }

    /// The address hash key of the deployment: the first replica to start
    /// stores `candidate`, every later one adopts what is stored.
    pub async fn shared_address_key(&self, candidate: &str) -> Result<String, StoreError> {
        let key = self.keys.address_key();
        let mut conn = self.conn();
        let _: Value = redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))
    }

    pub(super) fn conn(&self) -> ClusterConnection {
        self.link.current().writes.clone()
    }

    pub(super) fn read_conn(&self) -> ClusterConnection {
        self.link.current().reads.clone()
    }

    /// Maps a Redis error, replacing the connections if it says they are
    /// in trouble.
    pub(super) fn failed(&self, e: RedisError) -> StoreError {
        self.link.failed(&e);
        to_store_error(e)
    }

    async fn load_one(&self, request: &LoadRequest) -> Result<Snapshot, StoreError> {
        let mut invocation = self.scripts.load.key(self.keys.contact(&request.key));
        for marker in &request.markers {
            invocation.key(self.keys.marker(&request.key, marker));
        }
        let reply: Vec<Value> = invocation
            .invoke_async(&mut self.read_conn())
            .await
            .map_err(|e| self.failed(e))?;
        let mut parts = reply.into_iter();
        let version = parse_version(parts.next(), &request.key)?;
        let bytes = bytes_of(parts.next());
        let seen = parts
            .map(|v| matches!(v, Value::Int(1)))
            .collect::<Vec<_>>();
        if seen.len() != request.markers.len() {
            return Err(StoreError::Internal("redis: short load reply".into()));
        }
        Ok(Snapshot {
            record: match (version, bytes) {
                (Some(version), Some(bytes)) => Some(Record { version, bytes }),
                _ => None,
            },
            version,
            seen,
            read: AsRead::default(),
        })
    }

    async fn commit_one(
        &self,
        op: CommitOp,
        mut conn: ClusterConnection,
    ) -> Result<Commit, StoreError> {
        let mut invocation = self.scripts.commit.key(self.keys.contact(&op.key));
        for marker in &op.markers {
            invocation.key(self.keys.marker(&op.key, marker));
        }
        invocation
            .arg(op.expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(op.value)
            .arg(self.dedupe_ttl_ms);
        let reply: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(match reply {
            -1 => Commit::Conflict,
            v => Commit::Applied(v as Version),
        })
    }
}

fn bytes_of(value: Option<Value>) -> Option<Vec<u8>> {
    match value {
        Some(Value::BulkString(bytes)) if !bytes.is_empty() => Some(bytes),
        _ => None,
    }
}

fn parse_version(value: Option<Value>, key: &ContactKey) -> Result<Option<Version>, StoreError> {
    let Some(bytes) = bytes_of(value) else {
        return Ok(None);
    };
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt {
            contact: key.contact_id.clone(),
            reason: "the stored version is not a number".into(),
        })
}

/// How many replicas acknowledged, from a `WAIT` reply.
fn acknowledged(reply: &Value) -> i64 {
    match reply {
        Value::Int(n) => *n,
        _ => 0,
    }
}

/// The per-contact half of [`super::Store`] for Redis.
impl RedisStore {
    pub(super) async fn load_many_impl(
        &self,
        requests: &[LoadRequest],
    ) -> Result<Vec<Snapshot>, StoreError> {
        let snapshots = try_join_all(requests.iter().map(|r| self.load_one(r))).await?;
        // A redelivery is acknowledged as a duplicate: its first copy must
        // be on the replicas too (its own WAIT may have failed, or another
        // reach wrote it). WAIT only counts this connection's writes, so a
        // tiny write in the contact's slot goes first: the replication
        // stream is ordered, so once it is confirmed, so is the first copy.
        if self.config.wait_replicas > 0 {
            let seen: Vec<&ContactKey> = requests
                .iter()
                .zip(&snapshots)
                .filter(|(_, s)| s.seen.iter().any(|&seen| seen))
                .map(|(r, _)| &r.key)
                .collect();
            let conn = self.conn();
            try_join_all(seen.iter().map(|key| {
                let mut conn = conn.clone();
                let mut touch = redis::cmd("SET");
                touch.arg(self.keys.fence(key)).arg(1).arg("PX").arg(1000);
                async move { touch.query_async::<Value>(&mut conn).await }
            }))
            .await
            .map_err(|e| self.failed(e))?;
            self.wait_for_replicas(&conn, seen.into_iter()).await?;
        }
        Ok(snapshots)
    }

    pub(super) async fn get_impl(&self, key: &ContactKey) -> Result<Option<Record>, StoreError> {
        let reply: Vec<Value> = redis::cmd("HMGET")
            .arg(self.keys.contact(key))
            .arg("v")
            .arg("d")
            .query_async(&mut self.read_conn())
            .await
            .map_err(|e| self.failed(e))?;
        let mut parts = reply.into_iter();
        let version = parse_version(parts.next(), key)?;
        Ok(match (version, bytes_of(parts.next())) {
            (Some(version), Some(bytes)) => Some(Record { version, bytes }),
            _ => None,
        })
    }

    pub(super) async fn commit_many_impl(
        &self,
        ops: Vec<CommitOp>,
    ) -> Result<Vec<Commit>, StoreError> {
        let keys: Vec<ContactKey> = ops.iter().map(|op| op.key.clone()).collect();
        // One connection for the writes and their WAIT.
        let conn = self.conn();
        // Contacts live on different shards: one op can fail while others
        // are written, and those must be reported as written.
        let mut commits: Vec<Commit> =
            join_all(ops.into_iter().map(|op| self.commit_one(op, conn.clone())))
                .await
                .into_iter()
                .map(|result| result.unwrap_or_else(Commit::Failed))
                .collect();
        let applied = keys
            .iter()
            .zip(&commits)
            .filter(|(_, c)| matches!(c, Commit::Applied(_)))
            .map(|(key, _)| key);
        if let Err(e) = self.wait_for_replicas(&conn, applied).await {
            for commit in &mut commits {
                if let Commit::Applied(version) = *commit {
                    *commit = Commit::Unconfirmed(version, e.clone());
                }
            }
        }
        Ok(commits)
    }

    /// Writes are acknowledged by the primary (and its replicas, with
    /// `wait_replicas`) before `commit_many` returns: nothing is left to
    /// flush. How durable that is depends on the cluster's AOF settings
    /// (docs/scaleout.md).
    pub(super) async fn sync_impl(&self) -> Result<(), StoreError> {
        Ok(())
    }

    pub(super) async fn delete_impl(&self, key: &ContactKey) -> Result<bool, StoreError> {
        let existed: i64 = self
            .scripts
            .delete
            .key(self.keys.contact(key))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.failed(e))?;
        Ok(existed == 1)
    }

    pub(super) async fn quarantine_impl(
        &self,
        key: &ContactKey,
        reason: &str,
    ) -> Result<(), StoreError> {
        let moved: i64 = self
            .scripts
            .quarantine
            .key(self.keys.contact(key))
            .arg(format!("{}: {reason}", Millis::now().0))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.failed(e))?;
        if moved == 1 {
            super::note_quarantined(&key.tenant, reason, "field q");
        }
        Ok(())
    }

    /// With `wait_replicas` set, asks the primary of each contact's slot
    /// to confirm that its replicas hold everything this process wrote
    /// there (`WAIT`), so that a failover cannot lose it. Only the slots
    /// written matter: a shard that lost its replica must not stop writes
    /// to the others.
    async fn wait_for_replicas<'a>(
        &self,
        conn: &ClusterConnection,
        contacts: impl Iterator<Item = &'a ContactKey>,
    ) -> Result<(), StoreError> {
        let replicas = self.config.wait_replicas;
        if replicas == 0 {
            return Ok(());
        }
        let mut slots: HashSet<Slot> = contacts
            .map(|key| Slot::for_key(self.keys.contact(key)))
            .collect();
        // WAIT in slices shorter than the response timeout (a longer one
        // would be cut by the client as a dead connection), until every
        // slot is confirmed or `wait_timeout` is spent.
        let slice = self
            .config
            .response_timeout
            .mul_f64(0.8)
            .max(std::time::Duration::from_millis(10));
        let deadline = std::time::Instant::now() + self.config.wait_timeout;
        let mut acked = 0;
        while !slots.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "only {acked} of {replicas} replicas confirmed the write within {:?}",
                    self.config.wait_timeout
                )));
            }
            let timeout_ms = left.min(slice).as_millis().max(1) as u64;
            let asked: Vec<Slot> = slots.iter().copied().collect();
            let replies = try_join_all(asked.iter().map(|&slot| {
                let mut conn = conn.clone();
                let mut wait = redis::cmd("WAIT");
                wait.arg(replicas).arg(timeout_ms);
                let route = Route::with_slot(slot, SlotAddr::Master);
                async move {
                    conn.route_command(
                        wait,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await
                }
            }))
            .await
            .map_err(|e| self.failed(e))?;
            for (slot, reply) in asked.into_iter().zip(&replies) {
                let n = acknowledged(reply);
                if n >= replicas as i64 {
                    slots.remove(&slot);
                } else {
                    acked = n;
                }
            }
        }
        Ok(())
    }
}
