//! `reach bench soak`: a long mixed read/write run at a fixed fraction of the
//! measured maximum throughput, to show that memory and latency stay flat.
//!
//! The load is open-loop (src/bench/open_loop.rs), and the maximum it is a
//! fraction of is measured in the same shape by default: a staircase of
//! open-loop rates (src/bench/staircase.rs), reported beside the
//! closed-loop probe's maximum.

use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::bench::{
    child::ServerProcess,
    cpu_times::{CpuShares, CpuTimes},
    fixed_work::{FixedWork, FixedWorkTimer, correlation},
    load::{Load, connect},
    open_loop::{self, Pools, SharedTally, p99},
    preload::{StoreContents, dir_size, store_contents},
    run::{ensure_store, store_dir, with_server_cpu},
    scenarios::{Scenario, Target},
    staircase::{self, Staircase},
};

/// Which measured maximum the soak offers a fraction of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Basis {
    /// The open-loop staircase's: the highest rate the soak's own load
    /// holds at the closed-loop probe's p99.
    Open,
    /// The closed-loop probe's (64 calls in flight, which the server
    /// batches): the basis until the thirty-third session.
    Closed,
}

/// Settings of one soak.
#[derive(Clone, Debug)]
pub struct SoakSpec {
    pub work_dir: PathBuf,
    pub contacts: u64,
    pub events_per_contact: u32,
    /// Closed-loop writes before the probe, so that the probe and the soak
    /// meet the store as a live one is (sled's log fragmented and being
    /// cleaned) rather than as the preload left it; zero skips them.
    pub precondition: Duration,
    /// The closed-loop run that finds the maximum throughput.
    pub probe: Load,
    /// Measured time of each step of the open-loop staircase.
    pub step: Duration,
    /// Which maximum the fraction is of.
    pub basis: Basis,
    /// Fraction of that maximum the soak offers.
    pub fraction: f64,
    /// A fixed rate to offer instead of the fraction.
    pub rate: Option<f64>,
    /// Calls in flight at most (open-loop workers, one in five of them
    /// writers).
    pub workers: usize,
    /// Unreported time at the paced rate before the first window (caches
    /// fill, the allocator settles).
    pub settle: Duration,
    pub duration: Duration,
    /// One reported line per window.
    pub window: Duration,
}

/// One window of the soak.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Duration,
    pub calls: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// p99 of the `GetBestChannel` calls alone, and of the (durable)
    /// `RecordEvent` calls alone: which of the two moves the mixed p99.
    pub read_p99_us: u64,
    pub write_p99_us: u64,
    /// The bound (seconds) of the server's own histogram bucket that holds
    /// the p99 of the window's calls, as the server measured them: a client
    /// p99 far above it was spent outside the server's handlers. None where
    /// not read.
    pub server_p99_bound_s: Option<f64>,
    pub rss_bytes: u64,
    /// The server's live heap (jemalloc `allocated`); 0 if unknown.
    pub heap_bytes: u64,
    /// What jemalloc may hold resident (`resident`, an upper bound: live
    /// heap, the unused part of its pages, dirty pages not yet returned,
    /// metadata); 0 if unknown.
    pub allocator_resident_bytes: u64,
    pub store_bytes: u64,
    /// How the whole machine's CPU was spent in the window (client, server
    /// and anything else), where the system tells it.
    pub machine: Option<CpuShares>,
    /// The server's CPU time per completed call in the window, in
    /// microseconds, and its read system calls on files per call (sled's
    /// reads of pages it does not cache, two per log fragment): what a call
    /// costs as the store grows. NaN where not read.
    pub server_cpu_us_per_call: f64,
    pub file_reads_per_call: f64,
    /// The fastest of the window's runs of the same fixed work on a thread
    /// of the client (src/bench/fixed_work.rs): whether the machine itself
    /// ran slower. None where not measured.
    pub fixed_work: Option<FixedWork>,
}

/// What a soak measured.
#[derive(Clone, Debug)]
pub struct Soak {
    /// Events the precondition wrote, and at what rate.
    pub preconditioned: Option<(u64, f64)>,
    /// The closed-loop probe's maximum, and its p99 (microseconds).
    pub max_per_sec: f64,
    pub max_p99_us: u64,
    /// What the closed-loop probe cost: the server's CPU per call and the
    /// machine's busy share (percent), where read.
    pub max_cpu_us_per_call: Option<f64>,
    pub max_busy: Option<f64>,
    pub staircase: Staircase,
    pub offered_per_sec: f64,
    pub samples: Vec<Sample>,
    /// The store before the server started and after it stopped.
    pub store_before: StoreContents,
    pub store_after: StoreContents,
}

