//! How much of a soak's latency was the host's: on a VM the hypervisor can
//! take the CPU away ("steal"), and an open-loop load then queues whatever
//! reach does. The windows are grouped by the share the host stole, with
//! their p99s, and the p99 drift is given again between the first and the
//! last windows where it stole (almost) nothing. The verdict stays the one
//! of the first and last windows: this only says what moved it.

use std::fmt::Write;

use super::soak::Sample;

/// At most this share stolen (percent) counts as a window the host left alone.
const QUIET: f64 = 1.0;

/// The bands of stolen CPU share, in percent: label, from (inclusive), to.
const BANDS: [(&str, f64, f64); 3] = [
    ("under 1%", 0.0, QUIET),
    ("1% to 5%", QUIET, 5.0),
    ("5% and more", 5.0, f64::INFINITY),
];

/// The windows by stolen share, and the drift of the quiet ones; `None`
/// where the system does not tell the steal.
pub fn render(samples: &[Sample]) -> Option<String> {
    let known: Vec<(f64, &Sample)> = samples
        .iter()
        .filter_map(|s| Some((s.machine?.stolen, s)))
        .collect();
    if known.is_empty() {
        return None;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| stolen by the host | windows | median p99 ms | worst p99 ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for (label, from, to) in BANDS {
        let mut p99s: Vec<u64> = known
            .iter()
            .filter(|(stolen, _)| *stolen >= from && *stolen < to)
            .map(|(_, s)| s.p99_us)
            .collect();
        p99s.sort_unstable();
        let (median, worst) = match (p99s.get(p99s.len() / 2), p99s.last()) {
            (Some(&m), Some(&w)) => (ms(m), ms(w)),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(out, "| {label} | {} | {median} | {worst} |", p99s.len());
    }
    let quiet: Vec<&Sample> = known
        .iter()
        .filter(|(stolen, _)| *stolen < QUIET)
        .map(|(_, s)| *s)
        .collect();
    let _ = match (quiet.first(), quiet.last()) {
        (Some(a), Some(b)) if quiet.len() >= 2 => {
            let (from, to) = (a.p99_us as f64, b.p99_us as f64);
            writeln!(
                out,
                "\np99 of the first and last windows with under 1% stolen (minutes {:.1} and \
                 {:.1}): {} → {} ms ({:+.1}%)",
                a.at.as_secs_f64() / 60.0,
                b.at.as_secs_f64() / 60.0,
                ms(a.p99_us),
                ms(b.p99_us),
                (to - from) / from.max(1.0) * 100.0,
            )
        }
        _ => writeln!(out, "\nfewer than two windows with under 1% stolen"),
    };
    Some(out)
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::cpu_times::CpuShares;

    fn window(minute: u64, p99_ms: u64, stolen: Option<f64>) -> Sample {
        Sample {
            at: Duration::from_secs(minute * 60),
            calls: 1,
            errors: 0,
            p50_us: 1,
            p99_us: p99_ms * 1000,
            read_p99_us: 0,
            write_p99_us: 0,
            server_p99_bound_s: None,
            rss_bytes: 0,
            heap_bytes: 0,
            allocator_resident_bytes: 0,
            store_bytes: 0,
            machine: stolen.map(|stolen| CpuShares { busy: 90.0, stolen }),
            server_cpu_us_per_call: 100.0,
            file_reads_per_call: 2.0,
            fixed_work: None,
        }
    }

    #[test]
    fn windows_are_grouped_by_the_share_the_host_stole() {
        let samples = [
            window(3, 1545, Some(22.9)),
            window(4, 73, Some(16.4)),
            window(5, 10, Some(0.1)),
            window(6, 8, Some(0.2)),
            window(7, 40, Some(3.0)),
            window(8, 12, Some(0.9)),
            window(9, 957, Some(5.0)),
        ];
        let out = render(&samples).unwrap();
        assert!(out.contains("| under 1% | 3 | 10.00 | 12.00 |"), "{out}");
        assert!(out.contains("| 1% to 5% | 1 | 40.00 | 40.00 |"), "{out}");
        assert!(
            out.contains("| 5% and more | 3 | 957.00 | 1545.00 |"),
            "{out}"
        );
        assert!(
            out.contains("(minutes 5.0 and 8.0): 10.00 → 12.00 ms (+20.0%)"),
            "{out}"
        );
    }

    #[test]
    fn without_the_steal_there_is_nothing_to_say() {
        assert!(render(&[window(1, 5, None)]).is_none());
        let out = render(&[window(1, 5, Some(0.0)), window(2, 9, Some(30.0))]).unwrap();
        assert!(out.contains("| 1% to 5% | 0 | - | - |"), "{out}");
        assert!(out.contains("fewer than two windows"), "{out}");
    }
}
