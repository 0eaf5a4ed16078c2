//! Conversions for senders and their health.

use crate::{
    domain::{
        InvalidField,
        sender::{Registration, RegistrationState, SenderKind},
    },
    engine::{HealthReport, SenderReport},
    grpc::convert::{channel_from, channel_to, timestamp},
    proto,
};

fn kind_from(field: &str, value: i32) -> Result<SenderKind, InvalidField> {
    use proto::SenderKind as P;
    Ok(match P::try_from(value) {
        Ok(P::TenDlc) => SenderKind::TenDlc,
        Ok(P::TollFree) => SenderKind::TollFree,
        Ok(P::ShortCode) => SenderKind::ShortCode,
        Ok(P::Alphanumeric) => SenderKind::Alphanumeric,
        Ok(P::EmailDomain) => SenderKind::EmailDomain,
        Ok(P::PushApp) => SenderKind::PushApp,
        Ok(P::VoiceNumber) => SenderKind::VoiceNumber,
        Ok(P::Unspecified) => return Err(InvalidField::new(field, "is required")),
        Err(_) => {
            return Err(InvalidField::new(
                field,
                format!("unknown sender kind {value}"),
            ));
        }
    })
}

fn kind_to(kind: SenderKind) -> proto::SenderKind {
    use proto::SenderKind as P;
    match kind {
        SenderKind::TenDlc => P::TenDlc,
        SenderKind::TollFree => P::TollFree,
        SenderKind::ShortCode => P::ShortCode,
        SenderKind::Alphanumeric => P::Alphanumeric,
        SenderKind::EmailDomain => P::EmailDomain,
        SenderKind::PushApp => P::PushApp,
        SenderKind::VoiceNumber => P::VoiceNumber,
    }
}

fn state_from(field: &str, value: i32) -> Result<RegistrationState, InvalidField> {
    use proto::RegistrationState as P;
    Ok(match P::try_from(value) {
        Ok(P::Unregistered) => RegistrationState::Unregistered,
        Ok(P::Pending) => RegistrationState::Pending,
        Ok(P::Approved) => RegistrationState::Approved,
        Ok(P::Rejected) => RegistrationState::Rejected,
        Ok(P::Suspended) => RegistrationState::Suspended,
        Ok(P::Unspecified) => return Err(InvalidField::new(field, "is required")),
        Err(_) => {
            return Err(InvalidField::new(
                field,
                format!("unknown registration state {value}"),
            ));
        }
    })
}

fn state_to(state: RegistrationState) -> proto::RegistrationState {
    use proto::RegistrationState as P;
    match state {
        RegistrationState::Unregistered => P::Unregistered,
        RegistrationState::Pending => P::Pending,
        RegistrationState::Approved => P::Approved,
        RegistrationState::Rejected => P::Rejected,
        RegistrationState::Suspended => P::Suspended,
    }
}

pub fn registration_from(r: proto::RegisterSenderRequest) -> Result<Registration, InvalidField> {
    let campaigns = r
        .campaigns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            Ok((
                c.campaign_id,
                state_from(&format!("campaigns[{i}].state"), c.state)?,
            ))
        })
        .collect::<Result<_, InvalidField>>()?;
    Ok(Registration {
        sender_id: r.sender_id,
        channel: channel_from("channel", r.channel)?,
        kind: kind_from("kind", r.kind)?,
        state: state_from("state", r.state)?,
        campaigns,
        note: r.note,
    })
}

pub fn sender_to(report: SenderReport) -> proto::Sender {
    let s = report.sender;
    let mut health = report.health.into_iter();
    let whole = health.next().unwrap_or_default();
    let campaigns = health.map(campaign_health).collect();
    proto::Sender {
        sender_id: s.sender_id,
        channel: channel_to(s.channel).into(),
        kind: kind_to(s.kind).into(),
        state: state_to(s.state).into(),
        state_since: Some(timestamp(s.state_since)),
        campaigns: s
            .campaigns
            .into_iter()
            .map(|c| proto::CampaignRegistration {
                campaign_id: c.campaign_id,
                state: state_to(c.state).into(),
                since: Some(timestamp(c.since)),
            })
            .collect(),
        registered_at: Some(timestamp(s.registered_at)),
        history: s
            .history
            .into_iter()
            .map(|h| proto::RegistrationChange {
                campaign_id: h.campaign_id,
                state: state_to(h.state).into(),
                at: Some(timestamp(h.at)),
                note: h.note,
            })
            .collect(),
        health: Some(proto::SenderHealth {
            window_seconds: report.window_seconds,
            outcomes: whole.rate.outcomes,
            blocked_compliance: whole.rate.blocked_compliance,
            sender_errors: whole.rate.sender_errors,
            failure_rate: whole.rate.rate,
            alerting: whole.alerting,
            alert_since: whole.since.filter(|_| whole.alerting).map(timestamp),
            reason: whole.reason,
            campaigns,
        }),
    }
}

fn campaign_health(h: HealthReport) -> proto::CampaignHealth {
    proto::CampaignHealth {
        campaign_id: h.campaign_id,
        outcomes: h.rate.outcomes,
        blocked_compliance: h.rate.blocked_compliance,
        sender_errors: h.rate.sender_errors,
        failure_rate: h.rate.rate,
        alerting: h.alerting,
        alert_since: h.since.filter(|_| h.alerting).map(timestamp),
        reason: h.reason,
    }
}
