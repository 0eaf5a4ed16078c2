//! Conversions for the provider RPCs: requests to the domain, outcomes and
//! dead letters back to `reachability.v1` messages.

use crate::{
    domain::InvalidField,
    engine::ProviderOutcome,
    grpc::convert::{channel_from, channel_to, millis_from, timestamp},
    proto,
    providers::{DeadLetter, NativeFields, Outcome, ProviderRequest, TableInfo, Translated},
};

pub fn request_from(r: proto::ProviderEventRequest) -> Result<ProviderRequest, InvalidField> {
    let channel = match r.channel {
        0 => None,
        value => Some(channel_from("channel", value)?),
    };
    let occurred_at = r
        .occurred_at
        .as_ref()
        .map(|ts| millis_from("occurred_at", ts))
        .transpose()?;
    let native = r.native.unwrap_or_default();
    Ok(ProviderRequest {
        provider: r.provider,
        content_type: r.content_type,
        body: r.body,
        native: NativeFields {
            status: native.status,
            error_code: native.error_code,
            sub_type: native.sub_type,
        },
        contact_id: r.contact_id,
        event_id: r.event_id,
        message_id: r.message_id,
        occurred_at,
        channel,
        carrier: r.carrier,
        country: r.country,
        campaign_id: r.campaign_id,
        campaign_type: r.campaign_type,
        lifecycle_stage: r.lifecycle_stage,
        sender_id: r.sender_id,
    })
}

pub fn request_to(r: &ProviderRequest) -> proto::ProviderEventRequest {
    proto::ProviderEventRequest {
        provider: r.provider.clone(),
        content_type: r.content_type.clone(),
        body: r.body.clone(),
        native: Some(proto::NativeFields {
            status: r.native.status.clone(),
            error_code: r.native.error_code.clone(),
            sub_type: r.native.sub_type.clone(),
        }),
        contact_id: r.contact_id.clone(),
        event_id: r.event_id.clone(),
        message_id: r.message_id.clone(),
        occurred_at: r.occurred_at.map(timestamp),
        channel: r
            .channel
            .map_or(proto::Channel::Unspecified, channel_to)
            .into(),
        carrier: r.carrier.clone(),
        country: r.country.clone(),
        campaign_id: r.campaign_id.clone(),
        campaign_type: r.campaign_type.clone(),
        lifecycle_stage: r.lifecycle_stage.clone(),
        sender_id: r.sender_id.clone(),
    }
}

fn event_to(t: &Translated) -> proto::ChannelEvent {
    let status = match &t.outcome {
        Outcome::Mapped { status, .. } => crate::grpc::convert::status_to(*status),
        Outcome::Unmapped { .. } => proto::Status::Unspecified,
    };
    let m = &t.metadata;
    proto::ChannelEvent {
        event_id: t.event_id.clone(),
        contact_id: t.contact_id.clone(),
        channel: channel_to(t.channel).into(),
        status: status.into(),
        occurred_at: Some(timestamp(t.occurred_at)),
        sent_at: t.sent_at.map(timestamp),
        message_id: m.message_id.clone(),
        provider: m.provider.clone(),
        provider_code: m.provider_code.clone(),
        carrier: m.carrier.clone(),
        country: m.country.clone(),
        campaign_id: m.campaign_id.clone(),
        campaign_type: m.campaign_type.clone(),
        lifecycle_stage: m.lifecycle_stage.clone(),
        sender_id: m.sender_id.clone(),
        address: String::new(),
    }
}

pub fn mapped_event(o: &ProviderOutcome) -> proto::MappedEvent {
    let t = &o.translated;
    let (rule_id, table_version, reason) = match &t.outcome {
        Outcome::Mapped {
            rule_id,
            table_version,
            ..
        } => (rule_id.clone(), table_version.clone(), String::new()),
        Outcome::Unmapped { reason, .. } => (String::new(), String::new(), reason.clone()),
    };
    proto::MappedEvent {
        event: Some(event_to(t)),
        rule_id,
        table_version,
        dead_lettered: o.dead_lettered,
        reason,
        duplicate: o.duplicate,
    }
}

pub fn dead_letter(d: &DeadLetter) -> proto::DeadLetter {
    proto::DeadLetter {
        id: d.id.clone(),
        provider: d.provider.clone(),
        received_at: Some(timestamp(d.received_at)),
        reason: d.reason.clone(),
        code: d.code.clone(),
        request: Some(request_to(&d.request)),
        index: d.index,
        event_id: d.event_id.clone(),
        contact_id: d.contact_id.clone(),
    }
}

pub fn table(t: &TableInfo) -> proto::ProviderTable {
    proto::ProviderTable {
        provider: t.provider.clone(),
        version: t.version.clone(),
        rules: t.rules as u32,
        overridden: t.overridden,
    }
}
