//! `reach eval` end to end on a small population: the simulator, the replay
//! through a real server and the report keep working. Nothing here asserts
//! quality targets (docs/evaluation.md has the figures), only invariants.

use std::process::Command;

#[test]
fn eval_replays_a_small_population_and_reports_every_predictor() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.md");
    let output = Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(["eval", "--contacts", "300", "--workers", "8", "--work-dir"])
        .arg(dir.path())
        .arg("--report")
        .arg(&report)
        .env("RUST_LOG", "error")
        .output()
        .expect("run reach eval");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    for row in [
        "| reach |",
        "| campaign average per channel |",
        "| last status wins |",
        "| oracle (true probabilities) |",
        "Reliability of reach's scores",
        "Brier score by what the sender had seen of the channel",
        "| first message on the channel |",
        "Brier score by what the channel truly was",
        "| dead address, a failure already seen |",
    ] {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
    // The Bayes reference reads the evidence with the world's own rules:
    // whatever reach does, it beats the campaign average and no oracle.
    let brier = |row: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("{row} missing from:\n{text}"));
        line.split('|').nth(2).unwrap().trim().parse().unwrap()
    };
    let (bayes, average, oracle) = (
        brier("| Bayes reference"),
        brier("| campaign average per channel |"),
        brier("| oracle (true probabilities) |"),
    );
    assert!(oracle < bayes && bayes < average, "{text}");
    // Opt-out is law: whatever the scores, no opted-out channel is chosen.
    assert!(
        text.contains("| opted-out channels chosen | 0 | 0 | yes |"),
        "{text}"
    );
    // The server's store is cleaned up after the run.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn simulate_writes_events_grpcurl_can_send_and_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (events, truth) = (
        dir.path().join("events.jsonl"),
        dir.path().join("truth.jsonl"),
    );
    let status = Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(["simulate", "--contacts", "50", "--seed", "3", "--out"])
        .arg(&events)
        .arg("--truth")
        .arg(&truth)
        .status()
        .unwrap();
    assert!(status.success());
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&events)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        first["event"]["channel"]
            .as_str()
            .unwrap()
            .starts_with("CHANNEL_")
    );
    assert!(
        first["event"]["status"]
            .as_str()
            .unwrap()
            .starts_with("STATUS_")
    );
    let messages = std::fs::read_to_string(&truth).unwrap().lines().count();
    assert!(messages > 300, "{messages} messages for 50 contacts");
}
