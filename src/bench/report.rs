//! Turns the runs into the tables of `docs/performance.md`: medians over the
//! rounds, every figure next to its limit and the ratio, and the targets.

use std::fmt::Write;

use crate::bench::{load::Measured, scenarios::Scenario};

/// One interleaved pair: a reach run and the baseline run just before it.
pub struct Pair {
    pub contacts: u64,
    pub scenario: Scenario,
    pub reach: Measured,
    pub baseline: Measured,
}

/// Everything a run found out.
#[derive(Default)]
pub struct Findings {
    pub machine: String,
    pub settings: String,
    pub pairs: Vec<Pair>,
    /// (contacts, bytes on disk, events, markers, preload seconds)
    pub stores: Vec<(u64, u64, u64, u64, f64)>,
    /// (contacts, seconds to SERVING, peak RSS bytes)
    pub servers: Vec<(u64, f64, u64)>,
    pub marker_bytes: f64,
    pub spilled_marker_bytes: f64,
    pub markers_measured: u64,
    pub marker_expiry: (usize, f64),
    pub profile_bytes: (usize, usize),
}

pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The median of the runs' server CPU per item, NaN if none was read.
fn cpu_median<'a>(runs: impl Iterator<Item = &'a Measured>) -> f64 {
    median(runs.filter_map(Measured::server_cpu_us_per_item).collect())
}

/// The median of the runs' server file reads per item, NaN if none was read.
fn file_reads_median<'a>(runs: impl Iterator<Item = &'a Measured>) -> f64 {
    median(
        runs.filter_map(Measured::server_file_reads_per_item)
            .collect(),
    )
}

/// Medians of one (contacts, scenario) cell.
pub struct Cell {
    pub throughput: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub baseline_throughput: f64,
    pub baseline_p99: f64,
    pub throughput_ratio: f64,
    pub p99_ratio: f64,
    pub errors: u64,
    /// Server CPU microseconds per item (NaN where not read).
    pub cpu_us: f64,
    pub baseline_cpu_us: f64,
    /// Server read system calls on files per item (NaN where not read).
    pub file_reads: f64,
}

impl Findings {
    pub fn cell(&self, contacts: u64, scenario: Scenario) -> Option<Cell> {
        let pairs: Vec<&Pair> = self
            .pairs
            .iter()
            .filter(|p| p.contacts == contacts && p.scenario == scenario)
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let m = |f: &dyn Fn(&Pair) -> f64| median(pairs.iter().map(|p| f(p)).collect());
        Some(Cell {
            throughput: m(&|p| p.reach.items_per_sec()),
            p50: m(&|p| p.reach.latency(0.5) as f64),
            p90: m(&|p| p.reach.latency(0.9) as f64),
            p99: m(&|p| p.reach.latency(0.99) as f64),
            p999: m(&|p| p.reach.latency(0.999) as f64),
            baseline_throughput: m(&|p| p.baseline.items_per_sec()),
            baseline_p99: m(&|p| p.baseline.latency(0.99) as f64),
            throughput_ratio: m(&|p| p.reach.items_per_sec() / p.baseline.items_per_sec()),
            p99_ratio: m(&|p| p.reach.latency(0.99) as f64 / p.baseline.latency(0.99) as f64),
            errors: pairs.iter().map(|p| p.reach.errors).sum(),
            cpu_us: cpu_median(pairs.iter().map(|p| &p.reach)),
            baseline_cpu_us: cpu_median(pairs.iter().map(|p| &p.baseline)),
            file_reads: file_reads_median(pairs.iter().map(|p| &p.reach)),
        })
    }

