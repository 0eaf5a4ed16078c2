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
mod echo;
mod load;
mod preload;
mod report;
mod run;
mod scenarios;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Subcommand};

pub use load::Load;
pub use run::RunSpec;
pub use scenarios::Scenario;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Preload stores if needed, then measure every scenario against its baseline.
    Run(RunArgs),
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
