//! Send policies per tenant and campaign type (stored, cached whole per
//! tenant, over the configuration's `[policies]`), and the decision that
//! applies them: sender gate, urgency, quiet hours, then the policy's choice.

use std::collections::BTreeMap;

use crate::{
    domain::{
        BestChannel, Channel, ContactProfile, InvalidField, Millis, Reachability,
        address::AddressKind,
        policy::{DEFAULT_POLICY, SendPolicy, choose},
        quiet_hours::{QuietHoursConfig, QuietWindow, ZoneBook},
        scoring::apply_urgency,
    },
    engine::{
        Engine,
        catalog_cache::{CatalogCache, Entries},
    },
    error::Result,
    storage::{Catalog, Store, Tenant},
};

/// Longest accepted campaign type.
pub const MAX_POLICY_NAME_BYTES: usize = 64;

/// Where a policy in force comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySource {
    Tenant,
    Config,
    Default,
}

pub struct Policies {
    config: BTreeMap<String, SendPolicy>,
    quiet_hours: QuietHoursConfig,
    zones: ZoneBook,
    cache: CatalogCache<SendPolicy>,
}

impl Policies {
    pub fn new(config: BTreeMap<String, SendPolicy>, quiet_hours: QuietHoursConfig) -> Self {
        Policies {
            config,
            zones: ZoneBook::new(&quiet_hours.default_time_zone),
            quiet_hours,
            cache: CatalogCache::new(Catalog::SendPolicies),
        }
    }
}

/// A GetBestChannel / GetReachability request in domain terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ask {
    pub contact_id: String,
    /// Channels the caller can use; empty: all.
    pub allowed: Vec<Channel>,
    pub urgent: bool,
    pub as_of: Option<Millis>,
    /// Senders the message would go out from (one per channel).
    pub sender_ids: Vec<String>,
    pub campaign_id: String,
    /// Selects the send policy; empty: "default".
    pub campaign_type: String,
}

