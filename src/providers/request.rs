//! A provider event request as reach keeps it: what `RecordProviderEvent`
//! received, stored whole with a dead letter so that it can be re-mapped.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Millis};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderRequest {
    pub provider: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub native: NativeFields,
    pub contact_id: String,
    pub event_id: String,
    pub message_id: String,
    pub occurred_at: Option<Millis>,
    pub channel: Option<Channel>,
    pub carrier: String,
    pub country: String,
    pub campaign_id: String,
    pub campaign_type: String,
    pub lifecycle_stage: String,
    pub sender_id: String,
}

/// The provider's own words, when the caller has them apart from a body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NativeFields {
    pub status: String,
    pub error_code: String,
    pub sub_type: String,
}
