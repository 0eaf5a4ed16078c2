//! The on-disk encoding of a contact profile: one format byte, then a sparse
//! postcard encoding. sled stores values at about three times their size, so
//! every byte here costs three on disk: only channels with history are
//! written, only non-zero counters and evidence, and times as distances
//! back from the profile's latest time, which are short varints. The format
//! byte lets later versions migrate old records on read.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, ChannelState, ContactProfile, Millis};

/// Current format of stored profiles.
pub const PROFILE_FORMAT: u8 = 2;

#[derive(Serialize, Deserialize)]
struct Wire {
    /// The latest time in the profile; other times are stored as `base - t`.
    base: i64,
    channels: Vec<WireChannel>,
}

#[derive(Serialize, Deserialize)]
struct WireChannel {
    channel: u8,
    /// Non-zero counters: (slot, count).
    counts: Vec<(u8, u32)>,
    /// Non-zero decayed sums: (kind, value).
    evidence: Vec<(u8, f64)>,
    /// Times that are set: (slot, base - time).
    times: Vec<(u8, i64)>,
    /// Recent hard fails, oldest first, as `base - time`.
    recent_hard_fails: Vec<i64>,
}

const COUNT_SLOTS: usize = 14;
const TIME_SLOTS: usize = 9;

fn counters(state: &mut ChannelState) -> [&mut u32; COUNT_SLOTS] {
    let c = &mut state.counts;
    [
        &mut c.sent,
        &mut c.delivered,
        &mut c.pending_retry,
        &mut c.bounced_hard,
        &mut c.unconfirmed,
        &mut c.optout,
        &mut c.optin,
        &mut c.complaint,
        &mut c.opened,
        &mut c.clicked,
        &mut c.replied,
        &mut state.sender_side.blocked_compliance,
        &mut state.sender_side.sender_error,
        &mut state.hard_fails.older,
    ]
}

fn evidence(state: &mut ChannelState) -> [&mut f64; 5] {
    let e = &mut state.evidence;
    [
        &mut e.delivered,
        &mut e.hard_fails,
        &mut e.soft_fails,
        &mut e.unconfirmed,
        &mut e.engaged,
    ]
}

fn times(state: &mut ChannelState) -> [&mut Option<Millis>; TIME_SLOTS] {
    [
        &mut state.evidence.anchor,
        &mut state.last_event,
        &mut state.hard_fails.last_cleared,
        &mut state.consent.last_opt_out,
        &mut state.consent.last_opt_in,
        &mut state.consent.last_complaint,
        &mut state.consent.last_permission,
        &mut state.hard_fails.older_first,
        &mut state.hard_fails.older_last,
    ]
}

pub fn encode_profile(profile: &ContactProfile) -> Vec<u8> {
    let mut base = i64::MIN;
    let mut channels = Vec::new();
    for channel in Channel::ALL {
        let Some(state) = profile.channel(channel) else {
            continue;
        };
        let mut state = state.clone();
        for t in times(&mut state).into_iter().flatten() {
            base = base.max(t.0);
        }
        for t in &state.hard_fails.recent {
            base = base.max(t.0);
        }
        channels.push((channel, state));
    }
    let base = if base == i64::MIN { 0 } else { base };
    let wire = Wire {
        base,
        channels: channels
            .into_iter()
            .map(|(channel, mut state)| WireChannel {
                channel: channel.index() as u8,
                counts: sparse(counters(&mut state).map(|c| *c)),
                evidence: sparse(evidence(&mut state).map(|e| *e)),
                times: times(&mut state)
                    .into_iter()
                    .enumerate()
                    .filter_map(|(slot, t)| t.map(|t| (slot as u8, base - t.0)))
                    .collect(),
                recent_hard_fails: state.hard_fails.recent.iter().map(|t| base - t.0).collect(),
            })
            .collect(),
    };
    // Serializing plain structs into a Vec cannot fail.
    postcard::to_extend(&wire, vec![PROFILE_FORMAT]).expect("profile serializes")
}

