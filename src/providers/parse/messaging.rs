//! SMS and voice providers: Twilio, Twilio Voice, Plivo, Vonage, Infobip, Sinch.

use crate::providers::{
    native::{
        NativeEvent, Payload, parse_compact_date, parse_plain_datetime, parse_rfc2822,
        parse_rfc3339,
    },
    parse::{RawBody, expect_type, field, form, json, text},
};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// Form fields, or a flat JSON object read as fields.
fn fields(raw: &RawBody) -> Result<Vec<(String, String)>, String> {
    if expect_type(raw, &[FORM, JSON])? == FORM {
        return form(raw);
    }
    let value = json(raw)?;
    let object = value.as_object().ok_or("JSON body is not an object")?;
    Ok(object
        .iter()
        .filter_map(|(k, v)| crate::providers::native::scalar(v).map(|v| (k.clone(), v)))
        .collect())
}

fn required(pairs: &[(String, String)], names: &[&str]) -> Result<String, String> {
    field(pairs, names).ok_or_else(|| format!("body has no {}", names.join(" / ")))
}

/// Twilio Messaging status callback (form): MessageStatus, ErrorCode, MessageSid, To.
pub fn twilio(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &[FORM])?;
    let pairs = form(raw)?;
    let status = required(&pairs, &["MessageStatus", "SmsStatus"])?;
    let sid = required(&pairs, &["MessageSid", "SmsSid"])?;
    let mut event = NativeEvent {
        provider_event_id: Some(format!("{sid}:{status}")),
        message_id: Some(sid),
        address: field(&pairs, &["To"]),
        occurred_at: field(&pairs, &["RawDlrDoneDate"]).and_then(|d| parse_compact_date(&d)),
        ..NativeEvent::default()
    };
    event.set("status", Some(status));
    event.set("error_code", field(&pairs, &["ErrorCode"]));
    event.payload = Payload::Form(pairs);
    Ok(vec![event])
}

/// Twilio Voice status callback (form): CallStatus, AnsweredBy, CallSid, To, Timestamp.
pub fn twilio_voice(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &[FORM])?;
    let pairs = form(raw)?;
    let status = required(&pairs, &["CallStatus"])?;
    let sid = required(&pairs, &["CallSid"])?;
    let mut event = NativeEvent {
        provider_event_id: Some(format!("{sid}:{status}")),
        message_id: Some(sid),
        address: field(&pairs, &["To", "Called"]),
        occurred_at: field(&pairs, &["Timestamp"]).and_then(|t| parse_rfc2822(&t)),
        ..NativeEvent::default()
    };
    event.set("status", Some(status));
    event.set("answered_by", field(&pairs, &["AnsweredBy"]));
    event.set("error_code", field(&pairs, &["SipResponseCode"]));
    event.payload = Payload::Form(pairs);
    Ok(vec![event])
}

/// Plivo SMS status callback (form or JSON): Status, ErrorCode, MessageUUID, To.
pub fn plivo(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    let pairs = fields(raw)?;
    let status = required(&pairs, &["Status"])?;
    let uuid = required(&pairs, &["MessageUUID"])?;
    let mut event = NativeEvent {
        provider_event_id: Some(format!("{uuid}:{status}")),
        message_id: Some(uuid),
        address: field(&pairs, &["To"]),
        carrier: field(&pairs, &["MNC"])
            .map(|mnc| format!("{}{mnc}", field(&pairs, &["MCC"]).unwrap_or_default())),
        ..NativeEvent::default()
    };
    event.set("status", Some(status));
    // Plivo sends 000 or nothing when there is no error.
    event.set(
        "error_code",
        field(&pairs, &["ErrorCode"]).filter(|c| !c.trim_start_matches('0').is_empty()),
    );
    event.payload = Payload::Form(pairs);
    Ok(vec![event])
}

/// Vonage SMS API delivery receipt (JSON or form): status, err-code, messageId, msisdn.
pub fn vonage(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    let pairs = fields(raw)?;
    let status = required(&pairs, &["status"])?;
    let id = required(&pairs, &["messageId", "message-id"])?;
    let mut event = NativeEvent {
        provider_event_id: Some(format!("{id}:{status}")),
        message_id: Some(id),
        address: field(&pairs, &["msisdn"]),
        occurred_at: field(&pairs, &["scts"])
            .and_then(|t| parse_compact_date(&t))
            .or_else(|| {
                field(&pairs, &["message-timestamp"]).and_then(|t| parse_plain_datetime(&t))
            }),
        carrier: field(&pairs, &["network-code"]),
        ..NativeEvent::default()
    };
    event.set("status", Some(status));
    event.set("error_code", field(&pairs, &["err-code"]));
    event.payload = Payload::Form(pairs);
    Ok(vec![event])
}

/// Infobip delivery reports (JSON `results` array).
pub fn infobip(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &[JSON])?;
    let value = json(raw)?;
    let results = value
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or("body has no results array")?;
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let status = r
                .get("status")
                .ok_or_else(|| format!("results[{i}] has no status"))?;
            let group = text(status, "groupName")
                .ok_or_else(|| format!("results[{i}].status has no groupName"))?;
            let name = text(status, "name").unwrap_or_default();
            let id =
                text(r, "messageId").ok_or_else(|| format!("results[{i}] has no messageId"))?;
            let mut event = NativeEvent {
                provider_event_id: Some(format!("{id}:{name}")),
                message_id: Some(id),
                address: text(r, "to"),
                occurred_at: text(r, "doneAt").and_then(|t| parse_rfc3339(&t)),
                sent_at: text(r, "sentAt").and_then(|t| parse_rfc3339(&t)),
                carrier: text(r, "mccMnc"),
                payload: Payload::Json(r.clone()),
                ..NativeEvent::default()
            };
            event.set("status", Some(group));
            event.set("status_name", Some(name));
            if let Some(error) = r
                .get("error")
                .filter(|e| text(e, "name").is_some_and(|n| n != "NO_ERROR"))
            {
                event.set("error_code", text(error, "name"));
                event.set("error_group", text(error, "groupName"));
                event.set(
                    "permanent",
                    error
                        .get("permanent")
                        .and_then(|p| p.as_bool())
                        .map(|p| p.to_string()),
                );
            }
            Ok(event)
        })
        .collect()
}

/// Sinch SMS delivery report callback (JSON object, or an array of them).
pub fn sinch(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &[JSON])?;
    let value = json(raw)?;
    let reports = match &value {
        serde_json::Value::Array(items) => items.clone(),
        serde_json::Value::Object(_) => vec![value.clone()],
        _ => return Err("body is neither a delivery report nor an array of them".into()),
    };
    reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let status = text(&r, "status").ok_or_else(|| format!("report {i} has no status"))?;
            let batch =
                text(&r, "batch_id").ok_or_else(|| format!("report {i} has no batch_id"))?;
            let recipient = text(&r, "recipient");
            let mut event = NativeEvent {
                provider_event_id: Some(format!(
                    "{batch}:{}:{status}",
                    recipient.clone().unwrap_or_default()
                )),
                message_id: Some(batch),
                address: recipient,
                occurred_at: text(&r, "operator_status_at")
                    .or_else(|| text(&r, "at"))
                    .and_then(|t| parse_rfc3339(&t)),
                ..NativeEvent::default()
            };
            event.set("status", Some(status));
            event.set("error_code", text(&r, "code").filter(|c| c != "0"));
            event.payload = Payload::Json(r);
            Ok(event)
        })
        .collect()
}
