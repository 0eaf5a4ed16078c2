//! Outcome tallies per route, in memory, for the route outlook of every ask
//! (`domain/route_outlook.rs`): by day for the baseline, by hour for the
//! recent window.
//!
//! Days are read from the store's day cells the first time a tenant is
//! asked about, then kept current by the statistics flusher; the caller
//! serializes loads and flushes (the flusher's lock), so a delta is never
//! counted twice. Hours come from the flusher only (the store keeps minute
//! cells for the route-health horizon alone): after a restart the recent
//! window fills as traffic comes, and until it holds `min_samples` outcomes
//! the outlook says nothing. With several replicas each counts the outcomes
//! it ingested, a sample of the route's.

use std::{
    collections::BTreeMap,
    sync::{Mutex, RwLock},
};

use crate::{
    domain::{
        Channel, Millis,
        route_outlook::DayTally,
        route_silence::usual_ratio,
        stats::{Dims, StatCell},
    },
    engine::stats::FastMap,
    storage::{Granularity, Store, StoreError, Tenant},
};

/// Tallies by day or hour number.
type Buckets = BTreeMap<u32, DayTally>;
/// Hashed with foldhash: every ask looks up each of its routes here a few
/// times, and SipHash over a route's strings was 2-3% of the server's CPU
/// during `GetBestChannel`.
type ByRoute = FastMap<Tenant, FastMap<Dims, Buckets>>;

#[derive(Default)]
struct Tables {
    /// Tenants whose days were read from the store.
    loaded: foldhash::HashSet<Tenant>,
    days: ByRoute,
    hours: ByRoute,
}

pub struct RouteTallies {
    tables: RwLock<Tables>,
    keep_days: u32,
    /// Usual silence ratios per (tenant, channel, days, min samples): a
    /// read would otherwise sum every route of the channel. Cleared by each
    /// change of the tables (about once a second under traffic).
    usual: Mutex<FastMap<UsualKey, Option<f64>>>,
}

type UsualKey = (Tenant, Channel, u32, u32, u64);

/// Past this many entries the usual-ratio cache starts over (asks `as_of`
/// many different days between two flushes).
const USUAL_CACHE_MAX: usize = 4_096;

const HOUR_MS: i64 = 3_600_000;

/// The hour number of `at`.
pub fn hour(at: Millis) -> u32 {
    at.0.div_euclid(HOUR_MS).clamp(0, u32::MAX as i64) as u32
}

impl RouteTallies {
    pub fn new(keep_days: u32) -> Self {
        RouteTallies {
            tables: RwLock::new(Tables::default()),
            keep_days: keep_days.max(2),
            usual: Mutex::new(FastMap::default()),
        }
    }

    fn oldest(&self, now: Millis) -> u32 {
        Granularity::Day.bucket(now).saturating_sub(self.keep_days)
    }

