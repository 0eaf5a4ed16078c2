//! The on-disk encoding of a contact profile: one format byte, then a sparse
//! postcard encoding. sled stores values at about three times their size, so
//! every byte here costs three on disk: only channels with history are
//! written, only non-zero counters and evidence, and times as distances
//! back from the profile's latest time, which are short varints.
//!
//! Formats: 2 (scores, consent, hard fails) and 3 (adds soft fails, the
//! last route per channel and the contact's messages) are migrated on read;
//! 4 (adds per-address state, the contact's facts and consents, and each
//! message's address) is read as it stands. Format 5 has 4's structure and
//! writes it tighter: a state's times chained (see [`Clock`]), an
//! address's hint with its run of mask characters as one (see
//! [`squeeze_hint`]) and a route that repeats the one written before it as
//! two empty strings (see [`Frame`]): about 15% fewer bytes for a contact
//! with addresses.

use serde::{Deserialize, Serialize};

use crate::domain::{
    Channel, ChannelState, ContactProfile, Millis, Status,
    address::{AddressId, AddressInfo, AddressKind, PhoneType, Sensitive},
    contact::{ConsentRecord, ContactInfo},
    message::MessageState,
    profile::{AddressSlot, Route},
};

/// Current format of stored profiles.
pub const PROFILE_FORMAT: u8 = 5;
const FORMAT_V4: u8 = 4;
const FORMAT_V3: u8 = 3;
const FORMAT_V2: u8 = 2;

#[derive(Serialize, Deserialize)]
struct Wire {
    /// The latest time in the profile; other times are stored as `base - t`.
    base: i64,
    channels: Vec<WireChannel>,
    messages: Vec<WireMessage>,
    addresses: Vec<WireAddress>,
    contact: Option<WireContact>,
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
    /// Recent failures, oldest first, as `base - time`.
    recent_hard_fails: Vec<i64>,
    recent_soft_fails: Vec<i64>,
    /// Carrier, country and `base - time` of the last route.
    route: Option<(String, String, i64)>,
}

#[derive(Serialize, Deserialize)]
struct WireMessage {
    id: String,
    /// Index into `Channel::ALL`, [`NONE`] if unknown.
    channel: u8,
    /// (slot, base - time): sent, deadline, outcome, unconfirmed.
    times: Vec<(u8, i64)>,
    /// Index into `Status::ALL` of the outcome, [`NONE`] if none.
    outcome: u8,
    latency_ms: Option<i64>,
    /// Index into the profile's addresses, [`NONE`] if none (or forgotten).
    address: u8,
}

#[derive(Serialize, Deserialize)]
struct WireAddress {
    id: [u8; 16],
    /// Index into `AddressKind::ALL`.
    kind: u8,
    /// Index into `PhoneType::ALL`.
    phone_type: u8,
    region: String,
    hint: String,
    plaintext: Option<String>,
    label: String,
    /// Its state; `channel` says which channel the slot is on.
    state: WireChannel,
}

#[derive(Serialize, Deserialize)]
struct WireContact {
    time_zone: String,
    lifecycle_stage: String,
    value_tier: String,
    /// (channel, granted, source, base - time).
    consents: Vec<(u8, bool, String, i64)>,
    updated_at: Option<i64>,
}

/// Format 3, read for migration only.
#[derive(Deserialize)]
struct WireV3 {
    base: i64,
    channels: Vec<WireChannel>,
    messages: Vec<WireMessageV3>,
}

#[derive(Deserialize)]
struct WireMessageV3 {
    id: String,
    channel: u8,
    times: Vec<(u8, i64)>,
    outcome: u8,
    latency_ms: Option<i64>,
}

/// Format 2, read for migration only.
#[derive(Deserialize)]
struct WireV2 {
    base: i64,
    channels: Vec<WireChannelV2>,
}

