//! SMPP 3.4 delivery receipts, the text of a deliver_sm short message
//! (Appendix B): `id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm
//! done date:YYMMDDhhmm stat:DDDDDDD err:E text:...`.

use crate::providers::{
    native::{NativeEvent, parse_compact_date},
    parse::{RawBody, expect_type},
};

const LABELS: [&str; 8] = [
    "id",
    "sub",
    "dlvrd",
    "submit date",
    "done date",
    "stat",
    "err",
    "text",
];

/// The value after `label:` up to the next known label.
fn value<'a>(receipt: &'a str, lower: &str, label: &str) -> Option<&'a str> {
    let start = lower.find(&format!("{label}:"))? + label.len() + 1;
    let rest = &lower[start..];
    let end = LABELS
        .iter()
        .filter(|l| **l != label)
        .filter_map(|l| rest.find(&format!(" {l}:")))
        .min()
        .unwrap_or(rest.len());
    Some(receipt[start..start + end].trim())
}

pub fn receipt(raw: &RawBody) -> Result<Vec<NativeEvent>, String> {
    expect_type(raw, &["text/plain"])?;
    let receipt =
        std::str::from_utf8(raw.body).map_err(|_| "receipt text is not UTF-8".to_string())?;
    if receipt.len() > 1024 {
        return Err("receipt text is longer than an SMPP short message".into());
    }
    let lower = receipt.to_ascii_lowercase();
    let id = value(receipt, &lower, "id")
        .filter(|v| !v.is_empty())
        .ok_or("receipt has no id")?;
    let stat = value(receipt, &lower, "stat")
        .filter(|v| !v.is_empty())
        .ok_or("receipt has no stat")?;
    let mut event = NativeEvent {
        provider_event_id: Some(format!("{id}:{stat}")),
        message_id: Some(id.to_string()),
        occurred_at: value(receipt, &lower, "done date").and_then(parse_compact_date),
        sent_at: value(receipt, &lower, "submit date").and_then(parse_compact_date),
        ..NativeEvent::default()
    };
    event.set("status", Some(stat.to_string()));
    event.set(
        "error_code",
        value(receipt, &lower, "err")
            .map(str::to_string)
            .filter(|e| e != "000"),
    );
    Ok(vec![event])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_receipt() {
        let text = "id:0123456789 sub:001 dlvrd:001 submit date:2211051633 done date:2211051634 stat:DELIVRD err:000 text:Hello";
        let raw = RawBody {
            content_type: "text/plain",
            body: text.as_bytes(),
            native_status: "",
        };
        let event = receipt(&raw).unwrap().remove(0);
        assert_eq!(event.attribute("status"), "DELIVRD");
        assert_eq!(event.attribute("error_code"), "");
        assert_eq!(event.message_id.as_deref(), Some("0123456789"));
        assert!(event.occurred_at > event.sent_at);
        let bad = RawBody {
            content_type: "text/plain",
            body: b"\xff\x00garbage",
            native_status: "",
        };
        assert!(receipt(&bad).is_err());
    }
}
