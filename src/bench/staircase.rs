//! The highest rate the soak's own load holds. The closed-loop probe keeps
//! 64 calls in flight on 4 connections, and the server answers them in
//! batches (one write per connection for several responses, one wake-up
//! for several requests); the soak's open-loop workers call one at a time,
//! on a schedule, so each call costs the server and the client more. 70% of
//! the closed-loop maximum asked the machine for about 90% of its CPU
//! (docs/reliability.md, "Which maximum"). The staircase measures the
//! maximum in the soak's shape instead: the same workers, the same mix,
//! offered at rising rates, until a step no longer holds.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use crate::bench::{
    child::ServerProcess,
    cpu_times::CpuTimes,
    open_loop::{self, Pools, SharedTally},
    scenarios::Target,
};

/// The first step's rate and the rise between steps, as fractions of the
/// closed-loop maximum; the last step tried is at `LAST`.
const FIRST: f64 = 0.30;
const RISE: f64 = 0.05;
const LAST: f64 = 1.5;

/// A step holds if it completes at least this share of the calls it offered.
const COMPLETED: f64 = 0.98;

/// Tries of a rate before the climb stops there. Near the knee one 20 s
/// window's p99 is at the mercy of a single slow second (a flush, the log's
/// cleaning): in the thirty-third session's second soak the climb stopped
/// at 55% of the closed-loop maximum where the first had held up to 65%.
/// A second try judges the rate on the better of two windows, which can
/// only raise the maximum, never lower it.
const TRIES: usize = 2;

/// One rate of the staircase.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub offered_per_sec: f64,
    pub completed_per_sec: f64,
    pub errors: u64,
    pub p99_us: u64,
    /// The machine's busy share, percent, where the system tells it.
    pub busy: Option<f64>,
    pub server_cpu_us_per_call: f64,
    pub held: bool,
}

/// The steps climbed, and what a step's p99 had to stay within.
#[derive(Clone, Debug)]
pub struct Staircase {
    pub workers: usize,
    pub step: Duration,
    pub bound_us: u64,
    pub closed_max_per_sec: f64,
    pub steps: Vec<Step>,
}

impl Staircase {
    /// The highest rate a step held at; where none held, the lowest rate
    /// tried (and `held_any` says so).
    pub fn maximum(&self) -> f64 {
        self.steps
            .iter()
            .filter(|s| s.held)
            .map(|s| s.offered_per_sec)
            .fold(None, |max: Option<f64>, r| {
                Some(max.map_or(r, |m| m.max(r)))
            })
            .unwrap_or(self.closed_max_per_sec * FIRST)
    }

    pub fn held_any(&self) -> bool {
        self.steps.iter().any(|s| s.held)
    }
}

/// Whether a step held: no errors, (nearly) every offered call completed in
/// its window, and a p99 no worse than the closed-loop maximum's own. A
/// maximum is a rate at a latency: past the knee an open-loop load still
/// completes nearly every call (the 512 workers fall behind and call back
/// to back, which is the closed-loop load again), only later and later, so
/// the rate alone would find the closed-loop maximum again; bounding the
/// p99 by the closed-loop probe's compares the two maxima at one latency.
fn holds(offered: f64, completed: f64, errors: u64, p99_us: u64, bound_us: u64) -> bool {
    errors == 0 && completed >= offered * COMPLETED && p99_us <= bound_us
}

/// Climbs from `FIRST` of the closed-loop maximum by `RISE` until a rate
/// does not hold in `TRIES` steps (or `LAST`). Each step settles for a
/// quarter of `step` before its window.
pub async fn climb(
    target: &Target,
    reach: &ServerProcess,
    workers: usize,
    closed_max_per_sec: f64,
    bound_us: u64,
    step: Duration,
) -> anyhow::Result<Staircase> {
    let mut staircase = Staircase {
        workers,
        step,
        bound_us,
        closed_max_per_sec,
        steps: Vec::new(),
    };
    let rungs = ((LAST - FIRST) / RISE).round() as usize;
    'climb: for rung in 0..=rungs {
        let fraction = FIRST + RISE * rung as f64;
        let offered = (closed_max_per_sec * fraction).max(1.0);
        for _ in 0..TRIES {
            let taken = one_step(target, reach, workers, offered, bound_us, step).await?;
            eprintln!(
                "soak: staircase {offered:.0}/s: {:.0}/s completed, p99 {}us, {}",
                taken.completed_per_sec,
                taken.p99_us,
                if taken.held { "held" } else { "did not hold" }
            );
            staircase.steps.push(taken);
            if taken.held {
                continue 'climb;
            }
        }
        break;
    }
    Ok(staircase)
}

