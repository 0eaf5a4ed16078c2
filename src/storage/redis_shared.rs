//! Everything in the Redis store that is not per contact and that several
//! replicas write at once:
//!
//! - statistics: hashes of counters (`HINCRBY`), one key per bucket and
//!   shard; each replica adds to its own shard, reads sum every shard, so no
//!   single key takes every replica's writes;
//! - the silence sweep's deadlines: sorted sets by time, sharded by message;
//! - the action outbox: one stream per tenant, sequence numbers made by the
//!   server (`XADD *`), so replicas never hand out the same one;
//! - dead letters and catalogs: per-tenant hashes (a sorted index keeps
//!   dead letters in id order).
//!
//! No command touches keys of two slots.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::{
    future::{join_all, try_join_all},
    stream::{self, StreamExt, TryStreamExt},
};
use redis::{Value, streams::StreamRangeReply};

use crate::{
    domain::{
        Millis,
        stats::{Dims, StatCell},
    },
    storage::{
        Catalog, Deadline, Granularity, StatDelta, StoreError, Tenant, redis_store::RedisStore,
    },
};

/// Bucket reads one call keeps in flight. The route horizon alone is some
/// 3,000 keys (377 minutes of 8 shards): sent at once, they queue on one
/// connection, and on a busy machine the last ones outlive the response
/// timeout on a healthy cluster (a replica then failed its warm-up at start).
const BUCKETS_IN_FLIGHT: usize = 64;

/// KEYS: a stats hash. ARGV: TTL in ms (0: none), then field/increment pairs.
pub(super) const ADD_COUNTERS: &str = r"
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
";

/// KEYS: stream. ARGV: at/body pairs. Returns the server-made ids, in order.
pub(super) const APPEND_ACTIONS: &str = r"
local ids = {}
for i = 1, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'a', ARGV[i], 'b', ARGV[i + 1])
end
return ids
";

/// KEYS: dead-letter hash, index. ARGV: id, value. Returns 1 if the id was new.
pub(super) const PUT_DEAD_LETTER: &str = r"
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return added
";

/// KEYS: dead-letter hash, index. ARGV: id. Returns whether it existed.
pub(super) const DELETE_DEAD_LETTER: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
";

/// Bits of a stream id's sequence part inside an outbox sequence number:
/// `ms << 20 | seq` keeps the order of stream ids while fitting a u64.
const SEQ_BITS: u32 = 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Field names of one cell's counters: `[tenant|]dims-hex|c<i>` for counts
/// and `|l<i>` for latency buckets.
fn cell_fields(prefix: &str, cell: &StatCell) -> Vec<(String, i64)> {
    let counts = cell
        .sparse_counts()
        .into_iter()
        .map(|(i, n)| (format!("{prefix}|c{i}"), n));
    let latency = cell
        .latency
        .sparse()
        .into_iter()
        .map(|(i, n)| (format!("{prefix}|l{i}"), n as i64));
    counts.chain(latency).collect()
}

/// Splits a counter field into its prefix and adds the counter to `cell`.
fn add_field(cell: &mut StatCell, counter: &str, value: i64) -> Result<(), StoreError> {
    let bad = || StoreError::Internal(format!("redis: bad statistics field {counter:?}"));
    let (kind, index) = counter.split_at_checked(1).ok_or_else(bad)?;
    let index: u8 = index.parse().map_err(|_| bad())?;
    match kind {
        "c" => cell.merge(&StatCell::from_sparse(&[(index, value)], &[])),
        "l" => cell.latency.add_bucket(index as usize, value.max(0) as u64),
        _ => return Err(bad()),
    }
    Ok(())
}

fn dims_of(hex_text: &str) -> Result<Dims, StoreError> {
    unhex(hex_text)
        .and_then(|bytes| postcard::from_bytes(&bytes).ok())
        .ok_or_else(|| StoreError::Internal("redis: bad statistics dimensions".into()))
}

fn string_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

