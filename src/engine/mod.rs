//! The transport-free service: validates requests, applies events to
//! profiles through the store exactly once, and answers reachability
//! questions. gRPC handlers are thin wrappers around this.

mod background;
mod catalog_cache;
mod consequences;
mod contacts;
mod event_metrics;
mod ingest;
mod outbox;
mod outlooks;
mod policies;
mod provider_ingest;
mod reports;
mod route_tallies;
mod routes;
mod senders;
mod stats;
mod striped_locks;
mod sweep;

use std::{collections::BTreeMap, sync::Arc};

pub use contacts::{AddressUpdate, ContactUpdate};
pub use ingest::{BatchOutcome, RejectedEvent, Valid};
pub use policies::{Ask, PolicySource, check_policy_name};
pub use provider_ingest::{MAX_DEAD_LETTER_PAGE, ProviderOutcome, ReplayReport};
pub use reports::{StatsQuery, StatsRow};
pub use routes::RouteReport;
pub use senders::{HealthReport, SenderReport};

use crate::{
    domain::{
        ContactProfile, EventLimits, Millis, ScoringModel,
        address::{AddressBook, AddressConfig, AddressKey, random_key},
        event::check_id,
        message::LifecycleConfig,
        policy::SendPolicy,
        quiet_hours::QuietHoursConfig,
        route_health::RouteHealthConfig,
        sender_health::SenderHealthConfig,
    },
    error::{Error, Result},
    providers::Providers,
    storage::{
        Commit, CommitOp, ContactKey, LoadRequest, Store, StoreError, Tenant, Version, codec,
    },
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
    pub addresses: AddressConfig,
    pub sender_health: SenderHealthConfig,
    pub quiet_hours: QuietHoursConfig,
    /// Send policies by campaign type (`[policies]`).
    pub policies: BTreeMap<String, SendPolicy>,
    /// Key of the address hashes; `None` draws a fresh one (tests, benches:
    /// ids then change between runs).
    pub address_key: Option<AddressKey>,
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
    addresses: AddressBook,
    event_metrics: event_metrics::EventMetrics,
    senders: senders::Senders,
    policies: policies::Policies,
}

impl<S: Store> Engine<S> {
    pub fn new(store: Arc<S>, settings: Settings, providers: Arc<Providers>) -> Self {
        // Minute cells serve both route and sender health.
        let horizon = routes::RouteMonitor::horizon_minutes(&settings.route_health)
            .max(senders::Senders::window_minutes(&settings.sender_health) + 2);
        let key = settings
            .address_key
            .unwrap_or_else(|| AddressKey::new(random_key()));
        Engine {
            addresses: AddressBook::new(key, settings.addresses),
            event_metrics: event_metrics::EventMetrics::default(),
            senders: senders::Senders::new(settings.sender_health),
            policies: policies::Policies::new(settings.policies, settings.quiet_hours),
            store,
            model: settings.scoring,
            limits: settings.limits,
            lifecycle: settings.lifecycle,
            providers,
            locks: striped_locks::StripedLocks::new(1024),
            stats: stats::StatsAggregator::new(horizon, settings.route_health.outlook_days()),
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
            Some(record) => match decode(&key, &record.bytes) {
                Ok(profile) => Ok(Some((record.version, profile))),
                Err(e) => Err(self.quarantine_corrupt(&key, e).await),
            },
            None => Ok(None),
        }
    }
}

/// What [`Engine::update_profile`] wrote.
pub(crate) struct Written<R> {
    pub profile: ContactProfile,
    /// What the change returned.
    pub result: R,
    /// Set when the write stands but its replication was not confirmed
    /// (Redis `WAIT`): the caller produces what follows from the write (a
    /// retry would find it done) and then returns this error.
    pub unconfirmed: Option<StoreError>,
}

impl<S: Store> Engine<S> {
    /// Reads one contact's profile (empty if none is stored), lets `change`
    /// update it, and compare-and-swaps it back, retrying on conflict.
    /// `change` returning `None` writes nothing. Not yet durable: callers
    /// `sync`.
    pub(crate) async fn update_profile<R>(
        &self,
        key: &ContactKey,
        now: Millis,
        mut change: impl FnMut(&mut ContactProfile) -> Option<R>,
    ) -> Result<Option<Written<R>>> {
        let _turn = self.locks.lock(key).await;
        for _ in 0..CAS_ATTEMPTS {
            let request = LoadRequest {
                key: key.clone(),
                markers: Vec::new(),
            };
            let snapshot = self.store.load_many(&[request], now).await?.remove(0);
            let mut profile = match &snapshot.record {
                Some(record) => match decode(key, &record.bytes) {
                    Ok(profile) => profile,
                    Err(e) => return Err(self.quarantine_corrupt(key, e).await),
                },
                None => ContactProfile::default(),
            };
            let Some(result) = change(&mut profile) else {
                return Ok(None);
            };
            let op = CommitOp {
                key: key.clone(),
                expected: snapshot.version,
                value: codec::encode_profile(&profile),
                markers: Vec::new(),
                read: snapshot.read,
            };
            let unconfirmed = match self.store.commit_many(vec![op], now).await?.remove(0) {
                Commit::Applied(_) => None,
                Commit::Unconfirmed(_, e) => Some(e),
                Commit::Conflict => continue,
                Commit::Failed(e) => return Err(e.into()),
            };
            return Ok(Some(Written {
                profile,
                result,
                unconfirmed,
            }));
        }
        Err(Error::Contention(key.contact_id.clone()))
    }
}

impl<S: Store> Engine<S> {
    /// A stored profile that no longer decodes is moved aside (so the
    /// contact is not failing forever) and the call gets the corruption
    /// error; any other error passes through.
    pub(crate) async fn quarantine_corrupt(&self, key: &ContactKey, error: Error) -> Error {
        if let Error::Store(StoreError::Corrupt { reason, .. }) = &error {
            let moved = match self.store.quarantine(key, reason).await {
                Ok(()) => self.store.sync().await,
                Err(e) => Err(e),
            };
            if let Err(e) = moved {
                tracing::error!(error = %e, "could not move a corrupt record aside");
            }
        }
        error
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
