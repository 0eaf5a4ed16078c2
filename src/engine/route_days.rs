//! Day tallies per route, in memory, for the route outlook of every ask
//! (`domain/route_outlook.rs`). Filled from the store's day cells the first
//! time a tenant is asked about, then kept current by the statistics
//! flusher; the caller serializes loads and flushes (the flusher's lock), so
//! a delta is never counted twice.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::RwLock,
};

use crate::{
    domain::{
        Millis,
        route_outlook::DayTally,
        stats::{Dims, StatCell},
    },
    storage::{Granularity, Store, StoreError, Tenant},
};

type Days = BTreeMap<u32, DayTally>;

#[derive(Default)]
struct Tables {
    /// Tenants whose days were read from the store.
    loaded: HashSet<Tenant>,
    routes: HashMap<Tenant, HashMap<Dims, Days>>,
}

pub struct RouteDays {
    tables: RwLock<Tables>,
    keep_days: u32,
}

impl RouteDays {
    pub fn new(keep_days: u32) -> Self {
        RouteDays {
            tables: RwLock::new(Tables::default()),
            keep_days: keep_days.max(2),
        }
    }

    fn oldest(&self, now: Millis) -> u32 {
        Granularity::Day.bucket(now).saturating_sub(self.keep_days)
    }

    pub fn is_loaded(&self, tenant: &Tenant) -> bool {
        self.read().loaded.contains(tenant)
    }

    /// Reads `tenant`'s day cells from the store (call with flushes held off).
    pub async fn load<S: Store>(
        &self,
        store: &S,
        tenant: &Tenant,
        now: Millis,
    ) -> Result<(), StoreError> {
        let from = self.oldest(now);
        let to = Granularity::Day.bucket(now);
        let mut routes: HashMap<Dims, Days> = HashMap::new();
        for (day, dims, cell) in store.day_stats(tenant, from, to).await? {
            add(&mut routes, &dims, day, &cell);
        }
        let mut tables = self.write();
        tables.routes.insert(tenant.clone(), routes);
        tables.loaded.insert(tenant.clone());
        Ok(())
    }

    /// Reads every loaded tenant again: with several replicas on one store,
    /// each has flushed only its own events into memory.
    pub async fn reload<S: Store>(&self, store: &S, now: Millis) -> Result<(), StoreError> {
        let tenants: Vec<Tenant> = self.read().loaded.iter().cloned().collect();
        for tenant in tenants {
            self.load(store, &tenant, now).await?;
        }
        Ok(())
    }

    /// Adds flushed day deltas of loaded tenants (the others will read them
    /// from the store) and forgets days past the horizon.
    pub fn add<'a>(
        &self,
        deltas: impl Iterator<Item = (&'a Tenant, u32, &'a Dims, &'a StatCell)>,
        now: Millis,
    ) {
        let oldest = self.oldest(now);
        let mut tables = self.write();
        let Tables { loaded, routes } = &mut *tables;
        for (tenant, day, dims, cell) in deltas {
            if day >= oldest && loaded.contains(tenant) {
                add(routes.entry(tenant.clone()).or_default(), dims, day, cell);
            }
        }
        for days in routes.values_mut().flat_map(HashMap::values_mut) {
            days.retain(|&d, _| d >= oldest);
        }
        for tenant_routes in routes.values_mut() {
            tenant_routes.retain(|_, days| !days.is_empty());
        }
    }

    /// The sum of a route's days in `[from, to]`.
    pub fn tally(&self, tenant: &Tenant, route: &Dims, from: u32, to: u32) -> DayTally {
        let tables = self.read();
        let mut sum = DayTally::default();
        if let Some(days) = tables.routes.get(tenant).and_then(|r| r.get(route)) {
            for (_, t) in days.range(from..=to) {
                sum.add(*t);
            }
        }
        sum
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Day cells are per full dimensions (sender, campaign...): a route is
/// their channel, carrier and country. Cells without a channel are not a
/// route's.
fn add(routes: &mut HashMap<Dims, Days>, dims: &Dims, day: u32, cell: &StatCell) {
    if dims.channel.is_none() {
        return;
    }
    let tally = DayTally::of(cell);
    if tally.is_empty() {
        return;
    }
    routes
        .entry(dims.route())
        .or_default()
        .entry(day)
        .or_default()
        .add(tally);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Status};

    fn cell(delivered: i64, failed: i64) -> StatCell {
        let mut c = StatCell::default();
        c.add(Status::Delivered, delivered);
        c.add(Status::PendingRetry, failed);
        c
    }

    #[test]
    fn adds_only_loaded_tenants_by_route_and_forgets_old_days() {
        let days = RouteDays::new(16);
        let tenant = Tenant::default();
        let sms = Dims {
            channel: Some(Channel::Sms),
            carrier: "c1".into(),
            campaign_id: "spring".into(),
            ..Dims::default()
        };
        let now = Millis(100 * 86_400_000);
        let a = cell(9, 1);
        days.add([(&tenant, 99, &sms, &a)].into_iter(), now);
        assert_eq!(
            days.tally(&tenant, &sms.route(), 0, 100),
            DayTally::default()
        );
        days.tables.write().unwrap().loaded.insert(tenant.clone());
        let b = cell(3, 7);
        days.add(
            [
                (&tenant, 99, &sms, &a),
                (&tenant, 98, &sms, &b),
                (&tenant, 50, &sms, &a),
            ]
            .into_iter(),
            now,
        );
        let both = days.tally(&tenant, &sms.route(), 98, 99);
        assert_eq!((both.delivered, both.attempts), (12, 20));
        assert_eq!(
            days.tally(&tenant, &sms.route(), 0, 97),
            DayTally::default()
        );
    }
}