impl RedisStore {
    /// Every shard of `key_of(bucket, shard)` for buckets in `[from, to]`,
    /// read concurrently: (bucket, field, value).
    async fn read_buckets(
        &self,
        from: u32,
        to: u32,
        key_of: impl Fn(u32, u32) -> String,
    ) -> Result<Vec<(u32, String, i64)>, StoreError> {
        let shards = self.config.stat_shards.max(1);
        let keys: Vec<(u32, String)> = (from..=to)
            .flat_map(|bucket| (0..shards).map(move |shard| (bucket, shard)))
            .map(|(bucket, shard)| (bucket, key_of(bucket, shard)))
            .collect();
        // Collected first: futures do nothing until polled, and a closure
        // inside the stream's type would not be `Send` for every lifetime.
        let reads: Vec<_> = keys
            .iter()
            .map(|(_, key)| {
                let mut conn = self.read_conn();
                async move {
                    redis::cmd("HGETALL")
                        .arg(key)
                        .query_async::<HashMap<String, i64>>(&mut conn)
                        .await
                }
            })
            .collect();
        let replies: Vec<HashMap<String, i64>> = stream::iter(reads)
            .buffered(BUCKETS_IN_FLIGHT)
            .try_collect()
            .await
            .map_err(|e| self.failed(e))?;
        Ok(keys
            .into_iter()
            .zip(replies)
            .flat_map(|((bucket, _), fields)| {
                fields
                    .into_iter()
                    .map(move |(field, value)| (bucket, field, value))
            })
            .collect())
    }

    pub(super) async fn add_stats_impl(
        &self,
        deltas: &mut Vec<StatDelta>,
    ) -> Result<(), StoreError> {
        let mut by_key: BTreeMap<String, (u64, Vec<(String, i64)>)> = BTreeMap::new();
        let mut key_of_delta = Vec::with_capacity(deltas.len());
        let minute_ttl = self.config.minute_stats_ttl.as_millis().max(1) as u64;
        for delta in deltas.iter() {
            let key = self.keys.stats(
                delta.granularity,
                &delta.tenant,
                delta.bucket,
                self.stat_shard,
            );
            let (prefix, ttl) = match delta.granularity {
                Granularity::Day => (hex(&dims_bytes(&delta.dims)), 0),
                Granularity::Minute => (
                    format!("{}|{}", delta.tenant, hex(&dims_bytes(&delta.dims))),
                    minute_ttl,
                ),
            };
            let entry = by_key.entry(key.clone()).or_insert((ttl, Vec::new()));
            entry.1.extend(cell_fields(&prefix, &delta.cell));
            key_of_delta.push(key);
        }
        let script = &self.scripts.add_counters;
        // Every key apart: the deltas of the keys that failed stay behind.
        let results = join_all(by_key.into_iter().map(|(key, (ttl, fields))| {
            let mut invocation = script.key(&key);
            invocation.arg(ttl);
            for (field, n) in fields {
                invocation.arg(field).arg(n);
            }
            let mut conn = self.conn();
            async move { (key, invocation.invoke_async::<i64>(&mut conn).await) }
        }))
        .await;
        let mut failed_keys = HashSet::new();
        let mut first_error = None;
        for (key, result) in results {
            if let Err(e) = result {
                failed_keys.insert(key);
                first_error.get_or_insert(e);
            }
        }
        let mut keys = key_of_delta.iter();
        deltas.retain(|_| failed_keys.contains(keys.next().expect("a key per delta")));
        match first_error {
            Some(e) => Err(self.failed(e)),
            None => Ok(()),
        }
    }

    pub(super) async fn day_stats_impl(
        &self,
        tenant: &Tenant,
        from: u32,
        to: u32,
    ) -> Result<Vec<(u32, Dims, StatCell)>, StoreError> {
        let fields = self
            .read_buckets(from, to, |day, shard| {
                self.keys.stats(Granularity::Day, tenant, day, shard)
            })
            .await?;
        let mut cells: BTreeMap<(u32, String), StatCell> = BTreeMap::new();
        for (day, field, value) in fields {
            let (dims, counter) = field
                .rsplit_once('|')
                .ok_or_else(|| StoreError::Internal("redis: bad day field".into()))?;
            add_field(
                cells.entry((day, dims.to_owned())).or_default(),
                counter,
                value,
            )?;
        }
        cells
            .into_iter()
            .map(|((day, dims), cell)| Ok((day, dims_of(&dims)?, cell)))
            .collect()
    }

