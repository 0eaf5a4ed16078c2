//! The provider translation layer through gRPC: real-shaped payloads of
//! every provider, the dead-letter path, table reloads and replays, and
//! malformed bodies.

mod common;

use std::path::PathBuf;

use common::*;
use reach::proto::{self, Channel, Status};
use tonic::Code;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=UTF-8";

fn fixture(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/providers")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn body_request(provider: &str, content_type: &str, path: &str) -> proto::ProviderEventRequest {
    proto::ProviderEventRequest {
        provider: provider.into(),
        content_type: content_type.into(),
        body: fixture(path),
        ..Default::default()
    }
}

/// Each provider's payloads with the class, channel and contact they must map to.
/// A request and the (class, channel, contact) of each event it must map to.
type Case = (
    proto::ProviderEventRequest,
    Vec<(Status, Channel, &'static str)>,
);

fn cases() -> Vec<Case> {
    let with =
        |mut r: proto::ProviderEventRequest, contact: &str, event_id: &str, native_status: &str| {
            r.contact_id = contact.into();
            r.event_id = event_id.into();
            if !native_status.is_empty() {
                r.native = Some(proto::NativeFields {
                    status: native_status.into(),
                    ..Default::default()
                });
            }
            r
        };
    use Channel::{Email, Push, Sms, Voice};
    vec![
        (
            body_request("twilio", FORM, "twilio/delivered.form"),
            vec![(Status::Delivered, Sms, "+14155550100")],
        ),
        (
            body_request("twilio", FORM, "twilio/undelivered-30007.form"),
            vec![(Status::BlockedCompliance, Sms, "+14155550101")],
        ),
        (
            body_request("twilio", FORM, "twilio/failed-30006.form"),
            vec![(Status::BouncedHard, Sms, "+14155550102")],
        ),
        (
            body_request("twilio", FORM, "twilio/failed-21610.form"),
            vec![(Status::Optout, Sms, "+14155550103")],
        ),
        (
            body_request("twilio", FORM, "twilio/sent-whatsapp.form"),
            vec![(Status::Sent, Sms, "+14155550104")],
        ),
        (
            body_request("twilio-voice", FORM, "twilio-voice/completed-human.form"),
            vec![(Status::Delivered, Voice, "+14155550110")],
        ),
        (
            body_request("twilio-voice", FORM, "twilio-voice/no-answer.form"),
            vec![(Status::PendingRetry, Voice, "+14155550111")],
        ),
        (
            body_request("plivo", FORM, "plivo/delivered.form"),
            vec![(Status::Delivered, Sms, "+14155550120")],
        ),
        (
            body_request("plivo", FORM, "plivo/undelivered-spam.form"),
            vec![(Status::BlockedCompliance, Sms, "+14155550121")],
        ),
        (
            body_request("vonage", JSON, "vonage/delivered.json"),
            vec![(Status::Delivered, Sms, "+447700900130")],
        ),
        (
            body_request("vonage", JSON, "vonage/failed-opted-out.json"),
            vec![(Status::Optout, Sms, "+447700900131")],
        ),
        (
            body_request("infobip", JSON, "infobip/reports.json"),
            vec![
                (Status::Delivered, Sms, "+41793026727"),
                (Status::Sent, Sms, "+41793026728"),
                (Status::BouncedHard, Sms, "+41793026729"),
            ],
        ),
        (
            body_request("sinch", JSON, "sinch/delivered.json"),
            vec![(Status::Delivered, Sms, "+14155550140")],
        ),
        (
            body_request("sinch", JSON, "sinch/aborted-unprovisioned.json"),
            vec![(Status::SenderError, Sms, "+14155550141")],
        ),
        (
            with(
                body_request("smpp", TEXT, "smpp/delivrd.txt"),
                "c-smpp",
                "",
                "",
            ),
            vec![(Status::Delivered, Sms, "c-smpp")],
        ),
        (
            with(
                body_request("smpp", TEXT, "smpp/undeliv-unknown-subscriber.txt"),
                "c-smpp2",
                "",
                "",
            ),
            vec![(Status::BouncedHard, Sms, "c-smpp2")],
        ),
        (
            body_request("sendgrid", JSON, "sendgrid/events.json"),
            vec![
                (Status::Sent, Email, "c-alice"),
                (Status::Delivered, Email, "c-alice"),
                (Status::Opened, Email, "c-alice"),
                (Status::BouncedHard, Email, "bob@example.com"),
                (Status::BlockedCompliance, Email, "carol@example.com"),
                (Status::Optout, Email, "dave@example.com"),
                (Status::Complaint, Email, "erin@example.com"),
                (Status::PendingRetry, Email, "frank@example.com"),
            ],
        ),
        (
            body_request("ses", TEXT, "ses/bounce-permanent.json"),
            vec![(Status::BouncedHard, Email, "gina@example.com")],
        ),
        (
            body_request("ses", TEXT, "ses/bounce-transient-mailboxfull.json"),
            vec![(Status::PendingRetry, Email, "hank@example.com")],
        ),
        (
            body_request("ses", TEXT, "ses/complaint.json"),
            vec![(Status::Complaint, Email, "ivy@example.com")],
        ),
        (
            body_request("ses", TEXT, "ses/delivery-two-recipients.json"),
            vec![
                (Status::Delivered, Email, "jack@example.com"),
                (Status::Delivered, Email, "kim@example.com"),
            ],
        ),
        (
            body_request("mailgun", JSON, "mailgun/failed-permanent.json"),
            vec![(Status::BouncedHard, Email, "c-liam")],
        ),
        (
            body_request("mailgun", JSON, "mailgun/failed-temporary.json"),
            vec![(Status::PendingRetry, Email, "mia@example.com")],
        ),
        (
            body_request("postmark", JSON, "postmark/hard-bounce.json"),
            vec![(Status::BouncedHard, Email, "c-noah")],
        ),
        (
            body_request("postmark", JSON, "postmark/delivery.json"),
            vec![(Status::Delivered, Email, "olivia@example.com")],
        ),
        (
            with(
                body_request("fcm", JSON, "fcm/unregistered.json"),
                "c-fcm",
                "fcm-send-1",
                "",
            ),
            vec![(Status::BouncedHard, Push, "c-fcm")],
        ),
        (
            with(
                body_request("fcm", JSON, "fcm/success.json"),
                "c-fcm2",
                "",
                "",
            ),
            vec![(Status::Sent, Push, "c-fcm2")],
        ),
        (
            with(
                body_request("apns", JSON, "apns/unregistered.json"),
                "c-apns",
                "apns-1",
                "410",
            ),
            vec![(Status::BouncedHard, Push, "c-apns")],
        ),
    ]
}

async fn start() -> TestServer {
    TestServer::start_with(fixture_contact_fields).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_provider_payload_maps_and_records() {
    let server = start().await;
    let mut client = server.client().await;
    for (request, expected) in cases() {
        let label = format!(
            "{} {}",
            request.provider,
            String::from_utf8_lossy(&request.body[..request.body.len().min(40)])
        );
        let reply = client
            .record_provider_event(request.clone())
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"))
            .into_inner();
        assert_eq!(reply.results.len(), expected.len(), "{label}");
        for (result, (status, channel, contact)) in reply.results.iter().zip(&expected) {
            let event = result.event.as_ref().unwrap();
            assert!(!result.dead_lettered, "{label}: {}", result.reason);
            assert_eq!(
                (event.status, event.channel, event.contact_id.as_str()),
                (*status as i32, *channel as i32, *contact),
                "{label}"
            );
            assert!(
                result
                    .rule_id
                    .starts_with(&format!("{}/", request.provider)),
                "{label}: {}",
                result.rule_id
            );
            assert_eq!(result.table_version, "2026-11-26.1");
            assert_eq!(event.provider, request.provider);
            assert!(
                !event.provider_code.is_empty() && !event.event_id.is_empty(),
                "{label}: {event:?}"
            );
            assert!(!result.duplicate);
            // Recorded: the contact's profile has the event.
            profile(&mut client, contact).await;
        }
        // The provider's own event id makes redelivery idempotent.
        let again = client
            .record_provider_event(request)
            .await
            .unwrap()
            .into_inner();
        assert!(again.results.iter().all(|r| r.duplicate), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_comes_from_the_payload() {
    let server = start().await;
    let mut client = server.client().await;
    let reply = client
        .record_provider_event(body_request("twilio", FORM, "twilio/delivered.form"))
        .await
        .unwrap()
        .into_inner();
    let event = reply.results[0].event.clone().unwrap();
    assert_eq!(
        event.event_id,
        "twilio:SMb7c0a2ce80504485a6f653a7110836f5:delivered"
    );
    assert_eq!(event.message_id, "SMb7c0a2ce80504485a6f653a7110836f5");
    assert_eq!(event.provider_code, "delivered");
    assert_eq!(
        event.occurred_at,
        Some(ts(1_795_688_100_000)),
        "RawDlrDoneDate 2611261015 is 2026-11-26T10:15Z"
    );
    let vonage = client
        .record_provider_event(body_request("vonage", JSON, "vonage/delivered.json"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vonage.results[0].event.as_ref().unwrap().carrier, "23410");
    let p = profile(&mut client, "+14155550100").await;
    assert_eq!(counts(&p, Channel::Sms).delivered, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn map_provider_event_is_a_dry_run() {
    let server = start().await;
    let mut client = server.client().await;
    let reply = client
        .map_provider_event(body_request("twilio", FORM, "twilio/failed-30006.form"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.results[0].rule_id, "twilio/30006-landline");
    assert_eq!(
        reply.results[0].event.as_ref().unwrap().status,
        Status::BouncedHard as i32
    );
    let status = client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "+14155550102".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "nothing recorded");
    // Native fields work without a body.
    let native = proto::ProviderEventRequest {
        provider: "ses".into(),
        native: Some(proto::NativeFields {
            status: "Bounce".into(),
            sub_type: "Transient".into(),
            error_code: "MailboxFull".into(),
        }),
        contact_id: "c-native".into(),
        event_id: "native-1".into(),
        ..Default::default()
    };
    let reply = client
        .map_provider_event(native)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.results[0].event.as_ref().unwrap().status,
        Status::PendingRetry as i32
    );
}

fn unknown_code_request() -> proto::ProviderEventRequest {
    body_request("twilio", FORM, "twilio/undelivered-unknown-code.form")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_code_is_dead_lettered_counted_and_replayed_once_the_table_is_fixed() {
    let tables = tempfile::tempdir().unwrap();
    let tables_dir = tables.path().to_path_buf();
    let server =
        TestServer::start_with(|c| c.providers.tables_dir = Some(tables_dir.clone())).await;
    let mut client = server.client().await;

    let reply = client
        .record_provider_event(unknown_code_request())
        .await
        .unwrap()
        .into_inner();
    let result = &reply.results[0];
    assert!(result.dead_lettered && result.rule_id.is_empty());
    assert!(
        result.reason.contains("error_code=\"39999\""),
        "{}",
        result.reason
    );
    // Nothing about the contact changed.
    let status = client
        .get_contact_profile(proto::GetContactProfileRequest {
            contact_id: "+14155550105".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // A redelivery does not make a second dead letter.
    client
        .record_provider_event(unknown_code_request())
        .await
        .unwrap();
    let letters = dead_letters(&mut client).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].code, "undelivered/39999");
    assert_eq!(letters[0].provider, "twilio");
    assert_eq!(letters[0].contact_id, "+14155550105");
    // And the metric counts it by provider and code.
    let (status, metrics) = http_get(server.admin, "/metrics").await;
    assert_eq!(status, 200);
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("reach_dead_letters_total") && l.contains("code=\"undelivered/39999\"")
        })
        .unwrap_or_else(|| panic!("no dead-letter metric in:\n{metrics}"));
    assert!(line.contains("provider=\"twilio\""));

    // Replaying with the old tables changes nothing.
    let replay = client
        .replay_dead_letters(proto::ReplayDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((replay.recorded, replay.still_unmapped), (0, 1));

    // Fix the table: an override file with a rule for 39999, then reload.
    let fixed = format!(
        "{}\n[[rules]]\nid = \"39999-new-code\"\nwhen = {{ status = \"undelivered\", error_code = \"39999\" }}\nclass = \"PENDING_RETRY\"\nsource = \"https://www.twilio.com/docs/api/errors\"\n",
        include_str!("../src/providers/tables/twilio.toml")
    );
    std::fs::write(tables.path().join("twilio.toml"), fixed).unwrap();
    let tables_now = client
        .reload_provider_tables(proto::ReloadProviderTablesRequest {})
        .await
        .unwrap()
        .into_inner();
    let twilio = tables_now
        .tables
        .iter()
        .find(|t| t.provider == "twilio")
        .unwrap();
    assert!(twilio.overridden);

    let replay = client
        .replay_dead_letters(proto::ReplayDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (replay.recorded, replay.duplicates, replay.still_unmapped),
        (1, 0, 0)
    );
    assert_eq!(replay.results[0].rule_id, "twilio/39999-new-code");
    let p = profile(&mut client, "+14155550105").await;
    assert_eq!(
        counts(&p, Channel::Sms).pending_retry,
        1,
        "recorded exactly once"
    );
    assert!(dead_letters(&mut client).await.is_empty());
    // A second replay and a redelivery of the original change nothing more.
    let again = client
        .replay_dead_letters(proto::ReplayDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.recorded, again.still_unmapped), (0, 0));
    let redelivered = client
        .record_provider_event(unknown_code_request())
        .await
        .unwrap()
        .into_inner();
    assert!(redelivered.results[0].duplicate);
    assert_eq!(
        counts(&profile(&mut client, "+14155550105").await, Channel::Sms).pending_retry,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_table_is_refused_on_reload_and_the_old_ones_stay() {
    let tables = tempfile::tempdir().unwrap();
    let tables_dir = tables.path().to_path_buf();
    let server =
        TestServer::start_with(|c| c.providers.tables_dir = Some(tables_dir.clone())).await;
    let mut client = server.client().await;
    std::fs::write(
        tables.path().join("twilio.toml"),
        "provider = \"twilio\"\nversion = 1\n",
    )
    .unwrap();
    let status = client
        .reload_provider_tables(proto::ReloadProviderTablesRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("twilio.toml"),
        "{}",
        status.message()
    );
    let reply = client
        .map_provider_event(body_request("twilio", FORM, "twilio/delivered.form"))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().results[0].rule_id, "twilio/delivered");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_provider_is_dead_lettered_not_refused() {
    let server = start().await;
    let mut client = server.client().await;
    let request = proto::ProviderEventRequest {
        provider: "carrier-pigeon".into(),
        content_type: JSON.into(),
        body: br#"{"status":"arrived"}"#.to_vec(),
        contact_id: "c-pigeon".into(),
        ..Default::default()
    };
    let reply = client
        .record_provider_event(request)
        .await
        .unwrap()
        .into_inner();
    assert!(reply.results[0].dead_lettered);
    assert!(
        reply.results[0].reason.contains("unknown provider"),
        "{}",
        reply.results[0].reason
    );
    let letters = dead_letters(&mut client).await;
    assert_eq!(letters[0].provider, "carrier-pigeon");
    assert_eq!(
        letters[0].request.as_ref().unwrap().body,
        br#"{"status":"arrived"}"#.to_vec()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_invalid_arguments_and_write_nothing() {
    let server = start().await;
    let mut client = server.client().await;
    let truncated = fixture("sendgrid/events.json")[..200].to_vec();
    let mut junk = vec![0xff, 0x00, 0xfe, 0x13];
    junk.extend((0..500u32).map(|i| (i * 7919 % 251) as u8));
    let cases: Vec<(&str, proto::ProviderEventRequest)> = vec![
        ("truncated JSON", proto::ProviderEventRequest { body: truncated, ..body_request("sendgrid", JSON, "sendgrid/events.json") }),
        ("wrong content type", body_request("twilio", JSON, "twilio/delivered.form")),
        ("1 MB body", proto::ProviderEventRequest { body: vec![b'a'; 1 << 20], ..body_request("sendgrid", JSON, "sendgrid/events.json") }),
        ("binary junk as JSON", proto::ProviderEventRequest { body: junk.clone(), ..body_request("mailgun", JSON, "mailgun/failed-permanent.json") }),
        ("binary junk as a form", proto::ProviderEventRequest { body: junk.clone(), ..body_request("twilio", FORM, "twilio/delivered.form") }),
        ("binary junk as SMPP", proto::ProviderEventRequest { body: junk, contact_id: "c".into(), ..body_request("smpp", TEXT, "smpp/delivrd.txt") }),
        ("a JSON object where an array is expected", proto::ProviderEventRequest { body: b"{}".to_vec(), ..body_request("sendgrid", JSON, "sendgrid/events.json") }),
        ("an SNS subscription confirmation", proto::ProviderEventRequest {
            body: br#"{"Type":"SubscriptionConfirmation","MessageId":"m","SubscribeURL":"https://sns.example/confirm"}"#.to_vec(),
            ..body_request("ses", TEXT, "ses/complaint.json")
        }),
        ("no recipient and no contact id", body_request("smpp", TEXT, "smpp/delivrd.txt")),
        ("no body and no native status", proto::ProviderEventRequest { provider: "twilio".into(), ..Default::default() }),
        ("no provider", proto::ProviderEventRequest { provider: String::new(), ..body_request("twilio", FORM, "twilio/delivered.form") }),
    ];
    for (label, request) in cases {
        let status = client
            .record_provider_event(request)
            .await
            .expect_err(label);
        assert_eq!(status.code(), Code::InvalidArgument, "{label}: {status:?}");
        assert!(!status.message().is_empty(), "{label}");
    }
    assert!(
        dead_letters(&mut client).await.is_empty(),
        "malformed requests are not dead letters"
    );
    assert_eq!(
        client
            .get_contact_profile(proto::GetContactProfileRequest {
                contact_id: "+14155550100".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let tables = tempfile::tempdir().unwrap();

    let server = ProcessServer::start_with_env(
        dir.path(),
        &[(
            "REACH_PROVIDERS__TABLES_DIR",
            tables.path().to_str().unwrap(),
        )],
    )
    .await;
    let mut client = server.client().await;
    let reply = client
        .map_provider_event(unknown_code_request())
        .await
        .unwrap()
        .into_inner();
    assert!(reply.results[0].rule_id.is_empty());
    let fixed = format!(
        "{}\n[[rules]]\nid = \"39999-new-code\"\nwhen = {{ status = \"undelivered\", error_code = \"39999\" }}\nclass = \"PENDING_RETRY\"\nsource = \"https://www.twilio.com/docs/api/errors\"\n",
        include_str!("../src/providers/tables/twilio.toml")
    );
    std::fs::write(tables.path().join("twilio.toml"), fixed).unwrap();
    server.signal("HUP");
    // The reload is asynchronous: poll briefly for it to take effect.
    for _ in 0..100 {
        let reply = client
            .map_provider_event(unknown_code_request())
            .await
            .unwrap()
            .into_inner();
        if reply.results[0].rule_id == "twilio/39999-new-code" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("SIGHUP did not reload the tables");
}

#[test]
fn docs_list_every_rule_of_every_table() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/providers.md")).unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/providers/tables");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let provider = path.file_stem().unwrap().to_string_lossy().into_owned();
        let table =
            reach::providers::Table::parse(&provider, &std::fs::read_to_string(&path).unwrap())
                .unwrap();
        assert!(
            docs.contains(&format!("### `{provider}`")),
            "docs/providers.md has no section for {provider}"
        );
        for rule in table.rules() {
            assert!(
                docs.contains(&format!("| `{}` |", rule.id)),
                "docs/providers.md does not list {provider}/{}",
                rule.id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recipient_is_kept_as_the_contacts_address() {
    let server = start().await;
    let mut client = server.client().await;
    client
        .record_provider_event(body_request("sendgrid", JSON, "sendgrid/events.json"))
        .await
        .unwrap();
    // c-alice is named by the payload's contact_id: her events are kept
    // per address, under a hash of alice@example.com.
    let p = profile(&mut client, "c-alice").await;
    assert_eq!(p.addresses.len(), 1, "{p:?}");
    let address = p.addresses[0].address.as_ref().unwrap();
    assert_eq!(address.hint, "a***@example.com");
    let state = p.addresses[0].state.as_ref().unwrap();
    assert_eq!(state.counts.unwrap().delivered, 1);
    assert!(
        p.messages
            .iter()
            .all(|m| m.address_id == address.address_id)
    );
    // A contact that is its recipient has no separate address state.
    assert!(
        profile(&mut client, "bob@example.com")
            .await
            .addresses
            .is_empty()
    );
}
