//! The action outbox: actions are written durably with a sequence number
//! before any watcher sees them, so a watcher that resumes from the last
//! sequence it saw misses nothing, across its own disconnects and across a
//! server restart.

use tokio::sync::watch;

use crate::{
    domain::action::Action,
    error::Result,
    storage::{Store, Tenant},
};

pub struct Outbox {
    /// The highest sequence made durable so far (of any tenant).
    latest: watch::Sender<u64>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            latest: watch::channel(0).0,
        }
    }
}

impl Outbox {
    /// Appends `actions`, waits until they are durable, then wakes watchers.
    pub async fn publish<S: Store>(
        &self,
        store: &S,
        tenant: &Tenant,
        actions: &[Action],
    ) -> Result<Vec<u64>> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        for action in actions {
            let kind = format!("{:?}", action.kind);
            metrics::counter!("reach_actions_total", "kind" => kind).increment(1);
        }
        let encoded: Vec<_> = actions.iter().map(|a| (a.at, a.encode())).collect();
        let seqs = store.append_actions(tenant, &encoded).await?;
        store.sync().await?;
        if let Some(&max) = seqs.iter().max() {
            self.latest.send_if_modified(|latest| {
                let newer = max > *latest;
                *latest = (*latest).max(max);
                newer
            });
        }
        Ok(seqs)
    }

    /// A receiver that changes whenever new actions are durable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}
