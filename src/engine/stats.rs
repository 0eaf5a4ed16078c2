//! Statistics as events arrive: deltas collect in memory and a flusher adds
//! them to the store's cells every second (one writer, so no cell update
//! races). Minute cells of each route are also kept in memory for the route
//! health window, loaded from the store at start.
//!
//! A crash loses at most the last second of statistics, never an event:
//! statistics are counts for analytics, events are the record.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, RwLock},
};

use crate::{
    domain::{
        Millis, Status,
        stats::{Dims, StatCell},
    },
    storage::{Granularity, StatDelta, Store, StoreError, Tenant},
};

type CellKey = (Tenant, Granularity, u32, Dims);
type RouteKey = (Tenant, Dims);

pub struct StatsAggregator {
    pending: Mutex<HashMap<CellKey, StatCell>>,
    /// Minute cells per route within `horizon_minutes`.
    routes: RwLock<HashMap<RouteKey, BTreeMap<u32, StatCell>>>,
    horizon_minutes: u32,
}

impl StatsAggregator {
    pub fn new(horizon_minutes: u32) -> Self {
        StatsAggregator {
            pending: Mutex::new(HashMap::new()),
            routes: RwLock::new(HashMap::new()),
            horizon_minutes: horizon_minutes.max(1),
        }
    }

    /// Adds `delta` of `status` (and a latency, if any) at time `at`.
    pub fn record(
        &self,
        tenant: &Tenant,
        at: Millis,
        dims: &Dims,
        status: Status,
        delta: i64,
        latency_ms: Option<i64>,
    ) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (granularity, dims) in [
            (Granularity::Day, dims.clone()),
            (Granularity::Minute, dims.route()),
        ] {
            let cell = pending
                .entry((tenant.clone(), granularity, granularity.bucket(at), dims))
                .or_default();
            cell.add(status, delta);
            if let Some(ms) = latency_ms {
                cell.latency.record(ms);
            }
        }
    }

    /// Writes the pending deltas to the store; on failure they stay pending.
    pub async fn flush<S: Store>(&self, store: &S, now: Millis) -> Result<(), StoreError> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let deltas: Vec<StatDelta> = taken
            .iter()
            .map(|((tenant, granularity, bucket, dims), cell)| StatDelta {
                tenant: tenant.clone(),
                granularity: *granularity,
                bucket: *bucket,
                dims: dims.clone(),
                cell: cell.clone(),
            })
            .collect();
        if let Err(e) = store.add_stats(deltas).await {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (key, cell) in taken {
                pending.entry(key).or_default().merge(&cell);
            }
            return Err(e);
        }
        let oldest = Granularity::Minute
            .bucket(now)
            .saturating_sub(self.horizon_minutes);
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        for ((tenant, granularity, bucket, dims), cell) in taken {
            if granularity == Granularity::Minute && bucket >= oldest {
                routes
                    .entry((tenant, dims))
                    .or_default()
                    .entry(bucket)
                    .or_default()
                    .merge(&cell);
            }
        }
        for minutes in routes.values_mut() {
            minutes.retain(|&m, _| m >= oldest);
        }
        routes.retain(|_, minutes| !minutes.is_empty());
        Ok(())
    }

    /// Loads the route minute cells of the horizon from the store (at start).
    pub async fn load<S: Store>(&self, store: &S, now: Millis) -> Result<(), StoreError> {
        let to = Granularity::Minute.bucket(now);
        let from = to.saturating_sub(self.horizon_minutes);
        let cells = store.minute_stats(from, to).await?;
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        for (tenant, minute, dims, cell) in cells {
            routes
                .entry((tenant, dims))
                .or_default()
                .entry(minute)
                .or_default()
                .merge(&cell);
        }
        Ok(())
    }

    /// The routes of `tenant` (or of every tenant) with recent cells.
    pub fn routes(&self, tenant: Option<&Tenant>) -> Vec<(Tenant, Dims)> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes
            .keys()
            .filter(|(t, _)| tenant.is_none_or(|wanted| t == wanted))
            .cloned()
            .collect()
    }

    /// The sums of a route's minute cells in `[from, to)` (minute numbers).
    pub fn route_cell(&self, tenant: &Tenant, route: &Dims, from: u32, to: u32) -> StatCell {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut sum = StatCell::default();
        if let Some(minutes) = routes.get(&(tenant.clone(), route.clone())) {
            for (_, cell) in minutes.range(from..to) {
                sum.merge(cell);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;

    #[test]
    fn records_into_day_and_route_minute_cells() {
        let stats = StatsAggregator::new(60);
        let tenant = Tenant::default();
        let dims = Dims {
            channel: Some(Channel::Sms),
            carrier: "c1".into(),
            campaign_id: "spring".into(),
            ..Dims::default()
        };
        stats.record(
            &tenant,
            Millis(120_000),
            &dims,
            Status::Delivered,
            1,
            Some(1_500),
        );
        stats.record(&tenant, Millis(121_000), &dims, Status::Delivered, 1, None);
        let pending = stats.pending.lock().unwrap();
        assert_eq!(pending.len(), 2, "one day cell, one route minute cell");
        let minute = &pending[&(tenant.clone(), Granularity::Minute, 2, dims.route())];
        assert_eq!(
            (minute.count(Status::Delivered), minute.latency.total()),
            (2, 1)
        );
    }
}
