//! The transport-free service: validates requests, applies events to
//! profiles through the store exactly once, and answers reachability
//! questions. gRPC handlers are thin wrappers around this.

mod background;
mod consequences;
mod ingest;
mod outbox;
mod provider_ingest;
mod reports;
mod routes;
mod stats;
mod striped_locks;
mod sweep;

use std::sync::Arc;

pub use ingest::{BatchOutcome, RejectedEvent, Valid};
pub use provider_ingest::{MAX_DEAD_LETTER_PAGE, ProviderOutcome, ReplayReport};
pub use reports::{StatsQuery, StatsRow};
pub use routes::RouteReport;

use crate::{
    domain::{
        BestChannel, Channel, ContactProfile, EventLimits, Millis, Reachability, ScoringModel,
        event::check_id,
        message::LifecycleConfig,
        route_health::RouteHealthConfig,
        scoring::{apply_urgency, assess, best_channel},
    },
    error::{Error, Result},
    providers::Providers,
    storage::{ContactKey, Store, StoreError, Tenant, Version, codec},
};

/// How many times a write re-reads and retries after a compare-and-swap conflict.
const CAS_ATTEMPTS: u32 = 16;

/// The engine's settings, from the configuration.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub scoring: ScoringModel,
    pub limits: EventLimits,
    pub lifecycle: LifecycleConfig,
    pub route_health: RouteHealthConfig,
}

pub struct Engine<S> {
    store: Arc<S>,
    model: ScoringModel,
    limits: EventLimits,
    lifecycle: LifecycleConfig,
    providers: Arc<Providers>,
    locks: striped_locks::StripedLocks,
    stats: stats::StatsAggregator,
    routes: routes::RouteMonitor,
    outbox: outbox::Outbox,
}

impl<S: Store> Engine<S> {
    pub fn new(store: Arc<S>, settings: Settings, providers: Arc<Providers>) -> Self {
        let horizon = routes::RouteMonitor::horizon_minutes(&settings.route_health);
        Engine {
            store,
            model: settings.scoring,
            limits: settings.limits,
            lifecycle: settings.lifecycle,
            providers,
            locks: striped_locks::StripedLocks::new(1024),
            stats: stats::StatsAggregator::new(horizon),
            routes: routes::RouteMonitor::new(settings.route_health),
            outbox: outbox::Outbox::default(),
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
    /// `urgent` traffic also weighs the health of each channel's last route.
    pub async fn best_channel(
        &self,
        tenant: &Tenant,
        contact_id: &str,
        allowed: &[Channel],
        urgent: bool,
        as_of: Option<Millis>,
    ) -> Result<BestChannel> {
        let profile = self
            .read_profile(tenant, contact_id)
            .await?
            .map(|(_, p)| p)
            .unwrap_or_default();
        let mut reach = assess(&profile, &self.model, as_of.unwrap_or_else(Millis::now));
        if urgent {
            let degraded = Channel::ALL.map(|channel| {
                let route = profile.channel(channel)?.last_route.as_ref()?;
                self.routes
                    .degraded(tenant, channel, &route.carrier, &route.country)
            });
            apply_urgency(&mut reach, &degraded, &self.model);
        }
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