async fn one_step(
    target: &Target,
    reach: &ServerProcess,
    workers: usize,
    offered: f64,
    bound_us: u64,
    step: Duration,
) -> anyhow::Result<Step> {
    let tally = SharedTally::default();
    let settle = step / 4;
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + settle + step;
    let tasks = Pools::split(workers, offered).spawn(target, start, end, &tally);
    tokio::time::sleep_until((start + settle).into()).await;
    open_loop::take(&tally);
    let (cpu, server_cpu) = (CpuTimes::now(), reach.cpu_time());
    tokio::time::sleep_until(end.into()).await;
    let window = open_loop::take(&tally);
    let (cpu_now, server_cpu_now) = (CpuTimes::now(), reach.cpu_time());
    for task in tasks {
        task.await?;
    }
    let completed = window.calls as f64 / step.as_secs_f64();
    let p99_us = open_loop::p99(&window.latency_us);
    let server_cpu_us_per_call = match server_cpu.zip(server_cpu_now) {
        Some((a, b)) if window.calls > 0 => {
            b.saturating_sub(a).as_secs_f64() * 1e6 / window.calls as f64
        }
        _ => f64::NAN,
    };
    Ok(Step {
        offered_per_sec: offered,
        completed_per_sec: completed,
        errors: window.errors,
        p99_us,
        busy: cpu.zip(cpu_now).map(|(a, b)| a.shares_until(b).busy),
        server_cpu_us_per_call,
        held: holds(offered, completed, window.errors, p99_us, bound_us),
    })
}

impl Staircase {
    /// Markdown: how the steps were taken, then one row per step.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let pools = Pools::split(self.workers, self.closed_max_per_sec);
        let _ = writeln!(
            out,
            "Open-loop staircase (the soak's own load: {} readers and {} writers, each step {:?} \
             measured after {:?} settling; a step holds with no errors, at least {:.0}% of its \
             offered calls completed, and a p99 within the closed-loop probe's {:.2} ms; a rate \
             is tried {TRIES} times before the climb stops): maximum **{:.0}/s**{}.\n",
            pools.readers,
            pools.writers,
            self.step,
            self.step / 4,
            COMPLETED * 100.0,
            self.bound_us as f64 / 1000.0,
            self.maximum(),
            if self.held_any() {
                String::new()
            } else {
                " (no step held: the lowest rate tried)".to_string()
            },
        );
        let _ = writeln!(
            out,
            "| offered calls/s | of the closed-loop maximum | completed calls/s | errors | p99 ms | machine busy % | server CPU us per call | held |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for s in &self.steps {
            let _ = writeln!(
                out,
                "| {:.0} | {:.0}% | {:.0} | {} | {:.2} | {} | {:.1} | {} |",
                s.offered_per_sec,
                s.offered_per_sec / self.closed_max_per_sec.max(1.0) * 100.0,
                s.completed_per_sec,
                s.errors,
                s.p99_us as f64 / 1000.0,
                s.busy.map_or("-".to_string(), |b| format!("{b:.0}")),
                s.server_cpu_us_per_call,
                if s.held { "yes" } else { "no" },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_holds_only_on_time_complete_and_without_errors() {
        assert!(holds(1000.0, 990.0, 0, 5_000, 5_000));
        assert!(!holds(1000.0, 970.0, 0, 1_000, 5_000), "fell behind");
        assert!(!holds(1000.0, 1000.0, 1, 1_000, 5_000), "an error");
        assert!(!holds(1000.0, 1000.0, 0, 5_001, 5_000), "too slow");
    }

    fn step(offered: f64, held: bool) -> Step {
        Step {
            offered_per_sec: offered,
            completed_per_sec: offered,
            errors: 0,
            p99_us: 1,
            busy: None,
            server_cpu_us_per_call: 1.0,
            held,
        }
    }

    #[test]
    fn the_maximum_is_the_highest_step_that_held() {
        let mut staircase = Staircase {
            workers: 512,
            step: Duration::from_secs(1),
            bound_us: 1,
            closed_max_per_sec: 10_000.0,
            steps: vec![step(3000.0, true), step(3500.0, true), step(4000.0, false)],
        };
        assert_eq!(staircase.maximum(), 3500.0);
        assert!(staircase.held_any());

        staircase.steps = vec![step(3000.0, false)];
        assert_eq!(staircase.maximum(), 3000.0);
        assert!(!staircase.held_any());
        assert!(staircase.render().contains("no step held"));
    }
}
