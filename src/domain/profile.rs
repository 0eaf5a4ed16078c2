//! The per-contact state reach keeps: per channel and per address,
//! counters, decayed evidence, failure logs, consent and the last route; per
//! contact, the recent messages and what the caller told reach about the
//! contact. Its size is bounded whatever the number of events, and applying
//! events is order-insensitive.

use crate::domain::{
    Channel, ChannelEvent, Effect, Millis, ScoringModel, Status,
    address::{AddressId, AddressInfo, ResolvedAddress},
    contact::ContactInfo,
    evidence::{Evidence, Kind},
    message::{LifecycleConfig, Messages, closes, is_receipt},
    suppression::{Consent, FailLog},
};

/// Addresses kept per channel at most. Past it the least recently active
/// address without an opt-out or complaint is forgotten (opt-outs are kept
/// longest: forgetting one could let a send through).
pub const MAX_ADDRESSES_PER_CHANNEL: usize = 8;

/// Everything reach knows about one contact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactProfile {
    /// State of events that named no address, indexed by [`Channel::index`].
    /// Once a channel has addresses, only its consent still counts: it is
    /// channel-wide and covers every address.
    pub channels: [Option<ChannelState>; 4],
    /// Per-address state, for events that named an address and addresses
    /// upserted with the contact.
    pub addresses: Vec<AddressSlot>,
    pub messages: Messages,
    pub contact: ContactInfo,
}

/// One address of a contact on one channel, and what reach knows of it there.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressSlot {
    pub channel: Channel,
    pub id: AddressId,
    pub info: AddressInfo,
    pub state: ChannelState,
}

/// What reach knows about one contact on one channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelState {
    pub counts: StatusCounts,
    pub evidence: Evidence,
    /// Latest contact-side event (sender-side outcomes excluded).
    pub last_event: Option<Millis>,
    /// Latest event that ends a failure streak: delivery, engagement, opt-in.
    pub last_cleared: Option<Millis>,
    pub hard_fails: FailLog,
    pub soft_fails: FailLog,
    pub consent: Consent,
    pub sender_side: SenderSide,
    /// The route (carrier, country) of the latest event that named one.
    pub last_route: Option<Route>,
}

/// Where a message went: carrier and destination country.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub carrier: String,
    pub country: String,
    pub at: Millis,
}

/// Contact-side events counted by status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusCounts {
    pub sent: u32,
    pub delivered: u32,
    pub pending_retry: u32,
    pub bounced_hard: u32,
    pub unconfirmed: u32,
    pub optout: u32,
    pub optin: u32,
    pub complaint: u32,
    pub opened: u32,
    pub clicked: u32,
    pub replied: u32,
}

/// Outcomes that are the sender's problem (compliance blocks, sender errors):
/// kept for the record, never fed into the contact's score or counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SenderSide {
    pub blocked_compliance: u32,
    pub sender_error: u32,
}

/// What applying an event did beyond the channel's own state, for the
/// engine: the sweep index, route health and statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effects {
    /// A message started its receipt clock: (message id, deadline).
    pub opened: Option<(String, Millis)>,
    /// Send-to-receipt latency that became known with this event.
    pub latency_ms: Option<i64>,
    /// An UNCONFIRMED declared earlier was withdrawn (the receipt came late).
    pub withdrew_unconfirmed: Option<Millis>,
}

/// A message the sweep declared UNCONFIRMED.
#[derive(Clone, Debug, PartialEq)]
pub struct Expired {
    pub channel: Channel,
    pub deadline: Millis,
}

impl ContactProfile {
    /// The state of events without an address on `channel`.
    pub fn channel(&self, channel: Channel) -> Option<&ChannelState> {
        self.channels[channel.index()].as_ref()
    }

    pub(crate) fn channel_mut(&mut self, channel: Channel) -> &mut ChannelState {
        self.channels[channel.index()].get_or_insert_with(ChannelState::default)
    }

    /// The channel-wide consent of `channel` (opt-ins and opt-outs that
    /// named no address, and consent given through UpsertContact).
    pub fn channel_consent(&self, channel: Channel) -> Consent {
        self.channel(channel)
            .map(|s| s.consent.clone())
            .unwrap_or_default()
    }

