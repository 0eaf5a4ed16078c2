//! The sender registry and the sender health monitor. Senders are a small
//! per-tenant catalog: stored durably, cached whole per tenant, read on every
//! gated GetBestChannel. Health is judged from the per-sender minute cells
//! the statistics keep, like route health.

use std::{collections::HashMap, sync::Mutex};

use crate::{
    domain::{
        Channel, InvalidField, Millis,
        action::{Action, ActionKind},
        sender::{Registration, Sender},
        sender_health::{ComplianceRate, SenderHealthConfig, judge},
        stats::Dims,
    },
    engine::{
        Engine,
        catalog_cache::{CatalogCache, Entries},
        stats::StatsAggregator,
    },
    error::{Error, Result},
    storage::{Catalog, Granularity, Store, Tenant},
};

/// Longest accepted sender id.
pub const MAX_SENDER_ID_BYTES: usize = 128;

#[derive(Clone, Debug, Default)]
struct AlertState {
    alerting: bool,
    since: Option<Millis>,
    reason: String,
}

/// Health of a sender, or of one of its campaigns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthReport {
    pub campaign_id: String,
    pub rate: ComplianceRate,
    pub alerting: bool,
    pub since: Option<Millis>,
    pub reason: String,
}

/// A sender with its health: the sender as a whole first, then campaigns.
#[derive(Clone, Debug, PartialEq)]
pub struct SenderReport {
    pub sender: Sender,
    pub health: Vec<HealthReport>,
    pub window_seconds: u64,
}

pub struct Senders {
    config: SenderHealthConfig,
    cache: CatalogCache<Sender>,
    alerts: Mutex<HashMap<(Tenant, Dims), AlertState>>,
}

impl Senders {
    pub fn new(config: SenderHealthConfig) -> Self {
        Senders {
            config,
            cache: CatalogCache::new(Catalog::Senders),
            alerts: Mutex::new(HashMap::new()),
        }
    }

    pub fn window_minutes(config: &SenderHealthConfig) -> u32 {
        (config.window.as_secs() / 60).max(1) as u32
    }

    fn window_cell(
        &self,
        stats: &StatsAggregator,
        tenant: &Tenant,
        dims: &Dims,
        now: Millis,
    ) -> ComplianceRate {
        let to = Granularity::Minute.bucket(now) + 1;
        let from = to.saturating_sub(Self::window_minutes(&self.config));
        ComplianceRate::of(&stats.route_cell(tenant, dims, from, to))
    }

    /// Judges every sender and campaign with recent outcomes; returns the
    /// actions for those whose alert state changed.
    pub fn evaluate(&self, stats: &StatsAggregator, now: Millis) -> Vec<(Tenant, Action)> {
        let mut actions = Vec::new();
        let mut alerts = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        for (tenant, dims) in stats.senders(None) {
            let rate = self.window_cell(stats, &tenant, &dims, now);
            let entry = alerts.entry((tenant.clone(), dims.clone())).or_default();
            let (alerting, reason) = judge(&rate, entry.alerting, &self.config);
            if alerting != entry.alerting {
                let what = if dims.campaign_id.is_empty() {
                    format!("sender {}", dims.sender_id)
                } else {
                    format!("campaign {} of sender {}", dims.campaign_id, dims.sender_id)
                };
                let (kind, text) = if alerting {
                    (
                        ActionKind::SenderComplianceAlert,
                        format!(
                            "{what}: {reason}; check its registration and content before carriers suspend it"
                        ),
                    )
                } else {
                    (
                        ActionKind::SenderComplianceCleared,
                        format!("{what} recovered: {reason}"),
                    )
                };
                let mut action = Action::new(kind, now, text);
                action.sender_id = dims.sender_id.clone();
                action.campaign_id = dims.campaign_id.clone();
                actions.push((tenant.clone(), action));
                entry.since = Some(now);
            }
            entry.alerting = alerting;
            entry.reason = reason;
        }
        actions
    }

    fn report(
        &self,
        stats: &StatsAggregator,
        tenant: &Tenant,
        sender: &Sender,
        now: Millis,
    ) -> SenderReport {
        let alerts = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<Dims> = stats
            .senders(Some(tenant))
            .into_iter()
            .map(|(_, d)| d)
            .filter(|d| d.sender_id == sender.sender_id)
            .collect();
        let whole = Dims {
            sender_id: sender.sender_id.clone(),
            ..Dims::default()
        };
        if !keys.contains(&whole) {
            keys.push(whole);
        }
        keys.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
        let health = keys
            .into_iter()
            .map(|dims| {
                let state = alerts
                    .get(&(tenant.clone(), dims.clone()))
                    .cloned()
                    .unwrap_or_default();
                HealthReport {
                    rate: self.window_cell(stats, tenant, &dims, now),
                    campaign_id: dims.campaign_id,
                    alerting: state.alerting,
                    since: state.since,
                    reason: state.reason,
                }
            })
            .collect();
        SenderReport {
            sender: sender.clone(),
            health,
            window_seconds: self.config.window.as_secs(),
        }
    }
}

