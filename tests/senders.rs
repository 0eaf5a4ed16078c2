//! The sender compliance gate and sender health through gRPC.

mod common;

use common::*;
use reach::proto::{self, ActionKind, Channel, RegistrationState, SenderKind, Status};
use tonic::Code;

const MINUTE: i64 = 60_000;

async fn register(
    client: &mut Client,
    state: RegistrationState,
    campaigns: &[(&str, RegistrationState)],
) -> proto::Sender {
    client
        .register_sender(proto::RegisterSenderRequest {
            sender_id: "+15550100".into(),
            channel: Channel::Sms as i32,
            kind: SenderKind::TenDlc as i32,
            state: state as i32,
            campaigns: campaigns
                .iter()
                .map(|(id, s)| proto::CampaignRegistration {
                    campaign_id: id.to_string(),
                    state: *s as i32,
                    since: None,
                })
                .collect(),
            note: "from the TCR dashboard".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sender
        .unwrap()
}

async fn gated(
    client: &mut Client,
    contact: &str,
    campaign: &str,
) -> proto::GetBestChannelResponse {
    client
        .get_best_channel(proto::GetBestChannelRequest {
            contact_id: contact.into(),
            sender_id: "+15550100".into(),
            campaign_id: campaign.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn sms(r: &proto::GetBestChannelResponse) -> &proto::ChannelScore {
    r.ranked
        .iter()
        .find(|c| c.channel == Channel::Sms as i32)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uncleared_sender_makes_its_channel_ineligible_until_approved() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = now_ms();
    // SMS is this contact's best channel by far.
    for i in 0..6 {
        record(
            &mut client,
            event(
                &format!("d{i}"),
                "gina",
                Channel::Sms,
                Status::Delivered,
                now - (i + 1) * MINUTE,
            ),
        )
        .await;
    }
    let open = best(&mut client, "gina", &[]).await;
    assert_eq!(open.channel, Channel::Sms as i32);

    // A sender reach has never heard of: NOT_FOUND, not a silent pass.
    let status = client
        .get_best_channel(proto::GetBestChannelRequest {
            contact_id: "gina".into(),
            sender_id: "+15550199".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let sender = register(&mut client, RegistrationState::Unregistered, &[]).await;
    assert_eq!(sender.history.len(), 1);
    let answer = gated(&mut client, "gina", "spring").await;
    assert_ne!(answer.channel, Channel::Sms as i32, "{}", answer.reason);
    assert!(!sms(&answer).eligible);
    assert!(
        sms(&answer)
            .ineligible_reason
            .contains("sender +15550100 (10DLC long code): registration not registered"),
        "{:?}",
        sms(&answer)
    );

    // Brand approved, campaign pending: still not cleared for that campaign.
    register(
        &mut client,
        RegistrationState::Approved,
        &[("spring", RegistrationState::Pending)],
    )
    .await;
    let answer = gated(&mut client, "gina", "spring").await;
    assert!(
        sms(&answer)
            .ineligible_reason
            .contains("campaign spring pending approval"),
        "{:?}",
        sms(&answer)
    );
    let reach = client
        .get_reachability(proto::GetReachabilityRequest {
            contact_id: "gina".into(),
            sender_id: "+15550100".into(),
            campaign_id: "spring".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!channel_score(&reach, Channel::Sms).eligible);

    // Approval restores SMS.
    let sender = register(
        &mut client,
        RegistrationState::Approved,
        &[("spring", RegistrationState::Approved)],
    )
    .await;
    let answer = gated(&mut client, "gina", "spring").await;
    assert_eq!(answer.channel, Channel::Sms as i32, "{}", answer.reason);
    assert_eq!(
        sender.campaigns[0].state,
        RegistrationState::Approved as i32
    );
    assert_eq!(sender.history.len(), 4, "{:?}", sender.history);

    let listed = client
        .list_senders(proto::ListSendersRequest {
            channel: Channel::Sms as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .senders;
    assert_eq!(listed.len(), 1);
    let status = client
        .register_sender(proto::RegisterSenderRequest {
            sender_id: "mail.example.com".into(),
            channel: Channel::Sms as i32,
            kind: SenderKind::EmailDomain as i32,
            state: RegistrationState::Approved as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().contains("kind"), "{status:?}");

    // Registrations are durable.
    let server = server.restart().await;
    let mut client = server.client().await;
    let answer = gated(&mut client, "gina", "spring").await;
    assert_eq!(answer.channel, Channel::Sms as i32, "{}", answer.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compliance_spike_raises_an_alert_visible_in_get_sender() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    register(
        &mut client,
        RegistrationState::Approved,
        &[("spring", RegistrationState::Approved)],
    )
    .await;
    let now = now_ms();
    let sent = |i: i64, status: Status, campaign: &str| {
        let mut e = event(
            &format!("{campaign}{i}"),
            &format!("c{i}"),
            Channel::Sms,
            status,
            now - 10 * MINUTE + i * 1000,
        );
        e.sender_id = "+15550100".into();
        e.campaign_id = campaign.into();
        e
    };
    // A healthy campaign: 40 delivered, 1 block.
    let mut events: Vec<_> = (0..40)
        .map(|i| sent(i, Status::Delivered, "autumn"))
        .collect();
    events.push(sent(40, Status::BlockedCompliance, "autumn"));
    client
        .record_events(tokio_stream::iter(events.into_iter().map(request)))
        .await
        .unwrap();
    let health = get(&mut client).await.health.unwrap();
    assert!(!health.alerting, "{health:?}");
    assert_eq!((health.outcomes, health.blocked_compliance), (41, 1));

    // Carriers start filtering the "spring" campaign: 15 of 35 blocked.
    let mut events: Vec<_> = (0..20)
        .map(|i| sent(i, Status::Delivered, "spring"))
        .collect();
    events.extend((20..35).map(|i| sent(i, Status::BlockedCompliance, "spring")));
    client
        .record_events(tokio_stream::iter(events.into_iter().map(request)))
        .await
        .unwrap();
    let health = get(&mut client).await.health.unwrap();
    let spring = health
        .campaigns
        .iter()
        .find(|c| c.campaign_id == "spring")
        .unwrap();
    assert!(spring.alerting && spring.failure_rate > 0.4, "{spring:?}");
    assert!(
        spring.alert_since.is_some() && spring.reason.contains("compliance blocks (15)"),
        "{spring:?}"
    );
    let autumn = health
        .campaigns
        .iter()
        .find(|c| c.campaign_id == "autumn")
        .unwrap();
    assert!(!autumn.alerting, "{autumn:?}");
    assert!(
        health.alerting,
        "16 of 76 is over 10% for the sender as a whole: {health:?}"
    );

    let alerts = watch(
        &mut client,
        0,
        &[proto::ActionKind::SenderComplianceAlert],
        2,
    )
    .await;
    assert!(alerts.iter().all(|a| a.sender_id == "+15550100"));
    let campaigns: Vec<&str> = alerts.iter().map(|a| a.campaign_id.as_str()).collect();
    assert!(
        campaigns.contains(&"spring") && campaigns.contains(&""),
        "{alerts:?}"
    );
    assert_eq!(alerts[0].kind, ActionKind::SenderComplianceAlert as i32);

    // The blocks were the sender's problem: the contacts keep their scores.
    let reach = reachability(&mut client, "c25", None).await;
    let score = channel_score(&reach, Channel::Sms);
    assert!(
        score.eligible && score.consecutive_hard_fails == 0,
        "{score:?}"
    );
}

async fn get(client: &mut Client) -> proto::Sender {
    client
        .get_sender(proto::GetSenderRequest {
            sender_id: "+15550100".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sender
        .unwrap()
}
