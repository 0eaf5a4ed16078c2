//! Recording events exactly once: validate, group by contact, read each
//! contact's profile and its events' dedupe markers, apply the new events,
//! and compare-and-swap every profile together with its markers. Replies
//! wait for the group commit, so an acknowledged event survives a crash.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use crate::{
    domain::{ChannelEvent, ContactProfile, InvalidField, Millis},
    engine::{CAS_ATTEMPTS, Engine, consequences::Consequences, decode},
    error::{Error, Result},
    storage::{
        Commit, CommitOp, ContactKey, DedupeKey, LoadRequest, Snapshot, Store, Tenant, codec,
    },
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

/// The events of one contact within a call.
struct Group<'a> {
    key: ContactKey,
    events: Vec<&'a Valid>,
    markers: Vec<DedupeKey>,
}

impl<'a> Group<'a> {
    fn new(key: ContactKey) -> Self {
        Group {
            key,
            events: Vec::new(),
            markers: Vec::new(),
        }
    }

    fn push(&mut self, event: &'a Valid) {
        self.markers
            .push(DedupeKey::new(&self.key, &event.0.event_id));
        self.events.push(event);
    }
}

impl<S: Store> Engine<S> {
    /// Checks an event against the configured limits at server time `now`.
    /// The address, if any, is resolved to its canonical id here.
    pub fn validate(&self, mut event: ChannelEvent, now: Millis) -> Result<Valid, InvalidField> {
        event.validate(&self.limits, now)?;
        if !event.address.raw.0.is_empty() {
            let resolved = self
                .addresses
                .resolve(event.channel, &event.address.raw.0, &event.metadata.country)
                .map_err(|reason| InvalidField::new("address", reason))?;
            event.address.resolved = Some(resolved);
        }
        Ok(Valid(event))
    }

    /// As [`Engine::validate`] for events translated from a provider: a
    /// recipient libphonenumber (or the email check) does not accept is
    /// dropped and counted, rather than refusing the receipt, since the
    /// provider delivered to it whatever its form.
    pub(crate) fn validate_recipient(
        &self,
        event: ChannelEvent,
        now: Millis,
    ) -> Result<Valid, InvalidField> {
        let mut fallback = event.clone();
        match self.validate(event, now) {
            Err(f) if f.field == "address" => {
                metrics::counter!("reach_provider_recipients_unresolved_total").increment(1);
                fallback.address = Default::default();
                self.validate(fallback, now)
            }
            other => other,
        }
    }

    /// Records one validated event, durably. Returns true if it was a duplicate.
    pub async fn record(&self, tenant: &Tenant, event: &Valid) -> Result<bool> {
        let mut group = Group::new(ContactKey::new(tenant, &event.0.contact_id));
        group.push(event);
        let duplicate = {
            // Writers of one contact in this process take turns instead of
            // conflicting in the store.
            let _turn = self.locks.lock(&group.key).await;
            self.apply(vec![group], Millis::now()).await?
        };
        // Also for a duplicate: its first copy may still be waiting for its
        // flush, and "already recorded" must not be said before it is durable.
        self.store.sync().await?;
        Ok(duplicate[0][0])
    }

    /// Records validated events, durably: one read pass and one atomic
    /// compare-and-swap per contact for the whole batch.
    pub async fn record_batch(&self, tenant: &Tenant, events: &[Valid]) -> Result<BatchOutcome> {
        let duplicates = self.apply_events(tenant, events).await?;
        self.store.sync().await?;
        let mut outcome = BatchOutcome::default();
        for duplicate in duplicates {
            if duplicate {
                outcome.duplicates += 1;
            } else {
                outcome.accepted += 1;
            }
        }
        Ok(outcome)
    }

    /// Applies events not recorded before, grouped by contact; returns, in
    /// input order, whether each was a duplicate. Not yet durable: callers
    /// `sync` once for everything they wrote.
    pub(crate) async fn apply_events(
        &self,
        tenant: &Tenant,
        events: &[Valid],
    ) -> Result<Vec<bool>> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut positions: Vec<Vec<usize>> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let g = *index.entry(&event.0.contact_id).or_insert_with(|| {
                groups.push(Group::new(ContactKey::new(tenant, &event.0.contact_id)));
                positions.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(event);
            positions[g].push(i);
        }
        let per_group = self.apply(groups, Millis::now()).await?;
        let mut duplicates = vec![false; events.len()];
        for (flags, at) in per_group.into_iter().zip(positions) {
            for (flag, i) in flags.into_iter().zip(at) {
                duplicates[i] = flag;
            }
        }
        Ok(duplicates)
    }

