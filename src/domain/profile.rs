//! The per-contact state reach keeps: per channel, counters, decayed
//! evidence, the hard-fail log and consent. Its size is bounded whatever the
//! number of events, and applying events is order-insensitive.

use crate::domain::{
    Channel, ChannelEvent, Effect, Millis, ScoringModel, Status,
    evidence::{Evidence, Kind},
    suppression::{Consent, HardFailLog},
};

/// Everything reach knows about one contact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactProfile {
    /// Indexed by [`Channel::index`].
    pub channels: [Option<ChannelState>; 4],
}

/// What reach knows about one contact on one channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelState {
    pub counts: StatusCounts,
    pub evidence: Evidence,
    /// Latest contact-side event (sender-side outcomes excluded).
    pub last_event: Option<Millis>,
    pub hard_fails: HardFailLog,
    pub consent: Consent,
    pub sender_side: SenderSide,
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

impl ContactProfile {
    pub fn channel(&self, channel: Channel) -> Option<&ChannelState> {
        self.channels[channel.index()].as_ref()
    }

    pub fn apply(&mut self, event: &ChannelEvent, model: &ScoringModel) {
        self.channels[event.channel.index()]
            .get_or_insert_with(ChannelState::default)
            .apply(event.status, event.occurred_at, model.half_life_ms());
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
                self.hard_fails.record_clear(at);
                latest(&mut self.consent.last_permission);
            }
            Effect::SoftFail => self.evidence.add(Kind::SoftFail, at, half_life_ms),
            Effect::HardFail => {
                self.evidence.add(Kind::HardFail, at, half_life_ms);
                self.hard_fails.record_fail(at);
            }
            Effect::Silence => self.evidence.add(Kind::Unconfirmed, at, half_life_ms),
            Effect::OptOut => latest(&mut self.consent.last_opt_out),
            Effect::OptIn => {
                latest(&mut self.consent.last_opt_in);
                latest(&mut self.consent.last_permission);
                self.hard_fails.record_clear(at);
            }
            Effect::Complaint => latest(&mut self.consent.last_complaint),
            // Engagement proves the address worked at `at`, so it ends a
            // hard-fail streak; it adds no delivery evidence because the
            // message's own DELIVERED receipt already counts it.
            Effect::Engagement => {
                self.evidence.add(Kind::Engaged, at, half_life_ms);
                self.hard_fails.record_clear(at);
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
