//! `reach simulate`: a population's events as JSON lines of
//! RecordEventRequest, in grpcurl's JSON form, so that a run can be replayed
//! with `grpcurl -d @ ... RecordEvents`, and the hidden truth beside them.

use std::{
    io::{BufWriter, Write},
    path::Path,
};

use serde_json::json;

use crate::{
    domain::{Channel, Millis, Status},
    sim::population::{Scenario, contact},
};

const DAY: i64 = 86_400_000;

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Sms => "CHANNEL_SMS",
        Channel::Email => "CHANNEL_EMAIL",
        Channel::Push => "CHANNEL_PUSH",
        Channel::Voice => "CHANNEL_VOICE",
    }
}

fn status_name(s: Status) -> String {
    format!("STATUS_{}", s.to_string().to_ascii_uppercase())
}

fn rfc3339(at: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.0.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Writes the events of `contacts` contacts (period ending a day ago) to
/// `out`, and each message's true outcome to `truth` if given.
pub fn write(contacts: u64, seed: u64, out: &Path, truth: Option<&Path>) -> anyhow::Result<()> {
    let end = Millis((Millis::now().0 / DAY - 1) * DAY);
    let s = Scenario::new(contacts, seed, end);
    let mut events = BufWriter::new(std::fs::File::create(out)?);
    let mut truth = truth
        .map(|p| std::fs::File::create(p).map(BufWriter::new))
        .transpose()?;
    for i in 0..contacts {
        let c = contact(&s, i);
        for (n, e) in c.events.iter().enumerate() {
            let mut event = json!({
                "event_id": format!("{}-e{n}", c.id),
                "contact_id": c.id,
                "channel": channel_name(e.channel),
                "status": status_name(e.status),
                "occurred_at": rfc3339(e.at),
                "carrier": e.carrier,
            });
            if let Some(sent) = e.sent_at {
                event["sent_at"] = json!(rfc3339(sent));
            }
            for (key, value) in [
                ("message_id", e.message_id.as_str()),
                ("campaign_id", e.campaign_id),
                ("sender_id", e.sender_id),
            ] {
                if !value.is_empty() {
                    event[key] = json!(value);
                }
            }
            writeln!(events, "{}", json!({ "event": event }))?;
        }
        if let Some(truth) = truth.as_mut() {
            for m in &c.messages {
                writeln!(
                    truth,
                    "{}",
                    json!({
                        "contact_id": c.id,
                        "message_id": m.id,
                        "channel": channel_name(m.channel),
                        "sent_at": rfc3339(m.at),
                        "delivered": m.delivered,
                        "blocked_by_sender_registration": m.blocked,
                        "true_delivery_probability": c.true_p(m.channel, m.at, &s),
                    })
                )?;
            }
        }
    }
    events.flush()?;
    if let Some(mut truth) = truth {
        truth.flush()?;
    }
    Ok(())
}
