//! A stored record that no longer decodes: that contact gets DATA_LOSS once
//! with a clear message and a metric, the record is moved aside for
//! inspection, the contact starts afresh, and the server and every other
//! contact carry on.

mod common;

use common::*;
use reach::proto::{Channel, Status};
use tonic::Code;

fn record_key(contact: &str) -> Vec<u8> {
    let mut key = b"p".to_vec();
    key.extend_from_slice(reach::storage::Tenant::default().as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(contact.as_bytes());
    key
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_record_is_moved_aside_and_the_server_carries_on() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    let t = now_ms() - 60_000;
    for contact in ["broken", "fine"] {
        for i in 0..3 {
            let e = event(
                &format!("{contact}-{i}"),
                contact,
                Channel::Sms,
                Status::Delivered,
                t + i,
            );
            record(&mut client, e).await;
        }
    }
    server.shutdown().await.unwrap();
    {
        let db = sled::open(server.data_dir()).unwrap();
        let tree = db.open_tree("reach").unwrap();
        let key = record_key("broken");
        assert!(tree.get(&key).unwrap().is_some(), "the layout moved");
        tree.insert(&key, b"\xffnot a record at all".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let server = server.restart().await;
    let mut client = server.client().await;

    let err = client
        .get_reachability(reach::proto::GetReachabilityRequest {
            contact_id: "broken".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(
        err.message().contains("broken") && err.message().contains("corrupt"),
        "{err:?}"
    );
    let (_, metrics) = http_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains("reach_corrupt_records_total 1"),
        "{metrics}"
    );

    // Moved aside: the contact starts afresh and takes events again; the
    // other contact never noticed.
    let fresh = reachability(&mut client, "broken", None).await;
    assert!(fresh.channels.iter().all(|c| c.confidence == 0.0));
    let e = event(
        "broken-new",
        "broken",
        Channel::Sms,
        Status::Delivered,
        t + 10,
    );
    assert!(!record(&mut client, e).await);
    let fine = profile(&mut client, "fine").await;
    assert_eq!(counts(&fine, Channel::Sms).delivered, 3);

    // The original bytes are kept under the quarantine prefix with the reason.
    let dir = server.data_dir().to_path_buf();
    let mut server = server;
    server.shutdown().await.unwrap();
    let db = sled::open(&dir).unwrap();
    let tree = db.open_tree("reach").unwrap();
    let aside: Vec<_> = tree
        .scan_prefix(b"q")
        .map(|entry| entry.unwrap().1.to_vec())
        .collect();
    assert_eq!(aside.len(), 1);
    let value = &aside[0];
    let len = u32::from_le_bytes(value[..4].try_into().unwrap()) as usize;
    assert_eq!(&value[4..4 + len], b"\xffnot a record at all");
    assert!(!value[4 + len..].is_empty(), "the reason is kept");
}
