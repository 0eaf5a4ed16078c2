//! The admin port's Prometheus metrics count what happens over gRPC.

mod common;

use common::*;
use reach::proto::{self, Channel, Status};

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{metrics}"))
}

/// A unary call to any path, with an empty message; returns its status.
async fn call_path(addr: std::net::SocketAddr, path: &'static str) -> tonic::Status {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary::<_, proto::GetContactResponse, _>(
        tonic::Request::new(proto::GetContactRequest::default()),
        ::http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_events_duplicates_and_flushes_are_counted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    let mut e = event("m1", "c1", Channel::Sms, Status::Delivered, now);
    e.carrier = "att".into();
    e.country = "US".into();
    e.sent_at = Some(ts(now - 4_000));
    e.message_id = "msg-1".into();
    assert!(!record(&mut client, e.clone()).await);
    assert!(record(&mut client, e).await);
    let bad = event("m2", "", Channel::Sms, Status::Delivered, now);
    client.record_event(request(bad)).await.unwrap_err();
    best(&mut client, "c1", &[]).await;
    client
        .get_contact(proto::GetContactRequest {
            contact_id: "nobody".into(),
        })
        .await
        .unwrap_err();

    // A path the server does not have: one `unknown` series whatever the
    // path, so that clients cannot add series at will.
    for path in ["/reachability.v1.ReachabilityService/Nope", "/x.Y/Z"] {
        let status = call_path(server.addr, path).await;
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{path}");
    }

    let (code, text) = http_get(server.admin, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        value(
            &text,
            "reach_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"}"
        ),
        2.0
    );
    assert!(!text.contains("Nope") && !text.contains("/x.Y/Z"), "{text}");
    let record = "/reachability.v1.ReachabilityService/RecordEvent";
    assert_eq!(
        value(
            &text,
            &format!("reach_requests_total{{method=\"{record}\",code=\"OK\"}}")
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            &format!("reach_requests_total{{method=\"{record}\",code=\"INVALID_ARGUMENT\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "reach_requests_total{method=\"/reachability.v1.ReachabilityService/GetContact\",code=\"NOT_FOUND\"}"
        ),
        1.0
    );
    assert!(text.contains("reach_request_duration_seconds_bucket{method=\"/reachability.v1.ReachabilityService/GetBestChannel\",le=\"0.001\"}"), "{text}");
    assert_eq!(
        value(
            &text,
            "reach_events_total{channel=\"sms\",status=\"DELIVERED\"}"
        ),
        1.0
    );
    assert_eq!(value(&text, "reach_events_duplicate_total"), 1.0);
    let route = "channel=\"sms\",carrier=\"att\",country=\"US\"";
    assert_eq!(
        value(
            &text,
            &format!("reach_route_outcomes_total{{{route},status=\"DELIVERED\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!("reach_delivery_latency_seconds_count{{{route}}}")
        ),
        1.0
    );
    if !on_redis() {
        // A contact past its record's share of markers spills the rest.
        let busy: Vec<_> = (0..130)
            .map(|i| {
                event(
                    &format!("b{i}"),
                    "busy",
                    Channel::Push,
                    Status::Delivered,
                    now,
                )
            })
            .collect();
        assert_eq!(resend(&mut client, &busy).await, (130, 0));
        assert_eq!(resend(&mut client, &busy).await, (0, 130));
        let text = http_get(server.admin, "/metrics").await.1;
        assert!(value(&text, "reach_dedupe_markers_spilled_total") >= 2.0);
        // Their generation's filter tells their new events apart in memory.
        assert!(value(&text, "reach_marker_filter_bytes") > 0.0);
    }
    assert!(value(&text, "reach_store_flush_seconds_count") >= 1.0);
    // The gauge is refreshed every second, after the statistics flush.
    let size_of = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("reach_store_size_bytes "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut size = size_of(&text);
    for _ in 0..50 {
        if size > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        size = size_of(&http_get(server.admin, "/metrics").await.1);
    }
    assert!(size > 0.0, "store size gauge");
}

/// The `reach` binary runs on jemalloc and publishes what it holds: the live
/// heap apart from the pages it keeps resident, so that an operator can
/// tell a leak from fragmentation.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_publishes_its_allocator_figures() {
    let dir = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(dir.path()).await;
    let admin = server.admin;
    let mut client = server.client().await;
    let now = now_ms();
    for i in 0..50 {
        let e = event(
            &format!("m{i}"),
            &format!("c{i}"),
            Channel::Sms,
            Status::Delivered,
            now,
        );
        record(&mut client, e).await;
    }
    // Read from the allocator when scraped.
    let (code, text) = http_get(admin, "/metrics").await;
    assert_eq!(code, 200);
    let allocated = value(&text, "reach_allocator_allocated_bytes ");
    let active = value(&text, "reach_allocator_active_bytes ");
    let resident = value(&text, "reach_allocator_resident_bytes ");
    let metadata = value(&text, "reach_allocator_metadata_bytes ");
    // A server with its store open holds megabytes through jemalloc (sled's
    // cache, tokio, the address tables); a build on another allocator
    // would show (almost) nothing here.
    assert!(allocated > 1e6, "allocated {allocated}");
    assert!(
        allocated <= active && active <= resident,
        "allocated {allocated} active {active} resident {resident}"
    );
    assert!(metadata > 0.0 && metadata < resident, "metadata {metadata}");
}
