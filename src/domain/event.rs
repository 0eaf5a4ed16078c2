//! A normalized channel event and the rules a well-formed one obeys.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{
    Channel, Millis, Status,
    address::{ResolvedAddress, Sensitive},
};

/// One normalized delivery or engagement event about one contact.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelEvent {
    pub event_id: String,
    pub contact_id: String,
    pub channel: Channel,
    pub status: Status,
    pub occurred_at: Millis,
    pub sent_at: Option<Millis>,
    pub metadata: EventMetadata,
    pub address: EventAddress,
}

/// The address an event was sent to, if the caller named one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventAddress {
    /// As the caller gave it; never logged.
    pub raw: Sensitive,
    /// Canonical id and facts, set by the engine's validation.
    pub resolved: Option<ResolvedAddress>,
}

impl ChannelEvent {
    /// The id of the address the event concerns, once resolved.
    pub fn address_id(&self) -> Option<crate::domain::address::AddressId> {
        self.address.resolved.as_ref().map(|a| a.id)
    }
}

/// Optional route and campaign facts carried along for audit and analytics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventMetadata {
    pub message_id: String,
    pub provider: String,
    pub provider_code: String,
    pub carrier: String,
    pub country: String,
    pub campaign_id: String,
    pub campaign_type: String,
    pub lifecycle_stage: String,
    pub sender_id: String,
}

/// Size and clock limits for incoming events. Defaults are documented in
/// `docs/api.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLimits {
    /// Longest accepted `event_id` / `contact_id`, in bytes.
    pub max_id_bytes: usize,
    /// Longest accepted metadata field (provider, carrier, campaign...), in bytes.
    pub max_field_bytes: usize,
    /// How far ahead of the server clock `occurred_at` may be.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Most events one RecordEvents stream may carry; split larger
    /// backfills into several streams.
    pub max_events_per_stream: u64,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_id_bytes: 256,
            max_field_bytes: 128,
            max_future_skew: Duration::from_secs(300),
            max_events_per_stream: 1_000_000,
        }
    }
}

/// A field that failed validation, named by its path in the request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path, e.g. `occurred_at` -> `event.occurred_at`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// Checks a required identifier: present and not too long.
pub fn check_id(field: &str, value: &str, limits: &EventLimits) -> Result<(), InvalidField> {
    if value.is_empty() {
        return Err(InvalidField::new(field, "is required"));
    }
    if value.len() > limits.max_id_bytes {
        return Err(InvalidField::new(
            field,
            format!(
                "is {} bytes, at most {} allowed",
                value.len(),
                limits.max_id_bytes
            ),
        ));
    }
    Ok(())
}

impl ChannelEvent {
    /// Validates the event against `limits` at server time `now`, and
    /// normalizes the country code to upper case.
    pub fn validate(&mut self, limits: &EventLimits, now: Millis) -> Result<(), InvalidField> {
        check_id("event_id", &self.event_id, limits)?;
        check_id("contact_id", &self.contact_id, limits)?;
        let latest = now.saturating_add(limits.max_future_skew);
        check_time("occurred_at", self.occurred_at, latest, limits)?;
        if let Some(sent_at) = self.sent_at {
            check_time("sent_at", sent_at, latest, limits)?;
            if sent_at > self.occurred_at {
                return Err(InvalidField::new("sent_at", "is after occurred_at"));
            }
        }
        self.metadata.validate(limits)
    }
}

fn check_time(
    field: &str,
    at: Millis,
    latest: Millis,
    limits: &EventLimits,
) -> Result<(), InvalidField> {
    if at.0 < 0 {
        return Err(InvalidField::new(field, "is before 1970-01-01T00:00:00Z"));
    }
    if at > latest {
        return Err(InvalidField::new(
            field,
            format!(
                "is {at}, more than {} ahead of the server clock",
                humantime::format_duration(limits.max_future_skew)
            ),
        ));
    }
    Ok(())
}

impl EventMetadata {
    fn validate(&mut self, limits: &EventLimits) -> Result<(), InvalidField> {
        let fields = [
            ("message_id", &self.message_id),
            ("provider", &self.provider),
            ("provider_code", &self.provider_code),
            ("carrier", &self.carrier),
            ("country", &self.country),
            ("campaign_id", &self.campaign_id),
            ("campaign_type", &self.campaign_type),
            ("lifecycle_stage", &self.lifecycle_stage),
            ("sender_id", &self.sender_id),
        ];
        for (field, value) in fields {
            if value.len() > limits.max_field_bytes {
                return Err(InvalidField::new(
                    field,
                    format!(
                        "is {} bytes, at most {} allowed",
                        value.len(),
                        limits.max_field_bytes
                    ),
                ));
            }
        }
        if !self.country.is_empty() {
            let valid =
                self.country.len() == 2 && self.country.bytes().all(|b| b.is_ascii_alphabetic());
            if !valid {
                return Err(InvalidField::new(
                    "country",
                    format!("{:?} is not an ISO 3166-1 alpha-2 code", self.country),
                ));
            }
            self.country.make_ascii_uppercase();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> ChannelEvent {
        ChannelEvent {
            event_id: "e1".into(),
            contact_id: "c1".into(),
            channel: Channel::Sms,
            status: Status::Delivered,
            occurred_at: Millis(1_000_000),
            sent_at: None,
            metadata: EventMetadata::default(),
            address: EventAddress::default(),
        }
    }

    #[test]
    fn accepts_a_minimal_event() {
        assert_eq!(
            event().validate(&EventLimits::default(), Millis(1_000_000)),
            Ok(())
        );
    }

    #[test]
    fn names_the_bad_field() {
        let limits = EventLimits::default();
        let mut e = event();
        e.contact_id = "x".repeat(257);
        assert_eq!(
            e.validate(&limits, Millis(1_000_000)).unwrap_err().field,
            "contact_id"
        );

        let mut e = event();
        e.occurred_at = Millis(1_000_000 + 301_000);
        assert_eq!(
            e.validate(&limits, Millis(1_000_000)).unwrap_err().field,
            "occurred_at"
        );

        let mut e = event();
        e.sent_at = Some(Millis(2_000_000));
        assert_eq!(
            e.validate(&limits, Millis(3_000_000)).unwrap_err().field,
            "sent_at"
        );

        let mut e = event();
        e.metadata.country = "USA".into();
        assert_eq!(
            e.validate(&limits, Millis(1_000_000)).unwrap_err().field,
            "country"
        );
    }

    #[test]
    fn upper_cases_the_country() {
        let mut e = event();
        e.metadata.country = "us".into();
        e.validate(&EventLimits::default(), Millis(1_000_000))
            .unwrap();
        assert_eq!(e.metadata.country, "US");
    }
}
