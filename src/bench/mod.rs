//! `reach bench`: the load harness of `docs/performance.md`. It drives a real
//! reach over gRPC and measures, in the same run, the limits reach is judged
//! against: a bare tonic echo service and raw sled durable inserts.
//!
//! ```sh
//! cargo build --release
//! target/release/reach bench run --work-dir /tmp/reach-bench
//! ```

mod baseline;
pub mod child;
mod cpu_times;
mod echo;
mod fixed_work;
mod load;
mod open_loop;
mod preload;
pub mod redis_cluster;
mod redis_compare;
mod report;
mod run;
mod scenarios;
mod server_latency;
mod soak;
mod staircase;
mod steal;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Subcommand};

pub use load::Load;
pub use run::RunSpec;
pub use scenarios::Scenario;
pub use soak::{Basis, SoakSpec};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Preload stores if needed, then measure every scenario against its baseline.
    Run(RunArgs),
    /// A long mixed run at a fraction of the measured maximum throughput:
    /// RSS, store size and p99 per window, and their drift.
    Soak(SoakArgs),
    /// reach on a local Redis Cluster vs reach on sled vs redis-benchmark
    /// GET/SET on the same cluster (needs redis-server, redis-cli and
    /// redis-benchmark).
    Redis(RedisArgs),
    /// Write N contacts with realistic histories into a store directory.
    Preload {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        contacts: u64,
        #[arg(long, default_value_t = 20)]
        events_per_contact: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The echo baseline server (started by `bench run`).
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Where preloaded stores are kept (and reused by later runs).
    #[arg(long, default_value = "./reach-bench")]
    work_dir: PathBuf,
    /// Store sizes, comma-separated: reads are measured on each.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    contacts: Vec<u64>,
    /// Mean events per preloaded contact.
    #[arg(long, default_value_t = 20)]
    events_per_contact: u32,
    /// HTTP/2 connections from the client.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent calls on each connection.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Measured time per run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each run.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Interleaved rounds; the report gives medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Scenarios, comma-separated: best, reachability, record, bulk, mixed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "best,reachability,record,bulk,mixed"
    )]
    scenarios: Vec<String>,
    /// Events per RecordEvents stream.
    #[arg(long, default_value_t = 500)]
    bulk_size: usize,
    /// Consecutive events of one contact in a bulk stream (1: no locality).
    #[arg(long, default_value_t = 4)]
    bulk_per_contact: usize,
    /// Dedupe markers written to measure their footprint.
    #[arg(long, default_value_t = 1_000_000)]
    markers: u64,
    /// A few seconds on a tiny store, to check the harness works (asserts nothing).
    #[arg(long)]
    smoke: bool,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RedisArgs {
    /// Scratch space (the sled store of the comparison, a config file).
    #[arg(long, default_value = "./reach-bench")]
    work_dir: PathBuf,
    /// Contacts written to both stores before reads are measured.
    #[arg(long, default_value_t = 20_000)]
    contacts: u64,
    #[arg(long, default_value_t = 4)]
    events_per_contact: usize,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests per redis-benchmark test.
    #[arg(long, default_value_t = 200_000)]
    raw_requests: u64,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Where preloaded stores are kept (shared with `bench run`).
    #[arg(long, default_value = "./reach-bench")]
    work_dir: PathBuf,
    /// Size of the preloaded store.
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u64,
    /// Mean events per preloaded contact.
    #[arg(long, default_value_t = 20)]
    events_per_contact: u32,
    /// Fraction of the measured maximum throughput to offer.
    #[arg(long, default_value_t = 0.7)]
    fraction: f64,
    /// Which maximum: `open`, the highest rate the soak's own open-loop
    /// load holds at the closed-loop probe's p99 (a staircase of rates
    /// from 30% of the closed-loop maximum, 5% apart); `closed`, the
    /// closed-loop probe's (64 calls in flight, which the server batches,
    /// so each costs less than an open-loop call). Both are measured and
    /// reported either way.
    #[arg(long, value_enum, default_value_t = Basis::Open)]
    basis: Basis,
    /// Measured time of each step of the open-loop staircase (a quarter
    /// of it more settles before each).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Offer this many calls per second instead of a fraction of the
    /// maximum (the probe still runs and is reported): to compare builds or
    /// settings at the same load, since the probe moves between runs.
    #[arg(long)]
    rate: Option<f64>,
    /// Calls in flight at most: the open-loop workers, one in five of them
    /// writers (`RecordEvent`), the others readers (`GetBestChannel`), each
    /// pool paced at its share of the rate. Enough that a slow call does
    /// not hold back the calls scheduled after it.
    #[arg(long, default_value_t = 512)]
    workers: usize,
    /// Closed-loop writes (`RecordEvents` streams, one event per contact
    /// each) that age the store before the probe, so that the maximum is
    /// measured on a store as live traffic leaves it, not as the preload
    /// did; 0s skips them.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    precondition: Duration,
    /// Closed-loop run that measures the maximum throughput first.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    probe: Duration,
    /// Paced but unreported time before the first window.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Measured time.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// One report line per window; drift compares the first and the last.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

impl SoakArgs {
    fn spec(&self) -> anyhow::Result<SoakSpec> {
        anyhow::ensure!(
            self.fraction > 0.0 && self.fraction <= 1.0,
            "--fraction must be in (0, 1]"
        );
        anyhow::ensure!(
            self.rate.is_none_or(|r| r >= 1.0),
            "--rate must be at least 1 call per second"
        );
        anyhow::ensure!(
            self.window > Duration::ZERO && self.window <= self.duration,
            "--window must be positive and at most --duration"
        );
        Ok(SoakSpec {
            work_dir: self.work_dir.clone(),
            contacts: self.contacts.max(1),
            events_per_contact: self.events_per_contact,
            precondition: self.precondition,
            probe: Load {
                connections: 4,
                in_flight: 16,
                warmup: Duration::from_secs(2).min(self.probe),
                duration: self.probe,
            },
            step: self.step,
            basis: self.basis,
            fraction: self.fraction,
            rate: self.rate,
            workers: self.workers.max(1),
            settle: self.settle,
            duration: self.duration,
            window: self.window,
        })
    }
}

impl RunArgs {
    fn spec(&self) -> anyhow::Result<RunSpec> {
        if self.smoke {
            return Ok(RunSpec::smoke(self.work_dir.clone()));
        }
        let scenarios = self
            .scenarios
            .iter()
            .map(|s| Scenario::parse(s).ok_or_else(|| anyhow::anyhow!("unknown scenario {s:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(RunSpec {
            work_dir: self.work_dir.clone(),
            contacts: self.contacts.clone(),
            events_per_contact: self.events_per_contact,
            load: Load {
                connections: self.connections.max(1),
                in_flight: self.in_flight.max(1),
                warmup: self.warmup,
                duration: self.duration,
            },
            rounds: self.rounds.max(1),
            scenarios,
            bulk_size: self.bulk_size.max(1),
            bulk_per_contact: self.bulk_per_contact.max(1),
            markers: self.markers.max(1),
        })
    }
}

pub async fn main(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Run(args) => {
            let findings = run::run(&args.spec()?).await?;
            let report = findings.render();
            println!("{report}");
            if let Some(path) = &args.report {
                std::fs::write(path, &report)?;
            }
            Ok(())
        }
        BenchCommand::Soak(args) => {
            let spec = args.spec()?;
            let report = soak::soak(&spec).await?.render(&spec);
            println!("{report}");
            if let Some(path) = &args.report {
                std::fs::write(path, &report)?;
            }
            Ok(())
        }
        BenchCommand::Redis(args) => {
            let spec = redis_compare::CompareSpec {
                work_dir: args.work_dir.clone(),
                contacts: args.contacts.max(1),
                events_per_contact: args.events_per_contact.max(1),
                load: Load {
                    connections: args.connections.max(1),
                    in_flight: args.in_flight.max(1),
                    warmup: args.warmup,
                    duration: args.duration,
                },
                rounds: args.rounds.max(1),
                raw_requests: args.raw_requests.max(1),
            };
            let report = redis_compare::compare(&spec).await?;
            println!("{report}");
            if let Some(path) = &args.report {
                std::fs::write(path, &report)?;
            }
            Ok(())
        }
        BenchCommand::Preload {
            data_dir,
            contacts,
            events_per_contact,
            seed,
        } => {
            let p = preload::preload(&data_dir, contacts, events_per_contact, seed).await?;
            println!(
                "preloaded {} contacts, {} events, {} markers: {:.1} MiB on disk ({:.0} B/contact) in {:.1}s",
                p.contacts,
                p.events,
                p.markers,
                p.bytes_on_disk as f64 / (1 << 20) as f64,
                p.bytes_on_disk as f64 / p.contacts as f64,
                p.seconds
            );
            Ok(())
        }
        BenchCommand::EchoServer { listen } => echo::serve(listen).await,
    }
}
