//! What recording events sets in motion besides the contact's profile: the
//! silence sweep's deadlines (written before the profile, so a crash can
//! only leave a deadline with nothing to expire), the statistics, and the
//! actions (written after the profile is committed).

use crate::{
    domain::{
        Channel, ChannelEvent, ContactProfile, Millis, Status,
        action::{Action, ActionKind},
        address::AddressId,
        profile::Effects,
        scoring::{assess, best_channel, channel_suppression, suppression_with},
        stats::Dims,
        suppression::Suppression,
    },
    engine::{Engine, stats::Update},
    error::Result,
    storage::{Deadline, Store, Tenant},
};

/// One statistics update; its dimensions are `Consequences::dims[dims]`.
#[derive(Clone, Debug)]
struct StatUpdate {
    at: Millis,
    dims: usize,
    status: Status,
    delta: i64,
    latency_ms: Option<i64>,
}

/// A channel, and the address on it an event named (if any).
type Target = (Channel, Option<AddressId>);

/// The side effects of one contact's update.
#[derive(Clone, Debug, Default)]
pub struct Consequences {
    tenant: Option<Tenant>,
    deadlines: Vec<Deadline>,
    /// The statistics' dimensions, once per run of events that share them
    /// (a contact's events mostly do): building them copies six strings.
    dims: Vec<Dims>,
    stats: Vec<StatUpdate>,
    actions: Vec<Action>,
}

impl Consequences {
    fn updates(&self) -> impl Iterator<Item = Update<'_>> {
        self.stats.iter().map(|s| Update {
            at: s.at,
            dims: &self.dims[s.dims],
            status: s.status,
            delta: s.delta,
            latency_ms: s.latency_ms,
        })
    }
}

pub fn dims_of(event: &ChannelEvent) -> Dims {
    let m = &event.metadata;
    Dims {
        channel: Some(event.channel),
        carrier: m.carrier.clone(),
        country: m.country.clone(),
        campaign_id: m.campaign_id.clone(),
        campaign_type: m.campaign_type.clone(),
        lifecycle_stage: m.lifecycle_stage.clone(),
        sender_id: m.sender_id.clone(),
    }
}

/// Whether `dims` are `dims_of(event)`, without building them.
fn are_dims_of(dims: &Dims, event: &ChannelEvent) -> bool {
    let m = &event.metadata;
    dims.channel == Some(event.channel)
        && dims.carrier == m.carrier
        && dims.country == m.country
        && dims.campaign_id == m.campaign_id
        && dims.campaign_type == m.campaign_type
        && dims.lifecycle_stage == m.lifecycle_stage
        && dims.sender_id == m.sender_id
}

