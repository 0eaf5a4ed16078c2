//! The load driver: `connections` HTTP/2 connections, `in_flight` concurrent
//! calls on each, for a fixed time after a warm-up. Latencies go into an HDR
//! histogram (microseconds, 3 significant figures).

use std::{
    future::Future,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

/// Shape of one load run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub connections: usize,
    pub in_flight: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Load {
    pub fn concurrency(&self) -> usize {
        self.connections * self.in_flight
    }
}

/// What one load run measured.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Completed calls after the warm-up.
    pub calls: u64,
    /// Items they carried (events for a bulk stream, otherwise one per call).
    pub items: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    /// CPU time the server process used in the window, where the run had
    /// a server process of its own to read it from.
    pub server_cpu: Option<Duration>,
    /// Read system calls on files the server made in the same window.
    pub server_file_reads: Option<u64>,
}

impl Measured {
    pub fn items_per_sec(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU microseconds per item, where the server's CPU was read.
    pub fn server_cpu_us_per_item(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.items > 0).then(|| cpu.as_secs_f64() * 1e6 / self.items as f64)
    }

    /// The server's file reads per item, where they were read.
    pub fn server_file_reads_per_item(&self) -> Option<f64> {
        let reads = self.server_file_reads?;
        (self.items > 0).then(|| reads as f64 / self.items as f64)
    }

    /// Latency at quantile `q` (0..1), in microseconds.
    pub fn latency(&self, q: f64) -> u64 {
        self.latency_us.value_at_quantile(q)
    }
}

pub async fn connect(addr: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Runs `call(worker, sequence)` in a closed loop from `load.concurrency()`
/// workers; a call resolves to the number of items it carried. Worker `w`
/// should use connection `w % connections`. Only calls begun in the window
/// count, and each worker begins at least one there even when its warm-up
/// call outlasted the window (a slow first call on a busy machine), so that
/// a short run measures something rather than nothing.
pub async fn drive<F, Fut, E>(load: Load, call: F) -> Measured
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<u64, E>> + Send,
    E: Send + 'static,
{
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut workers = Vec::new();
    {
        for worker in 0..load.concurrency() {
            let call = call.clone();
            workers.push(tokio::spawn(async move {
                let mut hist =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
                let (mut calls, mut items, mut errors) = (0u64, 0u64, 0u64);
                let mut sequence = 0u64;
                // When this worker's one call begun past the window ended.
                let mut overran_to = None;
                loop {
                    let began = Instant::now();
                    if began >= end && (calls > 0 || errors > 0) {
                        break;
                    }
                    let result = call(worker, sequence).await;
                    sequence += 1;
                    if began < measure_from {
                        continue;
                    }
                    match result {
                        Ok(n) => {
                            calls += 1;
                            items += n;
                            hist.saturating_record(began.elapsed().as_micros() as u64);
                        }
                        Err(_) => errors += 1,
                    }
                    if began >= end {
                        overran_to = Some(Instant::now());
                    }
                }
                (hist, calls, items, errors, overran_to)
            }));
        }
    }
    let mut total = Measured {
        calls: 0,
        items: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        server_cpu: None,
        server_file_reads: None,
    };
    // The window: the calls begun in it stand for its throughput (those
    // begun in the warm-up and ending in it make up for those ending after
    // it). A worker that had to begin its call past the window stretches it.
    let mut window_end = end;
    for worker in workers {
        let (hist, calls, items, errors, overran_to) = worker.await.expect("load worker");
        total.latency_us.add(&hist).expect("same histogram bounds");
        total.calls += calls;
        total.items += items;
        total.errors += errors;
        window_end = window_end.max(overran_to.unwrap_or(end));
    }
    total.elapsed = window_end
        .saturating_duration_since(measure_from)
        .max(Duration::from_millis(1));
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first call that outlasts warm-up and window (a cold store on a
    /// busy machine) still leaves a measured call per worker, and the
    /// window stretched to it.
    #[tokio::test]
    async fn a_warm_up_call_longer_than_the_window_still_leaves_a_measurement() {
        let load = Load {
            connections: 1,
            in_flight: 2,
            warmup: Duration::from_millis(10),
            duration: Duration::from_millis(20),
        };
        let measured = drive(load, |_worker, sequence| async move {
            if sequence == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<u64, ()>(3)
        })
        .await;
        assert_eq!(measured.calls, 2, "one call per worker");
        assert_eq!(measured.items, 6);
        assert!(measured.elapsed > load.duration, "{:?}", measured.elapsed);
    }

    /// Calls that finish inside the window are all counted over the window.
    #[tokio::test]
    async fn a_normal_window_is_its_duration() {
        let load = Load {
            connections: 1,
            in_flight: 1,
            warmup: Duration::from_millis(5),
            duration: Duration::from_millis(30),
        };
        let measured = drive(load, |_worker, _sequence| async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<u64, ()>(1)
        })
        .await;
        assert!(measured.calls > 1, "{}", measured.calls);
        assert_eq!(measured.elapsed, load.duration);
    }
}
