//! The channel-agnostic status taxonomy and what each status means for the
//! contact. Provider-native codes are mapped onto [`Status`] elsewhere; this
//! module decides how each class bears on reachability.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A delivery channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
    Push,
    Voice,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Sms, Channel::Email, Channel::Push, Channel::Voice];

    /// Dense index, for per-channel arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::Voice => "voice",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A normalized event status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Sent,
    Delivered,
    PendingRetry,
    BouncedHard,
    BlockedCompliance,
    SenderError,
    OptOut,
    OptIn,
    Complaint,
    Unconfirmed,
    Opened,
    Clicked,
    Replied,
}

/// How a status bears on the contact's reachability on its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Accepted upstream, outcome unknown: never evidence of delivery.
    InFlight,
    /// Reached the contact: success evidence, ends a hard-fail streak.
    Delivered,
    /// Temporary failure: partial failure evidence, a retry candidate.
    SoftFail,
    /// Permanent failure of the address: failure evidence, counts toward suppression.
    HardFail,
    /// No receipt within the route's window: partial failure evidence.
    Silence,
    /// The sender's or the integration's problem, not the contact's.
    SenderSide,
    OptOut,
    OptIn,
    Complaint,
    /// The contact interacted: proves the address works, tracked apart from delivery.
    Engagement,
}

impl Status {
    pub fn effect(self) -> Effect {
        match self {
            Status::Sent => Effect::InFlight,
            Status::Delivered => Effect::Delivered,
            Status::PendingRetry => Effect::SoftFail,
            Status::BouncedHard => Effect::HardFail,
            Status::Unconfirmed => Effect::Silence,
            Status::BlockedCompliance | Status::SenderError => Effect::SenderSide,
            Status::OptOut => Effect::OptOut,
            Status::OptIn => Effect::OptIn,
            Status::Complaint => Effect::Complaint,
            Status::Opened | Status::Clicked | Status::Replied => Effect::Engagement,
        }
    }

    pub const ALL: [Status; 13] = [
        Status::Sent,
        Status::Delivered,
        Status::PendingRetry,
        Status::BouncedHard,
        Status::BlockedCompliance,
        Status::SenderError,
        Status::OptOut,
        Status::OptIn,
        Status::Complaint,
        Status::Unconfirmed,
        Status::Opened,
        Status::Clicked,
        Status::Replied,
    ];

    /// The status named as in the proto without its prefix, e.g. `BOUNCED_HARD`.
    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Sent => "SENT",
            Status::Delivered => "DELIVERED",
            Status::PendingRetry => "PENDING_RETRY",
            Status::BouncedHard => "BOUNCED_HARD",
            Status::BlockedCompliance => "BLOCKED_COMPLIANCE",
            Status::SenderError => "SENDER_ERROR",
            Status::OptOut => "OPTOUT",
            Status::OptIn => "OPTIN",
            Status::Complaint => "COMPLAINT",
            Status::Unconfirmed => "UNCONFIRMED",
            Status::Opened => "OPENED",
            Status::Clicked => "CLICKED",
            Status::Replied => "REPLIED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
