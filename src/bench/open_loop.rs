//! Open-loop load: every call has a scheduled start time and its latency is
//! measured from that time, so a server that stalls is charged for the calls
//! queued behind the stall (no coordinated omission). The soak runs on it,
//! and so does the staircase that finds the highest rate this load holds.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;

use crate::bench::scenarios::{Scenario, Target};

/// What the workers completed since the tally was last taken.
#[derive(Default)]
pub struct Tally {
    pub calls: u64,
    pub errors: u64,
    pub latency_us: Option<Histogram<u64>>,
    pub read_us: Option<Histogram<u64>>,
    pub write_us: Option<Histogram<u64>>,
}

impl Tally {
    pub fn record(&mut self, latency: Duration, ok: bool, write: bool) {
        if !ok {
            self.errors += 1;
            return;
        }
        self.calls += 1;
        let us = latency.as_micros() as u64;
        let kind = if write {
            &mut self.write_us
        } else {
            &mut self.read_us
        };
        for hist in [&mut self.latency_us, kind] {
            hist.get_or_insert_with(new_histogram).saturating_record(us);
        }
    }
}

/// The shared tally the workers record into; `take` empties it.
pub type SharedTally = Arc<Mutex<Tally>>;

pub fn take(tally: &SharedTally) -> Tally {
    std::mem::take(&mut *tally.lock().expect("tally"))
}

/// The open-loop workers, in two pools: readers that call
/// `GetBestChannel` and writers that call `RecordEvent`, each pool paced at
/// its share of the offered rate (four reads to one write, the mix of the
/// closed-loop probe). Apart, as the orchestration engines that read and the
/// ingestion jobs that write are apart: with one pool, a worker waiting for
/// a durable write delayed the reads scheduled after it on the same worker,
/// and a flush that held every worker in a write charged every read queued
/// behind it (docs/reliability.md, "Soak").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pools {
    pub readers: usize,
    pub writers: usize,
    pub read_rate: f64,
    pub write_rate: f64,
}

impl Pools {
    pub fn split(workers: usize, offered_per_sec: f64) -> Pools {
        let every = Scenario::MIXED_WRITE_EVERY;
        let workers = workers.max(2);
        let writers = (workers / every as usize).max(1);
        let write_rate = offered_per_sec / every as f64;
        Pools {
            readers: workers - writers,
            writers,
            read_rate: offered_per_sec - write_rate,
            write_rate,
        }
    }

    /// What the `worker`th worker calls, whether that is a write, when its
    /// first call is due (from the start) and the time between its calls.
    fn schedule(&self, worker: usize) -> (Scenario, bool, Duration, Duration) {
        let (scenario, write, index, size, rate) = if worker < self.readers {
            let r = self.read_rate;
            (Scenario::BestChannel, false, worker, self.readers, r)
        } else {
            let w = self.write_rate;
            let index = worker - self.readers;
            (Scenario::RecordEvent, true, index, self.writers, w)
        };
        let rate = rate.max(f64::MIN_POSITIVE);
        (
            scenario,
            write,
            Duration::from_secs_f64(index as f64 / rate),
            Duration::from_secs_f64(size as f64 / rate),
        )
    }

    /// Starts every worker: calls are due from `start` until `end`, and a
    /// worker behind its schedule makes its late calls at once (so a worker
    /// may still be calling after `end`: await the handles).
    pub fn spawn(
        &self,
        target: &Target,
        start: Instant,
        end: Instant,
        tally: &SharedTally,
    ) -> Vec<JoinHandle<()>> {
        (0..self.readers + self.writers)
            .map(|worker| {
                let (target, tally) = (target.clone(), tally.clone());
                let (scenario, write, first, interval) = self.schedule(worker);
                tokio::spawn(async move {
                    let mut due = start + first;
                    let mut seq = 0u64;
                    while due < end {
                        tokio::time::sleep_until(due.into()).await;
                        let ok = target.call(scenario, worker, seq).await.is_ok();
                        tally
                            .lock()
                            .expect("tally")
                            .record(due.elapsed(), ok, write);
                        seq += 1;
                        due += interval;
                    }
                })
            })
            .collect()
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

pub fn p99(hist: &Option<Histogram<u64>>) -> u64 {
    hist.as_ref().map_or(0, |h| h.value_at_quantile(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_are_tallied_apart_and_together() {
        let mut tally = Tally::default();
        for _ in 0..99 {
            tally.record(Duration::from_millis(1), true, false);
        }
        tally.record(Duration::from_millis(40), true, true);
        tally.record(Duration::from_millis(500), false, true);

        assert_eq!((tally.calls, tally.errors), (100, 1));
        let ms = |hist: &Option<Histogram<u64>>| p99(hist) / 1000;
        assert_eq!(ms(&tally.read_us), 1);
        assert_eq!(ms(&tally.write_us), 40);
        assert_eq!(tally.latency_us.as_ref().map(|h| h.len()), Some(100));
        assert_eq!(ms(&Tally::default().write_us), 0);
    }

    #[test]
    fn readers_and_writers_share_the_rate_four_to_one() {
        let pools = Pools::split(512, 6600.0);
        assert_eq!((pools.readers, pools.writers), (410, 102));
        assert_eq!((pools.read_rate, pools.write_rate), (5280.0, 1320.0));

        // Each pool's workers are spread evenly over one interval, and
        // together they offer the pool's rate.
        let pools_of = [
            (0, 409, Scenario::BestChannel, false, 410.0, 5280.0),
            (410, 511, Scenario::RecordEvent, true, 102.0, 1320.0),
        ];
        for (first_worker, last_worker, kind, writes, size, rate) in pools_of {
            let (scenario, write, first, interval) = pools.schedule(first_worker);
            assert_eq!((scenario, write, first), (kind, writes, Duration::ZERO));
            assert!((size / interval.as_secs_f64() - rate).abs() < 0.01);
            let (scenario, write, last, _) = pools.schedule(last_worker);
            assert_eq!((scenario, write), (kind, writes));
            assert!(last < interval);
        }

        // A soak always has a reader and a writer.
        let tiny = Pools::split(1, 10.0);
        assert_eq!((tiny.readers, tiny.writers), (1, 1));
    }
}
