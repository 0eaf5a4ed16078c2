//! Keeps the load harness working: a smoke run of a few seconds through the
//! real binary. It asserts that every figure is produced, nothing about speed.

use std::process::Command;

#[test]
fn the_bench_harness_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(["bench", "run", "--smoke", "--work-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in ["best", "reachability", "record", "bulk", "mixed"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| 1000 | {scenario} |")))
            .unwrap_or_else(|| panic!("no row for {scenario}:\n{stdout}"));
        let throughput: f64 = row.split('|').nth(3).unwrap().trim().parse().unwrap();
        assert!(throughput > 0.0, "{row}");
        assert!(!row.contains("errors"), "{row}");
    }
    for figure in [
        "GetBestChannel p99 / echo p99",
        "dedupe marker bytes on disk per event",
        "server peak RSS MiB",
    ] {
        assert!(stdout.contains(figure), "missing {figure}:\n{stdout}");
    }
}
