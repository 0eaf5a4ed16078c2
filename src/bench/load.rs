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
}

impl Measured {
    pub fn items_per_sec(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
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
/// should use connection `w % connections`.
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
                loop {
                    let began = Instant::now();
                    if began >= end {
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
                }
                (hist, calls, items, errors)
            }));
        }
    }
    let mut total = Measured {
        calls: 0,
        items: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
    };
    for worker in workers {
        let (hist, calls, items, errors) = worker.await.expect("load worker");
        total.latency_us.add(&hist).expect("same histogram bounds");
        total.calls += calls;
        total.items += items;
        total.errors += errors;
    }
    total.elapsed = Instant::now()
        .saturating_duration_since(measure_from)
        .min(load.duration.max(Duration::from_millis(1)));
    total
}
