//! Group commit: many writers wait for one fsync.
//!
//! A writer takes a ticket after its write is in the engine's buffers and
//! waits until a flush that started after the ticket was issued completes.
//! One flusher thread runs flushes back to back while tickets are pending, so
//! under load each fsync covers every write that arrived during the previous
//! one, and an idle store does no flushing at all.

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
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
    /// completed before it started durable.
    pub fn start<F>(name: &str, flush: F) -> std::io::Result<Self>
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
            .spawn(move || run_flusher(&worker, flush))?;
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

fn run_flusher<F>(shared: &Shared, flush: F)
where
    F: Fn() -> Result<(), String>,
{
    let mut covered = 0;
    loop {
        {
            let mut guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            while shared.issued.load(Ordering::SeqCst) == covered
                && !shared.stop.load(Ordering::SeqCst)
            {
                guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.issued.load(Ordering::SeqCst) == covered && shared.stop.load(Ordering::SeqCst) {
            return;
        }
        // Every ticket up to `target` was issued after its write completed,
        // and the flush starts after reading `target`: the flush covers them.
        let target = shared.issued.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let error = flush().err().map(Arc::from);
        metrics::histogram!("reach_store_flush_seconds").record(started.elapsed().as_secs_f64());
        covered = target;
        shared.flushed.send_replace(Flushed {
            ticket: target,
            error,
        });
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
            GroupCommit::start("test-flusher", move || {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
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
        let group = GroupCommit::start("test-flusher", || Err("disk full".into())).unwrap();
        assert_eq!(group.sync().await.unwrap_err(), "disk full");
    }
}
