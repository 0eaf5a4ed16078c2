//! The sled layout of everything that is not per contact: statistics cells,
//! the silence sweep's deadline index and the action outbox.
//!
//! - `D tenant 0x00 day(4) dims` -> a day cell;
//! - `M minute(4) tenant 0x00 dims` -> a minute cell (time first, so route
//!   health loads and trims them by range);
//! - `q at(8) digest(12)` -> a [`Deadline`];
//! - `a tenant 0x00 seq(8)` -> `at(8)` then an encoded action.
//!
//! Statistics are written by one flusher at a time (the engine's), so a
//! read-modify-write of a cell needs no transaction.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        Millis,
        stats::{Dims, StatCell},
    },
    storage::{Deadline, Granularity, StatDelta, StoreError, Tenant, sled_store::to_store_error},
};

const DAY_PREFIX: u8 = b'D';
const MINUTE_PREFIX: u8 = b'M';
const DEADLINE_PREFIX: u8 = b'q';
const ACTION_PREFIX: u8 = b'a';

#[derive(Serialize, Deserialize)]
struct CellWire {
    counts: Vec<(u8, i64)>,
    latency: Vec<(u8, u64)>,
}

fn encode_cell(cell: &StatCell) -> Vec<u8> {
    postcard::to_stdvec(&CellWire {
        counts: cell.sparse_counts(),
        latency: cell.latency.sparse(),
    })
    .expect("cell serializes")
}

fn decode_cell(bytes: &[u8]) -> Result<StatCell, StoreError> {
    let wire: CellWire = postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Internal(format!("stats cell: {e}")))?;
    Ok(StatCell::from_sparse(&wire.counts, &wire.latency))
}

fn dims_bytes(dims: &Dims) -> Vec<u8> {
    postcard::to_stdvec(dims).expect("dims serialize")
}

fn tenant_prefix(prefix: u8, tenant: &Tenant) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(tenant.as_str().as_bytes());
    key.push(0);
    key
}

fn cell_key(delta: &StatDelta) -> Vec<u8> {
    match delta.granularity {
        Granularity::Day => {
            let mut key = tenant_prefix(DAY_PREFIX, &delta.tenant);
            key.extend_from_slice(&delta.bucket.to_be_bytes());
            key.extend_from_slice(&dims_bytes(&delta.dims));
            key
        }
        Granularity::Minute => {
            let mut key = vec![MINUTE_PREFIX];
            key.extend_from_slice(&delta.bucket.to_be_bytes());
            key.extend_from_slice(delta.tenant.as_str().as_bytes());
            key.push(0);
            key.extend_from_slice(&dims_bytes(&delta.dims));
            key
        }
    }
}

/// Adds each delta to its cell with an insert of its own and takes the
/// written ones out of `deltas`. Not one batch: a sled batch takes sled's
/// process-wide write lock (see [`append_actions`]), once a second here;
/// cells need no atomicity among themselves, only no double count on retry.
pub fn add_stats(tree: &sled::Tree, deltas: &mut Vec<StatDelta>) -> Result<(), StoreError> {
    let mut written = 0;
    let result = deltas.iter().try_for_each(|delta| {
        let key = cell_key(delta);
        let mut cell = match tree.get(&key).map_err(to_store_error)? {
            Some(bytes) => decode_cell(&bytes)?,
            None => StatCell::default(),
        };
        cell.merge(&delta.cell);
        tree.insert(key, encode_cell(&cell))
            .map_err(to_store_error)?;
        written += 1;
        Ok(())
    });
    deltas.drain(..written);
    result
}

pub fn day_stats(
    tree: &sled::Tree,
    tenant: &Tenant,
    from: u32,
    to: u32,
) -> Result<Vec<(u32, Dims, StatCell)>, StoreError> {
    let prefix = tenant_prefix(DAY_PREFIX, tenant);
    let mut start = prefix.clone();
    start.extend_from_slice(&from.to_be_bytes());
    let mut cells = Vec::new();
    for entry in tree.range(start..) {
        let (key, value) = entry.map_err(to_store_error)?;
        let Some(rest) = key.strip_prefix(prefix.as_slice()) else {
            break;
        };
        let (day, dims) = rest
            .split_at_checked(4)
            .ok_or_else(|| StoreError::Internal("short day key".into()))?;
        let day = u32::from_be_bytes(day.try_into().expect("4 bytes"));
        if day > to {
            break;
        }
        let dims: Dims = postcard::from_bytes(dims)
            .map_err(|e| StoreError::Internal(format!("day key: {e}")))?;
        cells.push((day, dims, decode_cell(&value)?));
    }
    Ok(cells)
}

pub fn minute_stats(
    tree: &sled::Tree,
    from: u32,
    to: u32,
) -> Result<Vec<(Tenant, u32, Dims, StatCell)>, StoreError> {
    let start = [&[MINUTE_PREFIX][..], &from.to_be_bytes()].concat();
    let mut cells = Vec::new();
    for entry in tree.range(start..) {
        let (key, value) = entry.map_err(to_store_error)?;
        if key.first() != Some(&MINUTE_PREFIX) || key.len() < 6 {
            break;
        }
        let minute = u32::from_be_bytes(key[1..5].try_into().expect("4 bytes"));
        if minute > to {
            break;
        }
        let rest = &key[5..];
        let split = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| StoreError::Internal("minute key without tenant".into()))?;
        let tenant =
            Tenant::new(&String::from_utf8_lossy(&rest[..split])).map_err(StoreError::Internal)?;
        let dims: Dims = postcard::from_bytes(&rest[split + 1..])
            .map_err(|e| StoreError::Internal(format!("minute key: {e}")))?;
        cells.push((tenant, minute, dims, decode_cell(&value)?));
    }
    Ok(cells)
}

