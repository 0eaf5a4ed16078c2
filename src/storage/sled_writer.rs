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
        marker_buckets::{self, GenerationMeta, Levels, MarkerLayout},
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
            batch.insert(&marker_buckets::meta_key(generation), meta.encode());
        }
        let result = self.tree.apply_batch(batch).map_err(to_store_error);
        if result.is_ok() {
            for (generation, meta) in pending.generations {
                self.layout.set_levels(generation, meta.levels);
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
        let mut current = self.current_generation(pending, now)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let live = self.live(pending, now);
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
                if meta.grow_if_full() {
                    // Later ops insert into the new level.
                    current.1 = meta.bits();
                }
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
        live: &[(u32, Levels)],
        markers: &[DedupeKey],
    ) -> Result<bool, StoreError> {
        for marker in markers {
            let suffix = marker_buckets::suffix(marker);
            for (generation, levels) in live {
                for &bits in levels.iter().rev() {
                    let key = marker_buckets::bucket_key(*generation, bits, marker);
                    if let Some(bucket) = self.read(pending, &key)?
                        && marker_buckets::contains(&bucket, &suffix)
                    {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Live generations with the levels this batch may have added.
    fn live(&self, pending: &Pending, now: Millis) -> Vec<(u32, Levels)> {
        let mut live = self.layout.live(now);
        for (&generation, meta) in &pending.generations {
            match live.iter_mut().find(|(g, _)| *g == generation) {
                Some((_, levels)) => levels.clone_from(&meta.levels),
                None => live.insert(0, (generation, meta.levels.clone())),
            }
        }
        live
    }

    /// The generation new markers go to and its current bits; created (sized
    /// from the previous generation) if it does not exist yet.
    fn current_generation(
        &self,
        pending: &mut Pending,
        now: Millis,
    ) -> Result<(u32, u8), StoreError> {
        let generation = self.layout.generation(now);
        if let Some(meta) = pending.generations.get(&generation) {
            return Ok((generation, meta.bits()));
        }
        let meta = match self.stored_meta(generation)? {
            Some(meta) => meta,
            None => {
                let previous = match self.layout.previous(generation) {
                    Some(g) => self.stored_meta(g)?,
                    None => None,
                };
                GenerationMeta::new(
                    previous.map_or(marker_buckets::default_bits(), |p| p.next_bits()),
                )
            }
        };
        let bits = meta.bits();
        pending.generations.insert(generation, meta);
        Ok((generation, bits))
    }

    fn stored_meta(&self, generation: u32) -> Result<Option<GenerationMeta>, StoreError> {
        let stored = self
            .tree
            .get(marker_buckets::meta_key(generation))
            .map_err(to_store_error)?;
        Ok(stored.as_deref().and_then(GenerationMeta::decode))
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