    pub(super) async fn minute_stats_impl(
        &self,
        from: u32,
        to: u32,
    ) -> Result<Vec<(Tenant, u32, Dims, StatCell)>, StoreError> {
        let any = Tenant::default();
        let fields = self
            .read_buckets(from, to, |minute, shard| {
                self.keys.stats(Granularity::Minute, &any, minute, shard)
            })
            .await?;
        let mut cells: BTreeMap<(String, u32, String), StatCell> = BTreeMap::new();
        for (minute, field, value) in fields {
            let mut parts = field.splitn(3, '|');
            let (Some(tenant), Some(dims), Some(counter)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(StoreError::Internal("redis: bad minute field".into()));
            };
            add_field(
                cells
                    .entry((tenant.to_owned(), minute, dims.to_owned()))
                    .or_default(),
                counter,
                value,
            )?;
        }
        cells
            .into_iter()
            .map(|((tenant, minute, dims), cell)| {
                Ok((
                    Tenant::new(&tenant).map_err(StoreError::Internal)?,
                    minute,
                    dims_of(&dims)?,
                    cell,
                ))
            })
            .collect()
    }

    fn deadline_shard(&self, d: &Deadline) -> u32 {
        let digest =
            blake3::hash(format!("{}\0{}\0{}", d.tenant, d.contact_id, d.message_id).as_bytes());
        let n = u32::from_le_bytes(digest.as_bytes()[..4].try_into().expect("4 bytes"));
        n % self.config.deadline_shards.max(1)
    }

