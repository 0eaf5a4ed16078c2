//! The message lifecycle: events that carry a message id are tied into a
//! message record. A send (a SENT event or an event's `sent_at`) starts the
//! clock; a final outcome closes the message and gives its latency; silence
//! past the route's receipt window makes it UNCONFIRMED, and a receipt that
//! arrives later replaces that UNCONFIRMED as if it had come in time.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Millis, Status, address::AddressId};

/// Receipt windows and how long messages are remembered (`[lifecycle]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// The sender's country (ISO 3166-1 alpha-2): routes to other countries
    /// are international. Empty: no route is international.
    pub home_country: String,
    #[serde(with = "humantime_serde")]
    pub sms_window: Duration,
    #[serde(with = "humantime_serde")]
    pub email_window: Duration,
    #[serde(with = "humantime_serde")]
    pub push_window: Duration,
    #[serde(with = "humantime_serde")]
    pub voice_window: Duration,
    /// Window of international routes (some report receipts only days later).
    #[serde(with = "humantime_serde")]
    pub international_window: Duration,
    /// Per destination country, overriding everything else, e.g. `IN = "120h"`.
    pub country_windows: BTreeMap<String, humantime_serde::Serde<Duration>>,
    /// How long a closed or unconfirmed message is remembered, so that a late
    /// SENT does not reopen it and a late receipt can correct an UNCONFIRMED.
    #[serde(with = "humantime_serde")]
    pub remember: Duration,
    /// How often the silence sweep looks for messages past their deadline.
    #[serde(with = "humantime_serde")]
    pub sweep_every: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        LifecycleConfig {
            home_country: String::new(),
            sms_window: hours(72),
            email_window: hours(24),
            push_window: hours(24),
            voice_window: hours(2),
            international_window: hours(96),
            country_windows: BTreeMap::new(),
            remember: hours(14 * 24),
            sweep_every: Duration::from_secs(60),
        }
    }
}

/// Messages one contact keeps at most; the oldest closed ones go first.
pub const MAX_MESSAGES: usize = 32;

impl LifecycleConfig {
    /// The receipt window of a message on `channel` to `country`.
    pub fn window(&self, channel: Channel, country: &str) -> Duration {
        if let Some(window) = self.country_windows.get(&country.to_ascii_uppercase()) {
            return window.into_inner();
        }
        if !country.is_empty()
            && !self.home_country.is_empty()
            && !country.eq_ignore_ascii_case(&self.home_country)
        {
            return self.international_window;
        }
        match channel {
            Channel::Sms => self.sms_window,
            Channel::Email => self.email_window,
            Channel::Push => self.push_window,
            Channel::Voice => self.voice_window,
        }
    }
}

/// What reach knows about one message of a contact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageState {
    pub id: String,
    pub channel: Option<Channel>,
    /// The address it was sent to, if the events named one.
    pub address: Option<AddressId>,
    pub sent_at: Option<Millis>,
    /// When silence turns into UNCONFIRMED: `sent_at` + the route's window.
    pub deadline: Option<Millis>,
    /// The final outcome and when it happened.
    pub outcome: Option<(Status, Millis)>,
    /// Set when the message was declared UNCONFIRMED (at its deadline).
    pub unconfirmed_at: Option<Millis>,
    /// Final receipt time minus send time, once both are known.
    pub latency_ms: Option<i64>,
}

impl MessageState {
    pub fn is_open(&self) -> bool {
        self.outcome.is_none() && self.unconfirmed_at.is_none()
    }

    /// The latest time the message was touched, for pruning.
    fn last_activity(&self) -> Millis {
        [self.sent_at, self.outcome.map(|o| o.1), self.unconfirmed_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_default()
    }
}

/// Whether a status closes a message: a final outcome (delivered, failed,
/// blocked, or silence declared by the caller) or an engagement, which
/// proves arrival.
pub fn closes(status: Status) -> bool {
    !matches!(
        status,
        Status::Sent | Status::OptOut | Status::OptIn | Status::Complaint
    )
}

/// Whether a status is a delivery outcome whose timing is a latency.
pub fn is_receipt(status: Status) -> bool {
    matches!(
        status,
        Status::Delivered
            | Status::PendingRetry
            | Status::BouncedHard
            | Status::BlockedCompliance
            | Status::SenderError
    )
}

/// The messages of a contact, bounded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Messages {
    pub list: Vec<MessageState>,
}

impl Messages {
    pub fn get_mut(&mut self, id: &str) -> Option<&mut MessageState> {
        self.list.iter_mut().find(|m| m.id == id)
    }

    pub fn get(&self, id: &str) -> Option<&MessageState> {
        self.list.iter().find(|m| m.id == id)
    }

    pub fn entry(&mut self, id: &str) -> &mut MessageState {
        if let Some(i) = self.list.iter().position(|m| m.id == id) {
            return &mut self.list[i];
        }
        self.list.push(MessageState {
            id: id.to_string(),
            ..MessageState::default()
        });
        self.list.last_mut().expect("just pushed")
    }

    /// Forgets closed messages older than `remember` before `latest`, then
    /// the oldest ones if still over [`MAX_MESSAGES`] (closed ones first).
    pub fn prune(&mut self, latest: Millis, remember: Duration) {
        let horizon = latest.saturating_sub(remember);
        self.list
            .retain(|m| m.is_open() || m.last_activity() >= horizon);
        while self.list.len() > MAX_MESSAGES {
            let victim = self
                .list
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| (m.is_open(), m.last_activity()))
                .map(|(i, _)| i)
                .expect("not empty");
            self.list.remove(victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_by_country_then_route_then_channel() {
        let mut config = LifecycleConfig {
            home_country: "US".into(),
            ..LifecycleConfig::default()
        };
        config
            .country_windows
            .insert("IN".into(), Duration::from_secs(5 * 86_400).into());
        assert_eq!(
            config.window(Channel::Sms, "US"),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(
            config.window(Channel::Sms, ""),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(
            config.window(Channel::Sms, "GB"),
            Duration::from_secs(96 * 3600)
        );
        assert_eq!(
            config.window(Channel::Sms, "in"),
            Duration::from_secs(5 * 86_400)
        );
        assert_eq!(
            config.window(Channel::Voice, "US"),
            Duration::from_secs(2 * 3600)
        );
    }

    #[test]
    fn pruning_keeps_open_messages_and_bounds_the_list() {
        let mut messages = Messages::default();
        for i in 0..40 {
            let m = messages.entry(&format!("m{i}"));
            m.sent_at = Some(Millis(i));
            if i % 2 == 0 {
                m.outcome = Some((Status::Delivered, Millis(i + 1)));
            }
        }
        messages.prune(Millis(100), Duration::from_secs(3600));
        assert_eq!(messages.list.len(), MAX_MESSAGES);
        assert_eq!(
            messages.list.iter().filter(|m| m.is_open()).count(),
            20,
            "every open one kept"
        );
    }
}