    fn store_sizes(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self.pairs.iter().map(|p| p.contacts).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Machine: {}  \nSettings: {}\n",
            self.machine, self.settings
        );
        let _ = writeln!(
            out,
            "| contacts | scenario | throughput/s | p50 us | p90 us | p99 us | p99.9 us | baseline | baseline/s | baseline p99 us | throughput ratio | p99 ratio |"
        );
        let _ = writeln!(
            out,
            "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
        );
        for contacts in self.store_sizes() {
            for scenario in Scenario::ALL {
                let Some(c) = self.cell(contacts, scenario) else {
                    continue;
                };
                let baseline = if scenario.echo_baseline() {
                    "echo"
                } else {
                    "sled raw"
                };
                let _ = writeln!(
                    out,
                    "| {contacts} | {scenario} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {baseline} | {:.0} | {:.0} | {:.2} | {:.2} |{}",
                    c.throughput,
                    c.p50,
                    c.p90,
                    c.p99,
                    c.p999,
                    c.baseline_throughput,
                    c.baseline_p99,
                    c.throughput_ratio,
                    c.p99_ratio,
                    if c.errors > 0 {
                        format!(" {} errors", c.errors)
                    } else {
                        String::new()
                    }
                );
            }
        }
        out.push('\n');
        out.push_str(&self.render_cpu());
        out.push_str(&self.render_targets());
        out
    }

    /// What each call cost the server's CPU, beside what an echo call costs
    /// the echo server: steadier than throughput on a machine whose host
    /// takes CPU away (a stolen slice slows both, but costs neither). The
    /// server's file reads per item show what the store's cache misses
    /// cost: sled reads every fragment of an uncached page apart.
    fn render_cpu(&self) -> String {
        let mut out = String::from(
            "| contacts | scenario | server CPU us per item | echo server CPU us per call | ratio | server file reads per item |\n|---:|---|---:|---:|---:|---:|\n",
        );
        let mut rows = 0;
        for contacts in self.store_sizes() {
            for scenario in Scenario::ALL {
                let Some(c) = self
                    .cell(contacts, scenario)
                    .filter(|c| c.cpu_us.is_finite())
                else {
                    continue;
                };
                let (echo, ratio) = if c.baseline_cpu_us.is_finite() {
                    (
                        format!("{:.1}", c.baseline_cpu_us),
                        format!("{:.2}", c.cpu_us / c.baseline_cpu_us),
                    )
                } else {
                    ("-".into(), "-".into())
                };
                let reads = if c.file_reads.is_finite() {
                    format!("{:.2}", c.file_reads)
                } else {
                    "-".into()
                };
                let _ = writeln!(
                    out,
                    "| {contacts} | {scenario} | {:.1} | {echo} | {ratio} | {reads} |",
                    c.cpu_us
                );
                rows += 1;
            }
        }
        if rows == 0 {
            return String::new();
        }
        out.push('\n');
        out
    }

    fn render_targets(&self) -> String {
        let mut rows: Vec<(String, String, String, bool)> = Vec::new();
        let sizes = self.store_sizes();
        let (Some(&small), Some(&large)) = (sizes.first(), sizes.last()) else {
            return String::new();
        };
        let mut check = |name: String, measured: f64, limit: f64, at_least: bool| {
            let ok = if at_least {
                measured >= limit
            } else {
                measured <= limit
            };
            let op = if at_least { ">=" } else { "<=" };
            rows.push((name, format!("{measured:.2}"), format!("{op} {limit}"), ok));
        };
        if let Some(c) = self.cell(large, Scenario::BestChannel) {
            check(
                format!("GetBestChannel throughput / echo ({large} contacts)"),
                c.throughput_ratio,
                0.8,
                true,
            );
            check(
                format!("GetBestChannel p99 / echo p99 ({large} contacts)"),
                c.p99_ratio,
                1.5,
                false,
            );
            if let Some(s) = self
                .cell(small, Scenario::BestChannel)
                .filter(|_| small != large)
            {
                check(
                    format!("GetBestChannel p99 at {large} / at {small} contacts"),
                    c.p99 / s.p99,
                    1.3,
                    false,
                );
            }
        }
        if let Some(c) = self.cell(large, Scenario::RecordEvent) {
            check(
                "RecordEvent (durable) throughput / echo".into(),
                c.throughput_ratio,
                0.6,
                true,
            );
        }
        if let Some(c) = self.cell(large, Scenario::RecordEvents) {
            check(
                "RecordEvents (durable) events/s / raw sled group-commit inserts/s".into(),
                c.throughput_ratio,
                2.0,
                true,
            );
        }
        if let Some(&(contacts, bytes, ..)) = self.stores.iter().find(|s| s.0 == large) {
            check(
                format!("bytes on disk per contact ({contacts} contacts)"),
                bytes as f64 / contacts as f64,
                600.0,
                false,
            );
        }
        check(
            "dedupe marker bytes on disk per event (inline, the common case)".into(),
            self.marker_bytes,
            64.0,
            false,
        );
        if let Some(&(_, ready, rss)) = self.servers.iter().find(|s| s.0 == large) {
            check(
                format!("server peak RSS MiB ({large} contacts)"),
                rss as f64 / (1 << 20) as f64,
                300.0,
                false,
            );
            check(
                format!("seconds to SERVING ({large} contacts)"),
                ready,
                3.0,
                false,
            );
        }
        let (p100, p100k) = self.profile_bytes;
        check(
            "profile bytes after 100k events / after 100".into(),
            p100k as f64 / p100 as f64,
            1.0,
            false,
        );

        let mut out = String::from("| target | measured | limit | met |\n|---|---:|---:|---|\n");
        for (name, measured, limit, ok) in rows {
            let _ = writeln!(
                out,
                "| {name} | {measured} | {limit} | {} |",
                if ok { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(out);
        for &(contacts, bytes, events, markers, secs) in &self.stores {
            let _ = writeln!(
                out,
                "- store of {contacts} contacts: {events} events, {markers} dedupe markers, {:.1} MiB on disk ({:.0} B/contact), preloaded in {secs:.1} s",
                bytes as f64 / (1 << 20) as f64,
                bytes as f64 / contacts as f64
            );
        }
        for &(contacts, ready, rss) in &self.servers {
            let _ = writeln!(
                out,
                "- server on {contacts} contacts: SERVING {ready:.2} s after spawn, peak RSS {:.0} MiB",
                rss as f64 / (1 << 20) as f64
            );
        }
        let _ = writeln!(
            out,
            "- dedupe markers: {:.1} B on disk per marker held in contact records ({} measured, 4 per contact); {:.1} B per marker spilled to the shared buckets by a busy contact; expiry dropped {} spilled generation(s) in {:.3} s",
            self.marker_bytes,
            self.markers_measured,
            self.spilled_marker_bytes,
            self.marker_expiry.0,
            self.marker_expiry.1
        );
        let _ = writeln!(
            out,
            "- encoded profile: {} B after 100 events, {} B after 100,000 events",
            self.profile_bytes.0, self.profile_bytes.1
        );
        out
    }
}