    fn oldest_hour(&self, now: Millis) -> u32 {
        hour(now).saturating_sub(self.keep_days.saturating_mul(24))
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
        let mut routes: FastMap<Dims, Buckets> = FastMap::default();
        for (day, dims, cell) in store.day_stats(tenant, from, to).await? {
            add(&mut routes, &dims, day, &cell);
        }
        let mut tables = self.write();
        tables.days.insert(tenant.clone(), routes);
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

    /// Adds flushed deltas: day cells of loaded tenants (the others will
    /// read them from the store), and route minute cells into their hours;
    /// forgets what is past the horizon.
    pub fn add<'a>(
        &self,
        deltas: impl Iterator<Item = (&'a Tenant, Granularity, u32, &'a Dims, &'a StatCell)>,
        now: Millis,
    ) {
        let (oldest, oldest_hour) = (self.oldest(now), self.oldest_hour(now));
        let mut tables = self.write();
        let Tables {
            loaded,
            days,
            hours,
        } = &mut *tables;
        for (tenant, granularity, bucket, dims, cell) in deltas {
            match granularity {
                Granularity::Day if bucket >= oldest && loaded.contains(tenant) => {
                    add(days.entry(tenant.clone()).or_default(), dims, bucket, cell);
                }
                // Route minute cells have no sender; sender cells no channel.
                Granularity::Minute if bucket / 60 >= oldest_hour && dims.sender_id.is_empty() => {
                    add(
                        hours.entry(tenant.clone()).or_default(),
                        dims,
                        bucket / 60,
                        cell,
                    );
                }
                _ => {}
            }
        }
        forget_before(days, oldest);
        forget_before(hours, oldest_hour);
    }

    /// The sum of a route's days in `[from, to]`.
    pub fn days(&self, tenant: &Tenant, route: &Dims, from: u32, to: u32) -> DayTally {
        sum(&self.read().days, tenant, route, from, to)
    }

    /// A route's days in `[from, to]`, one tally per day (empty for a day
    /// without outcomes), oldest first.
    pub fn each_day(&self, tenant: &Tenant, route: &Dims, from: u32, to: u32) -> Vec<DayTally> {
        let mut each =
            vec![DayTally::default(); (to.saturating_add(1).saturating_sub(from)) as usize];
        let tables = self.read();
        if let Some(buckets) = tables.days.get(tenant).and_then(|r| r.get(route)) {
            for (&day, t) in buckets.range(from..=to) {
                each[(day - from) as usize] = *t;
            }
        }
        each
    }

    /// The sum of a route's hours in `[from, to]`.
    pub fn hours(&self, tenant: &Tenant, route: &Dims, from: u32, to: u32) -> DayTally {
        sum(&self.read().hours, tenant, route, from, to)
    }

    /// The usual silences per explicit failure of `channel`'s routes over
    /// days `[from, to]` (`route_silence.rs`).
    pub fn usual_silence(
        &self,
        tenant: &Tenant,
        channel: Channel,
        from: u32,
        to: u32,
        min_samples: u64,
    ) -> Option<f64> {
        let key = (tenant.clone(), channel, from, to, min_samples);
        if let Some(&known) = self.cache().get(&key) {
            return known;
        }
        // The read guard is held until the value is cached: a change of
        // the tables (which clears the cache under the write guard) cannot
        // come in between and leave a stale value behind.
        let tables = self.read();
        let usual = {
            let routes = tables.days.get(tenant).into_iter().flat_map(|routes| {
                routes
                    .iter()
                    .filter(|(dims, _)| dims.channel == Some(channel))
                    .map(|(_, buckets)| total(buckets, from, to))
            });
            usual_ratio(routes, min_samples)
        };
        let mut cache = self.cache();
        if cache.len() >= USUAL_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, usual);
        drop(tables);
        usual
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, FastMap<UsualKey, Option<f64>>> {
        self.usual.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        let tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        self.cache().clear();
        tables
    }
}

fn sum(tables: &ByRoute, tenant: &Tenant, route: &Dims, from: u32, to: u32) -> DayTally {
    tables
        .get(tenant)
        .and_then(|r| r.get(route))
        .map(|buckets| total(buckets, from, to))
        .unwrap_or_default()
}

fn total(buckets: &Buckets, from: u32, to: u32) -> DayTally {
    let mut sum = DayTally::default();
    for (_, t) in buckets.range(from..=to) {
        sum.add(*t);
    }
    sum
}

fn forget_before(tables: &mut ByRoute, oldest: u32) {
    for buckets in tables.values_mut().flat_map(FastMap::values_mut) {
        buckets.retain(|&b, _| b >= oldest);
    }
    for routes in tables.values_mut() {
        routes.retain(|_, buckets| !buckets.is_empty());
    }
    tables.retain(|_, routes| !routes.is_empty());
}

/// Day cells are per full dimensions (sender, campaign...): a route is
/// their channel, carrier and country. Cells without a channel are not a
/// route's.
fn add(routes: &mut FastMap<Dims, Buckets>, dims: &Dims, bucket: u32, cell: &StatCell) {
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
        .entry(bucket)
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
    fn adds_days_of_loaded_tenants_and_hours_of_routes_and_forgets_old_ones() {
        let tallies = RouteTallies::new(16);
        let tenant = Tenant::default();
        let sms = Dims {
            channel: Some(Channel::Sms),
            carrier: "c1".into(),
            campaign_id: "spring".into(),
            ..Dims::default()
        };
        let now = Millis(100 * 86_400_000);
        let (a, b) = (cell(9, 1), cell(3, 7));
        let day = Granularity::Day;
        tallies.add([(&tenant, day, 99, &sms, &a)].into_iter(), now);
        let route = sms.route();
        assert_eq!(tallies.days(&tenant, &route, 0, 100), DayTally::default());
        tallies
            .tables
            .write()
            .unwrap()
            .loaded
            .insert(tenant.clone());
        let day_cells = [
            (&tenant, day, 99, &sms, &a),
            (&tenant, day, 98, &sms, &b),
            (&tenant, day, 50, &sms, &a),
        ];
        tallies.add(day_cells.into_iter(), now);
        let both = tallies.days(&tenant, &route, 98, 99);
        assert_eq!((both.delivered, both.attempts), (12, 20));
        let each = tallies.each_day(&tenant, &route, 97, 100);
        let counts: Vec<(i64, i64)> = each.iter().map(|t| (t.delivered, t.attempts)).collect();
        assert_eq!(counts, [(0, 0), (3, 10), (9, 10), (0, 0)]);
        assert_eq!(tallies.days(&tenant, &route, 0, 97), DayTally::default());

        // Minute cells of a route count in their hour; a sender's do not.
        let sender = Dims {
            sender_id: "+15550100".into(),
            ..Dims::default()
        };
        let minute = Granularity::Minute;
        let at = |hour: u32, m: u32| hour * 60 + m;
        let minute_cells = [
            (&tenant, minute, at(2399, 5), &route, &a),
            (&tenant, minute, at(2399, 59), &route, &b),
            (&tenant, minute, at(2399, 7), &sender, &a),
            (&tenant, minute, at(1000, 0), &route, &a),
        ];
        tallies.add(minute_cells.into_iter(), now);
        let last = tallies.hours(&tenant, &route, 2399, 2399);
        assert_eq!((last.delivered, last.attempts), (12, 20));
        assert_eq!(tallies.hours(&tenant, &route, 0, 2398), DayTally::default());
    }
}
