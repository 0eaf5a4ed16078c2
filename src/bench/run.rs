//! `reach bench run`: preload (or reuse) stores, start reach and the echo
//! baseline as child processes, and interleave baseline and reach runs round
//! after round so that machine noise hits both alike.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;

use crate::bench::{
    baseline,
    child::ServerProcess,
    load::{Load, Measured, connect},
    preload::{Preloaded, preload},
    report::{Findings, Pair},
    scenarios::{Scenario, Target, run_echo},
};

const SEED: u64 = 20261126;
/// Bumped whenever the store layout changes, so cached stores are rebuilt.
const STORE_LAYOUT: u32 = 8;

/// Settings of one bench run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub work_dir: PathBuf,
    pub contacts: Vec<u64>,
    pub events_per_contact: u32,
    pub load: Load,
    pub rounds: usize,
    pub scenarios: Vec<Scenario>,
    pub bulk_size: usize,
    pub bulk_per_contact: usize,
    pub markers: u64,
}

pub async fn run(spec: &RunSpec) -> anyhow::Result<Findings> {
    std::fs::create_dir_all(&spec.work_dir)?;
    let mut findings = Findings {
        machine: machine(),
        settings: format!(
            "{} connections x {} in flight, {:?} warm-up + {:?} per run, {} rounds (medians), \
             uniformly random contacts, bulk streams of {} events ({} consecutive per contact)",
            spec.load.connections,
            spec.load.in_flight,
            spec.load.warmup,
            spec.load.duration,
            spec.rounds,
            spec.bulk_size,
            spec.bulk_per_contact
        ),
        ..Findings::default()
    };
    let echo = ServerProcess::echo().await?;
    let echo_connections = Arc::new(connect(&echo.addr, spec.load.connections).await?);

    for &contacts in &spec.contacts {
        let store = ensure_store(&spec.work_dir, contacts, spec.events_per_contact).await?;
        findings.stores.push((
            contacts,
            store.bytes_on_disk,
            store.events,
            store.markers,
            store.seconds,
        ));
        let reach = ServerProcess::reach(&store_dir(&spec.work_dir, contacts)).await?;
        eprintln!(
            "reach on {contacts} contacts: SERVING after {:.2}s",
            reach.ready_in.as_secs_f64()
        );
        let target = Target {
            connections: Arc::new(connect(&reach.addr, spec.load.connections).await?),
            contacts,
            run_id: fastrand::u64(..),
            bulk_size: spec.bulk_size,
            bulk_per_contact: spec.bulk_per_contact,
        };
        let mut sizes = Vec::new();
        for &scenario in &spec.scenarios {
            sizes.push(target.sizes(scenario).await?);
        }
        for round in 0..spec.rounds {
            for (&scenario, &(request_bytes, reply_bytes)) in spec.scenarios.iter().zip(&sizes) {
                let baseline = if scenario.echo_baseline() {
                    let run = run_echo(
                        echo_connections.clone(),
                        spec.load,
                        request_bytes,
                        reply_bytes,
                    );
                    with_server_cpu(&echo, spec.load, run).await
                } else {
                    let dir = spec.work_dir.join(format!("sled-raw-{round}"));
                    let _ = std::fs::remove_dir_all(&dir);
                    let measured = baseline::sled_group_commit(
                        &dir,
                        spec.load,
                        store.record_bytes_mean as usize,
                    )
                    .await?;
                    std::fs::remove_dir_all(&dir)?;
                    measured
                };
                let measured =
                    with_server_cpu(&reach, spec.load, target.run(scenario, spec.load)).await;
                eprintln!(
                    "round {} {contacts} {scenario}: {:.0}/s p99 {}us (baseline {:.0}/s p99 {}us)",
                    round + 1,
                    measured.items_per_sec(),
                    measured.latency(0.99),
                    baseline.items_per_sec(),
                    baseline.latency(0.99)
                );
                findings.pairs.push(Pair {
                    contacts,
                    scenario,
                    reach: measured,
                    baseline,
                });
            }
        }
        findings.servers.push((
            contacts,
            reach.ready_in.as_secs_f64(),
            reach.peak_rss().unwrap_or(0),
        ));
        reach.stop()?;
    }

    let marker_dir = spec.work_dir.join("markers");
    let _ = std::fs::remove_dir_all(&marker_dir);
    let markers = baseline::marker_footprint(&marker_dir, spec.markers).await?;
    std::fs::remove_dir_all(&marker_dir)?;
    findings.marker_bytes = markers.inline_bytes_per_marker;
    findings.spilled_marker_bytes = markers.spilled_bytes_per_marker;
    findings.markers_measured = markers.markers;
    findings.marker_expiry = (markers.generations_dropped, markers.expire_seconds);
    findings.profile_bytes = (
        baseline::profile_bytes_after(100),
        baseline::profile_bytes_after(100_000),
    );
    Ok(findings)
}

