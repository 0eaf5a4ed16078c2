//! Conversions for route health, delivery statistics and actions.

use crate::{
    domain::{
        InvalidField, Status,
        action::{Action, ActionKind},
        stats::{Dimension, StatCell},
    },
    engine::{RouteReport, StatsRow},
    grpc::convert::{channel_to, timestamp},
    proto,
};

pub fn counts(cell: &StatCell) -> proto::ClassCounts {
    let c = |s| cell.count(s);
    proto::ClassCounts {
        sent: c(Status::Sent),
        delivered: c(Status::Delivered),
        pending_retry: c(Status::PendingRetry),
        bounced_hard: c(Status::BouncedHard),
        blocked_compliance: c(Status::BlockedCompliance),
        sender_error: c(Status::SenderError),
        optout: c(Status::OptOut),
        optin: c(Status::OptIn),
        complaint: c(Status::Complaint),
        unconfirmed: c(Status::Unconfirmed),
        opened: c(Status::Opened),
        clicked: c(Status::Clicked),
        replied: c(Status::Replied),
    }
}

pub fn route(r: &RouteReport) -> proto::RouteHealth {
    let q = |x| r.window.latency.quantile(x);
    proto::RouteHealth {
        channel: r
            .route
            .channel
            .map_or(proto::Channel::Unspecified, channel_to)
            .into(),
        carrier: r.route.carrier.clone(),
        country: r.route.country.clone(),
        window: Some(counts(&r.window)),
        delivery_rate: r.window.delivery_rate(),
        baseline_delivery_rate: r.baseline.delivery_rate(),
        latency_p50_ms: q(0.5),
        latency_p95_ms: q(0.95),
        latency_p99_ms: q(0.99),
        latency_samples: r.window.latency.total(),
        degraded: r.degraded,
        reason: r.reason.clone(),
        changed_at: r.since.map(timestamp),
    }
}

pub fn dimension_from(field: &str, value: i32) -> Result<Dimension, InvalidField> {
    use proto::Dimension as P;
    Ok(match P::try_from(value) {
        Ok(P::Channel) => Dimension::Channel,
        Ok(P::Carrier) => Dimension::Carrier,
        Ok(P::Country) => Dimension::Country,
        Ok(P::CampaignId) => Dimension::CampaignId,
        Ok(P::CampaignType) => Dimension::CampaignType,
        Ok(P::LifecycleStage) => Dimension::LifecycleStage,
        Ok(P::SenderId) => Dimension::SenderId,
        Ok(P::Day) => Dimension::Day,
        Ok(P::Unspecified) => return Err(InvalidField::new(field, "is DIMENSION_UNSPECIFIED")),
        Err(_) => {
            return Err(InvalidField::new(
                field,
                format!("unknown dimension {value}"),
            ));
        }
    })
}

fn dimension_to(d: Dimension) -> proto::Dimension {
    match d {
        Dimension::Channel => proto::Dimension::Channel,
        Dimension::Carrier => proto::Dimension::Carrier,
        Dimension::Country => proto::Dimension::Country,
        Dimension::CampaignId => proto::Dimension::CampaignId,
        Dimension::CampaignType => proto::Dimension::CampaignType,
        Dimension::LifecycleStage => proto::Dimension::LifecycleStage,
        Dimension::SenderId => proto::Dimension::SenderId,
        Dimension::Day => proto::Dimension::Day,
    }
}

pub fn stats_row(row: &StatsRow) -> proto::StatsRow {
    let q = |x| row.cell.latency.quantile(x);
    proto::StatsRow {
        group: row
            .group
            .iter()
            .map(|(d, v)| proto::GroupValue {
                dimension: dimension_to(*d).into(),
                value: v.clone(),
            })
            .collect(),
        counts: Some(counts(&row.cell)),
        attempts: row.cell.attempts(),
        delivery_rate: row.cell.delivery_rate(),
        latency_p50_ms: q(0.5),
        latency_p95_ms: q(0.95),
        latency_p99_ms: q(0.99),
        latency_samples: row.cell.latency.total(),
    }
}

pub fn action_kind_to(kind: ActionKind) -> proto::ActionKind {
    match kind {
        ActionKind::ContactChannelSuppressed => proto::ActionKind::ContactChannelSuppressed,
        ActionKind::FallbackSuggested => proto::ActionKind::FallbackSuggested,
        ActionKind::RouteDegraded => proto::ActionKind::RouteDegraded,
        ActionKind::RouteRecovered => proto::ActionKind::RouteRecovered,
        ActionKind::UnmappedProviderCode => proto::ActionKind::UnmappedProviderCode,
        ActionKind::SenderComplianceAlert => proto::ActionKind::SenderComplianceAlert,
        ActionKind::SenderComplianceCleared => proto::ActionKind::SenderComplianceCleared,
    }
}

pub fn action(seq: u64, a: &Action) -> proto::Action {
    proto::Action {
        sequence: seq,
        kind: action_kind_to(a.kind).into(),
        at: Some(timestamp(a.at)),
        contact_id: a.contact_id.clone(),
        channel: a
            .channel
            .map_or(proto::Channel::Unspecified, channel_to)
            .into(),
        suggested_channel: a
            .suggested_channel
            .map_or(proto::Channel::Unspecified, channel_to)
            .into(),
        carrier: a.carrier.clone(),
        country: a.country.clone(),
        campaign_id: a.campaign_id.clone(),
        provider: a.provider.clone(),
        code: a.code.clone(),
        reason: a.reason.clone(),
        sender_id: a.sender_id.clone(),
    }
}
