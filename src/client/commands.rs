//! `reach best`, `reach reachability`, `reach record`, `reach stats`: one
//! call each, printed as a table for people or as JSON for scripts.

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use prost_types::Timestamp;

use crate::{
    client::{ClientArgs, connect::describe, json},
    proto,
};

#[derive(Args, Debug)]
pub struct BestArgs {
    /// The contact id.
    pub contact: String,
    /// Channels you can use (sms, email, push, voice); all four if omitted.
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
    /// Time-critical traffic: avoid degraded routes.
    #[arg(long)]
    pub urgent: bool,
    /// The send policy to apply (campaign type); "default" if omitted.
    #[arg(long)]
    pub campaign_type: Option<String>,
    /// The sender the message would go out from.
    #[arg(long)]
    pub sender: Option<String>,
    #[arg(long)]
    pub campaign: Option<String>,
    /// Print the response as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReachabilityArgs {
    pub contact: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RecordArgs {
    /// The contact id.
    #[arg(long)]
    pub contact: String,
    /// sms, email, push or voice.
    #[arg(long)]
    pub channel: String,
    /// A status of the taxonomy: delivered, bounced_hard, optout, ...
    #[arg(long)]
    pub status: String,
    /// The idempotency key; a random one if omitted (then a retry records twice).
    #[arg(long)]
    pub event_id: Option<String>,
    /// When it happened (RFC 3339); now if omitted.
    #[arg(long)]
    pub at: Option<String>,
    #[arg(long)]
    pub address: Option<String>,
    #[arg(long)]
    pub message_id: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub carrier: Option<String>,
    #[arg(long)]
    pub country: Option<String>,
    #[arg(long)]
    pub campaign: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// First day (YYYY-MM-DD, UTC); 7 days before --to if omitted.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD, UTC); today if omitted.
    #[arg(long)]
    pub to: Option<String>,
    /// Group by: channel, carrier, country, campaign_id, campaign_type,
    /// lifecycle_stage, sender_id, day.
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// Keep rows where DIMENSION=VALUE (repeatable).
    #[arg(long = "where")]
    pub filters: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

/// Parses "sms" or "CHANNEL_SMS" (any case) into a proto enum value.
fn parse_enum<E>(
    what: &str,
    value: &str,
    prefix: &str,
    from_name: fn(&str) -> Option<E>,
) -> anyhow::Result<E> {
    let upper = value.trim().to_ascii_uppercase();
    let name = if upper.starts_with(prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    };
    from_name(&name).with_context(|| format!("{what} {value:?} is not one reach knows"))
}

pub fn channel(value: &str) -> anyhow::Result<proto::Channel> {
    parse_enum("channel", value, "CHANNEL_", proto::Channel::from_str_name)
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

fn channel_name(value: i32) -> String {
    proto::Channel::try_from(value)
        .map(|c| short(c.as_str_name(), "CHANNEL_"))
        .unwrap_or_else(|_| value.to_string())
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY).set_header(header);
    table
}

fn print_json<M: prost::Message>(message: &M, name: &str) -> anyhow::Result<()> {
    let value = json::to_json(message, &format!("reachability.v1.{name}"))?;
    out!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn address_hint(address: &Option<proto::Address>) -> String {
    address
        .as_ref()
        .map(|a| {
            if a.address.is_empty() {
                a.hint.clone()
            } else {
                a.address.clone()
            }
        })
        .unwrap_or_default()
}

fn why(score: &proto::ChannelScore) -> String {
    let mut lines = Vec::new();
    if !score.ineligible_reason.is_empty() {
        lines.push(format!("not eligible: {}", score.ineligible_reason));
    }
    lines.extend(score.reasons.iter().cloned());
    lines.join("\n")
}

pub async fn best(client: &ClientArgs, args: BestArgs) -> anyhow::Result<()> {
    let allowed = args
        .channels
        .iter()
        .map(|c| channel(c).map(|c| c as i32))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = proto::GetBestChannelRequest {
        contact_id: args.contact,
        allowed_channels: allowed,
        urgent: args.urgent,
        sender_id: args.sender.unwrap_or_default(),
        campaign_id: args.campaign.unwrap_or_default(),
        campaign_type: args.campaign_type.unwrap_or_default(),
        ..Default::default()
    };
    let response = client
        .connect()
        .await?
        .get_best_channel(request)
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    if args.json {
        return print_json(&response, "GetBestChannelResponse");
    }
    let choice = match response.channel {
        0 => "no channel".to_string(),
        c => channel_name(c),
    };
    let address = address_hint(&response.address);
    let when = match &response.send_after {
        Some(at) => format!(", after {at}"),
        None => String::new(),
    };
    out!(
        "{}: {choice}{}{when}",
        response.contact_id,
        if address.is_empty() {
            String::new()
        } else {
            format!(" to {address}")
        }
    );
    out!("{}", response.reason);
    let mut rows = table(&["#", "channel", "weighted", "score", "confidence", "why"]);
    for (rank, score) in response.ranked.iter().enumerate() {
        rows.add_row(vec![
            if score.eligible {
                (rank + 1).to_string()
            } else {
                "-".into()
            },
            channel_name(score.channel),
            format!("{:.3}", score.weighted_score),
            format!("{:.3}", score.score),
            format!("{:.2}", score.confidence),
            why(score),
        ]);
    }
    out!("{rows}");
    Ok(())
}

pub async fn reachability(client: &ClientArgs, args: ReachabilityArgs) -> anyhow::Result<()> {
    let request = proto::GetReachabilityRequest {
        contact_id: args.contact,
        ..Default::default()
    };
    let response = client
        .connect()
        .await?
        .get_reachability(request)
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    if args.json {
        return print_json(&response, "GetReachabilityResponse");
    }
    out!(
        "{}: reached on some channel with probability {:.3}",
        response.contact_id,
        response.overall_score
    );
    let mut rows = table(&[
        "channel",
        "score",
        "confidence",
        "eligible",
        "hard fails",
        "engagement",
        "last event",
        "why",
    ]);
    for score in &response.channels {
        rows.add_row(vec![
            channel_name(score.channel),
            format!("{:.3}", score.score),
            format!("{:.2}", score.confidence),
            if score.eligible { "yes" } else { "no" }.into(),
            score.consecutive_hard_fails.to_string(),
            format!("{:.2}", score.engagement_score),
            score
                .last_event_at
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            why(score),
        ]);
    }
    out!("{rows}");
    Ok(())
}

fn timestamp(field: &str, value: &str) -> anyhow::Result<Timestamp> {
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{field} {value:?} is not an RFC 3339 time"))
}

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

pub async fn record(client: &ClientArgs, args: RecordArgs) -> anyhow::Result<()> {
    let status = parse_enum(
        "status",
        &args.status,
        "STATUS_",
        proto::Status::from_str_name,
    )?;
    let occurred_at = match &args.at {
        Some(at) => timestamp("--at", at)?,
        None => now(),
    };
    let event_id = args
        .event_id
        .unwrap_or_else(|| format!("cli-{:016x}", fastrand::u64(..)));
    let event = proto::ChannelEvent {
        event_id,
        contact_id: args.contact,
        channel: channel(&args.channel)? as i32,
        status: status as i32,
        occurred_at: Some(occurred_at),
        address: args.address.unwrap_or_default(),
        message_id: args.message_id.unwrap_or_default(),
        provider: args.provider.unwrap_or_default(),
        carrier: args.carrier.unwrap_or_default(),
        country: args.country.unwrap_or_default(),
        campaign_id: args.campaign.unwrap_or_default(),
        ..Default::default()
    };
    let response = client
        .connect()
        .await?
        .record_event(proto::RecordEventRequest { event: Some(event) })
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    if args.json {
        return print_json(&response, "RecordEventResponse");
    }
    if response.duplicate {
        out!("{}: already recorded, nothing changed", response.event_id);
    } else {
        out!("{}: recorded", response.event_id);
    }
    Ok(())
}

fn day(field: &str, value: &str) -> anyhow::Result<Timestamp> {
    timestamp(field, &format!("{value}T00:00:00Z"))
}

fn dimension(value: &str) -> anyhow::Result<proto::Dimension> {
    parse_enum(
        "dimension",
        value,
        "DIMENSION_",
        proto::Dimension::from_str_name,
    )
}

fn stats_request(args: &StatsArgs) -> anyhow::Result<proto::QueryDeliveryStatsRequest> {
    const DAY_SECS: i64 = 24 * 3600;
    let to = match &args.to {
        Some(to) => day("--to", to)?,
        None => now(),
    };
    let from = match &args.from {
        Some(from) => day("--from", from)?,
        None => Timestamp {
            seconds: to.seconds - 7 * DAY_SECS,
            nanos: 0,
        },
    };
    let group_by = args
        .by
        .iter()
        .map(|d| dimension(d).map(|d| d as i32))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut filters = Vec::new();
    for filter in &args.filters {
        let Some((dim, value)) = filter.split_once('=') else {
            bail!("--where {filter:?}: expected DIMENSION=VALUE");
        };
        filters.push(proto::DimensionFilter {
            dimension: dimension(dim)? as i32,
            values: value.split(',').map(str::to_string).collect(),
        });
    }
    Ok(proto::QueryDeliveryStatsRequest {
        from: Some(from),
        to: Some(to),
        group_by,
        filters,
    })
}

fn optional(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map(format).unwrap_or_else(|| "-".into())
}

pub async fn stats(client: &ClientArgs, args: StatsArgs) -> anyhow::Result<()> {
    let request = stats_request(&args)?;
    let group_names: Vec<String> = request
        .group_by
        .iter()
        .map(|d| {
            proto::Dimension::try_from(*d)
                .map(|d| short(d.as_str_name(), "DIMENSION_"))
                .unwrap_or_default()
        })
        .collect();
    let response = client
        .connect()
        .await?
        .query_delivery_stats(request)
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    if args.json {
        return print_json(&response, "QueryDeliveryStatsResponse");
    }
    let mut header: Vec<&str> = group_names.iter().map(String::as_str).collect();
    header.extend([
        "attempts",
        "delivered",
        "hard",
        "soft",
        "unconfirmed",
        "blocked",
        "opt-outs",
        "rate",
        "p50 ms",
        "p95 ms",
    ]);
    let mut rows = table(&header);
    for row in &response.rows {
        let counts = row.counts.unwrap_or_default();
        let mut cells: Vec<String> = row.group.iter().map(|g| g.value.clone()).collect();
        cells.extend([
            row.attempts.to_string(),
            counts.delivered.to_string(),
            counts.bounced_hard.to_string(),
            counts.pending_retry.to_string(),
            counts.unconfirmed.to_string(),
            counts.blocked_compliance.to_string(),
            counts.optout.to_string(),
            optional(row.delivery_rate, |r| format!("{:.1}%", r * 100.0)),
            optional(row.latency_p50_ms, |v| format!("{v:.0}")),
            optional(row.latency_p95_ms, |v| format!("{v:.0}")),
        ]);
        rows.add_row(cells);
    }
    out!("{rows}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_by_short_or_full_name() {
        assert_eq!(channel("sms").unwrap(), proto::Channel::Sms);
        assert_eq!(channel("CHANNEL_EMAIL").unwrap(), proto::Channel::Email);
        assert!(channel("fax").is_err());
        assert_eq!(
            dimension("campaign_id").unwrap(),
            proto::Dimension::CampaignId
        );
    }

    #[test]
    fn stats_filters_need_a_value() {
        let args = StatsArgs {
            from: Some("2026-11-01".into()),
            to: Some("2026-11-26".into()),
            by: vec!["carrier".into()],
            filters: vec!["channel".into()],
            json: false,
        };
        assert!(stats_request(&args).is_err());
    }
}
