//! `reach backup` from a server under write load, `reach restore` into a
//! new directory: the restored server gives the same answers, holds whole
//! events only, and continues where the snapshot was taken.

mod common;

use std::{process::Output, sync::Arc};

use common::{DAY_MS, TestServer, event, now_ms, request, ts};
use reach::{
    auth::{AuthConfig, TokenEntry, new_token},
    proto,
};
use tokio::sync::Mutex;

fn reach(args: &[&str], server: &str, token: Option<&str>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reach"));
    command
        .args(args)
        .env("REACH_SERVER", server)
        .env_remove("REACH_TOKEN")
        .env_remove("REACH_CONFIG");
    if let Some(token) = token {
        command.env("REACH_TOKEN", token);
    }
    command.output().expect("run reach")
}

fn check(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn answers(
    client: &mut common::Client,
    contacts: &[String],
    as_of: i64,
) -> Vec<proto::GetBestChannelResponse> {
    let mut out = Vec::new();
    for contact in contacts {
        out.push(
            client
                .get_best_channel(proto::GetBestChannelRequest {
                    contact_id: contact.clone(),
                    as_of: Some(ts(as_of)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_writes_then_restore_gives_the_same_answers() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let t0 = now_ms() - 10 * DAY_MS;
    let contacts: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
    let statuses = [
        proto::Status::Delivered,
        proto::Status::BouncedHard,
        proto::Status::PendingRetry,
        proto::Status::Unconfirmed,
    ];
    for (i, contact) in contacts.iter().enumerate() {
        for j in 0..5 {
            let channel = if j % 2 == 0 {
                proto::Channel::Sms
            } else {
                proto::Channel::Email
            };
            let mut e = event(
                &format!("{contact}-{j}"),
                contact,
                channel,
                statuses[(i + j) % 4],
                t0 + (j as i64) * 3_600_000,
            );
            e.address = if channel == proto::Channel::Sms {
                format!("+1415555{:04}", i)
            } else {
                format!("{contact}@example.com")
            };
            client.record_event(request(e)).await.unwrap();
        }
    }
    let as_of = now_ms();
    let before = answers(&mut client, &contacts, as_of).await;

    // Writers on other contacts keep going while the backup is taken. Each
    // counts what it has sent (acknowledged or in flight): a call in flight
    // when the backup ends may be in it, though its answer is still on the way.
    let sent = Arc::new(Mutex::new(vec![0usize; 4]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (sent, stop, addr) = (sent.clone(), stop.clone(), server.addr);
        writers.push(tokio::spawn(async move {
            let mut client = common::connect(addr).await;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let e = event(
                    &format!("w{w}-{n}"),
                    &format!("w{w}"),
                    proto::Channel::Sms,
                    proto::Status::Delivered,
                    t0 + n as i64,
                );
                n += 1;
                sent.lock().await[w] = n;
                client.record_event(request(e)).await.unwrap();
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reach.backup");
    let url = format!("http://{}", server.addr);
    let out = check(
        &tokio::task::spawn_blocking({
            let (file, url) = (file.clone(), url.clone());
            move || reach(&["backup", "--out", file.to_str().unwrap()], &url, None)
        })
        .await
        .unwrap(),
    );
    assert!(out.contains("entries"), "{out}");
    let sent_at_backup_end = sent.lock().await.clone();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(sent_at_backup_end.iter().all(|&n| n > 0));

    let restored_dir = dir.path().join("restored");
    check(&reach(
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored_dir.to_str().unwrap(),
        ],
        &url,
        None,
    ));
    // Not over an existing directory.
    let again = reach(
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored_dir.to_str().unwrap(),
        ],
        &url,
        None,
    );
    assert!(!again.status.success());

    let restored = TestServer::start_with(|c| c.data_dir = restored_dir.clone()).await;
    let mut restored_client = restored.client().await;
    assert_eq!(
        answers(&mut restored_client, &contacts, as_of).await,
        before,
        "the restored server answers exactly as the original did"
    );

    // Each writer's events are a prefix of what it sent, each whole: the
    // profile counts exactly the events that re-send as duplicates.
    for (w, &sent_by_end) in sent_at_backup_end.iter().enumerate() {
        let profile = common::profile(&mut restored_client, &format!("w{w}")).await;
        let delivered = profile
            .channels
            .iter()
            .find(|c| c.channel == proto::Channel::Sms as i32)
            .and_then(|c| c.counts.as_ref())
            .map_or(0, |c| c.delivered) as usize;
        assert!(delivered <= sent_by_end, "writer {w}");
        for n in 0..delivered + 3 {
            let e = event(
                &format!("w{w}-{n}"),
                &format!("w{w}"),
                proto::Channel::Sms,
                proto::Status::Delivered,
                t0 + n as i64,
            );
            let duplicate = restored_client
                .record_event(request(e))
                .await
                .unwrap()
                .into_inner()
                .duplicate;
            assert_eq!(duplicate, n < delivered, "writer {w} event {n}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_need_an_admin_token() {
    let (admin, admin_hash) = new_token();
    let (user, user_hash) = new_token();
    let server = TestServer::start_with(|c| {
        c.auth = AuthConfig {
            tokens: vec![
                TokenEntry {
                    tenant: "ops".into(),
                    token_blake3: admin_hash,
                    token_sha256: String::new(),
                    admin: true,
                },
                TokenEntry {
                    tenant: "acme".into(),
                    token_blake3: user_hash,
                    token_sha256: String::new(),
                    admin: false,
                },
            ],
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b");
    let url = format!("http://{}", server.addr);
    let run = |token: Option<String>| {
        let (out, url) = (out.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            reach(
                &["backup", "--out", out.to_str().unwrap()],
                &url,
                token.as_deref(),
            )
        })
    };
    let none = run(None).await.unwrap();
    assert!(String::from_utf8_lossy(&none.stderr).contains("Unauthenticated"));
    let denied = run(Some(user)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("PermissionDenied"),
        "{denied:?}"
    );
    assert!(!out.exists());
    check(&run(Some(admin)).await.unwrap());
    assert!(out.exists());
}