pub(crate) fn store_dir(work_dir: &Path, contacts: u64) -> PathBuf {
    work_dir.join(format!("store-{contacts}"))
}

/// Preloads the store of `contacts` contacts unless a complete one exists.
pub(crate) async fn ensure_store(
    work_dir: &Path,
    contacts: u64,
    events_per_contact: u32,
) -> anyhow::Result<Preloaded> {
    let dir = store_dir(work_dir, contacts);
    let stamp = work_dir.join(format!("store-{contacts}.preloaded"));
    let spec_line = format!(
        "contacts={contacts} events={events_per_contact} seed={SEED} layout={STORE_LAYOUT}"
    );
    if let Ok(text) = std::fs::read_to_string(&stamp) {
        let mut lines = text.lines();
        if lines.next() == Some(spec_line.as_str()) {
            let numbers: Vec<f64> = lines.filter_map(|l| l.parse().ok()).collect();
            if let [events, markers, record_bytes, bytes, seconds] = numbers[..] {
                return Ok(Preloaded {
                    contacts,
                    events: events as u64,
                    markers: markers as u64,
                    record_bytes_mean: record_bytes as u64,
                    bytes_on_disk: bytes as u64,
                    seconds,
                });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("preloading {contacts} contacts into {}", dir.display());
    let p = preload(&dir, contacts, events_per_contact, SEED)
        .await
        .context("preloading")?;
    std::fs::write(
        &stamp,
        format!(
            "{spec_line}\n{}\n{}\n{}\n{}\n{}\n",
            p.events, p.markers, p.record_bytes_mean, p.bytes_on_disk, p.seconds
        ),
    )?;
    Ok(p)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cpus} cores ({model}), client and servers on the same machine")
}

impl RunSpec {
    /// A run of a few seconds that only proves the harness works (CI).
    pub fn smoke(work_dir: PathBuf) -> Self {
        RunSpec {
            work_dir,
            contacts: vec![1_000],
            events_per_contact: 10,
            load: Load {
                connections: 1,
                in_flight: 4,
                warmup: Duration::from_millis(100),
                duration: Duration::from_millis(400),
            },
            rounds: 1,
            scenarios: Scenario::ALL.to_vec(),
            bulk_size: 50,
            bulk_per_contact: 4,
            markers: 10_000,
        }
    }
}

/// Runs `run` and reads the CPU `server` used in its measured window (and
/// the file reads it made): from the end of the warm-up (timed from the
/// same first poll as the run's own) until the run returns, which includes
/// the few calls a worker began in the window and finished after it.
pub(crate) async fn with_server_cpu(
    server: &ServerProcess,
    load: Load,
    run: impl std::future::Future<Output = Measured>,
) -> Measured {
    let at_window = async {
        tokio::time::sleep(load.warmup).await;
        (server.cpu_time(), server.file_reads())
    };
    let (mut measured, (cpu_from, reads_from)) = tokio::join!(run, at_window);
    measured.server_cpu = cpu_from
        .zip(server.cpu_time())
        .map(|(from, to)| to.saturating_sub(from));
    measured.server_file_reads = reads_from
        .zip(server.file_reads())
        .map(|(from, to)| to.saturating_sub(from));
    measured
}
