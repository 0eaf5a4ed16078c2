//! The transport-free service: validates requests, applies events to
//! profiles through the store exactly once, and answers reachability
//! questions. gRPC handlers are thin wrappers around this.

mod ingest;
mod provider_ingest;
mod striped_locks;

use std::sync::Arc;

pub use ingest::{BatchOutcome, RejectedEvent, Valid};
pub use provider_ingest::{MAX_DEAD_LETTER_PAGE, ProviderOutcome, ReplayReport};

use crate::{
    domain::{
        BestChannel, Channel, ContactProfile, EventLimits, Millis, Reachability, ScoringModel,
        event::check_id,
        scoring::{assess, best_channel},
    },
    error::{Error, Result},
    providers::Providers,
    storage::{ContactKey, Store, StoreError, Tenant, Version, codec},
};

/// How many times a write re-reads and retries after a compare-and-swap conflict.
const CAS_ATTEMPTS: u32 = 16;

pub struct Engine<S> {
    store: Arc<S>,
    model: ScoringModel,
    limits: EventLimits,
    providers: Arc<Providers>,
    locks: striped_locks::StripedLocks,
}

impl<S: Store> Engine<S> {
    pub fn new(
        store: Arc<S>,
        model: ScoringModel,
        limits: EventLimits,
        providers: Arc<Providers>,
    ) -> Self {
        Engine {
            store,
            model,
            limits,
            providers,
            locks: striped_locks::StripedLocks::new(1024),
        }
    }

    pub fn providers(&self) -> &Arc<Providers> {
        &self.providers
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn limits(&self) -> &EventLimits {
        &self.limits
    }

    /// Per-channel reachability of a contact at `as_of` (default: now).
    pub async fn reachability(
        &self,
        tenant: &Tenant,
        contact_id: &str,
        as_of: Option<Millis>,
    ) -> Result<Reachability> {
        let profile = self
            .read_profile(tenant, contact_id)
            .await?
            .map(|(_, p)| p)
            .unwrap_or_default();
        Ok(assess(
            &profile,
            &self.model,
            as_of.unwrap_or_else(Millis::now),
        ))
    }

    /// The best of the `allowed` channels (all if empty) for a contact.
    pub async fn best_channel(
        &self,
        tenant: &Tenant,
        contact_id: &str,
        allowed: &[Channel],
        as_of: Option<Millis>,
    ) -> Result<BestChannel> {
        let reach = self.reachability(tenant, contact_id, as_of).await?;
        Ok(best_channel(reach, allowed, &self.model))
    }

    /// The stored profile of a contact, `NotFound` if there is none.
    pub async fn profile(
        &self,
        tenant: &Tenant,
        contact_id: &str,
    ) -> Result<(Version, ContactProfile)> {
        self.read_profile(tenant, contact_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("contact {contact_id:?}")))
    }

    /// Erases a contact; durable before it returns. Returns whether it existed.
    pub async fn delete_contact(&self, tenant: &Tenant, contact_id: &str) -> Result<bool> {
        check_id("contact_id", contact_id, &self.limits)?;
        let key = ContactKey::new(tenant, contact_id);
        let existed = {
            let _turn = self.locks.lock(&key).await;
            self.store.delete(&key).await?
        };
        self.store.sync().await?;
        Ok(existed)
    }

    async fn read_profile(
        &self,
        tenant: &Tenant,
        contact_id: &str,
    ) -> Result<Option<(Version, ContactProfile)>> {
        check_id("contact_id", contact_id, &self.limits)?;
        let key = ContactKey::new(tenant, contact_id);
        match self.store.get(&key).await? {
            Some(record) => Ok(Some((record.version, decode(&key, &record.bytes)?))),
            None => Ok(None),
        }
    }
}

fn decode(key: &ContactKey, bytes: &[u8]) -> Result<ContactProfile> {
    codec::decode_profile(bytes).map_err(|reason| {
        Error::Store(StoreError::Corrupt {
            contact: key.contact_id.clone(),
            reason,
        })
    })
}
