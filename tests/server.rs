//! Server behaviour: health, reflection, graceful shutdown, configuration.

mod common;

use std::process::Command;

use common::*;
use reach::proto::{Channel, Status};
use tonic::transport::Channel as GrpcChannel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test(flavor = "multi_thread")]
async fn health_turns_not_serving_when_shutdown_starts() {
    let mut server = TestServer::start().await;
    let channel = GrpcChannel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let service = "reachability.v1.ReachabilityService".to_string();
    let status = health
        .check(HealthCheckRequest {
            service: service.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);
    let mut updates = health
        .watch(HealthCheckRequest { service })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        updates.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    let shutdown = tokio::spawn(async move { server.shutdown().await });
    let next = updates
        .message()
        .await
        .unwrap()
        .expect("an update before the stream closes");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // An open Watch is an in-flight call: the drain waits for it (up to the grace period).
    drop(updates);
    drop(health);
    shutdown.await.unwrap().expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_services_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::start().await;
    let channel = GrpcChannel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
        ..Default::default()
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"reachability.v1.ReachabilityService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "reachability.v1.ReachabilityService".into(),
            ),
        ),
        ..Default::default()
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    assert!(matches!(
        reply.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(dir.path()).await;
    let mut client = server.client().await;
    record(
        &mut client,
        event(
            "e1",
            "quinn",
            Channel::Sms,
            Status::Delivered,
            now_ms() - 1000,
        ),
    )
    .await;
    drop(client);
    assert!(server.terminate().success(), "exit code 0 on SIGTERM");
    let server = ProcessServer::start(dir.path()).await;
    let mut client = server.client().await;
    assert_eq!(
        counts(&profile(&mut client, "quinn").await, Channel::Sms).delivered,
        1
    );
}

#[test]
fn bad_configuration_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reach.toml");
    std::fs::write(&file, "[scoring]\nsuppress_after_hard_fails = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("suppress_after_hard_fails"));
    let out = Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(["serve", "--print-config"])
        .env("REACH_SCORING__HALF_LIFE", "7d")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("half_life = \"7days\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_data_dir_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = ProcessServer::start(dir.path()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("REACH_ADMIN_LISTEN", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("opening store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A store that never opens (here a "Redis node" that accepts connections and
/// never answers) stops the server with the error as soon as the store gives
/// up: a health watcher, the one call such a server has, must not hold it
/// for the drain grace.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_never_opens_stops_the_server_without_the_grace() {
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_addr = mute.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = mute.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = reach::config::Config {
        data_dir: dir.path().join("data"),
        shutdown_grace: std::time::Duration::from_secs(300),
        ..Default::default()
    };
    config.store.backend = reach::storage::BackendKind::Redis;
    config.store.redis.nodes = vec![format!("redis://{mute_addr}")];
    config.store.redis.connect_timeout = std::time::Duration::from_secs(2);
    config.store.redis.response_timeout = std::time::Duration::from_secs(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listeners = reach::server::Listeners {
        grpc: listener,
        admin: None,
        webhooks: None,
    };
    let mut server = tokio::spawn(reach::server::serve_with(
        config,
        listeners,
        std::future::pending(),
    ));
    let channel = GrpcChannel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut updates = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = updates.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::NotServing as i32);
    assert!(
        !server.is_finished(),
        "the watch began before the store gave up"
    );
    let ended = tokio::time::timeout(std::time::Duration::from_secs(120), &mut server)
        .await
        .expect("stopped long before the 300 s grace")
        .unwrap();
    let error = format!("{:#}", ended.expect_err("the store never opened"));
    assert!(error.contains("connecting to the Redis Cluster"), "{error}");
}