pub fn check_policy_name(field: &str, name: &str) -> Result<(), InvalidField> {
    if name.is_empty() || name.len() > MAX_POLICY_NAME_BYTES {
        return Err(InvalidField::new(
            field,
            format!("must be 1 to {MAX_POLICY_NAME_BYTES} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidField::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

impl<S: Store> Engine<S> {
    async fn tenant_policies(&self, tenant: &Tenant) -> Result<Entries<SendPolicy>> {
        // JSON, so that fields added later read as their defaults.
        let decode = |bytes: &[u8]| serde_json::from_slice(bytes).map_err(|e| e.to_string());
        self.policies
            .cache
            .entries(self.store.as_ref(), tenant, decode)
            .await
    }

    /// Replaces the tenant's policy of `name`, durably.
    pub async fn set_policy(
        &self,
        tenant: &Tenant,
        name: &str,
        policy: SendPolicy,
    ) -> Result<SendPolicy> {
        check_policy_name("policy.campaign_type", name)?;
        policy
            .validate()
            .map_err(|e| InvalidField::new("policy", e))?;
        let _turn = self.policies.cache.writes.lock().await;
        let current = self.tenant_policies(tenant).await?;
        let bytes = serde_json::to_vec(&policy).expect("policy serializes");
        self.policies
            .cache
            .put(
                self.store.as_ref(),
                tenant,
                &current,
                name,
                policy.clone(),
                &bytes,
            )
            .await?;
        Ok(policy)
    }

    /// The policy in force for `name` (empty: "default"): the tenant's,
    /// else the configuration's, else the configuration's "default", else
    /// the built-in default.
    pub async fn policy(
        &self,
        tenant: &Tenant,
        name: &str,
    ) -> Result<(String, SendPolicy, PolicySource)> {
        let name = if name.is_empty() {
            DEFAULT_POLICY
        } else {
            name
        };
        check_policy_name("campaign_type", name)?;
        let tenant_policies = self.tenant_policies(tenant).await?;
        let config = &self.policies.config;
        for candidate in [name, DEFAULT_POLICY] {
            if let Some(p) = tenant_policies.get(candidate) {
                return Ok((candidate.to_string(), p.clone(), PolicySource::Tenant));
            }
            if let Some(p) = config.get(candidate) {
                return Ok((candidate.to_string(), p.clone(), PolicySource::Config));
            }
        }
        Ok((
            DEFAULT_POLICY.to_string(),
            SendPolicy::default(),
            PolicySource::Default,
        ))
    }

    /// Every policy in force for the tenant, by name.
    pub async fn list_policies(
        &self,
        tenant: &Tenant,
    ) -> Result<Vec<(String, SendPolicy, PolicySource)>> {
        let mut all: BTreeMap<String, (SendPolicy, PolicySource)> = self
            .policies
            .config
            .iter()
            .map(|(n, p)| (n.clone(), (p.clone(), PolicySource::Config)))
            .collect();
        for (n, p) in self.tenant_policies(tenant).await?.iter() {
            all.insert(n.clone(), (p.clone(), PolicySource::Tenant));
        }
        all.entry(DEFAULT_POLICY.to_string())
            .or_insert((SendPolicy::default(), PolicySource::Default));
        Ok(all.into_iter().map(|(n, (p, s))| (n, p, s)).collect())
    }

    /// Per-channel reachability with the sender gate and quiet hours applied.
    pub async fn reachability(&self, tenant: &Tenant, ask: &Ask) -> Result<Reachability> {
        let profile = self.profile_or_default(tenant, &ask.contact_id).await?;
        let (_, policy, _) = self.policy(tenant, &ask.campaign_type).await?;
        let now = ask.as_of.unwrap_or_else(Millis::now);
        let mut reach = self.assess_on_routes(tenant, &profile, now).await?;
        self.gate_senders(tenant, ask, &mut reach).await?;
        self.mark_quiet_hours(&profile, &policy, &mut reach, now);
        Ok(reach)
    }

    /// The channel (and address) to use now or from `send_after`, under the
    /// policy of the ask's campaign type.
    pub async fn best_channel(&self, tenant: &Tenant, ask: &Ask) -> Result<BestChannel> {
        let profile = self.profile_or_default(tenant, &ask.contact_id).await?;
        let (name, policy, _) = self.policy(tenant, &ask.campaign_type).await?;
        let now = ask.as_of.unwrap_or_else(Millis::now);
        let mut reach = self.assess_on_routes(tenant, &profile, now).await?;
        self.gate_senders(tenant, ask, &mut reach).await?;
        if ask.urgent || policy.urgent {
            let degraded = Channel::ALL.map(|channel| {
                let route = reach.channels[channel.index()].last_route.as_ref()?;
                self.routes
                    .degraded(tenant, channel, &route.carrier, &route.country)
            });
            apply_urgency(&mut reach, &degraded, &self.model);
        }
        self.mark_quiet_hours(&profile, &policy, &mut reach, now);
        Ok(choose(reach, &ask.allowed, &policy, &name, &self.model))
    }

    async fn profile_or_default(
        &self,
        tenant: &Tenant,
        contact_id: &str,
    ) -> Result<ContactProfile> {
        Ok(self
            .read_profile(tenant, contact_id)
            .await?
            .map(|(_, p)| p)
            .unwrap_or_default())
    }

    async fn gate_senders(
        &self,
        tenant: &Tenant,
        ask: &Ask,
        reach: &mut Reachability,
    ) -> Result<()> {
        for (channel, refusal) in self
            .sender_refusals(tenant, &ask.sender_ids, &ask.campaign_id)
            .await?
        {
            if let Some(why) = refusal {
                reach.channels[channel.index()].restrict(why);
            }
        }
        Ok(())
    }

    /// Sets each channel's `quiet_until` from the policy's (or the
    /// server's) quiet hours in the contact's local time.
    fn mark_quiet_hours(
        &self,
        profile: &ContactProfile,
        policy: &SendPolicy,
        reach: &mut Reachability,
        now: Millis,
    ) {
        let defaults = &self.policies.quiet_hours;
        // A phone number's country tells where the contact lives when no
        // zone is known, whichever channel is asked about.
        let any_phone_region = profile
            .addresses
            .iter()
            .find(|a| a.info.kind == AddressKind::Phone && !a.info.region.is_empty())
            .map(|a| a.info.region.as_str());
        // SMS and voice usually share a window and a region: each pair is
        // worked out once per call (the answer and its zones' description).
        let mut known: Vec<(QuietWindow, String, Option<Quiet>)> = Vec::new();
        for a in &mut reach.channels {
            let window = policy
                .quiet_hours
                .get(&a.channel)
                .copied()
                .unwrap_or_else(|| defaults.window(a.channel));
            if window.is_none() {
                continue;
            }
            let region = a
                .address
                .as_ref()
                .map(|x| x.info.region.as_str())
                .filter(|r| !r.is_empty())
                .or(any_phone_region)
                .or(a.last_route.as_ref().map(|r| r.country.as_str()))
                .unwrap_or("");
            let quiet = match known.iter().find(|(w, r, _)| *w == window && r == region) {
                Some((_, _, quiet)) => quiet.clone(),
                None => {
                    // Local time unknown and no default zone: not guessed.
                    let book = &self.policies.zones;
                    let quiet = book
                        .zones(&profile.contact.time_zone, region)
                        .and_then(|zones| book.quiet_until(window, &zones, now));
                    known.push((window, region.to_string(), quiet.clone()));
                    quiet
                }
            };
            if let Some((until, zones)) = quiet {
                a.quiet_until = Some(until);
                a.quiet_reason = format!("{} quiet hours {window} in {zones}", a.channel);
            }
        }
    }
}

/// Quiet hours in force: until when, and in which zones (in words).
type Quiet = (Millis, String);