    /// The addresses of `channel`, in the order they were first seen.
    pub fn addresses_of(&self, channel: Channel) -> impl Iterator<Item = &AddressSlot> {
        self.addresses.iter().filter(move |a| a.channel == channel)
    }

    /// The state an event about `address` on `channel` concerns.
    pub fn state(&self, channel: Channel, address: Option<AddressId>) -> Option<&ChannelState> {
        match address {
            None => self.channel(channel),
            Some(id) => self
                .addresses
                .iter()
                .find(|a| a.channel == channel && a.id == id)
                .map(|a| &a.state),
        }
    }

    fn state_mut(
        &mut self,
        channel: Channel,
        address: Option<&ResolvedAddress>,
    ) -> &mut ChannelState {
        match address {
            None => self.channel_mut(channel),
            Some(address) => &mut self.address_slot(channel, address).state,
        }
    }

    /// The slot of `address` on `channel`, created if new (forgetting the
    /// least valuable one past [`MAX_ADDRESSES_PER_CHANNEL`]).
    pub fn address_slot(
        &mut self,
        channel: Channel,
        address: &ResolvedAddress,
    ) -> &mut AddressSlot {
        let found = self
            .addresses
            .iter()
            .position(|a| a.channel == channel && a.id == address.id);
        let index = match found {
            Some(i) => {
                let info = &mut self.addresses[i].info;
                // Facts from validation may be newer (metadata updates, a
                // plaintext now kept); the caller's label stays.
                let label = std::mem::take(&mut info.label);
                *info = AddressInfo {
                    label,
                    ..address.info.clone()
                };
                i
            }
            None => {
                if self.addresses_of(channel).count() >= MAX_ADDRESSES_PER_CHANNEL {
                    self.forget_one(channel);
                }
                self.addresses.push(AddressSlot {
                    channel,
                    id: address.id,
                    info: address.info.clone(),
                    state: ChannelState::default(),
                });
                self.addresses.len() - 1
            }
        };
        &mut self.addresses[index]
    }

    fn forget_one(&mut self, channel: Channel) {
        let protected = |a: &AddressSlot| {
            a.state.consent.opted_out().is_some() || a.state.consent.complained().is_some()
        };
        let victim = self
            .addresses
            .iter()
            .enumerate()
            .filter(|(_, a)| a.channel == channel)
            .min_by_key(|(_, a)| (protected(a), a.state.last_event, a.id))
            .map(|(i, _)| i);
        if let Some(i) = victim {
            self.addresses.remove(i);
        }
    }

    /// Applies one event (scoring only: no message tracking).
    pub fn apply(&mut self, event: &ChannelEvent, model: &ScoringModel) {
        let half_life = model.half_life_ms();
        self.state_mut(event.channel, event.address.resolved.as_ref())
            .apply(event.status, event.occurred_at, half_life);
        self.note_route(event);
    }

    /// Applies one event and tracks its message: opens it on a send, closes
    /// it on an outcome (withdrawing an UNCONFIRMED declared earlier), and
    /// measures its latency.
    pub fn apply_tracked(
        &mut self,
        event: &ChannelEvent,
        model: &ScoringModel,
        lifecycle: &LifecycleConfig,
    ) -> Effects {
        let mut effects = Effects::default();
        let half_life = model.half_life_ms();
        let message_id = &event.metadata.message_id;
        if !message_id.is_empty() {
            let message = self.messages.entry(message_id);
            message.channel.get_or_insert(event.channel);
            if message.address.is_none() {
                message.address = event.address_id();
            }
            let sent = match event.status {
                Status::Sent => Some(event.sent_at.unwrap_or(event.occurred_at)),
                _ => event.sent_at,
            };
            if let Some(sent) = sent
                && message.sent_at.is_none_or(|s| sent < s)
            {
                message.sent_at = Some(sent);
                let window = lifecycle.window(event.channel, &event.metadata.country);
                message.deadline = Some(sent.saturating_add(window));
            }
            if closes(event.status) && event.status != Status::Unconfirmed {
                if let Some(at) = message.unconfirmed_at.take() {
                    effects.withdrew_unconfirmed = Some(at);
                }
                if message.outcome.is_none_or(|(_, t)| event.occurred_at >= t) {
                    message.outcome = Some((event.status, event.occurred_at));
                }
            }
            if event.status == Status::Unconfirmed && message.outcome.is_none() {
                message.unconfirmed_at.get_or_insert(event.occurred_at);
            }
            if message.latency_ms.is_none()
                && let (Some(sent), Some((status, at))) = (message.sent_at, message.outcome)
                && is_receipt(status)
            {
                let latency = (at.0 - sent.0).max(0);
                message.latency_ms = Some(latency);
                effects.latency_ms = Some(latency);
            }
            if message.is_open()
                && let Some(deadline) = message.deadline
            {
                effects.opened = Some((message_id.clone(), deadline));
            }
        }
        if let Some(at) = effects.withdrew_unconfirmed {
            let state = self.state_mut(event.channel, event.address.resolved.as_ref());
            state.evidence.remove(Kind::Unconfirmed, at, half_life);
            state.counts.unconfirmed = state.counts.unconfirmed.saturating_sub(1);
        }
        self.apply(event, model);
        let latest = self
            .messages
            .list
            .iter()
            .filter_map(|m| m.sent_at)
            .max()
            .unwrap_or(event.occurred_at);
        self.messages
            .prune(latest.max(event.occurred_at), lifecycle.remember);
        effects
    }

