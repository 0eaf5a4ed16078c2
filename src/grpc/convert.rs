//! Conversions between `reachability.v1` messages and domain types. Structural
//! problems (missing or out-of-range values) become [`InvalidField`]s naming
//! the field relative to the message.

use prost_types::Timestamp;

use crate::{
    domain::{
        self, ChannelAssessment, ChannelState, ContactProfile, InvalidField, Millis, Reachability,
        address::Sensitive,
        event::{EventAddress, EventMetadata},
        profile::StatusCounts as DomainCounts,
    },
    proto,
};

pub fn millis_from(field: &str, ts: &Timestamp) -> Result<Millis, InvalidField> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(InvalidField::new(
            field,
            format!("nanos {} out of range", ts.nanos),
        ));
    }
    ts.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos / 1_000_000)))
        .map(Millis)
        .ok_or_else(|| InvalidField::new(field, format!("seconds {} out of range", ts.seconds)))
}

pub fn timestamp(at: Millis) -> Timestamp {
    Timestamp {
        seconds: at.0.div_euclid(1000),
        nanos: (at.0.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn channel_from(field: &str, value: i32) -> Result<domain::Channel, InvalidField> {
    use proto::Channel as P;
    match P::try_from(value) {
        Ok(P::Sms) => Ok(domain::Channel::Sms),
        Ok(P::Email) => Ok(domain::Channel::Email),
        Ok(P::Push) => Ok(domain::Channel::Push),
        Ok(P::Voice) => Ok(domain::Channel::Voice),
        Ok(P::Unspecified) => Err(InvalidField::new(
            field,
            "is required (CHANNEL_UNSPECIFIED)",
        )),
        Err(_) => Err(InvalidField::new(
            field,
            format!("unknown channel value {value}"),
        )),
    }
}

pub fn channel_to(channel: domain::Channel) -> proto::Channel {
    match channel {
        domain::Channel::Sms => proto::Channel::Sms,
        domain::Channel::Email => proto::Channel::Email,
        domain::Channel::Push => proto::Channel::Push,
        domain::Channel::Voice => proto::Channel::Voice,
    }
}

pub fn status_to(status: domain::Status) -> proto::Status {
    use domain::Status as D;
    use proto::Status as P;
    match status {
        D::Sent => P::Sent,
        D::Delivered => P::Delivered,
        D::PendingRetry => P::PendingRetry,
        D::BouncedHard => P::BouncedHard,
        D::BlockedCompliance => P::BlockedCompliance,
        D::SenderError => P::SenderError,
        D::OptOut => P::Optout,
        D::OptIn => P::Optin,
        D::Complaint => P::Complaint,
        D::Unconfirmed => P::Unconfirmed,
        D::Opened => P::Opened,
        D::Clicked => P::Clicked,
        D::Replied => P::Replied,
    }
}

fn status_from(field: &str, value: i32) -> Result<domain::Status, InvalidField> {
    use domain::Status as D;
    use proto::Status as P;
    let status = match P::try_from(value) {
        Ok(P::Sent) => D::Sent,
        Ok(P::Delivered) => D::Delivered,
        Ok(P::PendingRetry) => D::PendingRetry,
        Ok(P::BouncedHard) => D::BouncedHard,
        Ok(P::BlockedCompliance) => D::BlockedCompliance,
        Ok(P::SenderError) => D::SenderError,
        Ok(P::Optout) => D::OptOut,
        Ok(P::Optin) => D::OptIn,
        Ok(P::Complaint) => D::Complaint,
        Ok(P::Unconfirmed) => D::Unconfirmed,
        Ok(P::Opened) => D::Opened,
        Ok(P::Clicked) => D::Clicked,
        Ok(P::Replied) => D::Replied,
        Ok(P::Unspecified) => {
            return Err(InvalidField::new(field, "is required (STATUS_UNSPECIFIED)"));
        }
        Err(_) => {
            return Err(InvalidField::new(
                field,
                format!("unknown status value {value}"),
            ));
        }
    };
    Ok(status)
}

/// A wire event to a domain event; field names are relative to the event.
pub fn event_from(e: proto::ChannelEvent) -> Result<domain::ChannelEvent, InvalidField> {
    let occurred_at = e
        .occurred_at
        .as_ref()
        .ok_or_else(|| InvalidField::new("occurred_at", "is required"))
        .and_then(|ts| millis_from("occurred_at", ts))?;
    let sent_at = e
        .sent_at
        .as_ref()
        .map(|ts| millis_from("sent_at", ts))
        .transpose()?;
    Ok(domain::ChannelEvent {
        channel: channel_from("channel", e.channel)?,
        status: status_from("status", e.status)?,
        event_id: e.event_id,
        contact_id: e.contact_id,
        occurred_at,
        sent_at,
        metadata: EventMetadata {
            message_id: e.message_id,
            provider: e.provider,
            provider_code: e.provider_code,
            carrier: e.carrier,
            country: e.country,
            campaign_id: e.campaign_id,
            campaign_type: e.campaign_type,
            lifecycle_stage: e.lifecycle_stage,
            sender_id: e.sender_id,
        },
        address: EventAddress {
            raw: Sensitive(e.address),
            resolved: None,
        },
    })
}

pub fn channel_score(a: ChannelAssessment) -> proto::ChannelScore {
    let ineligible_reason = if a.eligible {
        String::new()
    } else {
        a.ineligible_reason()
    };
    proto::ChannelScore {
        address: a
            .address
            .as_ref()
            .map(|x| crate::grpc::contacts::address_to(x.id, &x.info)),
        addresses: a
            .addresses
            .into_iter()
            .map(crate::grpc::contacts::address_score)
            .collect(),
        ineligible_reason,
        in_quiet_hours: a.quiet_until.is_some(),
        quiet_until: a.quiet_until.map(timestamp),
        channel: channel_to(a.channel).into(),
        score: a.score,
        eligible: a.eligible,
        confidence: a.confidence,
        suppressed: a.suppression.is_some(),
        suppression_reason: a.suppression.map(|s| s.to_string()).unwrap_or_default(),
        consecutive_hard_fails: a.consecutive_hard_fails,
        engagement_score: a.engagement,
        last_event_at: a.last_event.map(timestamp),
        reasons: a.reasons,
        weighted_score: a.weighted,
        opted_out: a.opted_out,
        consecutive_soft_fails: a.consecutive_soft_fails,
    }
}

pub fn reachability(contact_id: String, r: Reachability) -> proto::GetReachabilityResponse {
    proto::GetReachabilityResponse {
        contact_id,
        overall_score: r.overall,
        channels: r.channels.into_iter().map(channel_score).collect(),
    }
}

pub fn profile(
    contact_id: String,
    version: u32,
    p: &ContactProfile,
) -> proto::GetContactProfileResponse {
    let channels = domain::Channel::ALL
        .iter()
        .filter_map(|&c| p.channel(c).map(|state| channel_profile(c, state)))
        .collect();
    let messages = p
        .messages
        .list
        .iter()
        .map(|m| proto::MessageRecord {
            message_id: m.id.clone(),
            channel: m
                .channel
                .map_or(proto::Channel::Unspecified, channel_to)
                .into(),
            sent_at: m.sent_at.map(timestamp),
            deadline: m.deadline.map(timestamp),
            outcome: m
                .outcome
                .map_or(proto::Status::Unspecified, |(s, _)| status_to(s))
                .into(),
            outcome_at: m.outcome.map(|(_, at)| timestamp(at)),
            unconfirmed_at: m.unconfirmed_at.map(timestamp),
            latency_ms: m.latency_ms,
            address_id: m.address.map(|a| a.to_hex()).unwrap_or_default(),
        })
        .collect();
    let addresses = p
        .addresses
        .iter()
        .map(|slot| proto::AddressProfile {
            address: Some(crate::grpc::contacts::address_to(slot.id, &slot.info)),
            state: Some(channel_profile(slot.channel, &slot.state)),
        })
        .collect();
    proto::GetContactProfileResponse {
        contact_id,
        version: u64::from(version),
        channels,
        messages,
        addresses,
    }
}

fn channel_profile(channel: domain::Channel, s: &ChannelState) -> proto::ChannelProfile {
    let ev = &s.evidence;
    proto::ChannelProfile {
        channel: channel_to(channel).into(),
        counts: Some(counts(&s.counts)),
        decayed_delivered: ev.delivered,
        decayed_hard_fails: ev.hard_fails,
        decayed_soft_fails: ev.soft_fails,
        decayed_unconfirmed: ev.unconfirmed,
        decayed_engagement: ev.engaged,
        evidence_at: ev.anchor.map(timestamp),
        last_event_at: s.last_event.map(timestamp),
        last_cleared_at: s.last_cleared.map(timestamp),
        last_opt_out_at: s.consent.last_opt_out.map(timestamp),
        last_opt_in_at: s.consent.last_opt_in.map(timestamp),
        last_complaint_at: s.consent.last_complaint.map(timestamp),
        last_permission_at: s.consent.last_permission.map(timestamp),
        recent_hard_fails: s.hard_fails.recent.iter().copied().map(timestamp).collect(),
        older_hard_fails: s.hard_fails.older,
        blocked_compliance: s.sender_side.blocked_compliance,
        sender_errors: s.sender_side.sender_error,
        recent_soft_fails: s.soft_fails.recent.iter().copied().map(timestamp).collect(),
        older_soft_fails: s.soft_fails.older,
        last_carrier: s
            .last_route
            .as_ref()
            .map(|r| r.carrier.clone())
            .unwrap_or_default(),
        last_country: s
            .last_route
            .as_ref()
            .map(|r| r.country.clone())
            .unwrap_or_default(),
    }
}

fn counts(c: &DomainCounts) -> proto::StatusCounts {
    proto::StatusCounts {
        sent: c.sent,
        delivered: c.delivered,
        pending_retry: c.pending_retry,
        bounced_hard: c.bounced_hard,
        unconfirmed: c.unconfirmed,
        optout: c.optout,
        optin: c.optin,
        complaint: c.complaint,
        opened: c.opened,
        clicked: c.clicked,
        replied: c.replied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_millisecond() {
        for ms in [0, 1, 999, 1_795_168_800_123] {
            assert_eq!(
                millis_from("t", &timestamp(Millis(ms))).unwrap(),
                Millis(ms)
            );
        }
        let bad = Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert_eq!(millis_from("t", &bad).unwrap_err().field, "t");
        let huge = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(millis_from("t", &huge).is_err());
    }

    #[test]
    fn unknown_enum_values_are_named() {
        assert!(
            channel_from("channel", 42)
                .unwrap_err()
                .reason
                .contains("42")
        );
        assert!(
            channel_from("channel", 0)
                .unwrap_err()
                .reason
                .contains("required")
        );
    }
}
