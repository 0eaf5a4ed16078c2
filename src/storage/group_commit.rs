//! Group commit: many writers wait for one fsync.
//!
//! A writer takes a ticket after its write is in the engine's buffers and
//! waits until a flush that started after the ticket was issued completes.
//! One flusher thread runs flushes back to back while tickets are pending, so
//! under load each fsync covers every write that arrived during the previous
//! one, and an idle store does no flushing at all.
//!
//! Under concurrent writers a flush is held back for a short gathering time
//! (`store.commit_gather`) so that it covers more of them: each flush costs
//! CPU (sealing and writing sled's buffer, `sync_file_range`, `fdatasync`,
//! waking threads) whether it covers one write or twenty, and on a busy
//! machine that CPU is what the writes wait for. Only a flush that follows
//! another at once, and one that covered more than one ticket, is held back:
//! a writer alone, or the first after a pause, never waits.

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// Result of the latest flush: the highest ticket it covers and its error.
#[derive(Clone, Debug, Default)]
struct Flushed {
    ticket: u64,
    error: Option<Arc<str>>,
}

struct Shared {
    issued: AtomicU64,
    stop: AtomicBool,
    /// Wakes the flusher; the mutex guards nothing but the wait itself.
    wake: Condvar,
    lock: Mutex<()>,
    flushed: watch::Sender<Flushed>,
}

pub struct GroupCommit {
    shared: Arc<Shared>,
    flusher: Option<thread::JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the flusher thread around `flush`, which must make every write
    /// completed before it started durable. `gather`: how long a flush is
    /// held back while writers are concurrent (zero: never).
    pub fn start<F>(name: &str, gather: Duration, flush: F) -> std::io::Result<Self>
    where
        F: Fn() -> Result<(), String> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            lock: Mutex::new(()),
            flushed: watch::channel(Flushed::default()).0,
        });
        let worker = shared.clone();
        let flusher = thread::Builder::new()
            .name(name.into())
            .spawn(move || run_flusher(&worker, gather, flush))?;
        Ok(GroupCommit {
            shared,
            flusher: Some(flusher),
        })
    }

    /// Resolves once every write completed before this call is durable.
    pub async fn sync(&self) -> Result<(), String> {
        let mut flushed = self.shared.flushed.subscribe();
        let ticket = self.shared.issued.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_one();
        }
        let done = flushed
            .wait_for(|f| f.ticket >= ticket)
            .await
            .map_err(|_| "flusher stopped".to_string())?;
        match &done.error {
            // The newest flush covering this ticket failed: durability of the
            // write is unknown, so the caller must not acknowledge it.
            Some(error) => Err(error.to_string()),
            None => Ok(()),
        }
    }
}

fn run_flusher<F>(shared: &Shared, gather: Duration, flush: F)
where
    F: Fn() -> Result<(), String>,
{
    let mut covered = 0;
    // Tickets the last flush covered, if the flusher has not idled since:
    // more than one means concurrent writers.
    let mut last_group = 0;
    loop {
        {
            let mut guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            while shared.issued.load(Ordering::SeqCst) == covered
                && !shared.stop.load(Ordering::SeqCst)
            {
                // Idle: whatever comes next starts afresh, so the first
                // write after a burst is not held back either.
                last_group = 0;
                guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.issued.load(Ordering::SeqCst) == covered && shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if last_group > 1 {
            hold_back(shared, gather);
        }
        // Every ticket up to `target` was issued after its write completed,
        // and the flush starts after reading `target`: the flush covers them.
        let target = shared.issued.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let error = flush().err().map(Arc::from);
        metrics::histogram!("reach_store_flush_seconds").record(started.elapsed().as_secs_f64());
        last_group = target - covered;
        metrics::histogram!("reach_store_flush_writes").record(last_group as f64);
        covered = target;
        shared.flushed.send_replace(Flushed {
            ticket: target,
            error,
        });
    }
}

/// Lets the writers already under way issue their tickets before the next
/// flush starts. Sleeps, not a timed wait on `wake`: writers notify on every
/// ticket, and each would wake the flusher for nothing. In slices, so that a
/// stop (the store closing) is not kept waiting by a long setting.
fn hold_back(shared: &Shared, gather: Duration) {
    let deadline = Instant::now() + gather;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(10)));
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_one();
        }
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_share_flushes() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let counter = flushes.clone();
        let group = Arc::new(
            GroupCommit::start("test-flusher", Duration::ZERO, move || {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                Ok(())
            })
            .unwrap(),
        );
        let writers: Vec<_> = (0..200)
            .map(|_| {
                let g = group.clone();
                tokio::spawn(async move { g.sync().await })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..200).contains(&n), "{n} flushes for 200 writers");
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_writers() {
        let group =
            GroupCommit::start("test-flusher", Duration::ZERO, || Err("disk full".into())).unwrap();
        assert_eq!(group.sync().await.unwrap_err(), "disk full");
    }

    /// 200 writers arriving over 40 ms, flushes taking 2 ms: unheld, about
    /// 20 flushes would cover them. Once a flush has covered more than one,
    /// the next is held back 200 ms, by which time all have arrived.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_are_gathered() {
        let gather = Duration::from_millis(200);
        let flushes = Arc::new(AtomicUsize::new(0));
        let counter = flushes.clone();
        let group = Arc::new(
            GroupCommit::start("test-flusher", gather, move || {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                Ok(())
            })
            .unwrap(),
        );
        let started = std::time::Instant::now();
        let writers: Vec<_> = (0..200u64)
            .map(|i| {
                let g = group.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(i * 200)).await;
                    g.sync().await
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((2..=6).contains(&n), "{n} flushes for 200 writers");
        assert!(started.elapsed() >= gather, "no flush was held back");
    }

    /// After a burst the flusher idles, and the next lone write is not held
    /// back for the burst's sake: the first flush (100 ms) covers one
    /// writer while twenty more arrive, the second covers the twenty, then
    /// a write alone must not wait the 2 s gathering time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_first_write_after_a_burst_is_not_held_back() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let group = Arc::new(
            GroupCommit::start("test-flusher", Duration::from_secs(2), move || {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            })
            .unwrap(),
        );
        let first = {
            let g = group.clone();
            tokio::spawn(async move { g.sync().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let burst: Vec<_> = (0..20)
            .map(|_| {
                let g = group.clone();
                tokio::spawn(async move { g.sync().await })
            })
            .collect();
        first.await.unwrap().unwrap();
        for w in burst {
            w.await.unwrap().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        group.sync().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a write after a pause waited {:?}",
            started.elapsed()
        );
    }

    /// A writer alone is never held back: with an hour's gathering time,
    /// sequential writes still complete at once.
    #[tokio::test]
    async fn a_lone_writer_is_not_held_back() {
        let group =
            GroupCommit::start("test-flusher", Duration::from_secs(3600), || Ok(())).unwrap();
        let writes = async {
            for _ in 0..20 {
                group.sync().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), writes)
            .await
            .expect("sequential writes were held back");
    }
}
