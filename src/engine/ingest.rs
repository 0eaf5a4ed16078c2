//! Recording events exactly once: validate, then per contact read the
//! profile and the event's dedupe markers, apply the new events, and
//! compare-and-swap the profile together with their markers. Replies wait for
//! the group commit, so an acknowledged event survives a crash.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use crate::{
    domain::{ChannelEvent, ContactProfile, InvalidField, Millis},
    engine::{CAS_ATTEMPTS, Engine, decode},
    error::{Error, Result},
    storage::{Commit, ContactKey, DedupeKey, Store, Tenant, codec},
};

/// An event that passed validation; only [`Engine::validate`] makes one.
#[derive(Clone, Debug)]
pub struct Valid(ChannelEvent);

impl Valid {
    pub fn event(&self) -> &ChannelEvent {
        &self.0
    }
}

/// Counts of a bulk ingest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub accepted: u64,
    pub duplicates: u64,
}

/// An event of a bulk stream that failed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedEvent {
    pub index: u64,
    pub event_id: String,
    pub error: InvalidField,
}

impl<S: Store> Engine<S> {
    /// Checks an event against the configured limits at server time `now`.
    pub fn validate(&self, mut event: ChannelEvent, now: Millis) -> Result<Valid, InvalidField> {
        event.validate(&self.limits, now)?;
        Ok(Valid(event))
    }

    /// Records one validated event, durably. Returns true if it was a duplicate.
    pub async fn record(&self, tenant: &Tenant, event: &Valid) -> Result<bool> {
        let now = Millis::now();
        let duplicate = self.apply_to_contact(tenant, &[event], now).await?;
        // Also for a duplicate: its first copy may still be waiting for its
        // flush, and "already recorded" must not be said before it is durable.
        self.store.sync().await?;
        Ok(duplicate[0])
    }

    /// Records validated events, durably, one compare-and-swap per contact.
    pub async fn record_batch(&self, tenant: &Tenant, events: &[Valid]) -> Result<BatchOutcome> {
        let now = Millis::now();
        let mut by_contact: HashMap<&str, Vec<&Valid>> = HashMap::new();
        for event in events {
            by_contact
                .entry(&event.0.contact_id)
                .or_default()
                .push(event);
        }
        let mut outcome = BatchOutcome::default();
        for group in by_contact.values() {
            for duplicate in self.apply_to_contact(tenant, group, now).await? {
                if duplicate {
                    outcome.duplicates += 1;
                } else {
                    outcome.accepted += 1;
                }
            }
        }
        self.store.sync().await?;
        Ok(outcome)
    }

    /// Applies `events` (all about one contact) that were not recorded before.
    /// Returns, per event, whether it was a duplicate. Not yet durable.
    async fn apply_to_contact(
        &self,
        tenant: &Tenant,
        events: &[&Valid],
        now: Millis,
    ) -> Result<Vec<bool>> {
        let key = ContactKey::new(tenant, &events[0].0.contact_id);
        let markers: Vec<DedupeKey> = events
            .iter()
            .map(|e| DedupeKey::new(&key, &e.0.event_id))
            .collect();
        let _guard = self.locks.lock(&key).await;
        for attempt in 0..CAS_ATTEMPTS {
            let snapshot = self.store.load(&key, &markers, now).await?;
            let mut profile = match &snapshot.record {
                Some(record) => decode(&key, &record.bytes)?,
                None => ContactProfile::default(),
            };
            let mut duplicate = snapshot.seen.clone();
            let mut fresh = Vec::with_capacity(events.len());
            let mut in_batch = HashSet::new();
            for (i, event) in events.iter().enumerate() {
                // A repeat inside the batch is a duplicate of its first copy.
                if duplicate[i] || !in_batch.insert(markers[i]) {
                    duplicate[i] = true;
                    continue;
                }
                profile.apply(&event.0, &self.model);
                fresh.push(markers[i]);
            }
            if fresh.is_empty() {
                return Ok(duplicate);
            }
            let expected = snapshot.record.as_ref().map(|r| r.version);
            let value = codec::encode_profile(&profile);
            match self
                .store
                .commit(&key, expected, &value, &fresh, now)
                .await?
            {
                Commit::Applied(_) => return Ok(duplicate),
                Commit::Conflict => tokio::time::sleep(backoff(attempt)).await,
            }
        }
        Err(Error::Contention(key.contact_id))
    }
}

/// Exponential backoff with full jitter, capped at about 50 ms.
fn backoff(attempt: u32) -> Duration {
    let cap_us = (100u64 << attempt.min(9)).min(50_000);
    Duration::from_micros(fastrand::u64(0..=cap_us))
}