pub async fn soak(spec: &SoakSpec) -> anyhow::Result<Soak> {
    std::fs::create_dir_all(&spec.work_dir)?;
    ensure_store(&spec.work_dir, spec.contacts, spec.events_per_contact).await?;
    let data_dir = store_dir(&spec.work_dir, spec.contacts);
    let store_before = contents(&data_dir).await?;
    let fixed_work = FixedWorkTimer::start((spec.window / 30).max(Duration::from_millis(20)));
    let reach = ServerProcess::reach(&data_dir).await?;
    let target = Target {
        connections: Arc::new(connect(&reach.addr, spec.probe.connections).await?),
        contacts: spec.contacts,
        run_id: fastrand::u64(..),
        bulk_size: 1,
        bulk_per_contact: 1,
    };

    let preconditioned = precondition(&target, spec).await?;
    let machine_from = async {
        tokio::time::sleep(spec.probe.warmup).await;
        CpuTimes::now()
    };
    let probed = with_server_cpu(&reach, spec.probe, target.run(Scenario::Mixed, spec.probe));
    let (probe, machine_from) = tokio::join!(probed, machine_from);
    let max_busy = machine_from
        .zip(CpuTimes::now())
        .map(|(a, b)| a.shares_until(b).busy);
    let (max_per_sec, max_p99_us) = (probe.items_per_sec(), probe.latency(0.99));
    let max_cpu_us_per_call = probe.server_cpu_us_per_item();
    eprintln!("soak: closed-loop maximum {max_per_sec:.0}/s (p99 {max_p99_us}us)");
    let staircase = staircase::climb(
        &target,
        &reach,
        spec.workers,
        max_per_sec,
        max_p99_us,
        spec.step,
    )
    .await?;
    let basis_per_sec = match spec.basis {
        Basis::Open => staircase.maximum(),
        Basis::Closed => max_per_sec,
    };
    let offered_per_sec = spec.rate.unwrap_or(basis_per_sec * spec.fraction).max(1.0);
    eprintln!(
        "soak: open-loop maximum {:.0}/s; offering {offered_per_sec:.0}/s",
        staircase.maximum()
    );

    let tally = SharedTally::default();
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + spec.settle + spec.duration;
    let tasks = Pools::split(spec.workers, offered_per_sec).spawn(&target, start, end, &tally);

    let mut samples = Vec::new();
    let mut next = start + spec.settle;
    tokio::time::sleep_until(next.into()).await;
    open_loop::take(&tally);
    let fixed_work_in_window = || fixed_work.as_ref().and_then(FixedWorkTimer::take);
    fixed_work_in_window();
    let mut cpu = CpuTimes::now();
    let mut server_cpu = reach.cpu_time();
    let mut file_reads = reach.file_reads();
    let mut durations = reach.request_durations().await;
    while next + spec.window <= end {
        next += spec.window;
        tokio::time::sleep_until(next.into()).await;
        let window = open_loop::take(&tally);
        let hist = window.latency_us.as_ref();
        let allocator = reach.allocator().await;
        let durations_now = reach.request_durations().await;
        let server_p99_bound_s = durations_now
            .as_ref()
            .zip(durations.as_ref())
            .and_then(|(now, before)| now.p99_since(before));
        durations = durations_now;
        let cpu_now = CpuTimes::now();
        let machine = cpu.zip(cpu_now).map(|(a, b)| a.shares_until(b));
        cpu = cpu_now;
        let (server_cpu_now, file_reads_now) = (reach.cpu_time(), reach.file_reads());
        let per_call = |amount: Option<f64>| match amount {
            Some(amount) if window.calls > 0 => amount / window.calls as f64,
            _ => f64::NAN,
        };
        let server_cpu_us_per_call = per_call(
            server_cpu
                .zip(server_cpu_now)
                .map(|(a, b)| b.saturating_sub(a).as_secs_f64() * 1e6),
        );
        let file_reads_per_call = per_call(
            file_reads
                .zip(file_reads_now)
                .map(|(a, b)| b.saturating_sub(a) as f64),
        );
        (server_cpu, file_reads) = (server_cpu_now, file_reads_now);
        let sample = Sample {
            at: next - start,
            calls: window.calls,
            errors: window.errors,
            p50_us: hist.map_or(0, |h| h.value_at_quantile(0.5)),
            p99_us: p99(&window.latency_us),
            read_p99_us: p99(&window.read_us),
            write_p99_us: p99(&window.write_us),
            server_p99_bound_s,
            rss_bytes: reach.rss().unwrap_or(0),
            heap_bytes: allocator.map_or(0, |a| a.allocated),
            allocator_resident_bytes: allocator.map_or(0, |a| a.resident),
            store_bytes: dir_size(&data_dir).unwrap_or(0),
            machine,
            server_cpu_us_per_call,
            file_reads_per_call,
            fixed_work: fixed_work_in_window(),
        };
        eprintln!("{}", sample.row(spec.window));
        samples.push(sample);
    }
    for task in tasks {
        task.await?;
    }
    reach.stop()?;
    Ok(Soak {
        preconditioned,
        max_per_sec,
        max_p99_us,
        max_cpu_us_per_call,
        max_busy,
        staircase,
        offered_per_sec,
        samples,
        store_before,
        store_after: contents(&data_dir).await?,
    })
}

