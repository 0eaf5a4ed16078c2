//! The on-disk encoding of a contact profile: one format byte, then postcard.
//! The format byte lets later versions migrate old records on read.

use crate::domain::ContactProfile;

/// Current format of stored profiles.
pub const PROFILE_FORMAT: u8 = 1;

pub fn encode_profile(profile: &ContactProfile) -> Vec<u8> {
    let out = vec![PROFILE_FORMAT];
    // Serializing plain structs into a Vec cannot fail.
    postcard::to_extend(profile, out).expect("profile serializes")
}

pub fn decode_profile(bytes: &[u8]) -> Result<ContactProfile, String> {
    match bytes.split_first() {
        Some((&PROFILE_FORMAT, body)) => postcard::from_bytes(body).map_err(|e| e.to_string()),
        Some((format, _)) => Err(format!("unknown profile format {format}")),
        None => Err("empty record".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Channel, ChannelEvent, Millis, ScoringModel, Status, event::EventMetadata,
    };

    #[test]
    fn round_trips() {
        let model = ScoringModel::default();
        let mut p = ContactProfile::default();
        for (i, status) in [Status::Delivered, Status::BouncedHard, Status::OptOut]
            .into_iter()
            .enumerate()
        {
            p.apply(
                &ChannelEvent {
                    event_id: format!("e{i}"),
                    contact_id: "c".into(),
                    channel: Channel::Email,
                    status,
                    occurred_at: Millis(1_790_000_000_000 + i as i64),
                    sent_at: None,
                    metadata: EventMetadata::default(),
                },
                &model,
            );
        }
        let bytes = encode_profile(&p);
        assert_eq!(decode_profile(&bytes).unwrap(), p);
        assert!(decode_profile(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode_profile(&[9, 1, 2]).unwrap_err().contains("format 9"));
    }
}
