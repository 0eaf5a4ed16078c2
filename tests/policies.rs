//! Send policies and quiet hours through gRPC: fallback chains, minimum
//! scores, and send_after across time zones, midnight and DST.

mod common;

use common::*;
use reach::proto::{self, Channel, QuietHoursMode, Status};
use tonic::Code;

const HOUR: i64 = 3_600_000;

fn policy(name: &str, chain: &[Channel], mode: QuietHoursMode) -> proto::SendPolicy {
    proto::SendPolicy {
        campaign_type: name.into(),
        fallback_chain: chain.iter().map(|&c| c as i32).collect(),
        quiet_hours_mode: mode as i32,
        ..Default::default()
    }
}

async fn set(client: &mut Client, p: proto::SendPolicy) {
    client
        .set_send_policy(proto::SetSendPolicyRequest { policy: Some(p) })
        .await
        .unwrap();
}

async fn ask(
    client: &mut Client,
    contact: &str,
    campaign_type: &str,
    as_of: Option<i64>,
) -> proto::GetBestChannelResponse {
    client
        .get_best_channel(proto::GetBestChannelRequest {
            contact_id: contact.into(),
            campaign_type: campaign_type.into(),
            as_of: as_of.map(ts),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn history(
    client: &mut Client,
    contact: &str,
    channel: Channel,
    status: Status,
    n: i64,
    end: i64,
) {
    for i in 0..n {
        let id = format!("{contact}-{channel:?}-{status:?}-{i}");
        record(
            client,
            event(&id, contact, channel, status, end - (i + 1) * HOUR),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fallback_chain_is_followed_in_order_past_ineligible_channels() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    set(
        &mut client,
        policy(
            "promo",
            &[Channel::Sms, Channel::Email],
            QuietHoursMode::Ignore,
        ),
    )
    .await;
    set(
        &mut client,
        policy(
            "otp",
            &[Channel::Sms, Channel::Voice],
            QuietHoursMode::Ignore,
        ),
    )
    .await;

    // Email scores higher (a soft failure among SMS's deliveries), but the
    // chain says SMS first.
    history(&mut client, "hal", Channel::Sms, Status::Delivered, 3, now).await;
    history(
        &mut client,
        "hal",
        Channel::Sms,
        Status::PendingRetry,
        1,
        now,
    )
    .await;
    history(
        &mut client,
        "hal",
        Channel::Email,
        Status::Delivered,
        12,
        now,
    )
    .await;
    let open = ask(&mut client, "hal", "", None).await;
    assert_eq!(
        open.channel,
        Channel::Email as i32,
        "without a policy the score decides"
    );
    let promo = ask(&mut client, "hal", "promo", None).await;
    assert_eq!(promo.channel, Channel::Sms as i32, "{}", promo.reason);
    assert_eq!(promo.policy, "promo");
    assert!(
        promo
            .reason
            .contains("first in policy promo's fallback chain sms -> email"),
        "{}",
        promo.reason
    );

    // SMS opted out: the chain falls to email, and says why.
    history(&mut client, "hal", Channel::Sms, Status::Optout, 1, now).await;
    let promo = ask(&mut client, "hal", "promo", None).await;
    assert_eq!(promo.channel, Channel::Email as i32, "{}", promo.reason);
    assert!(
        promo.reason.contains("after sms not eligible (opted out"),
        "{}",
        promo.reason
    );

    // OTP to a fixed line: SMS cannot, voice can; email is not in the chain.
    client
        .upsert_contact(proto::UpsertContactRequest {
            contact_id: "ivy".into(),
            addresses: vec![proto::AddressInput {
                channel: Channel::Voice as i32,
                address: "+44 20 7946 0000".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    history(
        &mut client,
        "ivy",
        Channel::Email,
        Status::Delivered,
        5,
        now,
    )
    .await;
    let otp = ask(&mut client, "ivy", "otp", None).await;
    assert_eq!(otp.channel, Channel::Voice as i32, "{}", otp.reason);
    assert!(otp.reason.contains("fixed line"), "{}", otp.reason);
    assert_eq!(otp.address.unwrap().hint, "+**********00");

    // A chain with nothing eligible answers no channel rather than leaving it.
    history(&mut client, "ivy", Channel::Voice, Status::Optout, 1, now).await;
    let otp = ask(&mut client, "ivy", "otp", None).await;
    assert_eq!(otp.channel, Channel::Unspecified as i32, "{}", otp.reason);
    assert!(
        otp.reason
            .contains("no eligible channel in policy otp's fallback chain"),
        "{}",
        otp.reason
    );

    // A minimum score keeps a weak channel out.
    let mut strict = policy("strict", &[], QuietHoursMode::Ignore);
    strict.min_score = 0.99;
    set(&mut client, strict).await;
    let answer = ask(&mut client, "hal", "strict", None).await;
    assert_eq!(
        answer.channel,
        Channel::Unspecified as i32,
        "{}",
        answer.reason
    );
    assert!(
        answer.reason.contains("under policy strict's minimum 0.99"),
        "{}",
        answer.reason
    );

    let got = client
        .get_send_policy(proto::GetSendPolicyRequest {
            campaign_type: "promo".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.source, "tenant");
    let all = client
        .list_send_policies(proto::ListSendPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = all
        .policies
        .iter()
        .map(|p| p.campaign_type.as_str())
        .collect();
    assert_eq!(names, vec!["default", "otp", "promo", "strict"]);

    let mut twice = policy("bad", &[Channel::Sms, Channel::Sms], QuietHoursMode::Wait);
    twice.min_score = 0.5;
    let status = client
        .set_send_policy(proto::SetSendPolicyRequest {
            policy: Some(twice),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("fallback_chain lists a channel twice"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_come_from_the_config_too() {
    let server = TestServer::start_with(|c| {
        c.policies.insert(
            "otp".into(),
            toml::from_str("fallback_chain = [\"sms\", \"voice\"]\nquiet_hours_mode = \"ignore\"\nurgent = true\n").unwrap(),
        );
    })
    .await;
    let mut client = server.client().await;
    let got = client
        .get_send_policy(proto::GetSendPolicyRequest {
            campaign_type: "otp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.source, "config");
    let p = got.policy.unwrap();
    assert!(p.urgent && p.fallback_chain == vec![Channel::Sms as i32, Channel::Voice as i32]);
    let unknown = client
        .get_send_policy(proto::GetSendPolicyRequest {
            campaign_type: "newsletter".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            unknown.policy.unwrap().campaign_type.as_str(),
            unknown.source.as_str()
        ),
        ("default", "default")
    );
}

fn at(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

async fn sms_contact(
    client: &mut Client,
    contact: &str,
    time_zone: &str,
    phone: &str,
    before: i64,
) {
    client
        .upsert_contact(proto::UpsertContactRequest {
            contact_id: contact.into(),
            time_zone: time_zone.into(),
            addresses: vec![proto::AddressInput {
                channel: Channel::Sms as i32,
                address: phone.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..4 {
        let mut e = event(
            &format!("{contact}-d{i}"),
            contact,
            Channel::Sms,
            Status::Delivered,
            before - (i + 1) * 24 * HOUR,
        );
        e.address = phone.into();
        record(client, e).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_hours_follow_the_contacts_time_zone_across_midnight_and_dst() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    // New York, 22:30 EST on Saturday 7 March 2026: quiet. The next 08:00
    // is Sunday 8 March, after the switch to EDT (UTC-4): 12:00 UTC.
    let evening = at("2026-03-08T03:30:00Z");
    sms_contact(
        &mut client,
        "ny",
        "America/New_York",
        "+1 650 253 0000",
        evening,
    )
    .await;
    let answer = ask(&mut client, "ny", "", Some(evening)).await;
    assert_eq!(answer.channel, Channel::Sms as i32, "{}", answer.reason);
    assert_eq!(
        answer.send_after,
        Some(ts(at("2026-03-08T12:00:00Z"))),
        "{}",
        answer.reason
    );
    assert!(
        answer.reason.contains("time zone America/New_York"),
        "{}",
        answer.reason
    );
    let sms = &answer.ranked[0];
    assert!(sms.in_quiet_hours && sms.quiet_until == answer.send_after);
    // Noon in New York: send now.
    let noon = ask(&mut client, "ny", "", Some(at("2026-03-09T16:00:00Z"))).await;
    assert_eq!(noon.send_after, None, "{}", noon.reason);

    // The same number without a time zone: every US zone must be awake,
    // so 09:00 in New York waits for 08:00 in Honolulu (18:00 UTC).
    let morning = at("2026-01-15T14:00:00Z");
    sms_contact(&mut client, "us", "", "+1 650 253 0000", morning).await;
    let answer = ask(&mut client, "us", "", Some(morning)).await;
    assert_eq!(
        answer.send_after,
        Some(ts(at("2026-01-15T18:00:00Z"))),
        "{}",
        answer.reason
    );
    assert!(
        answer
            .reason
            .contains("time zones of the number's country US"),
        "{}",
        answer.reason
    );

    // A UK number on the morning clocks go back (25 October 2026, 01:00
    // UTC): 07:30 UTC is 07:30 GMT, still quiet until 08:00 GMT (it would
    // be 08:30 and allowed under BST).
    let autumn = at("2026-10-25T07:30:00Z");
    sms_contact(&mut client, "uk", "", "+44 7911 123456", autumn).await;
    let answer = ask(&mut client, "uk", "", Some(autumn)).await;
    assert_eq!(
        answer.send_after,
        Some(ts(at("2026-10-25T08:00:00Z"))),
        "{}",
        answer.reason
    );
    let summer = ask(&mut client, "uk", "", Some(at("2026-10-24T07:30:00Z"))).await;
    assert_eq!(
        summer.send_after, None,
        "07:30 UTC is 08:30 BST: {}",
        summer.reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_can_prefer_the_next_channel_allowed_now_or_ignore_quiet_hours() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let night = at("2026-06-10T04:00:00Z"); // 00:00 in New York
    sms_contact(
        &mut client,
        "kim",
        "America/New_York",
        "+1 650 253 0000",
        night,
    )
    .await;
    history(
        &mut client,
        "kim",
        Channel::Email,
        Status::Delivered,
        1,
        night - 30 * 24 * HOUR,
    )
    .await;
    history(
        &mut client,
        "kim",
        Channel::Email,
        Status::BouncedHard,
        1,
        night - 29 * 24 * HOUR,
    )
    .await;

    let wait = ask(&mut client, "kim", "", Some(night)).await;
    assert_eq!(wait.channel, Channel::Sms as i32, "{}", wait.reason);
    assert_eq!(wait.send_after, Some(ts(at("2026-06-10T12:00:00Z"))));

    set(
        &mut client,
        policy("reminder", &[], QuietHoursMode::NextChannel),
    )
    .await;
    let next = ask(&mut client, "kim", "reminder", Some(night)).await;
    assert_eq!(next.channel, Channel::Email as i32, "{}", next.reason);
    assert_eq!(next.send_after, None);
    assert!(
        next.reason.contains("chosen over sms") && next.reason.contains("in quiet hours"),
        "{}",
        next.reason
    );

    set(&mut client, policy("otp", &[], QuietHoursMode::Ignore)).await;
    let otp = ask(&mut client, "kim", "otp", Some(night)).await;
    assert_eq!(
        (otp.channel, otp.send_after),
        (Channel::Sms as i32, None),
        "{}",
        otp.reason
    );
    assert!(otp.reason.contains("ignores quiet hours"), "{}", otp.reason);
}
