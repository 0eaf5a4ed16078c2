//! The silence sweep: messages still open at their receipt deadline become
//! UNCONFIRMED, timed at the deadline, so a sweep that runs late gives the
//! same profile as one that ran on time.

use crate::{
    domain::{Millis, Status},
    engine::Engine,
    error::Result,
    storage::{ContactKey, Deadline, Store, Tenant},
};

/// Deadlines handled per sweep pass.
const SWEEP_BATCH: usize = 1000;

impl<S: Store> Engine<S> {
    /// Declares UNCONFIRMED every message past its deadline at `now`;
    /// returns how many. Durable before it returns.
    pub async fn sweep_silence(&self, now: Millis) -> Result<usize> {
        let mut declared = 0;
        loop {
            let due = self.store.due_deadlines(now, SWEEP_BATCH).await?;
            if due.is_empty() {
                break;
            }
            let batch = due.len();
            for deadline in due {
                if self.expire(&deadline, now).await? {
                    declared += 1;
                }
                self.store.delete_deadline(&deadline).await?;
            }
            if batch < SWEEP_BATCH {
                break;
            }
        }
        self.store.sync().await?;
        Ok(declared)
    }

    /// Expires one message if it is still open; whether it did. A write
    /// that stands is counted even when the store then reports an error:
    /// the next pass finds the message expired and would not count it.
    async fn expire(&self, deadline: &Deadline, now: Millis) -> Result<bool> {
        let Ok(tenant) = Tenant::new(&deadline.tenant) else {
            return Ok(false);
        };
        let key = ContactKey::new(&tenant, &deadline.contact_id);
        // A contact erased since the send has no record: nothing to expire.
        let expired = self
            .update_profile(&key, now, |profile| {
                profile.expire_message(&deadline.message_id, now, &self.model)
            })
            .await?;
        let Some(written) = expired else {
            return Ok(false);
        };
        let expired = written.result;
        let mut dims = deadline.dims.clone();
        dims.channel = Some(expired.channel);
        self.stats.record(
            &tenant,
            expired.deadline,
            &dims,
            Status::Unconfirmed,
            1,
            None,
        );
        metrics::counter!("reach_messages_unconfirmed_total").increment(1);
        match written.unconfirmed {
            Some(e) => Err(e.into()),
            None => Ok(true),
        }
    }
}
