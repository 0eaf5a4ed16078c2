//! Conversions for send policies and the GetBestChannel / GetReachability asks.

use crate::{
    domain::{
        InvalidField,
        policy::{QuietHoursMode, SendPolicy},
        quiet_hours::QuietWindow,
    },
    engine::{Ask, PolicySource},
    grpc::convert::{channel_from, channel_to},
    proto,
};

fn channels(field: &str, values: &[i32]) -> Result<Vec<crate::domain::Channel>, InvalidField> {
    values
        .iter()
        .enumerate()
        .map(|(i, &c)| channel_from(&format!("{field}[{i}]"), c))
        .collect()
}

pub fn policy_from(p: proto::SendPolicy) -> Result<(String, SendPolicy), InvalidField> {
    use proto::QuietHoursMode as P;
    let quiet_hours_mode = match P::try_from(p.quiet_hours_mode) {
        Ok(P::Unspecified | P::Wait) => QuietHoursMode::Wait,
        Ok(P::NextChannel) => QuietHoursMode::NextChannel,
        Ok(P::Ignore) => QuietHoursMode::Ignore,
        Err(_) => {
            return Err(InvalidField::new(
                "quiet_hours_mode",
                format!("unknown mode {}", p.quiet_hours_mode),
            ));
        }
    };
    let mut quiet_hours = std::collections::BTreeMap::new();
    for (i, q) in p.quiet_hours.iter().enumerate() {
        let channel = channel_from(&format!("quiet_hours[{i}].channel"), q.channel)?;
        let window = QuietWindow::new(&q.start, &q.end)
            .map_err(|e| InvalidField::new(format!("quiet_hours[{i}]"), e))?;
        quiet_hours.insert(channel, window);
    }
    Ok((
        p.campaign_type,
        SendPolicy {
            allowed_channels: channels("allowed_channels", &p.allowed_channels)?,
            preference: channels("preference", &p.preference)?,
            fallback_chain: channels("fallback_chain", &p.fallback_chain)?,
            min_score: p.min_score,
            urgent: p.urgent,
            quiet_hours_mode,
            quiet_hours,
        },
    ))
}

pub fn policy_to(name: String, p: SendPolicy) -> proto::SendPolicy {
    let list = |v: &[crate::domain::Channel]| v.iter().map(|&c| channel_to(c) as i32).collect();
    proto::SendPolicy {
        campaign_type: name,
        allowed_channels: list(&p.allowed_channels),
        preference: list(&p.preference),
        fallback_chain: list(&p.fallback_chain),
        min_score: p.min_score,
        urgent: p.urgent,
        quiet_hours_mode: match p.quiet_hours_mode {
            QuietHoursMode::Wait => proto::QuietHoursMode::Wait,
            QuietHoursMode::NextChannel => proto::QuietHoursMode::NextChannel,
            QuietHoursMode::Ignore => proto::QuietHoursMode::Ignore,
        }
        .into(),
        quiet_hours: p
            .quiet_hours
            .into_iter()
            .map(|(c, w)| proto::QuietHours {
                channel: channel_to(c).into(),
                start: w.start_text(),
                end: w.end_text(),
            })
            .collect(),
    }
}

pub fn source_name(source: PolicySource) -> &'static str {
    match source {
        PolicySource::Tenant => "tenant",
        PolicySource::Config => "config",
        PolicySource::Default => "default",
    }
}

/// The senders of an ask: `sender_id` and `sender_ids` together.
fn senders(one: String, many: Vec<String>) -> Vec<String> {
    let mut all: Vec<String> = std::iter::once(one)
        .filter(|s| !s.is_empty())
        .chain(many)
        .collect();
    all.dedup();
    all
}

pub fn ask_from_best(
    r: proto::GetBestChannelRequest,
    as_of: Option<crate::domain::Millis>,
) -> Result<Ask, InvalidField> {
    Ok(Ask {
        allowed: channels("allowed_channels", &r.allowed_channels)?,
        contact_id: r.contact_id,
        urgent: r.urgent,
        as_of,
        sender_ids: senders(r.sender_id, r.sender_ids),
        campaign_id: r.campaign_id,
        campaign_type: r.campaign_type,
    })
}

pub fn ask_from_reachability(
    r: proto::GetReachabilityRequest,
    as_of: Option<crate::domain::Millis>,
) -> Ask {
    Ask {
        contact_id: r.contact_id,
        as_of,
        sender_ids: senders(r.sender_id, r.sender_ids),
        campaign_id: r.campaign_id,
        ..Ask::default()
    }
}
