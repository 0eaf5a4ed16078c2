//! Whether the machine itself ran slower in a soak's window: the same
//! fixed work, timed in CPU time on its own thread, several times a window.
//!
//! At a steady offered load the server's CPU per call wandered by a tenth
//! and more between minutes and between runs with nothing stolen by the
//! host and the same profile in a cheap minute and a dear one
//! (docs/reliability.md). A VM without hardware counters cannot tell
//! whether its instructions got slower (a neighbour on the same caches or
//! memory, a lower clock), so this times work that never changes: if its
//! CPU time moves with the server's cost per call, the machine moved.
//! CPU time, not wall time, so that waiting for a core is not counted;
//! the least of a window's runs, so that one interrupted run is not.

use std::{
    hint::black_box,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// A window's fastest run of each kind of work, in microseconds of CPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedWork {
    /// Hashing a buffer that stays in the core's caches: the clock and
    /// the core's share of the pipeline.
    pub compute_us: f64,
    /// A chain of dependent loads through a buffer far larger than the
    /// caches: memory latency and the shared last-level cache.
    pub memory_us: f64,
    /// Copying a buffer far larger than the caches: memory bandwidth,
    /// which the server's own work (pages copied through sled's cache,
    /// replies through h2's buffers) leans on more than on latency.
    pub copy_us: f64,
}

/// Bytes hashed per run: small enough to stay in a core's L2.
const COMPUTE_BYTES: usize = 256 * 1024;
/// Hashes of that buffer per run (about a millisecond).
const COMPUTE_ROUNDS: usize = 8;
/// Entries (u32) of the chain's buffer: 64 MiB, past any VM's share of L3.
const CHAIN_ENTRIES: usize = 16 << 20;
/// Dependent loads per run (a few milliseconds).
const CHAIN_STEPS: usize = 20_000;
/// Bytes copied per run: 16 MiB, past the caches (a few milliseconds).
const COPY_BYTES: usize = 16 << 20;

/// A thread that times the fixed work every `every` until dropped.
pub struct FixedWorkTimer {
    fastest: Arc<Mutex<Option<FixedWork>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FixedWorkTimer {
    /// `None` where the system does not tell a thread's CPU time.
    pub fn start(every: Duration) -> Option<Self> {
        thread_cpu_ns()?;
        let fastest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("fixed-work".into())
            .spawn({
                let (fastest, stop) = (fastest.clone(), stop.clone());
                move || time_until_stopped(every, &fastest, &stop)
            })
            .ok()?;
        Some(Self {
            fastest,
            stop,
            thread: Some(thread),
        })
    }

    /// The fastest runs since the last call; `None` if none finished.
    pub fn take(&self) -> Option<FixedWork> {
        self.fastest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Drop for FixedWorkTimer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn time_until_stopped(every: Duration, fastest: &Mutex<Option<FixedWork>>, stop: &AtomicBool) {
    let buffer: Vec<u8> = (0..COMPUTE_BYTES).map(|_| fastrand::u8(..)).collect();
    let chain = single_cycle(CHAIN_ENTRIES);
    // Filled, so that the copy moves pages that are there.
    let (from, mut to) = (vec![1u8; COPY_BYTES], vec![0u8; COPY_BYTES]);
    let mut at = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let Some(run) = time_once(&buffer, &chain, &mut at, &from, &mut to) else {
            return;
        };
        let mut window = fastest.lock().unwrap_or_else(|e| e.into_inner());
        *window = Some(match *window {
            Some(best) => FixedWork {
                compute_us: best.compute_us.min(run.compute_us),
                memory_us: best.memory_us.min(run.memory_us),
                copy_us: best.copy_us.min(run.copy_us),
            },
            None => run,
        });
        drop(window);
        std::thread::park_timeout(every);
    }
}

fn time_once(
    buffer: &[u8],
    chain: &[u32],
    at: &mut u32,
    from: &[u8],
    to: &mut [u8],
) -> Option<FixedWork> {
    let start = thread_cpu_ns()?;
    for _ in 0..COMPUTE_ROUNDS {
        black_box(blake3::hash(black_box(buffer)));
    }
    let hashed = thread_cpu_ns()?;
    let mut next = *at;
    for _ in 0..CHAIN_STEPS {
        next = chain[next as usize];
    }
    *at = black_box(next);
    let chased = thread_cpu_ns()?;
    black_box(&mut *to).copy_from_slice(black_box(from));
    let copied = thread_cpu_ns()?;
    Some(FixedWork {
        compute_us: hashed.saturating_sub(start) as f64 / 1e3,
        memory_us: chased.saturating_sub(hashed) as f64 / 1e3,
        copy_us: copied.saturating_sub(chased) as f64 / 1e3,
    })
}

/// Every entry linked to the next in a random order, the last to the
/// first: one cycle, followed in an order no prefetcher guesses.
fn single_cycle(len: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    fastrand::shuffle(&mut order);
    let mut chain = vec![0u32; len];
    for pair in order.windows(2) {
        chain[pair[0] as usize] = pair[1];
    }
    if let (Some(&last), Some(&first)) = (order.last(), order.first()) {
        chain[last as usize] = first;
    }
    chain
}

/// This thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`: the
/// scheduler's count including the running slice, where
/// /proc/thread-self/schedstat moves only at ticks).
fn thread_cpu_ns() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let ns = u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?;
    (ns > 0).then_some(ns)
}

/// Pearson's correlation of two equally long series; `None` when either
/// is constant or there are fewer than three points.
pub fn correlation(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len();
    if n != ys.len() || n < 3 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
    let (mx, my) = (mean(xs), mean(ys));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_one_cycle_through_every_entry() {
        let chain = single_cycle(1000);
        let mut seen = vec![false; chain.len()];
        let mut at = 0usize;
        for _ in 0..chain.len() {
            assert!(!seen[at], "entry {at} visited twice");
            seen[at] = true;
            at = chain[at] as usize;
        }
        assert_eq!(at, 0);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn correlation_follows_the_sign_of_the_relation() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert!((correlation(&xs, &[2.0, 4.0, 6.0, 8.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((correlation(&xs, &[8.0, 6.0, 4.0, 2.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(correlation(&xs, &[1.0, 1.0, 1.0, 1.0]), None);
        assert_eq!(correlation(&xs[..2], &[1.0, 2.0]), None);
    }

    #[test]
    fn the_timer_reports_its_runs() {
        let Some(timer) = FixedWorkTimer::start(Duration::from_millis(5)) else {
            return; // no per-thread CPU time on this system
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let work = loop {
            if let Some(work) = timer.take() {
                break work;
            }
            assert!(std::time::Instant::now() < deadline, "no run in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            work.compute_us > 0.0 && work.memory_us > 0.0 && work.copy_us > 0.0,
            "{work:?}"
        );
    }
}
