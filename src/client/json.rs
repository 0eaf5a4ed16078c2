//! Protobuf <-> JSON in the canonical proto3 mapping (what grpcurl prints
//! and reads), through the descriptors compiled into the binary.

use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled into the binary decodes")
    })
}

/// `message` as a JSON value; `full_name` is its proto name, e.g.
/// "reachability.v1.GetBestChannelResponse".
pub fn to_json<M: Message>(message: &M, full_name: &str) -> anyhow::Result<serde_json::Value> {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| anyhow!("no message {full_name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    let options = SerializeOptions::new().skip_default_fields(true);
    Ok(dynamic.serialize_with_options(serde_json::value::Serializer, &options)?)
}

/// Parses `json` (one JSON text) as the message `full_name`. Unknown fields
/// are an error: a typo must not silently drop data.
pub fn from_json<M: Message + Default>(json: &str, full_name: &str) -> anyhow::Result<M> {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| anyhow!("no message {full_name}"))?;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let dynamic = DynamicMessage::deserialize_with_options(
        descriptor,
        &mut deserializer,
        &DeserializeOptions::new(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    deserializer.end().map_err(|e| anyhow!("{e}"))?;
    M::decode(dynamic.encode_to_vec().as_slice()).context("re-encoding")
}

/// Like [`from_json`], from a JSON value.
pub fn from_value<M: Message + Default>(
    value: &serde_json::Value,
    full_name: &str,
) -> anyhow::Result<M> {
    from_json(&value.to_string(), full_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    #[test]
    fn round_trips_an_event_in_grpcurl_json() {
        let line = r#"{"event_id":"e1","contactId":"alice","channel":"CHANNEL_SMS","status":"STATUS_DELIVERED","occurredAt":"2026-11-26T09:00:00Z"}"#;
        let event: proto::ChannelEvent = from_json(line, "reachability.v1.ChannelEvent").unwrap();
        assert_eq!(event.contact_id, "alice");
        assert_eq!(event.event_id, "e1");
        assert_eq!(event.channel, proto::Channel::Sms as i32);
        let json = to_json(&event, "reachability.v1.ChannelEvent").unwrap();
        assert_eq!(json["contactId"], "alice");
        assert_eq!(json["status"], "STATUS_DELIVERED");
    }

    #[test]
    fn refuses_unknown_fields_and_bad_enums() {
        let typo = r#"{"event_id":"e1","contact":"alice"}"#;
        assert!(from_json::<proto::ChannelEvent>(typo, "reachability.v1.ChannelEvent").is_err());
        let bad = r#"{"channel":"CHANNEL_FAX"}"#;
        assert!(from_json::<proto::ChannelEvent>(bad, "reachability.v1.ChannelEvent").is_err());
    }
}