/// Removes minute cells one by one: a trim cut short is finished by the
/// next, and a batch would take sled's process-wide write lock (see
/// [`append_actions`]).
pub fn trim_minute_stats(tree: &sled::Tree, before: u32) -> Result<usize, StoreError> {
    let end = [&[MINUTE_PREFIX][..], &before.to_be_bytes()].concat();
    let mut n = 0;
    for key in tree
        .range([MINUTE_PREFIX].as_slice()..end.as_slice())
        .keys()
    {
        tree.remove(key.map_err(to_store_error)?)
            .map_err(to_store_error)?;
        n += 1;
    }
    Ok(n)
}

fn deadline_key(d: &Deadline) -> Vec<u8> {
    let digest =
        blake3::hash(format!("{}\0{}\0{}", d.tenant, d.contact_id, d.message_id).as_bytes());
    let mut key = vec![DEADLINE_PREFIX];
    key.extend_from_slice(&(d.at.0 as u64 ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&digest.as_bytes()[..12]);
    key
}

pub fn put_deadline(tree: &sled::Tree, d: &Deadline) -> Result<(), StoreError> {
    let value = postcard::to_stdvec(d).expect("deadline serializes");
    tree.insert(deadline_key(d), value)
        .map(drop)
        .map_err(to_store_error)
}

pub fn due_deadlines(
    tree: &sled::Tree,
    now: Millis,
    limit: usize,
) -> Result<Vec<Deadline>, StoreError> {
    let mut due = Vec::new();
    for entry in tree.scan_prefix([DEADLINE_PREFIX]) {
        let (_, value) = entry.map_err(to_store_error)?;
        let deadline: Deadline = postcard::from_bytes(&value)
            .map_err(|e| StoreError::Internal(format!("deadline: {e}")))?;
        if deadline.at > now || due.len() == limit {
            break;
        }
        due.push(deadline);
    }
    Ok(due)
}

pub fn delete_deadline(tree: &sled::Tree, d: &Deadline) -> Result<(), StoreError> {
    tree.remove(deadline_key(d))
        .map(drop)
        .map_err(to_store_error)
}

/// Appends `actions` under `order`, one insert each. Allocating a sequence
/// and inserting it under one lock keeps the outbox free of gaps that fill
/// later: a watcher that has read sequence n never finds a lower one
/// afterwards. Single inserts, not a batch: a sled batch takes sled's
/// process-wide write lock, which waits for every read, write and flush in
/// progress and holds back every new one until it is done; the actions of
/// one call need no atomicity among themselves (docs/delivery.md, "Actions").
pub fn append_actions(
    db: &sled::Db,
    tree: &sled::Tree,
    order: &Mutex<()>,
    tenant: &Tenant,
    actions: &[(Millis, Vec<u8>)],
) -> Result<Vec<u64>, StoreError> {
    let _in_order = order
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut seqs = Vec::with_capacity(actions.len());
    for (at, bytes) in actions {
        // Monotonic and never reused, also across crashes (ids may skip).
        let seq = db.generate_id().map_err(to_store_error)? + 1;
        let mut key = tenant_prefix(ACTION_PREFIX, tenant);
        key.extend_from_slice(&seq.to_be_bytes());
        let mut value = at.0.to_le_bytes().to_vec();
        value.extend_from_slice(bytes);
        tree.insert(key, value).map_err(to_store_error)?;
        seqs.push(seq);
    }
    Ok(seqs)
}

pub fn actions_after(
    tree: &sled::Tree,
    tenant: &Tenant,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Millis, Vec<u8>)>, StoreError> {
    let prefix = tenant_prefix(ACTION_PREFIX, tenant);
    let mut start = prefix.clone();
    start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
    let mut actions = Vec::new();
    for entry in tree.range(start..) {
        let (key, value) = entry.map_err(to_store_error)?;
        let Some(seq) = key.strip_prefix(prefix.as_slice()) else {
            break;
        };
        if actions.len() == limit {
            break;
        }
        let seq = u64::from_be_bytes(
            seq.try_into()
                .map_err(|_| StoreError::Internal("action key".into()))?,
        );
        let (at, body) = value
            .split_at_checked(8)
            .ok_or_else(|| StoreError::Internal("short action".into()))?;
        actions.push((
            seq,
            Millis(i64::from_le_bytes(at.try_into().expect("8 bytes"))),
            body.to_vec(),
        ));
    }
    Ok(actions)
}

/// Removes actions one by one, as [`trim_minute_stats`] removes cells.
pub fn trim_actions(tree: &sled::Tree, before: Millis) -> Result<usize, StoreError> {
    let mut n = 0;
    for entry in tree.scan_prefix([ACTION_PREFIX]) {
        let (key, value) = entry.map_err(to_store_error)?;
        let at = value
            .get(..8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .unwrap_or(i64::MAX);
        if at < before.0 {
            tree.remove(key).map_err(to_store_error)?;
            n += 1;
        }
    }
    Ok(n)
}