    /// Declares a message UNCONFIRMED if it is still open at `now` past its
    /// deadline: silence counts as an UNCONFIRMED at the deadline.
    pub fn expire_message(
        &mut self,
        message_id: &str,
        now: Millis,
        model: &ScoringModel,
    ) -> Option<Expired> {
        let message = self.messages.get_mut(message_id)?;
        let deadline = message.deadline?;
        if !message.is_open() || deadline > now {
            return None;
        }
        message.unconfirmed_at = Some(deadline);
        let channel = message.channel?;
        let address = message.address;
        let state = match address {
            None => Some(self.channel_mut(channel)),
            // An address forgotten since the send has no state to update.
            Some(id) => self
                .addresses
                .iter_mut()
                .find(|a| a.channel == channel && a.id == id)
                .map(|a| &mut a.state),
        };
        if let Some(state) = state {
            state.apply(Status::Unconfirmed, deadline, model.half_life_ms());
        }
        Some(Expired { channel, deadline })
    }

    fn note_route(&mut self, event: &ChannelEvent) {
        let (carrier, country) = (&event.metadata.carrier, &event.metadata.country);
        if carrier.is_empty() && country.is_empty() {
            return;
        }
        let state = self.state_mut(event.channel, event.address.resolved.as_ref());
        if state
            .last_route
            .as_ref()
            .is_none_or(|r| event.occurred_at >= r.at)
        {
            state.last_route = Some(Route {
                carrier: carrier.clone(),
                country: country.clone(),
                at: event.occurred_at,
            });
        }
    }
}

impl ChannelState {
    pub fn apply(&mut self, status: Status, at: Millis, half_life_ms: f64) {
        let effect = status.effect();
        bump(self.counter(status));
        if effect == Effect::SenderSide {
            // The sender's problem: on record, but it never touches the score,
            // the contact's counters or the time of its last event.
            return;
        }
        self.last_event = Some(self.last_event.map_or(at, |t| t.max(at)));
        let latest = |slot: &mut Option<Millis>| *slot = Some(slot.map_or(at, |t| t.max(at)));
        match effect {
            Effect::InFlight | Effect::SenderSide => {}
            Effect::Delivered => {
                self.evidence.add(Kind::Delivered, at, half_life_ms);
                latest(&mut self.last_cleared);
                latest(&mut self.consent.last_permission);
            }
            Effect::SoftFail => {
                self.evidence.add(Kind::SoftFail, at, half_life_ms);
                self.soft_fails.record(at);
            }
            Effect::HardFail => {
                self.evidence.add(Kind::HardFail, at, half_life_ms);
                self.hard_fails.record(at);
            }
            Effect::Silence => self.evidence.add(Kind::Unconfirmed, at, half_life_ms),
            Effect::OptOut => latest(&mut self.consent.last_opt_out),
            Effect::OptIn => {
                latest(&mut self.consent.last_opt_in);
                latest(&mut self.consent.last_permission);
                latest(&mut self.last_cleared);
            }
            Effect::Complaint => latest(&mut self.consent.last_complaint),
            // Engagement proves the address worked at `at`, so it ends a
            // failure streak; it adds no delivery evidence because the
            // message's own DELIVERED receipt already counts it.
            Effect::Engagement => {
                self.evidence.add(Kind::Engaged, at, half_life_ms);
                latest(&mut self.last_cleared);
                latest(&mut self.consent.last_permission);
            }
        }
    }

