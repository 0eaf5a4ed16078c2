//! The engine's periodic work: flushing statistics, judging routes,
//! sweeping silence, and housekeeping (dedupe markers, old minute cells,
//! old actions). The server schedules these; tests call them directly.

use std::time::Duration;

use crate::{
    domain::Millis,
    engine::Engine,
    error::Result,
    storage::{Granularity, Store},
};

impl<S: Store> Engine<S> {
    /// Loads what the engine keeps in memory from the store, at start.
    pub async fn warm_up(&self) -> Result<()> {
        self.stats
            .reload(self.store.as_ref(), Millis::now())
            .await?;
        Ok(())
    }

    /// Adds pending statistics to the store.
    pub async fn flush_stats(&self) -> Result<()> {
        self.stats.flush(self.store.as_ref(), Millis::now()).await?;
        Ok(())
    }

    /// Takes the route cells of every replica sharing the store (a
    /// networked store), after adding this one's.
    pub async fn reload_shared_stats(&self) -> Result<()> {
        self.flush_stats().await?;
        self.stats
            .reload(self.store.as_ref(), Millis::now())
            .await?;
        Ok(())
    }

    /// Judges every route and publishes ROUTE_DEGRADED / ROUTE_RECOVERED
    /// actions for the ones that changed.
    pub async fn judge_routes(&self) -> Result<()> {
        self.flush_stats().await?;
        let now = Millis::now();
        let changes = self.routes.evaluate(&self.stats, None, now);
        for (tenant, action) in changes {
            self.outbox
                .publish(self.store.as_ref(), &tenant, &[action])
                .await?;
        }
        Ok(())
    }

    /// Drops expired dedupe generations, minute cells older than the route
    /// horizon, and actions older than `action_retention`.
    pub async fn housekeeping(&self, action_retention: Duration) -> Result<()> {
        let now = Millis::now();
        let dropped = self.store.expire_markers(now).await?;
        if dropped > 0 {
            tracing::info!(generations = dropped, "expired dedupe markers");
        }
        let horizon = self.stats.horizon_minutes();
        let before = Granularity::Minute.bucket(now).saturating_sub(horizon);
        self.store.trim_minute_stats(before).await?;
        let trimmed = self
            .store
            .trim_actions(now.saturating_sub(action_retention))
            .await?;
        if trimmed > 0 {
            tracing::info!(actions = trimmed, "trimmed the action outbox");
        }
        Ok(())
    }
}
