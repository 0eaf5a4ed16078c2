//! The client subcommands of the real `reach` binary against a real server:
//! record / best / reachability / stats (tables and --json), and `reach
//! import` with bad lines, an interrupted run and a resumed one.

mod common;

use std::{path::Path, process::Output};

use common::{TestServer, profile};
use reach::{
    auth::{AuthConfig, TokenEntry, new_token},
    proto,
};

fn reach(server: &TestServer, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reach"));
    command
        .args(args)
        .env("REACH_SERVER", format!("http://{}", server.addr))
        .env_remove("REACH_TOKEN");
    if let Some(token) = token {
        command.env("REACH_TOKEN", token);
    }
    command.output().expect("run reach")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "reach failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_best_reachability_and_stats() {
    let server = TestServer::start().await;
    let at = "2026-11-20T09:00:00Z";
    for (id, channel, status) in [
        ("e1", "sms", "delivered"),
        ("e2", "email", "bounced_hard"),
        ("e3", "email", "optout"),
    ] {
        let out = stdout(&reach(
            &server,
            None,
            &[
                "record",
                "--contact",
                "alice",
                "--channel",
                channel,
                "--status",
                status,
                "--event-id",
                id,
                "--at",
                at,
                "--carrier",
                "att",
            ],
        ));
        assert_eq!(out.trim(), format!("{id}: recorded"));
    }
    let again = stdout(&reach(
        &server,
        None,
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
            "--at",
            at,
        ],
    ));
    assert!(again.contains("already recorded"), "{again}");

    let table = stdout(&reach(&server, None, &["best", "alice"]));
    assert!(table.starts_with("alice: sms"), "{table}");
    assert!(table.contains("opted out"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&reach(&server, None, &["best", "alice", "--json"]))).unwrap();
    assert_eq!(json["channel"], "CHANNEL_SMS");
    let email = json["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "CHANNEL_EMAIL")
        .unwrap();
    assert_eq!(email["optedOut"], true);

    let json: serde_json::Value = serde_json::from_str(&stdout(&reach(
        &server,
        None,
        &["reachability", "alice", "--json"],
    )))
    .unwrap();
    assert_eq!(json["channels"].as_array().unwrap().len(), 4);
    assert!(stdout(&reach(&server, None, &["reachability", "alice"])).contains("probability"));

    let stats = stdout(&reach(
        &server,
        None,
        &[
            "stats",
            "--from",
            "2026-11-19",
            "--to",
            "2026-11-21",
            "--by",
            "channel,carrier",
        ],
    ));
    assert!(stats.contains("sms") && stats.contains("att"), "{stats}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&reach(
        &server,
        None,
        &[
            "stats",
            "--from",
            "2026-11-19",
            "--to",
            "2026-11-21",
            "--by",
            "channel",
            "--where",
            "channel=sms",
            "--json",
        ],
    )))
    .unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["counts"]["delivered"], "1");

    // Bad input: a clear message and a failing exit code.
    let bad = reach(&server, None, &["best", ""]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("contact_id"),
        "{bad:?}"
    );
}

fn event_line(id: &str, contact: &str, status: &str) -> String {
    format!(
        r#"{{"event":{{"eventId":"{id}","contactId":"{contact}","channel":"CHANNEL_SMS","status":"STATUS_{status}","occurredAt":"2026-11-20T09:00:00Z"}}}}"#
    )
}

