//! The single writer of the sled store.
//!
//! Every write goes through one thread that drains the queue and applies all
//! pending operations as one atomic sled batch. With a single writer a
//! compare-and-swap needs no lock (nobody else writes between the check and
//! the write), concurrent writes coalesce into one batch, and the async
//! runtime's threads never block on sled's write path.

use std::{
    collections::HashMap,
    sync::Arc,
    thread::{self, JoinHandle},
};

use sled::IVec;
use tokio::sync::{mpsc, oneshot};

use crate::{
    domain::Millis,
    storage::{
        Commit, CommitOp, DedupeKey, StoreError,
        marker_buckets::{self, GenerationMeta, MarkerLayout},
        sled_store::{join_record, record_key, split_version, to_store_error},
    },
};

/// Jobs taken in one batch at most, so that one batch never holds sled's
/// write lock (which readers wait for) for long.
const MAX_JOBS_PER_BATCH: usize = 256;
/// Keys removed per batch when dropping a generation.
const EXPIRY_CHUNK: usize = 10_000;
const QUEUE: usize = 4096;

pub enum Job {
    Commit {
        ops: Vec<CommitOp>,
        now: Millis,
        reply: oneshot::Sender<Result<Vec<Commit>, StoreError>>,
    },
    Delete {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    Expire {
        now: Millis,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

pub struct SledWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl SledWriter {
    pub fn start(tree: sled::Tree, layout: Arc<MarkerLayout>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let thread = thread::Builder::new()
            .name("reach-writer".into())
            .spawn(move || Writer { tree, layout }.run(queue))?;
        Ok(SledWriter {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues a job (waiting for room: backpressure) and awaits its reply.
    pub async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

impl Drop for SledWriter {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Writer {
    tree: sled::Tree,
    layout: Arc<MarkerLayout>,
}

/// Writes of the batch being built, visible to later jobs of the same batch.
#[derive(Default)]
struct Pending {
    batch: sled::Batch,
    overlay: HashMap<Vec<u8>, Option<IVec>>,
    generations: HashMap<u32, GenerationMeta>,
}

enum Reply {
    Commit(
        oneshot::Sender<Result<Vec<Commit>, StoreError>>,
        Vec<Commit>,
    ),
    Delete(oneshot::Sender<Result<bool, StoreError>>, bool),
}

impl Writer {
    fn run(self, mut queue: mpsc::Receiver<Job>) {
        while let Some(first) = queue.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_JOBS_PER_BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.process(jobs);
        }
    }

    fn process(&self, jobs: Vec<Job>) {
        let mut pending = Pending::default();
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Commit { ops, now, reply } => match self.commit(&mut pending, ops, now) {
                    Ok(results) => replies.push(Reply::Commit(reply, results)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Job::Delete { key, reply } => match self.read(&pending, &key) {
                    Ok(old) => {
                        pending.batch.remove(key.as_slice());
                        pending.overlay.insert(key, None);
                        replies.push(Reply::Delete(reply, old.is_some()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Job::Expire { now, reply } => {
                    // Expiry writes its own batches; what is pending goes first.
                    self.apply(std::mem::take(&mut pending), std::mem::take(&mut replies));
                    let _ = reply.send(self.expire(now));
                }
            }
        }
        self.apply(pending, replies);
    }

    /// Applies the batch atomically, then answers its jobs.
    fn apply(&self, pending: Pending, replies: Vec<Reply>) {
        if replies.is_empty() && pending.overlay.is_empty() {
            return;
        }
        let mut batch = pending.batch;
        for (&generation, meta) in &pending.generations {
            batch.insert(&marker_buckets::meta_key(generation), &meta.encode());
        }
        let result = self.tree.apply_batch(batch).map_err(to_store_error);
        for (&generation, meta) in &pending.generations {
            if result.is_ok() {
                self.layout.set_bits(generation, meta.bits);
            }
        }
        for reply in replies {
            match (reply, &result) {
                (Reply::Commit(tx, commits), Ok(())) => drop(tx.send(Ok(commits))),
                (Reply::Delete(tx, existed), Ok(())) => drop(tx.send(Ok(existed))),
                (Reply::Commit(tx, _), Err(e)) => drop(tx.send(Err(e.clone()))),
                (Reply::Delete(tx, _), Err(e)) => drop(tx.send(Err(e.clone()))),
            }
        }
    }

    fn read(&self, pending: &Pending, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        match pending.overlay.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.tree.get(key).map_err(to_store_error),
        }
    }

    fn write(&self, pending: &mut Pending, key: Vec<u8>, value: Vec<u8>) {
        let value = IVec::from(value);
        pending.batch.insert(key.as_slice(), value.clone());
        pending.overlay.insert(key, Some(value));
    }

    fn commit(
        &self,
        pending: &mut Pending,
        ops: Vec<CommitOp>,
        now: Millis,
    ) -> Result<Vec<Commit>, StoreError> {
        let live = self.live(pending, now);
        let current = self.current_generation(pending, now)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let key = record_key(&op.key);
            let version = self.read(pending, &key)?.map(|v| split_version(&v).0);
            if version != op.expected || self.any_marker_exists(pending, &live, &op.markers)? {
                results.push(Commit::Conflict);
                continue;
            }
            let mut added = 0;
            for marker in &op.markers {
                let bucket_key = marker_buckets::bucket_key(current.0, current.1, marker);
                let mut bucket = self
                    .read(pending, &bucket_key)?
                    .map(|v| v.to_vec())
                    .unwrap_or_default();
                if marker_buckets::insert(&mut bucket, &marker_buckets::suffix(marker)) {
                    added += 1;
                }
                self.write(pending, bucket_key.to_vec(), bucket);
            }
            if let Some(meta) = pending.generations.get_mut(&current.0) {
                meta.count += added;
            }
            let next = version.map_or(1, |v| v.wrapping_add(1));
            self.write(pending, key, join_record(next, &op.value));
            results.push(Commit::Applied(next));
        }
        Ok(results)
    }

    fn any_marker_exists(
        &self,
        pending: &Pending,
        live: &[(u32, u8)],
        markers: &[DedupeKey],
    ) -> Result<bool, StoreError> {
        for marker in markers {
            let suffix = marker_buckets::suffix(marker);
            for &(generation, bits) in live {
                let key = marker_buckets::bucket_key(generation, bits, marker);
                if let Some(bucket) = self.read(pending, &key)?
                    && marker_buckets::contains(&bucket, &suffix)
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Live generations including those created by this batch.
    fn live(&self, pending: &Pending, now: Millis) -> Vec<(u32, u8)> {
        let mut live = self.layout.live(now);
        for (&generation, meta) in &pending.generations {
            if !live.iter().any(|&(g, _)| g == generation) {
                live.insert(0, (generation, meta.bits));
            }
        }
        live
    }

    /// The generation new markers go to, with its bits; created (sized from
    /// the previous generation) if it does not exist yet.
    fn current_generation(
        &self,
        pending: &mut Pending,
        now: Millis,
    ) -> Result<(u32, u8), StoreError> {
        let generation = self.layout.generation(now);
        if let Some(meta) = pending.generations.get(&generation) {
            return Ok((generation, meta.bits));
        }
        let stored = self
            .tree
            .get(marker_buckets::meta_key(generation))
            .map_err(to_store_error)?;
        let meta = match stored.as_deref().and_then(GenerationMeta::decode) {
            Some(meta) => meta,
            None => {
                let previous = match self.layout.previous(generation) {
                    Some(g) => self
                        .tree
                        .get(marker_buckets::meta_key(g))
                        .map_err(to_store_error)?
                        .as_deref()
                        .and_then(GenerationMeta::decode),
                    None => None,
                };
                GenerationMeta {
                    bits: previous
                        .map_or(marker_buckets::default_bits(), GenerationMeta::next_bits),
                    count: 0,
                }
            }
        };
        pending.generations.insert(generation, meta);
        Ok((generation, meta.bits))
    }

    fn expire(&self, now: Millis) -> Result<usize, StoreError> {
        let expired = self.layout.expired(now);
        for &generation in &expired {
            // Readers stop probing it first; then its keys go, in chunks.
            self.layout.forget(generation);
            let mut keys = self
                .tree
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
                self.tree.apply_batch(batch).map_err(to_store_error)?;
            }
            self.tree
                .remove(marker_buckets::meta_key(generation))
                .map_err(to_store_error)?;
        }
        Ok(expired.len())
    }
}
