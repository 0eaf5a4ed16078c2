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
    engine::Engine,
    error::Result,
    storage::{Deadline, Store, Tenant},
};

/// One statistics update.
#[derive(Clone, Debug)]
struct StatUpdate {
    at: Millis,
    dims: Dims,
    status: Status,
    delta: i64,
    latency_ms: Option<i64>,
}

/// The side effects of one contact's update.
#[derive(Clone, Debug, Default)]
pub struct Consequences {
    tenant: Option<Tenant>,
    deadlines: Vec<Deadline>,
    stats: Vec<StatUpdate>,
    actions: Vec<Action>,
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

impl<S: Store> Engine<S> {
    /// What the events applied to one contact (`before` -> `after`) set in motion.
    pub(crate) fn consequences(
        &self,
        tenant: &Tenant,
        contact_id: &str,
        before: &ContactProfile,
        after: &ContactProfile,
        applied: &[(&ChannelEvent, Effects)],
        now: Millis,
    ) -> Consequences {
        let mut c = Consequences {
            tenant: Some(tenant.clone()),
            ..Consequences::default()
        };
        let mut touched: Vec<(Channel, Option<AddressId>)> = Vec::new();
        for (event, effects) in applied {
            let dims = dims_of(event);
            if let Some((message_id, at)) = &effects.opened {
                c.deadlines.push(Deadline {
                    at: *at,
                    tenant: tenant.to_string(),
                    contact_id: contact_id.to_string(),
                    message_id: message_id.clone(),
                    dims: dims.clone(),
                });
            }
            if let Some(at) = effects.withdrew_unconfirmed {
                c.stats.push(StatUpdate {
                    at,
                    dims: dims.clone(),
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
        for (channel, address) in touched {
            self.suppression_action(&mut c, contact_id, channel, address, before, after, now);
        }
        for (event, _) in applied {
            if event.status == Status::BouncedHard && !event.metadata.campaign_id.is_empty() {
                c.actions.push(self.fallback(contact_id, event, after, now));
            }
        }
        c
    }

    #[allow(clippy::too_many_arguments)]
    fn suppression_action(
        &self,
        c: &mut Consequences,
        contact_id: &str,
        channel: Channel,
        address: Option<AddressId>,
        before: &ContactProfile,
        after: &ContactProfile,
        now: Millis,
    ) {
        let suppressed = |p: &ContactProfile| {
            let state = p.state(channel, address)?;
            match address {
                None => channel_suppression(state, &self.model).1,
                Some(_) => {
                    let consent = state.consent.merged(&p.channel_consent(channel));
                    suppression_with(state, &consent, &self.model).1
                }
            }
        };
        let (was, is) = (suppressed(before), suppressed(after));
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
        for c in committed {
            let Some(tenant) = c.tenant else { continue };
            for s in &c.stats {
                self.stats
                    .record(&tenant, s.at, &s.dims, s.status, s.delta, s.latency_ms);
                self.event_metrics
                    .route(&s.dims, s.status, s.delta, s.latency_ms);
            }
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