#[derive(Deserialize)]
struct WireChannelV2 {
    channel: u8,
    counts: Vec<(u8, u32)>,
    evidence: Vec<(u8, f64)>,
    times: Vec<(u8, i64)>,
    recent_hard_fails: Vec<i64>,
}

const NONE: u8 = 255;

/// Declares a list of slots once, as two functions: one reads them by
/// value (encoding), the other borrows them mutably (decoding). Encoding
/// used to clone the whole state to borrow it mutably.
macro_rules! slots {
    ($(#[$doc:meta])* $values:ident, $refs:ident, $ty:ty, [$t:ty; $n:literal], |$s:ident| [$($field:expr),* $(,)?]) => {
        $(#[$doc])*
        fn $values($s: &$ty) -> [$t; $n] {
            [$($field),*]
        }

        fn $refs($s: &mut $ty) -> [&mut $t; $n] {
            [$(&mut $field),*]
        }
    };
}

slots!(
    /// Counter slots; 0-13 are those of format 2.
    counter_values, counters, ChannelState, [u32; 15], |state| [
        state.counts.sent,
        state.counts.delivered,
        state.counts.pending_retry,
        state.counts.bounced_hard,
        state.counts.unconfirmed,
        state.counts.optout,
        state.counts.optin,
        state.counts.complaint,
        state.counts.opened,
        state.counts.clicked,
        state.counts.replied,
        state.sender_side.blocked_compliance,
        state.sender_side.sender_error,
        state.hard_fails.older,
        state.soft_fails.older,
    ]
);

slots!(evidence_values, evidence, ChannelState, [f64; 5], |state| [
    state.evidence.delivered,
    state.evidence.hard_fails,
    state.evidence.soft_fails,
    state.evidence.unconfirmed,
    state.evidence.engaged,
]);

slots!(
    /// Time slots; 0-8 are those of format 2.
    time_values, times, ChannelState, [Option<Millis>; 11], |state| [
        state.evidence.anchor,
        state.last_event,
        state.last_cleared,
        state.consent.last_opt_out,
        state.consent.last_opt_in,
        state.consent.last_complaint,
        state.consent.last_permission,
        state.hard_fails.older_first,
        state.hard_fails.older_last,
        state.soft_fails.older_first,
        state.soft_fails.older_last,
    ]
);

slots!(
    message_time_values,
    message_times,
    MessageState,
    [Option<Millis>; 3],
    |m| [m.sent_at, m.deadline, m.unconfirmed_at,]
);

fn sparse<T: Default + PartialEq + Copy, const N: usize>(values: [T; N]) -> Vec<(u8, T)> {
    values
        .into_iter()
        .enumerate()
        .filter(|(_, v)| *v != T::default())
        .map(|(slot, v)| (slot as u8, v))
        .collect()
}

fn state_latest(state: &ChannelState, base: &mut i64) {
    for t in time_values(state).into_iter().flatten() {
        *base = (*base).max(t.0);
    }
    for t in state
        .hard_fails
        .recent
        .iter()
        .chain(&state.soft_fails.recent)
    {
        *base = (*base).max(t.0);
    }
    if let Some(route) = &state.last_route {
        *base = (*base).max(route.at.0);
    }
}

/// The latest time anywhere in the profile.
fn base_of(profile: &ContactProfile) -> i64 {
    let mut base = i64::MIN;
    for state in profile.channels.iter().flatten() {
        state_latest(state, &mut base);
    }
    for slot in &profile.addresses {
        state_latest(&slot.state, &mut base);
    }
    for m in &profile.messages.list {
        for t in message_time_values(m).into_iter().flatten() {
            base = base.max(t.0);
        }
        if let Some((_, at)) = m.outcome {
            base = base.max(at.0);
        }
    }
    let contact = &profile.contact;
    for t in contact
        .consents
        .iter()
        .map(|c| c.at)
        .chain(contact.updated_at)
    {
        base = base.max(t.0);
    }
    if base == i64::MIN { 0 } else { base }
}

/// How a state's times are written: format 5 chains them, each as its
/// distance from the one written before it (the first from the profile's
/// latest time), in the order route, slots, recent hard fails, recent soft
/// fails. A state's latest times are mostly one instant (its last event,
/// the anchor of its evidence, its route's), so all but the first cost one
/// byte instead of five; fails are written as the gaps between them.
/// Earlier formats wrote every time as its distance from the profile's
/// latest. Wrapping arithmetic: any stored value reads back to the time it
/// was written from, and a damaged one cannot panic.
struct Clock {
    previous: i64,
    chained: bool,
}

impl Clock {
    fn new(base: i64, format: u8) -> Self {
        Clock {
            previous: base,
            chained: format >= 5,
        }
    }

    fn back(&mut self, t: Millis) -> i64 {
        let back = self.previous.wrapping_sub(t.0);
        if self.chained {
            self.previous = t.0;
        }
        back
    }

    fn at(&mut self, back: i64) -> Millis {
        let t = self.previous.wrapping_sub(back);
        if self.chained {
            self.previous = t;
        }
        Millis(t)
    }
}

/// What the states of one profile are written against: the profile's
/// latest time, the format, and the route written last. Format 5 writes a
/// route that repeats the one before (channels, then addresses) as two
/// empty strings, which no real route is (a route names a carrier or a
/// country): a contact's channels mostly go the same way.
struct Frame {
    base: i64,
    format: u8,
    last_route: Option<(String, String)>,
}

impl Frame {
    fn new(base: i64, format: u8) -> Self {
        Frame {
            base,
            format,
            last_route: None,
        }
    }

    fn clock(&self) -> Clock {
        Clock::new(self.base, self.format)
    }

    fn put_route(&mut self, carrier: &str, country: &str) -> (String, String) {
        let repeated = self
            .last_route
            .as_ref()
            .is_some_and(|(a, b)| a == carrier && b == country);
        if self.format >= 5 && repeated {
            return (String::new(), String::new());
        }
        self.last_route = Some((carrier.to_string(), country.to_string()));
        (carrier.to_string(), country.to_string())
    }

    fn get_route(&mut self, carrier: String, country: String) -> Result<(String, String), String> {
        if self.format >= 5 && carrier.is_empty() && country.is_empty() {
            return self
                .last_route
                .clone()
                .ok_or_else(|| "a route repeats none".to_string());
        }
        self.last_route = Some((carrier.clone(), country.clone()));
        Ok((carrier, country))
    }
}

fn encode_state(channel: Channel, state: &ChannelState, frame: &mut Frame) -> WireChannel {
    let mut clock = frame.clock();
    let route = state.last_route.as_ref().map(|r| {
        let (carrier, country) = frame.put_route(&r.carrier, &r.country);
        (carrier, country, clock.back(r.at))
    });
    WireChannel {
        channel: channel.index() as u8,
        counts: sparse(counter_values(state)),
        evidence: sparse(evidence_values(state)),
        times: time_values(state)
            .into_iter()
            .enumerate()
            .filter_map(|(slot, t)| t.map(|t| (slot as u8, clock.back(t))))
            .collect(),
        recent_hard_fails: state
            .hard_fails
            .recent
            .iter()
            .map(|&t| clock.back(t))
            .collect(),
        recent_soft_fails: state
            .soft_fails
            .recent
            .iter()
            .map(|&t| clock.back(t))
            .collect(),
        route,
    }
}

fn decode_state(w: WireChannel, frame: &mut Frame) -> Result<(Channel, ChannelState), String> {
    let channel = channel_of(w.channel).ok_or_else(|| format!("unknown channel {}", w.channel))?;
    let mut clock = frame.clock();
    let mut state = ChannelState::default();
    if let Some((carrier, country, back)) = w.route {
        let (carrier, country) = frame.get_route(carrier, country)?;
        // The route's time is the first of the chain.
        let at = clock.at(back);
        state.last_route = Some(Route {
            carrier,
            country,
            at,
        });
    }
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
            .ok_or("bad time slot")? = Some(clock.at(back));
    }
    state.hard_fails.recent = w.recent_hard_fails.iter().map(|&b| clock.at(b)).collect();
    state.soft_fails.recent = w.recent_soft_fails.iter().map(|&b| clock.at(b)).collect();
    Ok((channel, state))
}

fn encode_message(m: &MessageState, base: i64, addresses: &[AddressSlot]) -> WireMessage {
    let mut times: Vec<(u8, i64)> = message_time_values(m)
        .into_iter()
        .enumerate()
        .filter_map(|(slot, t)| t.map(|t| (slot as u8, base - t.0)))
        .collect();
    if let Some((_, at)) = m.outcome {
        times.push((3, base - at.0));
    }
    let address = m
        .address
        .and_then(|id| {
            addresses
                .iter()
                .position(|a| Some(a.channel) == m.channel && a.id == id)
        })
        .map_or(NONE, |i| i as u8);
    WireMessage {
        channel: m.channel.map_or(NONE, |c| c.index() as u8),
        outcome: m
            .outcome
            .and_then(|(s, _)| Status::ALL.iter().position(|&x| x == s))
            .map_or(NONE, |i| i as u8),
        latency_ms: m.latency_ms,
        times,
        id: m.id.clone(),
        address,
    }
}

fn decode_message(
    w: WireMessage,
    base: i64,
    addresses: &[AddressSlot],
) -> Result<MessageState, String> {
    let mut m = MessageState {
        id: w.id,
        channel: channel_of(w.channel),
        latency_ms: w.latency_ms,
        address: match w.address {
            NONE => None,
            i => Some(addresses.get(i as usize).ok_or("bad message address")?.id),
        },
        ..MessageState::default()
    };
    let mut outcome_at = None;
    for (slot, back) in w.times {
        let at = Some(Millis(base - back));
        match slot {
            3 => outcome_at = at,
            s => {
                **message_times(&mut m)
                    .get_mut(s as usize)
                    .ok_or("bad message time slot")? = at
            }
        }
    }
    if w.outcome != NONE {
        let status = *Status::ALL
            .get(w.outcome as usize)
            .ok_or("bad message outcome")?;
        m.outcome = Some((status, outcome_at.ok_or("message outcome without a time")?));
    }
    Ok(m)
}

fn encode_address(slot: &AddressSlot, frame: &mut Frame) -> WireAddress {
    let info = &slot.info;
    WireAddress {
        id: slot.id.0,
        kind: index_of(&AddressKind::ALL, info.kind),
        phone_type: index_of(&PhoneType::ALL, info.phone_type),
        region: info.region.clone(),
        hint: match frame.format {
            5.. => squeeze_hint(&info.hint),
            _ => info.hint.clone(),
        },
        plaintext: info.plaintext.as_ref().map(|p| p.0.clone()),
        label: info.label.clone(),
        state: encode_state(slot.channel, &slot.state, frame),
    }
}

/// Mask characters in a row, written as one character whose code is
/// their count: a phone number's hint (`+*********67`) is mostly mask.
/// Hints are made of an address's canonical form, which has no control
/// characters, so codes 2 to 31 cannot be anything else.
fn squeeze_hint(hint: &str) -> String {
    fn push_run(out: &mut String, mut stars: u32) {
        while stars > 0 {
            let run = stars.min(31);
            out.push(match run {
                1 => '*',
                n => char::from_u32(n).expect("2 to 31 are characters"),
            });
            stars -= run;
        }
    }
    let mut out = String::with_capacity(hint.len());
    let mut stars = 0;
    for c in hint.chars() {
        if c == '*' {
            stars += 1;
        } else {
            push_run(&mut out, std::mem::take(&mut stars));
            out.push(c);
        }
    }
    push_run(&mut out, stars);
    out
}

fn expand_hint(stored: String) -> String {
    if !stored.chars().any(|c| ('\u{2}'..='\u{1f}').contains(&c)) {
        return stored;
    }
    // Sized once: a hint is read on every ask, and growing it char by char
    // showed in the profile.
    let mut hint = String::with_capacity(stored.len() + 32);
    for c in stored.chars() {
        match c {
            '\u{2}'..='\u{1f}' => hint.extend(std::iter::repeat_n('*', c as usize)),
            c => hint.push(c),
        }
    }
    hint
}

fn decode_address(w: WireAddress, frame: &mut Frame) -> Result<AddressSlot, String> {
    let (channel, state) = decode_state(w.state, frame)?;
    Ok(AddressSlot {
        channel,
        id: AddressId(w.id),
        info: AddressInfo {
            kind: *AddressKind::ALL
                .get(w.kind as usize)
                .ok_or("bad address kind")?,
            phone_type: *PhoneType::ALL
                .get(w.phone_type as usize)
                .ok_or("bad phone type")?,
            region: w.region,
            hint: match frame.format {
                5.. => expand_hint(w.hint),
                _ => w.hint,
            },
            plaintext: w.plaintext.map(Sensitive),
            label: w.label,
        },
        state,
    })
}

fn encode_contact(c: &ContactInfo, base: i64) -> Option<WireContact> {
    if *c == ContactInfo::default() {
        return None;
    }
    Some(WireContact {
        time_zone: c.time_zone.clone(),
        lifecycle_stage: c.lifecycle_stage.clone(),
        value_tier: c.value_tier.clone(),
        consents: c
            .consents
            .iter()
            .map(|r| {
                (
                    r.channel.index() as u8,
                    r.granted,
                    r.source.clone(),
                    base - r.at.0,
                )
            })
            .collect(),
        updated_at: c.updated_at.map(|t| base - t.0),
    })
}

fn decode_contact(w: WireContact, base: i64) -> Result<ContactInfo, String> {
    Ok(ContactInfo {
        time_zone: w.time_zone,
        lifecycle_stage: w.lifecycle_stage,
        value_tier: w.value_tier,
        consents: w
            .consents
            .into_iter()
            .map(|(channel, granted, source, back)| {
                Ok(ConsentRecord {
                    channel: channel_of(channel).ok_or("bad consent channel")?,
                    granted,
                    source,
                    at: Millis(base - back),
                })
            })
            .collect::<Result<_, String>>()?,
        updated_at: w.updated_at.map(|b| Millis(base - b)),
    })
}

fn index_of<T: PartialEq>(all: &[T], value: T) -> u8 {
    all.iter().position(|x| *x == value).unwrap_or(0) as u8
}

pub fn encode_profile(profile: &ContactProfile) -> Vec<u8> {
    encode_profile_as(profile, PROFILE_FORMAT)
}

/// `format` is 4 or 5 (the one written; 4 only to test reading it).
fn encode_profile_as(profile: &ContactProfile, format: u8) -> Vec<u8> {
    let base = base_of(profile);
    let mut frame = Frame::new(base, format);
    let wire = Wire {
        base,
        channels: Channel::ALL
            .iter()
            .filter_map(|&c| profile.channel(c).map(|s| encode_state(c, s, &mut frame)))
            .collect(),
        messages: profile
            .messages
            .list
            .iter()
            .map(|m| encode_message(m, base, &profile.addresses))
            .collect(),
        addresses: profile
            .addresses
            .iter()
            .map(|a| encode_address(a, &mut frame))
            .collect(),
        contact: encode_contact(&profile.contact, base),
    };
    // Serializing plain structs into a Vec cannot fail.
    postcard::to_extend(&wire, vec![format]).expect("profile serializes")
}

pub fn decode_profile(bytes: &[u8]) -> Result<ContactProfile, String> {
    let format = bytes.first().copied().unwrap_or_default();
    let wire: Wire = match bytes.split_first() {
        // Format 5 is format 4's structure written tighter.
        Some((&PROFILE_FORMAT | &FORMAT_V4, body)) => {
            postcard::from_bytes(body).map_err(|e| e.to_string())?
        }
        Some((&FORMAT_V3, body)) => {
            migrate_v3(postcard::from_bytes(body).map_err(|e| e.to_string())?)
        }
        Some((&FORMAT_V2, body)) => {
            migrate_v2(postcard::from_bytes(body).map_err(|e| e.to_string())?)
        }
        Some((format, _)) => return Err(format!("unknown profile format {format}")),
        None => return Err("empty record".into()),
    };
    let base = wire.base;
    let mut frame = Frame::new(base, format);
    let mut profile = ContactProfile::default();
    for w in wire.channels {
        let (channel, state) = decode_state(w, &mut frame)?;
        profile.channels[channel.index()] = Some(state);
    }
    for w in wire.addresses {
        profile.addresses.push(decode_address(w, &mut frame)?);
    }
    for w in wire.messages {
        let m = decode_message(w, base, &profile.addresses)?;
        profile.messages.list.push(m);
    }
    if let Some(contact) = wire.contact {
        profile.contact = decode_contact(contact, base)?;
    }
    Ok(profile)
}

fn channel_of(index: u8) -> Option<Channel> {
    Channel::ALL.get(index as usize).copied()
}

/// Format 3 had no addresses or contact facts.
fn migrate_v3(old: WireV3) -> Wire {
    Wire {
        base: old.base,
        channels: old.channels,
        messages: old
            .messages
            .into_iter()
            .map(|m| WireMessage {
                id: m.id,
                channel: m.channel,
                times: m.times,
                outcome: m.outcome,
                latency_ms: m.latency_ms,
                address: NONE,
            })
            .collect(),
        addresses: Vec::new(),
        contact: None,
    }
}

/// Format 2 had no soft fails, routes or messages either; its slots are a
/// prefix of format 3's.
fn migrate_v2(old: WireV2) -> Wire {
    Wire {
        base: old.base,
        channels: old
            .channels
            .into_iter()
            .map(|c| WireChannel {
                channel: c.channel,
                counts: c.counts,
                evidence: c.evidence,
                times: c.times,
                recent_hard_fails: c.recent_hard_fails,
                recent_soft_fails: Vec::new(),
                route: None,
            })
            .collect(),
        messages: Vec::new(),
        addresses: Vec::new(),
        contact: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ChannelEvent, ScoringModel, event::EventMetadata, message::LifecycleConfig,
    };

    fn profile(statuses: &[(Channel, Status)]) -> ContactProfile {
        let (model, lifecycle) = (ScoringModel::default(), LifecycleConfig::default());
        let mut p = ContactProfile::default();
        for (i, &(channel, status)) in statuses.iter().enumerate() {
            p.apply_tracked(
                &ChannelEvent {
                    event_id: format!("e{i}"),
                    contact_id: "c".into(),
                    channel,
                    status,
                    occurred_at: Millis(1_790_000_000_000 - (i as i64 % 7) * 86_400_000 + i as i64),
                    sent_at: None,
                    metadata: EventMetadata {
                        message_id: format!("m{}", i / 3),
                        carrier: "carrier-a".into(),
                        country: "US".into(),
                        ..EventMetadata::default()
                    },
                    address: Default::default(),
                },
                &model,
                &lifecycle,
            );
        }
        p
    }

    #[test]
    fn round_trips_every_field() {
        let mut statuses = Vec::new();
        for channel in Channel::ALL {
            for status in Status::ALL {
                statuses.push((channel, status));
            }
            // Enough failures to push some out of the recent windows.
            statuses.extend(std::iter::repeat_n((channel, Status::BouncedHard), 14));
            statuses.extend(std::iter::repeat_n((channel, Status::PendingRetry), 14));
        }
        let p = profile(&statuses);
        let sms = p.channel(Channel::Sms).unwrap();
        assert!(sms.hard_fails.older > 0 && sms.soft_fails.older > 0 && sms.last_route.is_some());
        assert!(!p.messages.list.is_empty());
        let bytes = encode_profile(&p);
        assert_eq!(decode_profile(&bytes).unwrap(), p);
        let empty = ContactProfile::default();
        assert_eq!(decode_profile(&encode_profile(&empty)).unwrap(), empty);
    }

    #[test]
    fn round_trips_addresses_and_contact_facts() {
        let p = profile_with_addresses();
        assert_eq!(decode_profile(&encode_profile(&p)).unwrap(), p);
    }

    #[test]
    fn format_4_is_read_as_it_was_written() {
        let p = profile_with_addresses();
        let (v4, v5) = (encode_profile_as(&p, FORMAT_V4), encode_profile(&p));
        assert_eq!(decode_profile(&v4).unwrap(), p);
        assert_eq!(decode_profile(&v5).unwrap(), p);
        assert!(
            v5.len() * 10 < v4.len() * 9,
            "{} against {}",
            v5.len(),
            v4.len()
        );
    }

    #[test]
    fn hints_squeeze_their_mask_and_read_back_whole() {
        for hint in [
            "+*********67",
            "j***@example.com",
            "*",
            "a*b**c",
            "abcd...(152 chars)",
            "",
            &format!("+{}1", "*".repeat(70)),
        ] {
            let squeezed = squeeze_hint(hint);
            assert_eq!(expand_hint(squeezed.clone()), hint);
            assert!(squeezed.len() <= hint.len());
        }
        assert_eq!(squeeze_hint("+*********67").len(), 4);
    }

    #[test]
    fn routes_that_repeat_are_written_once_and_read_back() {
        let mut p = profile_with_addresses();
        let routes = [
            ("carrier-a", "US"),
            ("carrier-a", "US"),
            ("", "GB"),
            ("carrier-a", "US"),
        ];
        let states = p
            .channels
            .iter_mut()
            .flatten()
            .chain(p.addresses.iter_mut().map(|a| &mut a.state));
        for (state, (carrier, country)) in states.zip(routes.into_iter().cycle()) {
            state.last_route = Some(Route {
                carrier: carrier.into(),
                country: country.into(),
                at: Millis(1_790_000_000_000),
            });
        }
        assert_eq!(decode_profile(&encode_profile(&p)).unwrap(), p);
        let mut bytes = encode_profile(&ContactProfile::default());
        bytes.truncate(1);
        // base 0, one SMS channel whose route is two empty strings.
        bytes.extend([0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_profile(&bytes).unwrap_err(), "a route repeats none");
    }

    #[test]
    fn chained_times_read_back_even_at_the_extremes() {
        let mut p = profile(&[(Channel::Sms, Status::BouncedHard)]);
        let sms = p.channels[Channel::Sms.index()].as_mut().unwrap();
        sms.hard_fails.recent = vec![Millis(i64::MIN), Millis(0), Millis(i64::MAX)];
        sms.soft_fails.recent = vec![Millis(-1), Millis(i64::MIN + 1)];
        assert_eq!(decode_profile(&encode_profile(&p)).unwrap(), p);
    }

    fn profile_with_addresses() -> ContactProfile {
        use crate::domain::{
            address::{AddressBook, AddressConfig, AddressKey},
            contact::ConsentRecord,
        };
        let (model, lifecycle) = (ScoringModel::default(), LifecycleConfig::default());
        let book = AddressBook::new(
            AddressKey::new([3; 32]),
            AddressConfig {
                store_plaintext: true,
                ..AddressConfig::default()
            },
        );
        let mut p = profile(&[(Channel::Sms, Status::Delivered)]);
        for (i, (channel, raw, status)) in [
            (Channel::Email, "work@example.com", Status::BouncedHard),
            (Channel::Email, "home@example.com", Status::Delivered),
            (Channel::Sms, "+447911123456", Status::Sent),
        ]
        .into_iter()
        .enumerate()
        {
            let mut event = ChannelEvent {
                event_id: format!("a{i}"),
                contact_id: "c".into(),
                channel,
                status,
                occurred_at: Millis(1_790_000_000_000 + i as i64),
                sent_at: None,
                metadata: EventMetadata {
                    message_id: format!("am{i}"),
                    ..EventMetadata::default()
                },
                address: Default::default(),
            };
            event.address.resolved = Some(book.resolve(channel, raw, "").unwrap());
            p.apply_tracked(&event, &model, &lifecycle);
        }
        p.addresses[1].info.label = "home".into();
        p.contact.time_zone = "Europe/London".into();
        p.contact.value_tier = "gold".into();
        p.record_consent(ConsentRecord {
            channel: Channel::Sms,
            granted: true,
            source: "checkout form".into(),
            at: Millis(1_789_000_000_000),
        });
        assert_eq!(p.addresses.len(), 3);
        assert!(p.messages.list.iter().any(|m| m.address.is_some()));
        p
    }

    #[test]
    fn format_3_is_migrated_on_read() {
        type MessageV3 = (String, u8, Vec<(u8, i64)>, u8, Option<i64>);
        #[derive(Serialize)]
        struct V3 {
            base: i64,
            channels: Vec<WireChannel>,
            messages: Vec<MessageV3>,
        }
        let v3 = V3 {
            base: 1_790_000_000_000,
            channels: vec![WireChannel {
                channel: 0,
                counts: vec![(1, 2)],
                evidence: vec![(0, 1.5)],
                times: vec![(1, 0)],
                recent_hard_fails: vec![],
                recent_soft_fails: vec![5],
                route: Some(("carrier-a".into(), "US".into(), 0)),
            }],
            messages: vec![("m1".into(), 0, vec![(0, 10), (3, 0)], 1, Some(10))],
        };
        let bytes = postcard::to_extend(&v3, vec![FORMAT_V3]).unwrap();
        let p = decode_profile(&bytes).unwrap();
        let sms = p.channel(Channel::Sms).unwrap();
        assert_eq!((sms.counts.delivered, sms.soft_fails.recent.len()), (2, 1));
        assert_eq!(p.messages.list[0].latency_ms, Some(10));
        assert_eq!(p.messages.list[0].address, None);
        assert!(p.addresses.is_empty() && p.contact == Default::default());
    }

    #[test]
    fn format_2_is_migrated_on_read() {
        // A format-2 record: one email channel with 3 deliveries at base - 0.
        type ChannelV2 = (u8, Vec<(u8, u32)>, Vec<(u8, f64)>, Vec<(u8, i64)>, Vec<i64>);
        #[derive(Serialize)]
        struct V2 {
            base: i64,
            channels: Vec<ChannelV2>,
        }
        let v2 = V2 {
            base: 1_790_000_000_000,
            channels: vec![(
                1,
                vec![(1, 3)],
                vec![(0, 2.5)],
                vec![(0, 0), (1, 0)],
                vec![],
            )],
        };
        let bytes = postcard::to_extend(&v2, vec![FORMAT_V2]).unwrap();
        let p = decode_profile(&bytes).unwrap();
        let email = p.channel(Channel::Email).unwrap();
        assert_eq!(email.counts.delivered, 3);
        assert_eq!(email.evidence.delivered, 2.5);
        assert_eq!(email.last_event, Some(Millis(1_790_000_000_000)));
        assert!(email.soft_fails.recent.is_empty() && p.messages.list.is_empty());
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
        let mut p = profile(&[
            (Channel::Email, Status::Delivered),
            (Channel::Email, Status::Opened),
            (Channel::Email, Status::Delivered),
            (Channel::Sms, Status::Sent),
            (Channel::Sms, Status::Delivered),
        ]);
        p.messages.list.clear();
        let n = encode_profile(&p).len();
        // About 90 bytes of scores and counters, plus each channel's last
        // route (carrier and country strings).
        assert!(n < 130, "{n} bytes");
    }
}
