//! Push providers: the send responses of FCM HTTP v1 and APNs.

use crate::providers::{
    native::{NativeEvent, Payload, scalar},
    parse::{RawBody, expect_type, json, text},
};

/// An FCM HTTP v1 response: `{"name": ...}` on success, `{"error": {...}}`
/// with an `FcmError` detail otherwise.
pub fn fcm(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &["application/json"])?;
    let value = json(raw)?;
    let mut event = NativeEvent::default();
    if let Some(name) = text(&value, "name") {
        event.set("status", Some("success".into()));
        event.provider_event_id = Some(name.clone());
        event.message_id = Some(name);
    } else {
        let error = value
            .get("error")
            .ok_or("body has neither name nor error")?;
        let code = error
            .get("details")
            .and_then(|d| d.as_array())
            .and_then(|details| {
                details
                    .iter()
                    .find(|d| text(d, "@type").is_some_and(|t| t.ends_with("FcmError")))
                    .and_then(|d| text(d, "errorCode"))
            })
            // Without an FcmError detail only the canonical status is known.
            .or_else(|| text(error, "status"))
            .ok_or("error has neither an FcmError detail nor a status")?;
        event.set("status", Some(code));
        event.set("http_status", error.get("code").and_then(scalar));
    }
    event.payload = Payload::Json(value);
    Ok(vec![event])
}

/// An APNs response: the HTTP status comes as the native status, the body
/// (empty on success) as `{"reason": ..., "timestamp": ...}`.
pub fn apns(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    let status = raw.native_status.trim();
    if status.is_empty() || !status.bytes().all(|b| b.is_ascii_digit()) {
        return Err("APNs needs the HTTP status of the response as native.status".into());
    }
    let mut event = NativeEvent::default();
    event.set("status", Some(status.to_string()));
    if !raw.body.is_empty() {
        expect_type(raw, &["application/json"])?;
        let value = json(raw)?;
        event.set("error_code", text(&value, "reason"));
        event.occurred_at = value
            .get("timestamp")
            .and_then(|t| t.as_i64())
            .map(crate::domain::Millis);
        event.payload = Payload::Json(value);
    }
    Ok(vec![event])
}