    /// Applies every group's events not recorded before; returns, per group
    /// and event, whether it was a duplicate. Not yet durable.
    ///
    /// What reached the store is realized (statistics, actions) even when the
    /// call then fails: an earlier compare-and-swap round, or ops written
    /// beside a failing one. The client's retry finds those events
    /// duplicates, so nothing else would ever produce their consequences.
    async fn apply(&self, groups: Vec<Group<'_>>, now: Millis) -> Result<Vec<Vec<bool>>> {
        let mut committed = Vec::new();
        let outcome = self.commit_groups(&groups, now, &mut committed).await;
        let realized = self.realize(committed).await;
        match (outcome, realized) {
            (Ok(done), Ok(())) => Ok(done),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    }

    /// The compare-and-swap rounds of [`Engine::apply`]: the consequences of
    /// every group written go to `committed` as soon as it is written.
    async fn commit_groups(
        &self,
        groups: &[Group<'_>],
        now: Millis,
        committed: &mut Vec<Consequences>,
    ) -> Result<Vec<Vec<bool>>> {
        let mut done: Vec<Option<Vec<bool>>> = vec![None; groups.len()];
        let mut todo: Vec<usize> = (0..groups.len()).collect();
        let per_pass = self.store.contacts_per_pass().max(1);
        for attempt in 0..CAS_ATTEMPTS {
            let mut conflicts = Vec::new();
            for pass in todo.chunks(per_pass) {
                let mut outcome = Outcome {
                    done: &mut done,
                    committed,
                    conflicts: &mut conflicts,
                };
                self.commit_pass(groups, pass, now, &mut outcome).await?;
            }
            todo = conflicts;
            if todo.is_empty() {
                return Ok(done.into_iter().map(Option::unwrap_or_default).collect());
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(Error::Contention(groups[todo[0]].key.contact_id.clone()))
    }

    /// One read, prepare and compare-and-swap pass over the groups `pass`
    /// names, its outcome added to `outcome` also when it fails: what it
    /// wrote beside a failing op must still be realized.
    async fn commit_pass(
        &self,
        groups: &[Group<'_>],
        pass: &[usize],
        now: Millis,
        outcome: &mut Outcome<'_>,
    ) -> Result<()> {
        let requests: Vec<LoadRequest> = pass
            .iter()
            .map(|&i| LoadRequest {
                key: groups[i].key.clone(),
                markers: groups[i].markers.clone(),
            })
            .collect();
        let snapshots = self.store.load_many(&requests, now).await?;
        let mut ops = Vec::new();
        let mut pending = Vec::new();
        for (&i, snapshot) in pass.iter().zip(snapshots) {
            let prepared = match self.prepare(&groups[i], snapshot, now) {
                Ok(prepared) => prepared,
                Err(e) => return Err(self.quarantine_corrupt(&groups[i].key, e).await),
            };
            match prepared.op {
                Some(op) => {
                    self.write_deadlines(&prepared.consequences).await?;
                    ops.push(op);
                    pending.push((i, prepared.duplicate, prepared.consequences));
                }
                None => {
                    self.count_recorded(&groups[i], &prepared.duplicate);
                    outcome.done[i] = Some(prepared.duplicate);
                }
            }
        }
        let commits = if ops.is_empty() {
            Vec::new()
        } else {
            self.store.commit_many(ops, now).await?
        };
        let mut failure = None;
        for ((i, duplicate, consequences), commit) in pending.into_iter().zip(commits) {
            let written = match commit {
                Commit::Applied(_) => true,
                Commit::Conflict => {
                    outcome.conflicts.push(i);
                    false
                }
                Commit::Unconfirmed(_, e) => {
                    failure.get_or_insert(e);
                    true
                }
                Commit::Failed(e) => {
                    failure.get_or_insert(e);
                    false
                }
            };
            if written {
                self.count_recorded(&groups[i], &duplicate);
                outcome.done[i] = Some(duplicate);
                outcome.committed.push(consequences);
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The new profile of one contact, which of its events are duplicates,
    /// and what the new ones set in motion; no op if every event was a
    /// duplicate.
    fn prepare(&self, group: &Group, snapshot: Snapshot, now: Millis) -> Result<Prepared> {
        let mut profile = match &snapshot.record {
            Some(record) => decode(&group.key, &record.bytes)?,
            None => ContactProfile::default(),
        };
        let before = self.suppressions_before(&profile, group.events.iter().map(|e| &e.0));
        let mut duplicate = snapshot.seen;
        let mut fresh = Vec::with_capacity(group.events.len());
        let mut applied = Vec::with_capacity(group.events.len());
        let mut in_call = HashSet::new();
        for (i, event) in group.events.iter().enumerate() {
            // A repeat within the call is a duplicate of its first copy.
            if duplicate[i] || !in_call.insert(group.markers[i]) {
                duplicate[i] = true;
                continue;
            }
            let effects = profile.apply_tracked(&event.0, &self.model, &self.lifecycle);
            applied.push((&event.0, effects));
            fresh.push(group.markers[i]);
        }
        if fresh.is_empty() {
            return Ok(Prepared {
                duplicate,
                op: None,
                consequences: Consequences::default(),
            });
        }
        let consequences = self.consequences(
            &group.key.tenant,
            &group.key.contact_id,
            &before,
            &profile,
            &applied,
            now,
        );
        let op = CommitOp {
            key: group.key.clone(),
            expected: snapshot.version,
            value: codec::encode_profile(&profile),
            markers: fresh,
            read: snapshot.read,
        };
        Ok(Prepared {
            duplicate,
            op: Some(op),
            consequences,
        })
    }
}

/// Where the passes of a compare-and-swap round put what they did.
struct Outcome<'a> {
    /// Per group, once recorded: which of its events were duplicates.
    done: &'a mut [Option<Vec<bool>>],
    /// The consequences of every group written, to be realized.
    committed: &'a mut Vec<Consequences>,
    /// Groups that lost their swap, for the next round.
    conflicts: &'a mut Vec<usize>,
}

/// One contact's update, ready to commit.
struct Prepared {
    duplicate: Vec<bool>,
    op: Option<CommitOp>,
    consequences: Consequences,
}

impl<S: Store> Engine<S> {
    /// A group's events recorded by channel and status, and its duplicates
    /// (dedupe hits), counted when the group is done.
    fn count_recorded(&self, group: &Group, duplicates: &[bool]) {
        for (event, &duplicate) in group.events.iter().zip(duplicates) {
            if duplicate {
                self.event_metrics.duplicate();
            } else {
                self.event_metrics.recorded(event.0.channel, event.0.status);
            }
        }
    }
}

/// Exponential backoff with full jitter, capped at about 50 ms.
fn backoff(attempt: u32) -> Duration {
    let cap_us = (100u64 << attempt.min(9)).min(50_000);
    Duration::from_micros(fastrand::u64(0..=cap_us))
}