impl<S: Store> Engine<S> {
    /// The suppression of each channel and address that `events` name, as
    /// `profile` stands before they apply: what `consequences` compares the
    /// profile after them with. Kept rather than a copy of the whole profile,
    /// which cost 1% of a bulk write's CPU.
    pub(crate) fn suppressions_before<'e>(
        &self,
        profile: &ContactProfile,
        events: impl Iterator<Item = &'e ChannelEvent>,
    ) -> Vec<(Target, Option<Suppression>)> {
        let mut before: Vec<(Target, Option<Suppression>)> = Vec::new();
        for event in events {
            let target = (event.channel, event.address_id());
            if !before.iter().any(|(t, _)| *t == target) {
                before.push((target, self.suppression_of(profile, target)));
            }
        }
        before
    }

    /// Why `profile` suppresses `target`, if it does.
    fn suppression_of(&self, profile: &ContactProfile, target: Target) -> Option<Suppression> {
        let (channel, address) = target;
        let state = profile.state(channel, address)?;
        match address {
            None => channel_suppression(state, &self.model).1,
            Some(_) => {
                let consent = state.consent.merged(&profile.channel_consent(channel));
                suppression_with(state, &consent, &self.model).1
            }
        }
    }

    /// What the events applied to one contact set in motion: `before` from
    /// `suppressions_before` (for every event in `applied`), `after` the
    /// profile they made.
    pub(crate) fn consequences(
        &self,
        tenant: &Tenant,
        contact_id: &str,
        before: &[(Target, Option<Suppression>)],
        after: &ContactProfile,
        applied: &[(&ChannelEvent, Effects)],
        now: Millis,
    ) -> Consequences {
        let mut c = Consequences {
            tenant: Some(tenant.clone()),
            ..Consequences::default()
        };
        let mut touched: Vec<Target> = Vec::new();
        for (event, effects) in applied {
            if !c.dims.last().is_some_and(|last| are_dims_of(last, event)) {
                c.dims.push(dims_of(event));
            }
            let dims = c.dims.len() - 1;
            if let Some((message_id, at)) = &effects.opened {
                c.deadlines.push(Deadline {
                    at: *at,
                    tenant: tenant.to_string(),
                    contact_id: contact_id.to_string(),
                    message_id: message_id.clone(),
                    dims: c.dims[dims].clone(),
                });
            }
            if let Some(at) = effects.withdrew_unconfirmed {
                c.stats.push(StatUpdate {
                    at,
                    dims,
                    status: Status::Unconfirmed,
                    delta: -1,
                    latency_ms: None,
                });
            }
            c.stats.push(StatUpdate {
                at: event.occurred_at,
                dims,
                status: event.status,
                delta: 1,
                latency_ms: effects.latency_ms,
            });
            let target = (event.channel, event.address_id());
            if !touched.contains(&target) {
                touched.push(target);
            }
        }
        for target in touched {
            let was = before
                .iter()
                .find(|(t, _)| *t == target)
                .and_then(|(_, s)| s.clone());
            self.suppression_action(&mut c, contact_id, target, was, after, now);
        }
        for (event, _) in applied {
            if event.status == Status::BouncedHard && !event.metadata.campaign_id.is_empty() {
                c.actions.push(self.fallback(contact_id, event, after, now));
            }
        }
        c
    }

    fn suppression_action(
        &self,
        c: &mut Consequences,
        contact_id: &str,
        target: Target,
        was: Option<Suppression>,
        after: &ContactProfile,
        now: Millis,
    ) {
        let (channel, address) = target;
        let is = self.suppression_of(after, target);
        let advice = match (&was, &is) {
            (None, Some(Suppression::Failures { .. })) => {
                "verify the address before sending on it again"
            }
            (None, Some(Suppression::Complained { .. })) => {
                "stop sending on it: the contact reported spam"
            }
            _ => return,
        };
        let hint = address
            .and_then(|id| after.addresses_of(channel).find(|a| a.id == id))
            .map(|a| format!(" (address {})", a.info.hint))
            .unwrap_or_default();
        let reason = format!(
            "{channel}{hint} suppressed: {}; {advice}",
            is.as_ref().expect("matched Some")
        );
        let mut action = Action::new(ActionKind::ContactChannelSuppressed, now, reason);
        action.contact_id = contact_id.to_string();
        action.channel = Some(channel);
        c.actions.push(action);
    }

    fn fallback(
        &self,
        contact_id: &str,
        event: &ChannelEvent,
        after: &ContactProfile,
        now: Millis,
    ) -> Action {
        let others: Vec<Channel> = Channel::ALL
            .into_iter()
            .filter(|&c| c != event.channel)
            .collect();
        let best = best_channel(assess(after, &self.model, now), &others, &self.model);
        let reason = match best.channel {
            Some(next) => format!(
                "hard fail on {} in campaign {}: fall back to {next} ({})",
                event.channel, event.metadata.campaign_id, best.reason
            ),
            None => format!(
                "hard fail on {} in campaign {}: no other channel is eligible ({})",
                event.channel, event.metadata.campaign_id, best.reason
            ),
        };
        let mut action = Action::new(ActionKind::FallbackSuggested, now, reason);
        action.contact_id = contact_id.to_string();
        action.channel = Some(event.channel);
        action.suggested_channel = best.channel;
        action.campaign_id = event.metadata.campaign_id.clone();
        action
    }

    /// Notes the deadlines; called before the profile is committed.
    pub(crate) async fn write_deadlines(&self, c: &Consequences) -> Result<()> {
        for deadline in &c.deadlines {
            self.store.put_deadline(deadline).await?;
        }
        Ok(())
    }

    /// Records the statistics and publishes the actions of committed updates,
    /// with one durable append per tenant for the whole call rather than one
    /// per contact (a bulk stream of hard bounces would otherwise sync once
    /// per contact).
    pub(crate) async fn realize(&self, committed: Vec<Consequences>) -> Result<()> {
        let mut actions: Vec<(Tenant, Vec<Action>)> = Vec::new();
        // One lock of the statistics for the whole call.
        self.stats.record_all(
            committed
                .iter()
                .filter_map(|c| Some((c.tenant.as_ref()?, c)))
                .flat_map(|(tenant, c)| c.updates().map(move |u| (tenant, u))),
        );
        for u in committed.iter().flat_map(Consequences::updates) {
            self.event_metrics
                .route(u.dims, u.status, u.delta, u.latency_ms);
        }
        for c in committed {
            let Some(tenant) = c.tenant else { continue };
            if c.actions.is_empty() {
                continue;
            }
            match actions.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, list)) => list.extend(c.actions),
                None => actions.push((tenant, c.actions)),
            }
        }
        for (tenant, list) in actions {
            self.outbox
                .publish(self.store.as_ref(), &tenant, &list)
                .await?;
        }
        Ok(())
    }

    /// Publishes one action for `tenant` (dead letters, routes).
    pub(crate) async fn publish(&self, tenant: &Tenant, action: Action) -> Result<()> {
        self.outbox
            .publish(self.store.as_ref(), tenant, &[action])
            .await?;
        Ok(())
    }
}
