//! Email providers: SendGrid, Amazon SES (through SNS), Mailgun, Postmark.

use serde_json::Value;

use crate::providers::{
    native::{NativeEvent, Payload, parse_rfc3339, parse_unix_seconds},
    parse::{RawBody, expect_type, json, text},
};

const JSON: &str = "application/json";

/// SendGrid Event Webhook: a JSON array of events.
pub fn sendgrid(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &[JSON])?;
    let value = json(raw)?;
    let events = value
        .as_array()
        .ok_or("body is not a JSON array of events")?;
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let kind = text(e, "event").ok_or_else(|| format!("event {i} has no event field"))?;
            let mut event = NativeEvent {
                provider_event_id: text(e, "sg_event_id"),
                message_id: text(e, "sg_message_id"),
                address: text(e, "email"),
                occurred_at: e.get("timestamp").and_then(parse_unix_seconds),
                payload: Payload::Json(e.clone()),
                ..NativeEvent::default()
            };
            event.set("status", Some(kind));
            event.set("sub_type", text(e, "type"));
            event.set(
                "error_code",
                text(e, "reason").filter(|_| event.attribute("status") == "dropped"),
            );
            event.set("classification", text(e, "bounce_classification"));
            Ok(event)
        })
        .collect()
}

/// Amazon SES notification or event, in an SNS envelope (SNS posts it as
/// text/plain) or bare.
pub fn ses(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &[JSON, "text/plain"])?;
    let outer = json(raw)?;
    let (sns_id, message) = match text(&outer, "Type").as_deref() {
        Some("Notification") => {
            let inner = text(&outer, "Message").ok_or("SNS notification has no Message")?;
            let message: Value = serde_json::from_str(&inner)
                .map_err(|e| format!("SNS Message is not valid JSON: {e}"))?;
            (text(&outer, "MessageId"), message)
        }
        Some("SubscriptionConfirmation") | Some("UnsubscribeConfirmation") => {
            return Err("an SNS subscription message is not a delivery event: confirm it at its SubscribeURL".into());
        }
        Some(other) => return Err(format!("unknown SNS message type {other:?}")),
        None => (None, outer),
    };
    let kind = text(&message, "eventType")
        .or_else(|| text(&message, "notificationType"))
        .ok_or("SES message has neither eventType nor notificationType")?;
    let mail = message
        .get("mail")
        .ok_or("SES message has no mail object")?;
    let mail_id = text(mail, "messageId").ok_or("SES mail has no messageId")?;
    let detail = message
        .get(detail_key(&kind))
        .cloned()
        .unwrap_or(Value::Null);
    let recipients = recipients(&kind, &detail, mail);
    if recipients.is_empty() {
        return Err(format!("SES {kind} names no recipient"));
    }
    let occurred_at = text(&detail, "timestamp")
        .or_else(|| text(mail, "timestamp"))
        .and_then(|t| parse_rfc3339(&t));
    let base_id = sns_id.unwrap_or_else(|| mail_id.clone());
    Ok(recipients
        .into_iter()
        .map(|recipient| {
            let mut event = NativeEvent {
                provider_event_id: Some(format!("{base_id}:{kind}:{recipient}")),
                message_id: Some(mail_id.clone()),
                address: Some(recipient),
                occurred_at,
                sent_at: text(mail, "timestamp").and_then(|t| parse_rfc3339(&t)),
                payload: Payload::Json(message.clone()),
                ..NativeEvent::default()
            };
            event.set("status", Some(kind.clone()));
            event.set("sub_type", text(&detail, "bounceType"));
            event.set("error_code", text(&detail, "bounceSubType"));
            event
        })
        .collect())
}

/// The object that carries an SES event's details, named after the event.
fn detail_key(kind: &str) -> &'static str {
    match kind.to_lowercase().as_str() {
        "bounce" => "bounce",
        "complaint" => "complaint",
        "delivery" => "delivery",
        "deliverydelay" => "deliveryDelay",
        "open" => "open",
        "click" => "click",
        "reject" => "reject",
        "subscription" => "subscription",
        _ => "send",
    }
}

fn recipients(kind: &str, detail: &Value, mail: &Value) -> Vec<String> {
    let list = |key: &str, field: Option<&str>| -> Vec<String> {
        detail
            .get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| match field {
                        Some(f) => text(item, f),
                        None => item.as_str().map(str::to_string),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let named = match kind.to_lowercase().as_str() {
        "bounce" => list("bouncedRecipients", Some("emailAddress")),
        "complaint" => list("complainedRecipients", Some("emailAddress")),
        "delivery" => list("recipients", None),
        "deliverydelay" => list("delayedRecipients", Some("emailAddress")),
        _ => Vec::new(),
    };
    if !named.is_empty() {
        return named;
    }
    mail.get("destination")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Mailgun webhook: `{"signature": ..., "event-data": {...}}`.
pub fn mailgun(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &[JSON])?;
    let value = json(raw)?;
    let data = value.get("event-data").ok_or("body has no event-data")?;
    let kind = text(data, "event").ok_or("event-data has no event")?;
    let mut event = NativeEvent {
        provider_event_id: text(data, "id"),
        message_id: data
            .get("message")
            .and_then(|m| m.get("headers"))
            .and_then(|h| text(h, "message-id")),
        address: text(data, "recipient"),
        occurred_at: data.get("timestamp").and_then(parse_unix_seconds),
        payload: Payload::Json(data.clone()),
        ..NativeEvent::default()
    };
    event.set("status", Some(kind));
    event.set("sub_type", text(data, "severity"));
    event.set("error_code", text(data, "reason"));
    Ok(vec![event])
}

/// Postmark webhook: one JSON object per event, typed by RecordType.
pub fn postmark(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &[JSON])?;
    let value = json(raw)?;
    let kind = text(&value, "RecordType").ok_or("body has no RecordType")?;
    let message_id = text(&value, "MessageID");
    let address = text(&value, "Recipient").or_else(|| text(&value, "Email"));
    let at = ["BouncedAt", "DeliveredAt", "ReceivedAt", "ChangedAt"]
        .iter()
        .find_map(|k| text(&value, k))
        .and_then(|t| parse_rfc3339(&t));
    let mut event = NativeEvent {
        provider_event_id: Some(format!(
            "{kind}:{}:{}:{}",
            message_id.clone().unwrap_or_default(),
            address.clone().unwrap_or_default(),
            text(&value, "ID").unwrap_or_default()
        )),
        message_id,
        address,
        occurred_at: at,
        payload: Payload::Json(value.clone()),
        ..NativeEvent::default()
    };
    event.set("status", Some(kind.clone()));
    let sub_type = if kind == "SubscriptionChange" {
        text(&value, "SuppressSending")
    } else {
        text(&value, "Type")
    };
    event.set("sub_type", sub_type);
    Ok(vec![event])
}