    pub(super) async fn put_deadline_impl(&self, d: &Deadline) -> Result<(), StoreError> {
        let member = postcard::to_stdvec(d).expect("deadline serializes");
        redis::cmd("ZADD")
            .arg(self.keys.deadlines(self.deadline_shard(d)))
            .arg(d.at.0)
            .arg(member)
            .query_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    pub(super) async fn due_deadlines_impl(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Deadline>, StoreError> {
        let shards = 0..self.config.deadline_shards.max(1);
        let replies = try_join_all(shards.map(|shard| {
            let mut conn = self.read_conn();
            let key = self.keys.deadlines(shard);
            async move {
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg("-inf")
                    .arg(now.0)
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async::<Vec<Vec<u8>>>(&mut conn)
                    .await
            }
        }))
        .await
        .map_err(|e| self.failed(e))?;
        let mut due = replies
            .into_iter()
            .flatten()
            .map(|bytes| {
                postcard::from_bytes::<Deadline>(&bytes)
                    .map_err(|e| StoreError::Internal(format!("redis: deadline: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        due.sort_by_key(|d| d.at);
        due.truncate(limit);
        Ok(due)
    }

    pub(super) async fn delete_deadline_impl(&self, d: &Deadline) -> Result<(), StoreError> {
        let member = postcard::to_stdvec(d).expect("deadline serializes");
        redis::cmd("ZREM")
            .arg(self.keys.deadlines(self.deadline_shard(d)))
            .arg(member)
            .query_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    pub(super) async fn append_actions_impl(
        &self,
        tenant: &Tenant,
        actions: &[(Millis, Vec<u8>)],
    ) -> Result<Vec<u64>, StoreError> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        redis::cmd("SADD")
            .arg(self.keys.action_tenants())
            .arg(tenant.as_str())
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let script = &self.scripts.append_actions;
        let mut invocation = script.key(self.keys.actions(tenant));
        for (at, body) in actions {
            invocation.arg(at.0).arg(body.as_slice());
        }
        let ids: Vec<String> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        ids.iter().map(|id| seq_of(id)).collect()
    }

    pub(super) async fn actions_after_impl(
        &self,
        tenant: &Tenant,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Millis, Vec<u8>)>, StoreError> {
        let start = if after == 0 {
            "-".to_owned()
        } else {
            format!("({}-{}", after >> SEQ_BITS, after & ((1 << SEQ_BITS) - 1))
        };
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys.actions(tenant))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut self.read_conn())
            .await
            .map_err(|e| self.failed(e))?;
        reply
            .ids
            .into_iter()
            .map(|entry| {
                let at = entry
                    .map
                    .get("a")
                    .and_then(string_of)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::Internal("redis: action without time".into()))?;
                let body = match entry.map.get("b") {
                    Some(Value::BulkString(bytes)) => bytes.clone(),
                    _ => return Err(StoreError::Internal("redis: action without body".into())),
                };
                Ok((seq_of(&entry.id)?, Millis(at), body))
            })
            .collect()
    }

    pub(super) async fn trim_actions_impl(&self, before: Millis) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tenants: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.action_tenants())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let mut trimmed = 0;
        for tenant in tenants {
            let Ok(tenant) = Tenant::new(&tenant) else {
                continue;
            };
            // Stream ids are insertion times: an action is appended when it
            // happens, so they stand for its time.
            let n: i64 = redis::cmd("XTRIM")
                .arg(self.keys.actions(&tenant))
                .arg("MINID")
                .arg(before.0.max(0))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            trimmed += n.max(0) as usize;
        }
        Ok(trimmed)
    }

    pub(super) async fn put_dead_letter_impl(
        &self,
        tenant: &Tenant,
        id: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let (hash, index) = self.keys.dead_letters(tenant);
        self.scripts
            .put_dead_letter
            .key(hash)
            .key(index)
            .arg(id)
            .arg(value)
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map(|added| added == 1)
            .map_err(|e| self.failed(e))
    }

    pub(super) async fn list_dead_letters_impl(
        &self,
        tenant: &Tenant,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (hash, index) = self.keys.dead_letters(tenant);
        let mut conn = self.read_conn();
        let start = if after.is_empty() {
            "-".to_owned()
        } else {
            format!("({after}")
        };
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(start)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&hash)
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        // One deleted between the two reads is skipped.
        Ok(ids
            .into_iter()
            .zip(values)
            .filter_map(|(id, value)| Some((id, value?)))
            .collect())
    }

    pub(super) async fn delete_dead_letter_impl(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (hash, index) = self.keys.dead_letters(tenant);
        let n: i64 = self
            .scripts
            .delete_dead_letter
            .key(hash)
            .key(index)
            .arg(id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.failed(e))?;
        Ok(n == 1)
    }

    pub(super) async fn put_entry_impl(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
        id: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        redis::cmd("HSET")
            .arg(self.keys.catalog(catalog, tenant))
            .arg(id)
            .arg(value)
            .query_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    pub(super) async fn get_entry_impl(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        redis::cmd("HGET")
            .arg(self.keys.catalog(catalog, tenant))
            .arg(id)
            .query_async(&mut self.read_conn())
            .await
            .map_err(|e| self.failed(e))
    }

    pub(super) async fn list_entries_impl(
        &self,
        catalog: Catalog,
        tenant: &Tenant,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let entries: BTreeMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.keys.catalog(catalog, tenant))
            .query_async(&mut self.read_conn())
            .await
            .map_err(|e| self.failed(e))?;
        Ok(entries.into_iter().collect())
    }
}

fn dims_bytes(dims: &Dims) -> Vec<u8> {
    postcard::to_stdvec(dims).expect("dims serialize")
}

/// `ms-seq` stream id to an outbox sequence number.
fn seq_of(id: &str) -> Result<u64, StoreError> {
    let bad = || StoreError::Internal(format!("redis: unexpected stream id {id:?}"));
    let (ms, seq) = id.split_once('-').ok_or_else(bad)?;
    let (ms, seq): (u64, u64) = (
        ms.parse().map_err(|_| bad())?,
        seq.parse().map_err(|_| bad())?,
    );
    if seq >= 1 << SEQ_BITS || ms >= 1 << (64 - SEQ_BITS) {
        return Err(bad());
    }
    Ok(ms << SEQ_BITS | seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_keep_their_order_as_sequence_numbers() {
        let a = seq_of("1700000000000-0").unwrap();
        let b = seq_of("1700000000000-7").unwrap();
        let c = seq_of("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert!(seq_of("nonsense").is_err());
    }

    #[test]
    fn cell_fields_round_trip() {
        let mut cell = StatCell::default();
        cell.add(crate::domain::Status::Delivered, 3);
        cell.latency.record(1500);
        let mut back = StatCell::default();
        for (field, n) in cell_fields("x", &cell) {
            let (_, counter) = field.rsplit_once('|').unwrap();
            add_field(&mut back, counter, n).unwrap();
        }
        assert_eq!(back, cell);
    }
}
