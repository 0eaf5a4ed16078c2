//! Addresses through gRPC: per-address suppression, number validation and
//! types, hashed storage, and UpsertContact / GetContact.

mod common;

use common::*;
use reach::proto::{self, Channel, PhoneType, Status};
use tonic::Code;

const HOUR: i64 = 3_600_000;
const UK_FIXED_LINE: &str = "+44 20 7946 0000";
const UK_MOBILE: &str = "+44 7911 123456";

fn to(mut e: proto::ChannelEvent, address: &str) -> proto::ChannelEvent {
    e.address = address.into();
    e
}

async fn upsert(
    client: &mut Client,
    request: proto::UpsertContactRequest,
) -> Result<proto::Contact, tonic::Status> {
    client
        .upsert_contact(request)
        .await
        .map(|r| r.into_inner().contact.unwrap())
}

fn address(channel: Channel, address: &str, label: &str) -> proto::AddressInput {
    proto::AddressInput {
        channel: channel as i32,
        address: address.into(),
        label: label.into(),
        region: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hard_bounced_work_email_does_not_suppress_the_personal_one() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    for i in 0..3 {
        let bounce = event(
            &format!("b{i}"),
            "ann",
            Channel::Email,
            Status::BouncedHard,
            now - (10 - i) * HOUR,
        );
        record(&mut client, to(bounce, "Ann.Lee@Work.example.com")).await;
    }
    let delivered = event(
        "d1",
        "ann",
        Channel::Email,
        Status::Delivered,
        now - 20 * HOUR,
    );
    record(&mut client, to(delivered, "ann@home.example.org")).await;

    let best = best(&mut client, "ann", &[Channel::Email]).await;
    assert_eq!(best.channel, Channel::Email as i32, "{}", best.reason);
    let chosen = best.address.expect("an address is named");
    assert_eq!(chosen.hint, "a***@home.example.org");
    assert_eq!(chosen.address, "", "no plaintext unless configured");
    let email = &best.ranked[0];
    assert!(email.eligible && email.score > 0.5, "{email:?}");
    assert_eq!(email.addresses.len(), 2);
    let work = email
        .addresses
        .iter()
        .find(|a| a.address.as_ref().unwrap().hint == "a***@work.example.com")
        .expect("the work address, lower-cased");
    assert!(
        !work.eligible && work.reason.contains("3 consecutive hard bounces"),
        "{work:?}"
    );

    // Both spellings of the work address are one address: a fourth bounce
    // in another case lands on the same one.
    let again = event("b4", "ann", Channel::Email, Status::BouncedHard, now - HOUR);
    record(&mut client, to(again, "ANN.LEE@work.example.com")).await;
    let contact = client
        .get_contact(proto::GetContactRequest {
            contact_id: "ann".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    let bounces: Vec<u32> = contact.addresses.iter().map(|a| a.bounced_hard).collect();
    assert_eq!(bounces, vec![4, 0]);

    // A contact whose only email bounced has no eligible email.
    for i in 0..3 {
        let bounce = event(
            &format!("x{i}"),
            "bob",
            Channel::Email,
            Status::BouncedHard,
            now - (5 - i) * HOUR,
        );
        record(&mut client, to(bounce, "bob@example.com")).await;
    }
    let email = channel_score(
        &reachability(&mut client, "bob", None).await,
        Channel::Email,
    );
    assert!(
        !email.eligible && email.ineligible_reason.contains("hard bounces"),
        "{email:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_line_is_ineligible_for_sms_and_fine_for_voice() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let contact = upsert(
        &mut client,
        proto::UpsertContactRequest {
            contact_id: "carol".into(),
            addresses: vec![address(Channel::Voice, UK_FIXED_LINE, "home")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // One phone number, known on both channels that dial it.
    assert_eq!(contact.addresses.len(), 2);
    let phone = contact.addresses[0].address.clone().unwrap();
    assert_eq!(phone.phone_type, PhoneType::FixedLine as i32);
    assert_eq!(
        (phone.region.as_str(), phone.label.as_str()),
        ("GB", "home")
    );

    let reach = reachability(&mut client, "carol", None).await;
    let sms = channel_score(&reach, Channel::Sms);
    assert!(!sms.eligible && sms.score == 0.0, "{sms:?}");
    assert!(
        sms.ineligible_reason
            .contains("a fixed line cannot receive SMS"),
        "{sms:?}"
    );
    let voice = channel_score(&reach, Channel::Voice);
    assert!(voice.eligible && voice.score > 0.0, "{voice:?}");
    let answer = best(&mut client, "carol", &[Channel::Sms, Channel::Voice]).await;
    assert_eq!(answer.channel, Channel::Voice as i32, "{}", answer.reason);

    // A mobile number added later makes SMS eligible, on that number.
    upsert(
        &mut client,
        proto::UpsertContactRequest {
            contact_id: "carol".into(),
            addresses: vec![address(Channel::Sms, UK_MOBILE, "mobile")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sms = channel_score(
        &reachability(&mut client, "carol", None).await,
        Channel::Sms,
    );
    assert!(sms.eligible, "{sms:?}");
    let chosen = sms.address.unwrap();
    assert_eq!(
        (chosen.phone_type, chosen.label.as_str()),
        (PhoneType::Mobile as i32, "mobile")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_whose_national_part_starts_with_zero_are_valid_with_their_type() {
    // Italy keeps the 0 of its fixed lines in international form, and Côte
    // d'Ivoire's numbers all start with 0: the phone number crate's own type
    // lookup dropped those zeros and such numbers were refused.
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let contact = upsert(
        &mut client,
        proto::UpsertContactRequest {
            contact_id: "giulia".into(),
            addresses: vec![
                address(Channel::Voice, "+39 02 1234 5678", "office"),
                proto::AddressInput {
                    region: "CI".into(),
                    ..address(Channel::Sms, "07 01 23 45 67", "mobile")
                },
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let phones: Vec<(String, i32, String)> = contact
        .addresses
        .iter()
        .filter_map(|a| a.address.as_ref())
        .map(|a| (a.region.clone(), a.phone_type, a.label.clone()))
        .collect();
    assert!(
        phones.contains(&("IT".into(), PhoneType::FixedLine as i32, "office".into())),
        "{phones:?}"
    );
    assert!(
        phones.contains(&("CI".into(), PhoneType::Mobile as i32, "mobile".into())),
        "{phones:?}"
    );
    // An event on the Italian fixed line is recorded, not refused.
    let e = event(
        "giulia-1",
        "giulia",
        Channel::Voice,
        Status::Delivered,
        now_ms(),
    );
    assert!(
        !record(&mut client, to(e, "+390212345678")).await,
        "new, not a duplicate"
    );
    let reach = reachability(&mut client, "giulia", None).await;
    let sms = channel_score(&reach, Channel::Sms);
    assert!(sms.eligible, "the Ivorian mobile takes texts: {sms:?}");
    let voice = channel_score(&reach, Channel::Voice);
    assert!(voice.eligible, "{voice:?}");
    assert_eq!(voice.address.unwrap().region, "IT");
    assert!(
        voice.reasons.iter().any(|r| r.contains("1 delivered")),
        "{:?}",
        voice.reasons
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_addresses_are_refused_naming_the_field_and_nothing_is_written() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    for (raw, why) in [
        ("+1 000 000 0000", "phone number"),
        ("+44 20 7946", "not a valid phone number"),
        ("(415) 555-2671", "international format"),
        ("+12", "phone number"),
    ] {
        let status = client
            .record_event(request(to(
                event("e1", "dan", Channel::Sms, Status::Sent, now),
                raw,
            )))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("event.address") && status.message().contains(why),
            "{raw}: {status:?}"
        );
    }
    let status = upsert(
        &mut client,
        proto::UpsertContactRequest {
            contact_id: "dan".into(),
            time_zone: "Europe/London".into(),
            addresses: vec![
                address(Channel::Email, "dan@example.com", ""),
                address(Channel::Email, "dan at example", ""),
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("addresses[1].address"),
        "{status:?}"
    );
    for (request, field) in [
        (
            proto::UpsertContactRequest {
                contact_id: "dan".into(),
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            },
            "time_zone",
        ),
        (
            proto::UpsertContactRequest {
                contact_id: "dan".into(),
                consents: vec![proto::ConsentRecord {
                    channel: Channel::Sms as i32,
                    granted: true,
                    source: String::new(),
                    at: Some(ts(now)),
                }],
                ..Default::default()
            },
            "consents[0].source",
        ),
    ] {
        let status = upsert(&mut client, request).await.unwrap_err();
        assert!(status.message().contains(field), "{status:?}");
    }
    let status = client
        .get_contact(proto::GetContactRequest {
            contact_id: "dan".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "nothing was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn consents_facts_and_addresses_are_kept_with_their_evidence() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    let consent = |channel: Channel, granted: bool, source: &str, at: i64| proto::ConsentRecord {
        channel: channel as i32,
        granted,
        source: source.into(),
        at: Some(ts(at)),
    };
    let contact = upsert(
        &mut client,
        proto::UpsertContactRequest {
            contact_id: "eve".into(),
            time_zone: "America/New_York".into(),
            lifecycle_stage: "customer".into(),
            value_tier: "gold".into(),
            addresses: vec![
                address(Channel::Sms, UK_MOBILE, "mobile"),
                address(Channel::Email, "eve@example.com", "personal"),
            ],
            consents: vec![
                consent(Channel::Sms, true, "checkout form", now - 48 * HOUR),
                consent(Channel::Email, true, "newsletter signup", now - 48 * HOUR),
            ],
        },
    )
    .await
    .unwrap();
    assert_eq!(contact.time_zone, "America/New_York");
    assert_eq!(contact.consents.len(), 2);
    assert_eq!(
        contact.addresses.len(),
        3,
        "mobile on SMS and voice, one email"
    );

    // Withdrawn by keyword: SMS is opted out on every address, email stays.
    upsert(
        &mut client,
        proto::UpsertContactRequest {
            contact_id: "eve".into(),
            consents: vec![consent(Channel::Sms, false, "keyword STOP", now - HOUR)],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let reach = reachability(&mut client, "eve", None).await;
    let sms = channel_score(&reach, Channel::Sms);
    assert!(sms.opted_out && !sms.eligible, "{sms:?}");
    assert!(channel_score(&reach, Channel::Email).eligible);
    let contact = client
        .get_contact(proto::GetContactRequest {
            contact_id: "eve".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(
        (
            contact.lifecycle_stage.as_str(),
            contact.value_tier.as_str()
        ),
        ("customer", "gold")
    );
    let sms_consents: Vec<(bool, &str)> = contact
        .consents
        .iter()
        .filter(|c| c.channel == Channel::Sms as i32)
        .map(|c| (c.granted, c.source.as_str()))
        .collect();
    assert_eq!(
        sms_consents,
        vec![(true, "checkout form"), (false, "keyword STOP")]
    );
}

/// Every file under `dir`, concatenated.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bytes.extend(all_bytes(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn store_addresses(plaintext: bool) -> Vec<u8> {
    let mut server = TestServer::start_with(|c| c.addresses.store_plaintext = plaintext).await;
    let mut client = server.client().await;
    let now = now_ms();
    let e = event("e1", "frank", Channel::Sms, Status::Delivered, now);
    record(&mut client, to(e, "+447911123456")).await;
    let e = event("e2", "frank", Channel::Email, Status::Delivered, now);
    record(&mut client, to(e, "frank.secret@example.com")).await;
    let contact = upsert(
        &mut client,
        proto::UpsertContactRequest {
            contact_id: "frank".into(),
            addresses: vec![address(Channel::Email, "frank.other@example.net", "")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let shown: Vec<String> = contact
        .addresses
        .iter()
        .map(|a| a.address.as_ref().unwrap().address.clone())
        .collect();
    assert_eq!(shown.iter().all(|a| !a.is_empty()), plaintext, "{shown:?}");
    server.shutdown().await.unwrap();
    if on_redis() {
        // Every node's append-only file: what Redis keeps on disk.
        all_bytes(test_cluster().dir())
    } else {
        all_bytes(server.data_dir())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn addresses_are_stored_as_keyed_hashes_unless_plaintext_is_configured() {
    let secrets = [
        "447911123456",
        "frank.secret@example.com",
        "frank.other@example.net",
    ];
    let hashed = store_addresses(false).await;
    for secret in secrets {
        assert!(!contains(&hashed, secret), "{secret} is in the data dir");
    }
    // The same search finds them when plaintext storage is on: the check
    // above can fail.
    let plain = store_addresses(true).await;
    for secret in secrets {
        assert!(
            contains(&plain, secret),
            "{secret} not found with plaintext on"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn addresses_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("reach.log");
    let env = [
        ("RUST_LOG", "reach=trace,info"),
        ("REACH_LOG_FORMAT", "json"),
    ];
    let server = ProcessServer::start_logging_to(&dir.path().join("data"), &env, &log).await;
    let mut client = server.client().await;
    let now = now_ms();
    let e = event("e1", "lena", Channel::Sms, Status::Delivered, now);
    record(&mut client, to(e, "+447911123456")).await;
    upsert(
        &mut client,
        proto::UpsertContactRequest {
            contact_id: "lena".into(),
            addresses: vec![address(Channel::Email, "lena.private@example.com", "")],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Refusals name the field and the reason, not the address.
    let bad = event("e2", "lena", Channel::Email, Status::Sent, now);
    let status = client
        .record_event(request(to(bad, "lena.secret@@example.com")))
        .await
        .unwrap_err();
    assert!(!status.message().contains("lena.secret"), "{status:?}");
    best(&mut client, "lena", &[]).await;
    assert!(server.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("invalid argument") && text.contains("event.address"),
        "the refusal is logged, with its call's span: {text}"
    );
    for secret in ["7911123456", "lena.private", "lena.secret"] {
        assert!(!text.contains(secret), "{secret} is in the log");
    }
}
