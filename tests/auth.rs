//! Bearer-token authentication and tenant isolation through gRPC, and the
//! refusal to serve unauthenticated on a non-loopback address.

mod common;

use std::time::Duration;

use common::*;
use reach::{
    auth::{AuthConfig, TokenEntry, new_token},
    proto::{self, Channel, Status, reachability_service_client::ReachabilityServiceClient},
};
use tonic::{
    Code, Request,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel as Transport,
};

#[derive(Clone)]
struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.parse().unwrap());
        }
        Ok(request)
    }
}

type Authed = ReachabilityServiceClient<InterceptedService<Transport, Bearer>>;

async fn client_with(server: &TestServer, header: Option<String>) -> Authed {
    let channel = Transport::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ReachabilityServiceClient::with_interceptor(channel, Bearer(header))
}

struct Tenants {
    server: TestServer,
    acme: String,
    globex: String,
}

async fn start() -> Tenants {
    let (acme, acme_hash) = new_token();
    let (globex, globex_hash) = new_token();
    let server = TestServer::start_with(|c| {
        c.auth = AuthConfig {
            tokens: vec![
                TokenEntry {
                    tenant: "acme".into(),
                    token_blake3: acme_hash,
                    token_sha256: String::new(),
                    admin: false,
                },
                TokenEntry {
                    tenant: "globex".into(),
                    token_blake3: globex_hash,
                    token_sha256: String::new(),
                    admin: false,
                },
            ],
        }
    })
    .await;
    Tenants {
        server,
        acme: format!("Bearer {acme}"),
        globex: format!("Bearer {globex}"),
    }
}

fn req(e: proto::ChannelEvent) -> proto::RecordEventRequest {
    proto::RecordEventRequest { event: Some(e) }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let t = start().await;
    let now = now_ms();
    for header in [
        None,
        Some("Bearer wrong".to_string()),
        Some("Basic xyz".to_string()),
        Some(t.acme.replace("Bearer ", "")),
    ] {
        let mut client = client_with(&t.server, header.clone()).await;
        let status = client
            .record_event(req(event("e1", "c1", Channel::Sms, Status::Delivered, now)))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{header:?}: {status:?}"
        );
        let status = client
            .get_best_channel(proto::GetBestChannelRequest {
                contact_id: "c1".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // Probes need no token.
    wait_serving(t.server.addr).await;
    let (_, metrics) = http_get(t.server.admin, "/metrics").await;
    assert!(
        metrics.contains("reach_auth_failures_total"),
        "failures are counted"
    );
    let mut acme = client_with(&t.server, Some(t.acme.clone())).await;
    acme.record_event(req(event("e1", "c1", Channel::Sms, Status::Delivered, now)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_reads_or_changes_another_tenants_data() {
    let t = start().await;
    let now = now_ms();
    let mut acme = client_with(&t.server, Some(t.acme.clone())).await;
    let mut globex = client_with(&t.server, Some(t.globex.clone())).await;

    // acme: a contact suppressed on SMS (an action), a sender, a policy, a
    // dead letter, contact facts.
    for i in 0..3 {
        let mut e = event(
            &format!("b{i}"),
            "shared-id",
            Channel::Sms,
            Status::BouncedHard,
            now - (10 - i) * 1000,
        );
        e.campaign_id = "spring".into();
        acme.record_event(req(e)).await.unwrap();
    }
    acme.upsert_contact(proto::UpsertContactRequest {
        contact_id: "shared-id".into(),
        time_zone: "Europe/Paris".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    acme.register_sender(proto::RegisterSenderRequest {
        sender_id: "+15550100".into(),
        channel: Channel::Sms as i32,
        kind: proto::SenderKind::TenDlc as i32,
        state: proto::RegistrationState::Approved as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    acme.set_send_policy(proto::SetSendPolicyRequest {
        policy: Some(proto::SendPolicy {
            campaign_type: "promo".into(),
            min_score: 0.5,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    acme.record_provider_event(proto::ProviderEventRequest {
        provider: "no-such-provider".into(),
        contact_id: "shared-id".into(),
        body: b"{}".to_vec(),
        content_type: "application/json".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // acme sees its own (so the checks below cannot pass vacuously)...
    let own_letters = acme
        .list_dead_letters(proto::ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own_letters.dead_letters.len(), 1);
    let stats_query = proto::QueryDeliveryStatsRequest {
        from: Some(ts(now - 86_400_000)),
        to: Some(ts(now + 60_000)),
        ..Default::default()
    };
    let own_stats = acme
        .query_delivery_stats(stats_query.clone())
        .await
        .unwrap()
        .into_inner();
    let bounced: i64 = own_stats
        .rows
        .iter()
        .map(|r| r.counts.unwrap_or_default().bounced_hard)
        .sum();
    assert_eq!(bounced, 3);

    // ...and globex sees none of it.
    let status = globex
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "shared-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = globex
        .get_contact(proto::GetContactRequest {
            contact_id: "shared-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let reach = globex
        .get_reachability(proto::GetReachabilityRequest {
            contact_id: "shared-id".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reach.channels.iter().all(|c| c.confidence == 0.0),
        "priors only: {reach:?}"
    );
    let status = globex
        .get_sender(proto::GetSenderRequest {
            sender_id: "+15550100".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let policy = globex
        .get_send_policy(proto::GetSendPolicyRequest {
            campaign_type: "promo".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy.source, "default");
    let letters = globex
        .list_dead_letters(proto::ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(letters.dead_letters.is_empty(), "{letters:?}");
    let stats = globex
        .query_delivery_stats(stats_query)
        .await
        .unwrap()
        .into_inner();
    assert!(
        stats
            .rows
            .iter()
            .all(|r| r.counts.unwrap_or_default().bounced_hard == 0),
        "{stats:?}"
    );
    let mut watch = globex
        .watch_actions(proto::WatchActionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let nothing = tokio::time::timeout(Duration::from_millis(700), watch.message()).await;
    assert!(nothing.is_err(), "globex saw an action: {nothing:?}");

    // The same event id is a new event for globex, and its writes and
    // erasures do not touch acme's contact.
    let duplicate = globex
        .record_event(req(event(
            "b0",
            "shared-id",
            Channel::Sms,
            Status::Delivered,
            now,
        )))
        .await
        .unwrap()
        .into_inner()
        .duplicate;
    assert!(!duplicate);
    globex
        .delete_contact(proto::DeleteContactRequest {
            contact_id: "shared-id".into(),
        })
        .await
        .unwrap();
    let acme_view = acme
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "shared-id".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let sms = acme_view
        .channels
        .iter()
        .find(|c| c.channel == Channel::Sms as i32)
        .unwrap();
    assert_eq!(sms.counts.unwrap().bounced_hard, 3);
    let mut acme_watch = acme
        .watch_actions(proto::WatchActionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), acme_watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.contact_id, "shared-id");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tokens_only_loopback_is_served_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("REACH_ADMIN_LISTEN", "")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without authentication") && stderr.contains("--insecure"),
        "{stderr}"
    );
    // With --insecure it starts (and says so).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(["serve", "--insecure", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("REACH_ADMIN_LISTEN", "")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(line.starts_with("reach listening on 0.0.0.0:"), "{line}");
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--insecure"), "{stderr}");
}
