//! An event no mapping rule covered, kept durably with the request it came
//! in so that it can be re-mapped once the tables are fixed.

use serde::{Deserialize, Serialize};

use crate::{
    domain::Millis,
    providers::{ProviderRequest, Translated, hex},
    storage::Tenant,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: String,
    pub provider: String,
    pub received_at: Millis,
    pub reason: String,
    /// `status/error_code/sub_type` as the provider sent them.
    pub code: String,
    /// Position of the event in the request's body.
    pub index: u32,
    pub event_id: String,
    pub contact_id: String,
    pub request: ProviderRequest,
}

impl DeadLetter {
    /// The dead letter of one unmapped event. Its id derives from the event
    /// id, so a redelivered request overwrites rather than duplicates it.
    pub fn new(
        tenant: &Tenant,
        request: &ProviderRequest,
        event: &Translated,
        reason: &str,
        code: &str,
        now: Millis,
    ) -> Self {
        let mut request = request.clone();
        // A replay long after must see the time the event arrived, not its own.
        request.occurred_at.get_or_insert(now);
        let digest = blake3::hash(
            format!(
                "{}\0{}\0{}",
                tenant, event.metadata.provider, event.event_id
            )
            .as_bytes(),
        );
        DeadLetter {
            id: hex(&digest.as_bytes()[..12]),
            provider: event.metadata.provider.clone(),
            received_at: now,
            reason: reason.to_string(),
            code: code.to_string(),
            index: event.index,
            event_id: event.event_id.clone(),
            contact_id: event.contact_id.clone(),
            request,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("dead letter serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("dead letter does not decode: {e}"))
    }
}