fn rejected_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_bad_lines_stops_on_failure_and_resumes() {
    let (token, hash) = new_token();
    let server = TestServer::start_with(|c| {
        c.auth = AuthConfig {
            tokens: vec![TokenEntry {
                tenant: "acme".into(),
                token_blake3: hash,
                token_sha256: String::new(),
                admin: false,
            }],
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let mut lines: Vec<String> = (0..250)
        .map(|i| event_line(&format!("e{i}"), &format!("c{}", i % 40), "DELIVERED"))
        .collect();
    lines[7] = "{not json".into(); // line 8: unreadable
    lines[120] = event_line("e120", "", "DELIVERED"); // line 121: no contact
    lines[200] = r#"{"eventId":"x","channel":"CHANNEL_FAX"}"#.into(); // line 201
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let path = file.to_str().unwrap();

    // Without the token the first batch fails: the import stops, nothing
    // is checkpointed.
    let failed = reach(&server, None, &["import", path, "--batch", "50"]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("Unauthenticated") || err.contains("UNAUTHENTICATED"),
        "{err}"
    );
    assert!(err.contains("run the same command again"), "{err}");

    let out = stdout(&reach(
        &server,
        Some(&token),
        &["import", path, "--batch", "50", "--json"],
    ));
    let totals: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(totals["lines"], 250);
    assert_eq!(totals["accepted"], 247);
    assert_eq!(totals["rejected"], 3);
    let rejected = rejected_lines(&dir.path().join("events.jsonl.rejected.jsonl"));
    let numbers: Vec<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![8, 121, 201]);
    assert_eq!(rejected[1]["field"], "event.contact_id");
    assert!(
        rejected[2]["reason"]
            .as_str()
            .unwrap()
            .contains("CHANNEL_FAX"),
        "{rejected:?}"
    );

    // Appending and running again resumes after the acknowledged lines.
    let more: Vec<String> = (250..260)
        .map(|i| event_line(&format!("e{i}"), "late", "BOUNCED_HARD"))
        .collect();
    let mut all = std::fs::read_to_string(&file).unwrap();
    all.push_str(&(more.join("\n") + "\n"));
    std::fs::write(&file, all).unwrap();
    let out = stdout(&reach(&server, Some(&token), &["import", path]));
    assert!(out.contains("this run: 10 lines"), "{out}");
    assert!(out.contains("260 lines, 257 recorded"), "{out}");

    // --restart sends everything again: all duplicates, nothing counted twice.
    let out = stdout(&reach(
        &server,
        Some(&token),
        &["import", path, "--restart", "--json"],
    ));
    let totals: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(totals["accepted"], 0);
    assert_eq!(totals["duplicates"], 257);
    assert_eq!(
        rejected_lines(&dir.path().join("events.jsonl.rejected.jsonl")).len(),
        3
    );

    // A different file under the same name is not resumed blindly.
    std::fs::write(&file, event_line("z", "z", "DELIVERED") + "\n").unwrap();
    let refused = reach(&server, Some(&token), &["import", path]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--restart"));

    let mut client = authed(&server, &token).await;
    let late = client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "late".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let sms = late
        .channels
        .iter()
        .find(|c| c.channel == proto::Channel::Sms as i32)
        .unwrap();
    assert_eq!(sms.counts.as_ref().unwrap().bounced_hard, 10);
}

async fn authed(server: &TestServer, token: &str) -> reach::client::Client {
    let args = reach::client::ClientArgs {
        server: format!("http://{}", server.addr),
        token: Some(token.into()),
        ca_cert: None,
        client_cert: None,
        client_key: None,
    };
    args.connect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_csv_and_raw_provider_exports() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("events.csv");
    std::fs::write(
        &csv,
        "event_id,contact_id,channel,status,occurred_at,carrier\n\
         c1,bob,email,delivered,2026-11-20T09:00:00Z,gmail\n\
         c2,bob,email,bounced_soft,2026-11-20T09:00:00Z,gmail\n\
         c3,bob,sms,optout,2026-11-20T09:00:00Z,\n",
    )
    .unwrap();
    let out = stdout(&reach(&server, None, &["import", csv.to_str().unwrap()]));
    assert!(out.contains("3 lines, 2 recorded"), "{out}");
    let rejected = rejected_lines(&dir.path().join("events.csv.rejected.jsonl"));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["line"], 3);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("BOUNCED_SOFT")
    );

    // A Twilio status-callback export: one callback's form fields per row.
    let twilio = dir.path().join("twilio.csv");
    std::fs::write(
        &twilio,
        "MessageSid,MessageStatus,To,ErrorCode\n\
         SM1,delivered,+14155550100,\n\
         SM2,undelivered,+14155550101,30003\n\
         SM3,undelivered,+14155550102,99999\n",
    )
    .unwrap();
    let out = stdout(&reach(
        &server,
        None,
        &["import", twilio.to_str().unwrap(), "--provider", "twilio"],
    ));
    assert!(out.contains("3 lines"), "{out}");
    assert!(out.contains("1 dead-lettered"), "{out}");
    let mut client = server.client().await;
    let dead = client
        .list_dead_letters(proto::ListDeadLettersRequest {
            provider: "twilio".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dead.dead_letters.len(), 1);
    let p = profile(&mut client, "+14155550100").await;
    assert!(!p.channels.is_empty());
}
