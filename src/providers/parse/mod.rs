//! Provider payloads to native events. One function per provider turns a
//! webhook body (form, JSON, SNS envelope, SMPP receipt text) into the
//! attributes the mapping tables classify, plus the event's metadata.
//! Anything that does not parse is refused with a reason; it never reaches
//! the tables half-read.

mod email;
mod messaging;
mod push;
mod smpp;

use crate::providers::native::NativeEvent;

/// The body of a request and the HTTP status some providers report apart
/// from it (APNs).
pub struct RawBody<'a> {
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub native_status: &'a str,
}

/// Providers whose bodies reach can read (checked against the tables in tests).
#[cfg(test)]
pub const PARSED: [&str; 13] = [
    "twilio",
    "twilio-voice",
    "plivo",
    "vonage",
    "infobip",
    "sinch",
    "smpp",
    "sendgrid",
    "ses",
    "mailgun",
    "postmark",
    "fcm",
    "apns",
];

/// Parses `raw` as a body of `provider`. `Ok(None)` if reach has no parser
/// for the provider (its events can still come as native fields).
pub fn parse(provider: &str, raw: &RawBody) -> Option<Result<Vec<NativeEvent>, String>> {
    let result = match provider {
        "twilio" => messaging::twilio(raw),
        "twilio-voice" => messaging::twilio_voice(raw),
        "plivo" => messaging::plivo(raw),
        "vonage" => messaging::vonage(raw),
        "infobip" => messaging::infobip(raw),
        "sinch" => messaging::sinch(raw),
        "smpp" => smpp::receipt(raw),
        "sendgrid" => email::sendgrid(raw),
        "ses" => email::ses(raw),
        "mailgun" => email::mailgun(raw),
        "postmark" => email::postmark(raw),
        "fcm" => push::fcm(raw),
        "apns" => push::apns(raw),
        _ => return None,
    };
    Some(result)
}

/// The media type without parameters, lower-cased.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_lowercase()
}

fn expect_type(raw: &RawBody, allowed: &[&str]) -> Result<String, String> {
    let media = media_type(raw.content_type);
    if allowed.contains(&media.as_str()) {
        Ok(media)
    } else {
        Err(format!(
            "content_type {:?} is not one of {}",
            raw.content_type,
            allowed.join(", ")
        ))
    }
}

fn json(raw: &RawBody) -> Result<serde_json::Value, String> {
    serde_json::from_slice(raw.body).map_err(|e| format!("body is not valid JSON: {e}"))
}

fn form(raw: &RawBody) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(raw.body).map_err(|_| "form body is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Err("form body is empty".into());
    }
    Ok(form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect())
}

fn field(pairs: &[(String, String)], names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .filter(|v| !v.is_empty())
}

fn text(value: &serde_json::Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(crate::providers::native::scalar)
        .filter(|v| !v.is_empty())
}
