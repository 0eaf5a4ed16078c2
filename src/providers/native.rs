//! A provider's event before classification: the attributes the mapping
//! tables match on, and the metadata that becomes a `ChannelEvent`.

use std::collections::BTreeMap;

use time::{OffsetDateTime, PrimitiveDateTime, format_description::well_known};

use crate::domain::Millis;

/// One event as the provider described it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NativeEvent {
    /// What the tables match on: `status`, `error_code`, `sub_type` and
    /// provider-specific keys (`answered_by`, `permanent`...).
    pub attributes: BTreeMap<String, String>,
    /// The provider's own id of this event (the dedupe key when the caller
    /// gives none).
    pub provider_event_id: Option<String>,
    pub message_id: Option<String>,
    /// The recipient as the provider names it (phone, email, token).
    pub address: Option<String>,
    pub occurred_at: Option<Millis>,
    pub sent_at: Option<Millis>,
    pub carrier: Option<String>,
    pub country: Option<String>,
    /// The part of the payload this event came from, for the configured
    /// contact field.
    pub payload: Payload,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum Payload {
    #[default]
    None,
    Form(Vec<(String, String)>),
    Json(serde_json::Value),
}

impl Payload {
    /// The value at `path`: a form key, or a dotted JSON path
    /// (`custom_args.contact_id`).
    pub fn lookup(&self, path: &str) -> Option<String> {
        match self {
            Payload::None => None,
            Payload::Form(pairs) => pairs
                .iter()
                .find(|(k, _)| k == path)
                .map(|(_, v)| v.clone()),
            Payload::Json(value) => {
                let mut at = value;
                for part in path.split('.') {
                    at = at.get(part)?;
                }
                scalar(at)
            }
        }
    }
}

/// A JSON scalar as text (numbers and booleans too).
pub fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl NativeEvent {
    pub fn set(&mut self, key: &str, value: Option<String>) {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            self.attributes
                .insert(key.to_string(), value.trim().to_string());
        }
    }

    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// A recipient address in the form reach uses as a contact id: a phone
/// number as `+digits` (E.164 shape), an email in lower case, anything
/// else (a push token) as given. `None` if it is empty or malformed.
pub fn normalize_address(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let bare = ["whatsapp:", "tel:", "sms:", "mailto:"]
        .iter()
        .find_map(|p| trimmed.strip_prefix(p))
        .unwrap_or(trimmed)
        .trim();
    if bare.is_empty() || bare.chars().any(char::is_whitespace) && !looks_like_phone(bare) {
        return None;
    }
    if let Some((local, domain)) = bare.split_once('@') {
        let valid = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.contains('@');
        return valid.then(|| bare.to_lowercase());
    }
    if looks_like_phone(bare) {
        let digits: String = bare.chars().filter(char::is_ascii_digit).collect();
        return (6..=15)
            .contains(&digits.len())
            .then(|| format!("+{digits}"));
    }
    Some(bare.to_string())
}

fn looks_like_phone(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

fn millis(at: OffsetDateTime) -> Millis {
    Millis((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// RFC 3339 / ISO 8601 with an offset, also `+0000` without the colon
/// (Infobip) and a space instead of `T`.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &well_known::Rfc3339) {
        return Some(millis(at));
    }
    let fixed = fix_offset(&text.replacen(' ', "T", 1));
    OffsetDateTime::parse(&fixed, &well_known::Rfc3339)
        .ok()
        .map(millis)
}

/// `+hhmm` at the end becomes `+hh:mm`.
fn fix_offset(text: &str) -> String {
    let bytes = text.as_bytes();
    let n = bytes.len();
    if n > 5
        && (bytes[n - 5] == b'+' || bytes[n - 5] == b'-')
        && bytes[n - 4..].iter().all(u8::is_ascii_digit)
    {
        format!("{}:{}", &text[..n - 2], &text[n - 2..])
    } else {
        text.to_string()
    }
}

/// RFC 2822, as in Twilio Voice's `Timestamp`.
pub fn parse_rfc2822(text: &str) -> Option<Millis> {
    OffsetDateTime::parse(text.trim(), &well_known::Rfc2822)
        .ok()
        .map(millis)
}

/// Seconds since the epoch, possibly fractional (SendGrid, Mailgun).
pub fn parse_unix_seconds(value: &serde_json::Value) -> Option<Millis> {
    let seconds = value.as_f64().or_else(|| value.as_str()?.parse().ok())?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Millis((seconds * 1000.0).round() as i64))
}

/// `YYMMDDhhmm` or `YYMMDDhhmmss` in UTC (SMPP receipts, Twilio `RawDlrDoneDate`, Vonage `scts`).
pub fn parse_compact_date(text: &str) -> Option<Millis> {
    let text = text.trim();
    if !(text.len() == 10 || text.len() == 12) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let padded = if text.len() == 10 {
        format!("20{text}00")
    } else {
        format!("20{text}")
    };
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    PrimitiveDateTime::parse(&padded, &format)
        .ok()
        .map(|at| millis(at.assume_utc()))
}

/// `YYYY-MM-DD hh:mm:ss` in UTC (Vonage `message-timestamp`).
pub fn parse_plain_datetime(text: &str) -> Option<Millis> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    PrimitiveDateTime::parse(text.trim(), &format)
        .ok()
        .map(|at| millis(at.assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalize() {
        assert_eq!(
            normalize_address(" +1 (415) 555-0100 ").as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            normalize_address("447700900000").as_deref(),
            Some("+447700900000")
        );
        assert_eq!(
            normalize_address("whatsapp:+14155550100").as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            normalize_address("Alice@Example.COM").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            normalize_address("fcm-token:APA91bH").as_deref(),
            Some("fcm-token:APA91bH")
        );
        assert_eq!(normalize_address("123"), None);
        assert_eq!(normalize_address("a@b"), None);
        assert_eq!(normalize_address(""), None);
    }

    #[test]
    fn timestamps_parse() {
        let at = Millis(1_572_971_634_907);
        assert_eq!(parse_rfc3339("2019-11-05T16:33:54.9070259Z"), Some(at));
        assert_eq!(parse_rfc3339("2019-11-05T16:33:54.907+0000"), Some(at));
        assert_eq!(
            parse_rfc2822("Tue, 05 Nov 2019 16:33:54 +0000"),
            Some(Millis(1_572_971_634_000))
        );
        assert_eq!(
            parse_compact_date("1911051633"),
            Some(Millis(1_572_971_580_000))
        );
        assert_eq!(
            parse_plain_datetime("2019-11-05 16:33:54"),
            Some(Millis(1_572_971_634_000))
        );
        assert_eq!(
            parse_unix_seconds(&serde_json::json!(1572969234.5)),
            Some(Millis(1_572_969_234_500))
        );
        assert_eq!(parse_compact_date("19110516"), None);
    }

    #[test]
    fn payload_paths() {
        let json = Payload::Json(serde_json::json!({"a": {"b": "x", "n": 5}}));
        assert_eq!(json.lookup("a.b").as_deref(), Some("x"));
        assert_eq!(json.lookup("a.n").as_deref(), Some("5"));
        assert_eq!(json.lookup("a.c"), None);
        let form = Payload::Form(vec![("To".into(), "+1".into())]);
        assert_eq!(form.lookup("To").as_deref(), Some("+1"));
    }
}
