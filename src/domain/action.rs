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
    /// A sender's (or campaign's) compliance-block rate spiked.
    SenderComplianceAlert,
    SenderComplianceCleared,
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
    pub sender_id: String,
}

/// Actions stored before sender ids existed (first byte: the kind, < 5).
#[derive(Deserialize)]
struct ActionV1 {
    kind: ActionKind,
    at: Millis,
    contact_id: String,
    channel: Option<Channel>,
    suggested_channel: Option<Channel>,
    carrier: String,
    country: String,
    campaign_id: String,
    provider: String,
    code: String,
    reason: String,
}

/// First byte of the current action encoding; no V1 action starts with it.
const ACTION_FORMAT: u8 = 0xA2;

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
            sender_id: String::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![ACTION_FORMAT]).expect("action serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let fail = |e: postcard::Error| format!("action does not decode: {e}");
        match bytes.split_first() {
            Some((&ACTION_FORMAT, body)) => postcard::from_bytes(body).map_err(fail),
            _ => {
                let v1: ActionV1 = postcard::from_bytes(bytes).map_err(fail)?;
                Ok(Action {
                    kind: v1.kind,
                    at: v1.at,
                    contact_id: v1.contact_id,
                    channel: v1.channel,
                    suggested_channel: v1.suggested_channel,
                    carrier: v1.carrier,
                    country: v1.country,
                    campaign_id: v1.campaign_id,
                    provider: v1.provider,
                    code: v1.code,
                    reason: v1.reason,
                    sender_id: String::new(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_stored_before_sender_ids_still_decode() {
        #[derive(Serialize)]
        struct V1<'a>(
            ActionKind,
            Millis,
            &'a str,
            Option<Channel>,
            Option<Channel>,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
        );
        let old = postcard::to_stdvec(&V1(
            ActionKind::RouteDegraded,
            Millis(5),
            "",
            Some(Channel::Sms),
            None,
            "c1",
            "US",
            "",
            "",
            "",
            "slow",
        ))
        .unwrap();
        let a = Action::decode(&old).unwrap();
        assert_eq!(
            (a.kind, a.carrier.as_str(), a.sender_id.as_str()),
            (ActionKind::RouteDegraded, "c1", "")
        );
        let mut new = Action::new(ActionKind::SenderComplianceAlert, Millis(6), "spike".into());
        new.sender_id = "+15550100".into();
        assert_eq!(Action::decode(&new.encode()).unwrap(), new);
    }
}
