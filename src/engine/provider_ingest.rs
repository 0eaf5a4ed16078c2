//! Provider events through the engine: translate with the mapping tables,
//! record what maps exactly once, dead-letter what does not, and replay dead
//! letters after the tables are fixed.

use crate::{
    domain::{
        Millis,
        action::{Action, ActionKind},
    },
    engine::{Engine, Valid},
    error::{Error, Result},
    providers::{DeadLetter, Outcome, ProviderRequest, Translated},
    storage::{Store, StoreError, Tenant},
};

/// What became of one event of a provider request.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderOutcome {
    pub translated: Translated,
    pub duplicate: bool,
    pub dead_lettered: bool,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    pub recorded: u64,
    pub duplicates: u64,
    pub still_unmapped: u64,
    pub outcomes: Vec<ProviderOutcome>,
}

/// Largest page of dead letters listed or replayed at once.
pub const MAX_DEAD_LETTER_PAGE: usize = 1000;

impl<S: Store> Engine<S> {
    /// Translates `request`; unless `dry_run`, records the mapped events and
    /// dead-letters the others, all durable before it returns.
    pub async fn record_provider_event(
        &self,
        tenant: &Tenant,
        request: ProviderRequest,
        dry_run: bool,
    ) -> Result<Vec<ProviderOutcome>> {
        let now = Millis::now();
        let translated = self.providers.translate(&request, now)?;
        let mut valid = Vec::new();
        for t in &translated {
            if let Some(event) = t.event() {
                let prefix = if translated.len() > 1 {
                    format!("body[{}]", t.index)
                } else {
                    "event".to_string()
                };
                valid.push(
                    self.validate_recipient(event, now)
                        .map_err(|f| f.within(&prefix))?,
                );
            }
        }
        if dry_run {
            return Ok(translated
                .into_iter()
                .map(|t| outcome(t, false, false))
                .collect());
        }
        let duplicates = self.apply_valid(tenant, &valid).await?;
        let mut duplicates = duplicates.into_iter();
        let mut outcomes = Vec::with_capacity(translated.len());
        for t in translated {
            match &t.outcome {
                Outcome::Mapped { .. } => {
                    metrics::counter!("reach_provider_events_total", "provider" => t.metadata.provider.clone(), "outcome" => "mapped").increment(1);
                    let duplicate = duplicates.next().unwrap_or(false);
                    outcomes.push(outcome(t, duplicate, false));
                }
                Outcome::Unmapped { reason, code } => {
                    let letter = DeadLetter::new(tenant, &request, &t, reason, code, now);
                    self.dead_letter(tenant, &letter, now).await?;
                    outcomes.push(outcome(t, false, true));
                }
            }
        }
        self.store.sync().await?;
        Ok(outcomes)
    }

    /// Stores a dead letter; a new one (not a redelivery's) is counted and
    /// announced by one action. Should the action fail, the letter is taken
    /// back so that the client's retry makes and announces it again, rather
    /// than finding it and staying silent.
    async fn dead_letter(&self, tenant: &Tenant, letter: &DeadLetter, now: Millis) -> Result<()> {
        metrics::counter!("reach_provider_events_total", "provider" => letter.provider.clone(), "outcome" => "dead_lettered").increment(1);
        let new = self
            .store
            .put_dead_letter(tenant, &letter.id, &letter.encode())
            .await?;
        if !new {
            return Ok(());
        }
        if let Err(e) = self.publish(tenant, unmapped_action(letter, now)).await {
            if let Err(undo) = self.store.delete_dead_letter(tenant, &letter.id).await {
                tracing::error!(error = %undo, id = %letter.id, "could not take back a dead letter whose action failed");
            }
            return Err(e);
        }
        count_dead_letter(letter);
        Ok(())
    }

