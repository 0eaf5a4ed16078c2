//! The Helm chart lints, renders and validates (helm/ci/check.py: Helm's Go
//! SDK and the Kubernetes schemas), and what it renders runs: its config
//! file and token Secret start a real reach that accepts the generated
//! token. Needs `pip install helm-python-sdk kubernetes-validate` (`.ci/run`
//! installs both); outside CI the test is skipped with a notice without them.

mod common;

use std::{path::Path, process::Command};

use common::ProcessServer;

fn tools_available() -> bool {
    Command::new("python3")
        .args(["-c", "import helm_python, kubernetes_validate, yaml"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn reach(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(args)
        .env_remove("REACH_TOKEN")
        .env_remove("REACH_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run reach")
}

/// The rendered config with its TLS file paths pointed at files that exist.
fn localize_tls(config: &Path, dir: &Path) -> std::path::PathBuf {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    if let Some(tls) = json.get_mut("tls").and_then(|t| t.as_object_mut()) {
        for (_, path) in tls.iter_mut() {
            let name = Path::new(path.as_str().unwrap()).file_name().unwrap();
            let local = dir.join(name);
            std::fs::write(&local, "placeholder").unwrap();
            *path = serde_json::Value::String(local.to_string_lossy().into_owned());
        }
    }
    let out = dir.join(config.file_name().unwrap());
    std::fs::write(&out, json.to_string()).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_validates_and_its_config_and_token_run() {
    if !tools_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "helm-python-sdk and kubernetes-validate are required in CI"
        );
        eprintln!("SKIPPED: pip install helm-python-sdk kubernetes-validate");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let check = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/helm/ci/check.py"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for kind in [
        "StatefulSet/reach",
        "Service/reach-headless",
        "PodDisruptionBudget/reach",
    ] {
        assert!(report.contains(kind), "{report}");
    }
    for kind in [
        "NetworkPolicy/reach",
        "ServiceMonitor/reach",
        "ConfigMap/reach-dashboard",
    ] {
        let full = std::fs::read_to_string(out.path().join("full.kinds")).unwrap();
        assert!(full.contains(kind), "{full}");
    }
    // Redis mode: stateless replicas, no volume.
    let redis = std::fs::read_to_string(out.path().join("redis.kinds")).unwrap();
    for kind in ["Deployment/reach", "HorizontalPodAutoscaler/reach"] {
        assert!(redis.contains(kind), "{redis}");
    }
    assert!(!redis.contains("StatefulSet"), "{redis}");

    // Both renderings' config files and token lists are accepted by reach.
    for name in ["default", "full"] {
        let config = localize_tls(&out.path().join(format!("{name}.config.json")), out.path());
        let tokens = std::fs::read_to_string(out.path().join(format!("{name}.tokens"))).unwrap();
        // The webhook endpoints Secret, in the format values.yaml documents.
        let endpoints = format!(
            "[{{tenant=\"acme\",path_secret_sha256=\"{}\",signing_keys={{twilio=\"tok\"}}}}]",
            "ab".repeat(32)
        );
        let printed = reach(
            &[
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--print-config",
            ],
            &[
                ("REACH_AUTH__TOKENS", tokens.as_str()),
                ("REACH_WEBHOOKS__ENDPOINTS", endpoints.as_str()),
            ],
        );
        let text = String::from_utf8_lossy(&printed.stdout);
        assert!(
            printed.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&printed.stderr)
        );
        assert!(text.contains("listen = \"0.0.0.0:50051\""), "{text}");
        assert!(text.contains("[[auth.tokens]]"), "{text}");
        if name == "full" {
            assert!(text.contains("listen = \"0.0.0.0:8080\""), "{text}");
            assert!(text.contains("[[webhooks.endpoints]]"), "{text}");
            // Signing keys are secrets: never printed.
            assert!(text.contains("twilio = \"<redacted>\""), "{text}");
        }
    }

    // The Redis rendering serves from a real cluster, its node list coming
    // from the Secret's environment variable as in the pod.
    if common::redis_or_skip() {
        serve_redis_rendering(out.path()).await;
    }

    // The default install's generated token authenticates, nothing else does.
    let config = out.path().join("default.config.json");
    let tokens = std::fs::read_to_string(out.path().join("default.tokens")).unwrap();
    let token = std::fs::read_to_string(out.path().join("default.token")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = ProcessServer::start_with_env(
        data.path(),
        &[
            ("REACH_CONFIG", config.to_str().unwrap()),
            ("REACH_AUTH__TOKENS", tokens.as_str()),
        ],
    )
    .await;
    let url = format!("http://{}", server.addr);
    let call = |token: Option<&str>| {
        let mut env = vec![("REACH_SERVER", url.as_str())];
        if let Some(token) = token {
            env.push(("REACH_TOKEN", token));
        }
        reach(&["reachability", "alice", "--json"], &env)
    };
    // The server is another process: blocking here stalls nothing.
    let ok = call(Some(token.trim()));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = call(Some("not-the-token"));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"));
    let anonymous = call(None);
    assert!(!anonymous.status.success());
}

async fn serve_redis_rendering(out: &std::path::Path) {
    let nodes = format!("{:?}", common::test_cluster().urls());
    let tokens = std::fs::read_to_string(out.join("redis.tokens")).unwrap();
    let token = std::fs::read_to_string(out.join("redis.token")).unwrap();
    let config = out.join("redis.config.json");
    let data = tempfile::tempdir().unwrap();
    let server = ProcessServer::start_with_env(
        data.path(),
        &[
            ("REACH_CONFIG", config.to_str().unwrap()),
            ("REACH_AUTH__TOKENS", tokens.as_str()),
            ("REACH_STORE__REDIS__NODES", nodes.as_str()),
        ],
    )
    .await;
    let url = format!("http://{}", server.addr);
    let recorded = reach(
        &[
            "record",
            "--contact",
            "alice",
            "--channel",
            "sms",
            "--status",
            "delivered",
            "--event-id",
            "e1",
        ],
        &[
            ("REACH_SERVER", url.as_str()),
            ("REACH_TOKEN", token.trim()),
        ],
    );
    assert!(
        recorded.status.success(),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    drop(server);
}