/// Events per stream of the precondition: one per contact, each its own
/// compare-and-swap, as the soak's unary writes are.
const PRECONDITION_STREAM: usize = 500;

/// Ages the store before the probe: closed-loop `RecordEvents` streams of
/// uniformly random contacts for `spec.precondition`. A freshly preloaded
/// store is compact (each of sled's pages one fragment, its log just
/// written); a store that takes writes settles with pages of several
/// fragments and a log that is cleaned in bursts, and the soak's writes
/// took it there in its first ten minutes, so a maximum probed before
/// that overstated what the store could take at the end (11,583 calls/s
/// fresh, 9,451 on the soak's store afterwards) and the soak ended well
/// above the fraction it meant to offer (docs/reliability.md, "Soak").
async fn precondition(target: &Target, spec: &SoakSpec) -> anyhow::Result<Option<(u64, f64)>> {
    if spec.precondition.is_zero() {
        return Ok(None);
    }
    let writer = Target {
        bulk_size: PRECONDITION_STREAM,
        bulk_per_contact: 1,
        ..target.clone()
    };
    let load = Load {
        warmup: Duration::ZERO,
        duration: spec.precondition,
        ..spec.probe
    };
    let written = writer.run(Scenario::RecordEvents, load).await;
    anyhow::ensure!(
        written.errors == 0,
        "the precondition's writes failed: {} streams",
        written.errors
    );
    eprintln!(
        "soak: preconditioned the store with {} events ({:.0}/s)",
        written.items,
        written.items_per_sec()
    );
    Ok(Some((written.items, written.items_per_sec())))
}

async fn contents(dir: &std::path::Path) -> anyhow::Result<StoreContents> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || store_contents(&dir)).await?
}

