//! Actions: the decisions reach makes as events arrive, for orchestration
//! engines to act on (suppress, fall back, avoid a route, fix a mapping).

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Millis};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActionKind {
    /// A channel of a contact became suppressed; verify the address.
    ContactChannelSuppressed,
    /// A hard fail in a campaign: the contact's next best channel.
    FallbackSuggested,
    RouteDegraded,
    RouteRecovered,
    /// A provider event no mapping rule covered (dead-lettered).
    UnmappedProviderCode,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    pub at: Millis,
    pub contact_id: String,
    pub channel: Option<Channel>,
    pub suggested_channel: Option<Channel>,
    pub carrier: String,
    pub country: String,
    pub campaign_id: String,
    pub provider: String,
    pub code: String,
    /// What happened and what to do, in words.
    pub reason: String,
}

impl Action {
    pub fn new(kind: ActionKind, at: Millis, reason: String) -> Self {
        Action {
            kind,
            at,
            contact_id: String::new(),
            channel: None,
            suggested_channel: None,
            carrier: String::new(),
            country: String::new(),
            campaign_id: String::new(),
            provider: String::new(),
            code: String::new(),
            reason,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("action serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("action does not decode: {e}"))
    }
}