fn sparse<T: Default + PartialEq + Copy, const N: usize>(values: [T; N]) -> Vec<(u8, T)> {
    values
        .into_iter()
        .enumerate()
        .filter(|(_, v)| *v != T::default())
        .map(|(slot, v)| (slot as u8, v))
        .collect()
}

pub fn decode_profile(bytes: &[u8]) -> Result<ContactProfile, String> {
    let wire: Wire = match bytes.split_first() {
        Some((&PROFILE_FORMAT, body)) => postcard::from_bytes(body).map_err(|e| e.to_string())?,
        Some((format, _)) => return Err(format!("unknown profile format {format}")),
        None => return Err("empty record".into()),
    };
    let mut profile = ContactProfile::default();
    for w in wire.channels {
        let channel = *Channel::ALL
            .get(w.channel as usize)
            .ok_or_else(|| format!("unknown channel {}", w.channel))?;
        let mut state = ChannelState::default();
        for (slot, count) in w.counts {
            **counters(&mut state)
                .get_mut(slot as usize)
                .ok_or("bad counter slot")? = count;
        }
        for (kind, value) in w.evidence {
            **evidence(&mut state)
                .get_mut(kind as usize)
                .ok_or("bad evidence kind")? = value;
        }
        for (slot, back) in w.times {
            **times(&mut state)
                .get_mut(slot as usize)
                .ok_or("bad time slot")? = Some(Millis(wire.base - back));
        }
        state.hard_fails.recent = w
            .recent_hard_fails
            .iter()
            .map(|back| Millis(wire.base - back))
            .collect();
        profile.channels[channel.index()] = Some(state);
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChannelEvent, ScoringModel, Status, event::EventMetadata};

    fn profile(statuses: &[(Channel, Status)]) -> ContactProfile {
        let model = ScoringModel::default();
        let mut p = ContactProfile::default();
        for (i, &(channel, status)) in statuses.iter().enumerate() {
            p.apply(
                &ChannelEvent {
                    event_id: format!("e{i}"),
                    contact_id: "c".into(),
                    channel,
                    status,
                    occurred_at: Millis(1_790_000_000_000 - (i as i64 % 7) * 86_400_000 + i as i64),
                    sent_at: None,
                    metadata: EventMetadata::default(),
                },
                &model,
            );
        }
        p
    }

    #[test]
    fn round_trips_every_field() {
        let mut statuses = Vec::new();
        for channel in Channel::ALL {
            for status in [
                Status::Sent,
                Status::Delivered,
                Status::PendingRetry,
                Status::Unconfirmed,
                Status::OptOut,
                Status::OptIn,
                Status::Complaint,
                Status::Opened,
                Status::Clicked,
                Status::Replied,
                Status::BlockedCompliance,
                Status::SenderError,
            ] {
                statuses.push((channel, status));
            }
            // Enough hard fails to push some out of the recent window.
            statuses.extend(std::iter::repeat_n((channel, Status::BouncedHard), 14));
        }
        let p = profile(&statuses);
        assert!(p.channel(Channel::Sms).unwrap().hard_fails.older > 0);
        let bytes = encode_profile(&p);
        assert_eq!(decode_profile(&bytes).unwrap(), p);
        assert_eq!(
            decode_profile(&encode_profile(&ContactProfile::default())).unwrap(),
            ContactProfile::default()
        );
    }

    #[test]
    fn rejects_what_it_did_not_write() {
        let bytes = encode_profile(&profile(&[(Channel::Email, Status::Delivered)]));
        assert!(decode_profile(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode_profile(&[9, 1, 2]).unwrap_err().contains("format 9"));
        assert!(decode_profile(&[]).is_err());
        assert!(
            decode_profile(&[PROFILE_FORMAT, 0, 1, 9]).is_err(),
            "channel 9 does not exist"
        );
    }

    #[test]
    fn a_typical_profile_is_small() {
        let p = profile(&[
            (Channel::Email, Status::Delivered),
            (Channel::Email, Status::Opened),
            (Channel::Email, Status::Delivered),
            (Channel::Sms, Status::Sent),
            (Channel::Sms, Status::Delivered),
        ]);
        let n = encode_profile(&p).len();
        assert!(n < 90, "{n} bytes");
    }
}