impl Sample {
    fn row(&self, window: Duration) -> String {
        let (busy, stolen) = match self.machine {
            Some(m) => (format!("{:.0}", m.busy), format!("{:.1}", m.stolen)),
            None => ("-".into(), "-".into()),
        };
        let (compute, memory, copy) = match self.fixed_work {
            Some(w) => (
                format!("{:.0}", w.compute_us),
                format!("{:.0}", w.memory_us),
                format!("{:.0}", w.copy_us),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        format!(
            "| {:.1} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {busy} | {stolen} | {:.1} | {:.2} | {compute} | {memory} | {copy} |",
            self.at.as_secs_f64() / 60.0,
            self.calls as f64 / window.as_secs_f64(),
            self.errors,
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.read_p99_us),
            ms(self.write_p99_us),
            bound_ms(self.server_p99_bound_s),
            mib(self.rss_bytes),
            mib(self.heap_bytes),
            mib(self.allocator_resident_bytes),
            mib(self.store_bytes),
            self.server_cpu_us_per_call,
            self.file_reads_per_call,
        )
    }
}

/// A histogram bucket's bound in milliseconds, as the report prints it.
fn bound_ms(bound_s: Option<f64>) -> String {
    match bound_s {
        Some(b) if b.is_finite() => format!("≤ {}", b * 1000.0),
        Some(_) => "over the last bound".into(),
        None => "-".into(),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn drift(start: f64, end: f64) -> f64 {
    if start == 0.0 {
        0.0
    } else {
        (end - start) / start
    }
}

impl Soak {
    /// Markdown: the drift verdict, then one row per window.
    pub fn render(&self, spec: &SoakSpec) -> String {
        let mut out = String::new();
        let pools = Pools::split(spec.workers, self.offered_per_sec);
        let aged = match self.preconditioned {
            Some((events, per_sec)) => format!(
                "store aged by {events} events written first ({:?} of RecordEvents streams, \
                 {per_sec:.0}/s), ",
                spec.precondition
            ),
            None => "store as preloaded, ".to_string(),
        };
        let open_max = self.staircase.maximum();
        let basis = match (spec.rate, spec.basis) {
            (Some(_), _) => "a fixed rate",
            (None, Basis::Open) => "the open-loop maximum",
            (None, Basis::Closed) => "the closed-loop maximum",
        };
        let _ = writeln!(
            out,
            "Soak: {} contacts, {aged}mixed load (4 GetBestChannel : 1 RecordEvent), {:.0}/s offered \
             ({basis}) = {:.0}% of the open-loop maximum {open_max:.0}/s and {:.0}% of the \
             closed-loop maximum {:.0}/s (p99 {:.2} ms at 4 x 16 in flight, server CPU {} us per \
             call, machine {}% busy), open-loop from {} readers and {} writers, {:?} settling + \
             {:?} measured.\n",
            spec.contacts,
            self.offered_per_sec,
            self.offered_per_sec / open_max.max(1.0) * 100.0,
            self.offered_per_sec / self.max_per_sec.max(1.0) * 100.0,
            self.max_per_sec,
            ms(self.max_p99_us),
            self.max_cpu_us_per_call
                .map_or("-".to_string(), |c| format!("{c:.1}")),
            self.max_busy.map_or("-".to_string(), |b| format!("{b:.0}")),
            pools.readers,
            pools.writers,
            spec.settle,
            spec.duration,
        );
        let _ = writeln!(out, "{}", self.staircase.render());
        if let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) {
            let rss = drift(first.rss_bytes as f64, last.rss_bytes as f64);
            let p99 = drift(first.p99_us as f64, last.p99_us as f64);
            let errors: u64 = self.samples.iter().map(|s| s.errors).sum();
            let _ = writeln!(out, "| figure | start | end | drift | limit |");
            let _ = writeln!(out, "|---|---|---|---|---|");
            let _ = writeln!(
                out,
                "| server RSS MiB | {:.1} | {:.1} | {:+.1}% | 5% {} |",
                mib(first.rss_bytes),
                mib(last.rss_bytes),
                rss * 100.0,
                verdict(rss.abs() < 0.05)
            );
            let _ = writeln!(
                out,
                "| p99 ms | {:.2} | {:.2} | {:+.1}% | 20% {} |",
                ms(first.p99_us),
                ms(last.p99_us),
                p99 * 100.0,
                verdict(p99.abs() < 0.20)
            );
            let kinds = [
                ("GetBestChannel", first.read_p99_us, last.read_p99_us),
                (
                    "RecordEvent (durable)",
                    first.write_p99_us,
                    last.write_p99_us,
                ),
            ];
            for (call, a, b) in kinds {
                let change = drift(a as f64, b as f64) * 100.0;
                let _ = writeln!(
                    out,
                    "| {call} p99 ms | {:.2} | {:.2} | {change:+.1}% | which call moves the p99 |",
                    ms(a),
                    ms(b),
                );
            }
            let sizes = [
                ("live heap MiB (jemalloc allocated)", "what reach holds"),
                (
                    "jemalloc resident MiB",
                    "upper bound: heap + page slack + unreturned pages",
                ),
                ("store MiB", "grows with the events written"),
            ];
            let bytes = |s: &Sample| [s.heap_bytes, s.allocator_resident_bytes, s.store_bytes];
            for (((label, note), a), b) in sizes.iter().zip(bytes(first)).zip(bytes(last)) {
                let change = drift(a as f64, b as f64) * 100.0;
                let (a, b) = (mib(a), mib(b));
                let _ = writeln!(
                    out,
                    "| {label} | {a:.1} | {b:.1} | {change:+.1}% | {note} |"
                );
            }
            let costs = [
                (
                    "server CPU us per call",
                    first.server_cpu_us_per_call,
                    last.server_cpu_us_per_call,
                    1,
                ),
                (
                    "server file reads per call",
                    first.file_reads_per_call,
                    last.file_reads_per_call,
                    2,
                ),
            ];
            for (label, a, b, decimals) in costs {
                let change = drift(a, b) * 100.0;
                let _ = writeln!(
                    out,
                    "| {label} | {a:.decimals$} | {b:.decimals$} | {change:+.1}% | what a call costs as the store grows |"
                );
            }
            let _ = writeln!(
                out,
                "| server's own p99 ms (its histogram's bucket) | {} | {} | | a client p99 far above it was spent outside the server's handlers |",
                bound_ms(first.server_p99_bound_s),
                bound_ms(last.server_p99_bound_s),
            );
            if let (Some(a), Some(b)) = (first.fixed_work, last.fixed_work) {
                for (label, a, b) in [
                    ("compute", a.compute_us, b.compute_us),
                    ("memory", a.memory_us, b.memory_us),
                    ("copy", a.copy_us, b.copy_us),
                ] {
                    let _ = writeln!(
                        out,
                        "| fixed work's CPU us, {label} | {a:.0} | {b:.0} | {:+.1}% | the machine's own speed |",
                        drift(a, b) * 100.0
                    );
                }
            }
            if let (Some(a), Some(b)) = (first.machine, last.machine) {
                let _ = writeln!(
                    out,
                    "| CPU stolen by the host % | {:.1} | {:.1} | | a p99 moved by steal is the host's |",
                    a.stolen, b.stolen
                );
            }
            let (before, after) = (self.store_before, self.store_after);
            let _ = writeln!(
                out,
                "| store's live data MiB (every key and value; before the server started, after it stopped) | {:.1} | {:.1} | {:+.1}% | what the store holds |",
                mib(before.live_bytes),
                mib(after.live_bytes),
                drift(before.live_bytes as f64, after.live_bytes as f64) * 100.0,
            );
            let amplification = |c: StoreContents| c.disk_bytes as f64 / c.live_bytes.max(1) as f64;
            let _ = writeln!(
                out,
                "| store on disk / live data (before, after) | {:.2} | {:.2} | | sled's log not yet reclaimed |",
                amplification(before),
                amplification(after),
            );
            let _ = writeln!(out, "| errors | | {errors} | | 0 |\n");
        }
        if let Some(steal) = super::steal::render(&self.samples) {
            let _ = writeln!(out, "{steal}");
        }
        if let Some(line) = machine_speed(&self.samples) {
            let _ = writeln!(out, "{line}\n");
        }
        let _ = writeln!(
            out,
            "| minute | calls/s | errors | p50 ms | p99 ms | GetBestChannel p99 ms | RecordEvent p99 ms | server's own p99 ms | RSS MiB | heap MiB | jemalloc resident MiB | store MiB | machine busy % | stolen by the host % | server CPU us per call | server file reads per call | fixed work's CPU us, compute | fixed work's CPU us, memory | fixed work's CPU us, copy |"
        );
        let _ = writeln!(
            out,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for sample in &self.samples {
            let _ = writeln!(out, "{}", sample.row(spec.window));
        }
        out
    }
}

/// How closely the server's CPU per call followed the machine's own speed
/// across the windows: a cost that wanders with the fixed work's time is
/// the machine's, one that wanders alone is reach's.
fn machine_speed(samples: &[Sample]) -> Option<String> {
    let timed: Vec<(f64, FixedWork)> = samples
        .iter()
        .filter(|s| s.server_cpu_us_per_call.is_finite())
        .filter_map(|s| Some((s.server_cpu_us_per_call, s.fixed_work?)))
        .collect();
    let cost: Vec<f64> = timed.iter().map(|(c, _)| *c).collect();
    let with = |part: fn(&FixedWork) -> f64| {
        let times: Vec<f64> = timed.iter().map(|(_, w)| part(w)).collect();
        correlation(&cost, &times).map_or("-".to_string(), |r| format!("{r:+.2}"))
    };
    (timed.len() >= 3).then(|| {
        format!(
            "Server CPU per call against the fixed work's CPU time over {} windows: \
             correlation {} with the compute, {} with the memory chain, {} with the copy \
             (near +1: the machine's speed moved the cost; near 0: something else did).",
            timed.len(),
            with(|w| w.compute_us),
            with(|w| w.memory_us),
            with(|w| w.copy_us),
        )
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "(met)" } else { "(MISSED)" }
}