    /// Dead letters of `tenant` (of `provider` if not empty) after `after`.
    pub async fn list_dead_letters(
        &self,
        tenant: &Tenant,
        provider: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, String)> {
        let limit = limit.clamp(1, MAX_DEAD_LETTER_PAGE);
        let mut letters = Vec::new();
        let mut cursor = after.to_string();
        loop {
            let page = self.store.list_dead_letters(tenant, &cursor, limit).await?;
            let exhausted = page.len() < limit;
            for (id, bytes) in page {
                cursor = id;
                let letter = DeadLetter::decode(&bytes).map_err(|reason| {
                    Error::Store(StoreError::Corrupt {
                        contact: format!("dead letter {cursor}"),
                        reason,
                    })
                })?;
                if provider.is_empty() || letter.provider == provider {
                    letters.push(letter);
                    if letters.len() == limit {
                        return Ok((letters, cursor));
                    }
                }
            }
            if exhausted {
                return Ok((letters, String::new()));
            }
        }
    }

    /// Re-maps dead letters with the tables in force: recorded ones are
    /// removed, unmapped ones stay.
    pub async fn replay_dead_letters(
        &self,
        tenant: &Tenant,
        provider: &str,
        ids: &[String],
        limit: usize,
    ) -> Result<ReplayReport> {
        let now = Millis::now();
        let (letters, _) = self
            .list_dead_letters(tenant, provider, "", MAX_DEAD_LETTER_PAGE.min(limit.max(1)))
            .await?;
        let mut report = ReplayReport::default();
        for letter in letters
            .into_iter()
            .filter(|l| ids.is_empty() || ids.contains(&l.id))
        {
            let Some(t) = self.retranslate(&letter, now) else {
                report.still_unmapped += 1;
                continue;
            };
            let Some(event) = t.event() else {
                report.still_unmapped += 1;
                report.outcomes.push(outcome(t, false, true));
                continue;
            };
            let valid = match self.validate_recipient(event, now) {
                Ok(valid) => valid,
                Err(_) => {
                    report.still_unmapped += 1;
                    continue;
                }
            };
            let duplicate = self.apply_valid(tenant, &[valid]).await?[0];
            self.store.delete_dead_letter(tenant, &letter.id).await?;
            if duplicate {
                report.duplicates += 1;
            } else {
                report.recorded += 1;
            }
            report.outcomes.push(outcome(t, duplicate, false));
        }
        self.store.sync().await?;
        Ok(report)
    }

    /// The dead letter's event translated again, if its request still reads.
    fn retranslate(&self, letter: &DeadLetter, now: Millis) -> Option<Translated> {
        let mut translated = self.providers.translate(&letter.request, now).ok()?;
        let at = translated.iter().position(|t| t.index == letter.index)?;
        Some(translated.swap_remove(at))
    }

    async fn apply_valid(&self, tenant: &Tenant, events: &[Valid]) -> Result<Vec<bool>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.apply_events(tenant, events).await
    }
}

fn outcome(translated: Translated, duplicate: bool, dead_lettered: bool) -> ProviderOutcome {
    ProviderOutcome {
        translated,
        duplicate,
        dead_lettered,
    }
}

fn unmapped_action(letter: &DeadLetter, now: Millis) -> Action {
    let reason = format!(
        "{} sent {:?}, which no mapping rule covers: dead letter {}; fix the table and replay",
        letter.provider, letter.code, letter.id
    );
    let mut action = Action::new(ActionKind::UnmappedProviderCode, now, reason);
    action.contact_id = letter.contact_id.clone();
    action.provider = letter.provider.clone();
    action.code = letter.code.clone();
    action
}

/// A new dead letter, by provider and code.
fn count_dead_letter(letter: &DeadLetter) {
    // The code label is cut short so that a provider sending garbage cannot
    // blow up the metric's cardinality.
    let code: String = letter.code.chars().take(48).collect();
    metrics::counter!("reach_dead_letters_total", "provider" => letter.provider.clone(), "code" => code).increment(1);
}