    fn counter(&mut self, status: Status) -> &mut u32 {
        let c = &mut self.counts;
        match status {
            Status::Sent => &mut c.sent,
            Status::Delivered => &mut c.delivered,
            Status::PendingRetry => &mut c.pending_retry,
            Status::BouncedHard => &mut c.bounced_hard,
            Status::Unconfirmed => &mut c.unconfirmed,
            Status::OptOut => &mut c.optout,
            Status::OptIn => &mut c.optin,
            Status::Complaint => &mut c.complaint,
            Status::Opened => &mut c.opened,
            Status::Clicked => &mut c.clicked,
            Status::Replied => &mut c.replied,
            Status::BlockedCompliance => &mut self.sender_side.blocked_compliance,
            Status::SenderError => &mut self.sender_side.sender_error,
        }
    }
}

fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventMetadata;

    const HOUR: i64 = 3_600_000;

    fn event(id: &str, status: Status, at: i64, sent_at: Option<i64>) -> ChannelEvent {
        ChannelEvent {
            event_id: format!("{id}-{status}"),
            contact_id: "c".into(),
            channel: Channel::Sms,
            status,
            occurred_at: Millis(at),
            sent_at: sent_at.map(Millis),
            metadata: EventMetadata {
                message_id: id.into(),
                ..EventMetadata::default()
            },
            address: Default::default(),
        }
    }

    #[test]
    fn a_message_opens_on_send_and_closes_with_its_latency() {
        let (model, lifecycle) = (ScoringModel::default(), LifecycleConfig::default());
        let mut p = ContactProfile::default();
        let opened = p.apply_tracked(&event("m1", Status::Sent, 0, None), &model, &lifecycle);
        assert_eq!(opened.opened, Some(("m1".into(), Millis(72 * HOUR))));
        let closed = p.apply_tracked(
            &event("m1", Status::Delivered, 4_000, None),
            &model,
            &lifecycle,
        );
        assert_eq!((closed.latency_ms, closed.opened), (Some(4_000), None));
        // Receipt first, send after: the same latency, once.
        let mut q = ContactProfile::default();
        assert_eq!(
            q.apply_tracked(
                &event("m2", Status::Delivered, 4_000, None),
                &model,
                &lifecycle
            )
            .latency_ms,
            None
        );
        assert_eq!(
            q.apply_tracked(&event("m2", Status::Sent, 0, None), &model, &lifecycle)
                .latency_ms,
            Some(4_000)
        );
    }

    #[test]
    fn a_late_receipt_replaces_the_unconfirmed_as_if_it_came_in_time() {
        let (model, lifecycle) = (ScoringModel::default(), LifecycleConfig::default());
        let sent = event("m1", Status::Sent, 0, None);
        let delivered = event("m1", Status::Delivered, 80 * HOUR, Some(0));
        let mut in_time = ContactProfile::default();
        in_time.apply_tracked(&sent, &model, &lifecycle);
        in_time.apply_tracked(&delivered, &model, &lifecycle);

        let mut late = ContactProfile::default();
        late.apply_tracked(&sent, &model, &lifecycle);
        assert!(
            late.expire_message("m1", Millis(71 * HOUR), &model)
                .is_none(),
            "not yet"
        );
        let expired = late
            .expire_message("m1", Millis(73 * HOUR), &model)
            .unwrap();
        assert_eq!(expired.deadline, Millis(72 * HOUR));
        assert_eq!(late.channel(Channel::Sms).unwrap().counts.unconfirmed, 1);
        assert!(
            late.expire_message("m1", Millis(74 * HOUR), &model)
                .is_none(),
            "once"
        );
        let effects = late.apply_tracked(&delivered, &model, &lifecycle);
        assert_eq!(effects.withdrew_unconfirmed, Some(Millis(72 * HOUR)));
        let (a, b) = (
            in_time.channel(Channel::Sms).unwrap(),
            late.channel(Channel::Sms).unwrap(),
        );
        assert_eq!(a.counts, b.counts);
        assert_eq!(b.evidence.unconfirmed, 0.0);
        assert!((a.evidence.delivered - b.evidence.delivered).abs() < 1e-12);
    }
}
