//! Keeps the load harness working: a smoke run of a few seconds through the
//! real binary. It asserts that every figure is produced, nothing about speed.

use std::process::Command;

/// Runs `reach bench <args> --work-dir <a temporary directory>`; its stdout.
fn bench(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reach"))
        .arg("bench")
        .args(args)
        .arg("--work-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_bench_harness_runs_end_to_end() {
    let stdout = bench(&["run", "--smoke"]);
    for scenario in ["best", "reachability", "record", "bulk", "mixed"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| 1000 | {scenario} |")))
            .unwrap_or_else(|| panic!("no row for {scenario}:\n{stdout}"));
        let throughput: f64 = row.split('|').nth(3).unwrap().trim().parse().unwrap();
        assert!(throughput > 0.0, "{row}");
        assert!(!row.contains("errors"), "{row}");
    }
    // The server's CPU per call, beside the echo server's where echo is
    // the baseline (bulk's is raw sled, inside the bench process: none),
    // and the server's file reads per item.
    let cpu_table = stdout
        .split("| contacts | scenario | server CPU us per item |")
        .nth(1)
        .unwrap_or_else(|| panic!("no CPU table:\n{stdout}"));
    for scenario in ["best", "reachability", "record", "bulk", "mixed"] {
        let row = cpu_table
            .lines()
            .find(|l| l.starts_with(&format!("| 1000 | {scenario} |")))
            .unwrap_or_else(|| panic!("no CPU row for {scenario}:\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let cpu: f64 = cells[3].parse().unwrap();
        assert!(cpu >= 0.0, "{row}");
        if scenario == "bulk" {
            assert_eq!(cells[4], "-", "{row}");
        } else {
            let echo: f64 = cells[4].parse().unwrap();
            assert!(echo >= 0.0, "{row}");
        }
        // The server's file reads per item (its store's cache misses): a
        // number wherever the server's /proc could be read.
        let reads: f64 = cells[6]
            .parse()
            .unwrap_or_else(|_| panic!("no file reads: {row}"));
        assert!(reads >= 0.0, "{row}");
    }
    for figure in [
        "GetBestChannel p99 / echo p99",
        "dedupe marker bytes on disk per event",
        "server peak RSS MiB",
    ] {
        assert!(stdout.contains(figure), "missing {figure}:\n{stdout}");
    }
}

#[test]
fn the_soak_runs_and_reports_its_drift() {
    let stdout = bench(&[
        "soak",
        "--contacts",
        "1000",
        "--events-per-contact",
        "5",
        "--precondition",
        "1s",
        "--probe",
        "1s",
        "--step",
        "400ms",
        "--settle",
        "500ms",
        "--duration",
        "2s",
        "--window",
        "1s",
    ]);
    for figure in [
        "| server RSS MiB |",
        "| p99 ms |",
        "| GetBestChannel p99 ms |",
        "| RecordEvent (durable) p99 ms |",
        "| store MiB |",
        "| machine busy % | stolen by the host % |",
        "| stolen by the host | windows | median p99 ms | worst p99 ms |",
        "| server CPU us per call |",
        "| server file reads per call |",
        "| fixed work's CPU us, compute | fixed work's CPU us, memory |",
        "| server's own p99 ms (its histogram's bucket) |",
        "open-loop from 410 readers and 102 writers",
        "Open-loop staircase (the soak's own load: 410 readers and 102 writers",
        "| offered calls/s | of the closed-loop maximum | completed calls/s |",
        "(the open-loop maximum) = 70% of the open-loop maximum ",
        "store aged by ",
    ] {
        assert!(stdout.contains(figure), "missing {figure}:\n{stdout}");
    }
    // The staircase climbed until a rate did not hold (or to its top): a
    // step that did not hold is followed only by another try of its rate.
    let steps: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("| offered calls/s |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(!steps.is_empty(), "no staircase steps:\n{stdout}");
    let rate = |row: &str| row.split('|').nth(1).unwrap().trim().to_string();
    for pair in steps.windows(2) {
        if pair[0].ends_with("| no |") {
            assert_eq!(rate(pair[0]), rate(pair[1]), "{}\n{}", pair[0], pair[1]);
        }
    }
    // The store was read before the server started and after it stopped:
    // the events written are in it, and the disk holds at least that.
    let figures = |label: &str| -> (f64, f64) {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("missing {label}:\n{stdout}"));
        let cell = |i: usize| {
            row.split('|')
                .nth(i)
                .unwrap()
                .trim()
                .parse::<f64>()
                .unwrap()
        };
        (cell(2), cell(3))
    };
    let (live_before, live_after) = figures("| store's live data MiB");
    assert!(
        live_before > 0.0 && live_after > live_before,
        "{live_before} {live_after}"
    );
    let (disk_before, disk_after) = figures("| store on disk / live data");
    assert!(
        disk_before >= 1.0 && disk_after >= 1.0,
        "{disk_before} {disk_after}"
    );
    // Two one-second windows, each with calls at the offered rate.
    let windows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| 0.")).collect();
    assert_eq!(windows.len(), 2, "{stdout}");
    for row in windows {
        let calls: f64 = row.split('|').nth(2).unwrap().trim().parse().unwrap();
        assert!(calls > 0.0, "{row}");
        // The server measured the window's calls too: the bound of the
        // bucket of its own p99.
        let server = row.split('|').nth(8).unwrap().trim();
        let bound: f64 = server.strip_prefix("≤ ").unwrap_or(server).parse().unwrap();
        assert!(bound > 0.0, "{row}");
        // The machine ran the client and the server in that second.
        let busy: f64 = row.split('|').nth(13).unwrap().trim().parse().unwrap();
        assert!(busy > 0.0, "{row}");
        // And the server spent CPU on each call.
        let cpu: f64 = row.split('|').nth(15).unwrap().trim().parse().unwrap();
        assert!(cpu > 0.0, "{row}");
        let reads: f64 = row.split('|').nth(16).unwrap().trim().parse().unwrap();
        assert!(reads >= 0.0, "{row}");
        // The machine's own speed: the fixed work's fastest run in the
        // window, where one finished in it.
        for column in [17, 18, 19] {
            let cell = row.split('|').nth(column).unwrap().trim();
            assert!(cell == "-" || cell.parse::<f64>().unwrap() > 0.0, "{row}");
        }
    }
}

#[test]
fn the_redis_comparison_runs_end_to_end() {
    if !reach::bench::redis_cluster::available() {
        assert!(std::env::var_os("CI").is_none(), "CI must run it");
        eprintln!("notice: redis-server is not installed: skipped");
        return;
    }
    // A window long enough for a debug build on a busy machine to complete
    // calls on the cluster (its first read loads the tenant's route days):
    // the smoke checks the harness, not a speed.
    let stdout = bench(&[
        "redis",
        "--contacts",
        "200",
        "--rounds",
        "1",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--raw-requests",
        "2000",
        "--connections",
        "1",
        "--in-flight",
        "4",
    ]);
    for call in ["| GetBestChannel |", "| RecordEvent |"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(call))
            .unwrap_or_else(|| panic!("no row {call}:\n{stdout}"));
        let redis: f64 = row.split('|').nth(3).unwrap().trim().parse().unwrap();
        assert!(redis > 0.0, "{row}");
    }
}