impl<S: Store> Engine<S> {
    /// The tenant's senders, from the cache or the store.
    pub(crate) async fn tenant_senders(&self, tenant: &Tenant) -> Result<Entries<Sender>> {
        self.senders
            .cache
            .entries(self.store.as_ref(), tenant, Sender::decode)
            .await
    }

    /// Registers or updates a sender, durably.
    pub async fn register_sender(
        &self,
        tenant: &Tenant,
        registration: Registration,
        now: Millis,
    ) -> Result<SenderReport> {
        check_sender_id("sender_id", &registration.sender_id)?;
        for (i, (campaign, _)) in registration.campaigns.iter().enumerate() {
            if campaign.is_empty() || campaign.len() > self.limits.max_field_bytes {
                return Err(InvalidField::new(
                    format!("campaigns[{i}].campaign_id"),
                    format!("must be 1 to {} bytes", self.limits.max_field_bytes),
                )
                .into());
            }
        }
        let _turn = self.senders.cache.writes.lock().await;
        let current = self.tenant_senders(tenant).await?;
        let existing = current.get(&registration.sender_id).cloned();
        let sender = Sender::register(existing, registration, now)?;
        let (id, bytes) = (sender.sender_id.clone(), sender.encode());
        self.senders
            .cache
            .put(
                self.store.as_ref(),
                tenant,
                &current,
                &id,
                sender.clone(),
                &bytes,
            )
            .await?;
        self.judge_senders().await?;
        Ok(self
            .senders
            .report(&self.stats, tenant, &sender, Millis::now()))
    }

    /// A sender with its health, judged now.
    pub async fn sender(&self, tenant: &Tenant, sender_id: &str) -> Result<SenderReport> {
        check_sender_id("sender_id", sender_id)?;
        let senders = self.tenant_senders(tenant).await?;
        let sender = senders
            .get(sender_id)
            .ok_or_else(|| Error::NotFound(format!("sender {sender_id:?}")))?;
        self.judge_senders().await?;
        Ok(self
            .senders
            .report(&self.stats, tenant, sender, Millis::now()))
    }

    /// The tenant's senders (of `channel`, if given), by id.
    pub async fn list_senders(
        &self,
        tenant: &Tenant,
        channel: Option<Channel>,
    ) -> Result<Vec<SenderReport>> {
        let senders = self.tenant_senders(tenant).await?;
        self.judge_senders().await?;
        let now = Millis::now();
        Ok(senders
            .values()
            .filter(|s| channel.is_none_or(|c| s.channel == c))
            .map(|s| self.senders.report(&self.stats, tenant, s, now))
            .collect())
    }

    /// Judges sender health and publishes the alerts that changed.
    pub async fn judge_senders(&self) -> Result<()> {
        self.flush_stats().await?;
        let changes = self.senders.evaluate(&self.stats, Millis::now());
        for (tenant, action) in changes {
            self.publish(&tenant, action).await?;
        }
        Ok(())
    }

    /// Why each named sender may not send (`campaign_id` if given), by the
    /// channel it sends on. An unknown sender is `NotFound`.
    pub(crate) async fn sender_refusals(
        &self,
        tenant: &Tenant,
        sender_ids: &[String],
        campaign_id: &str,
    ) -> Result<Vec<(Channel, Option<String>)>> {
        if sender_ids.is_empty() {
            return Ok(Vec::new());
        }
        let senders = self.tenant_senders(tenant).await?;
        let mut refusals = Vec::with_capacity(sender_ids.len());
        for id in sender_ids {
            let sender = senders.get(id).ok_or_else(|| {
                Error::NotFound(format!("sender {id:?} (register it with RegisterSender)"))
            })?;
            refusals.push((sender.channel, sender.refusal(campaign_id)));
        }
        Ok(refusals)
    }
}

pub fn check_sender_id(field: &str, id: &str) -> Result<(), InvalidField> {
    if id.is_empty() {
        return Err(InvalidField::new(field, "is required"));
    }
    if id.len() > MAX_SENDER_ID_BYTES {
        return Err(InvalidField::new(
            field,
            format!(
                "is {} bytes, at most {MAX_SENDER_ID_BYTES} allowed",
                id.len()
            ),
        ));
    }
    Ok(())
}
