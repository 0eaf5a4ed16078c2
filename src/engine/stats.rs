//! Statistics as events arrive: deltas collect in memory and a flusher adds
//! them to the store's cells every second (one writer, so no cell update
//! races). Minute cells of each route, and of each sender and its campaigns,
//! are also kept in memory for the health windows, loaded from the store at
//! start.
//!
//! A crash loses at most the last second of statistics, never an event:
//! statistics are counts for analytics, events are the record.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    sync::{Mutex, RwLock},
};

use crate::{
    domain::{
        Millis, Status,
        route_outlook::DayTally,
        stats::{Dims, StatCell},
    },
    engine::route_tallies::RouteTallies,
    storage::{Granularity, StatDelta, Store, StoreError, Tenant},
};

type RouteKey = (Tenant, Dims);
/// Pending deltas by tenant, then dimensions, then (granularity, bucket):
/// nested so that recording into an existing cell clones nothing (this is
/// on the write path of every event). Dimensions come before time because
/// they are few and their map stays in cache, while the buckets of events
/// replayed from a day are many: the large map is then keyed by integers,
/// not by dimensions whose strings are compared in a cold map (the lookups
/// went from 10.3% to 8.0% of a bulk write's CPU samples).
///
/// Hashed with foldhash rather than SipHash: every event hashes its
/// dimensions (seven strings) three times or more here, and SipHash made
/// this map about 3% of a bulk write's CPU. The seed is still random per
/// process, and only authenticated callers can add dimensions.
type Pending = FastMap<Tenant, FastMap<Dims, FastMap<(Granularity, u32), StatCell>>>;
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One statistics update: `delta` of `status` (and a latency, if any) in
/// the cells of `dims` at time `at`.
#[derive(Clone, Copy, Debug)]
pub struct Update<'a> {
    pub at: Millis,
    pub dims: &'a Dims,
    pub status: Status,
    pub delta: i64,
    pub latency_ms: Option<i64>,
}

pub struct StatsAggregator {
    pending: Mutex<Pending>,
    /// One flush at a time: a reader that flushes before reading must not
    /// pass a flush that has taken the deltas but not yet written them.
    flushing: tokio::sync::Mutex<()>,
    /// Minute cells per route within `horizon_minutes`.
    routes: RwLock<HashMap<RouteKey, BTreeMap<u32, StatCell>>>,
    horizon_minutes: u32,
    /// Day and hour tallies per route for the route outlook.
    tallies: RouteTallies,
}

/// The value under `key`, inserted empty if missing; unlike `entry`, takes
/// the key by reference and clones it only on insertion.
fn slot<'a, K: Eq + Hash + Clone, V: Default>(map: &'a mut FastMap<K, V>, key: &K) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.clone(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

impl StatsAggregator {
    pub fn new(horizon_minutes: u32, outlook_days: u32) -> Self {
        StatsAggregator {
            pending: Mutex::new(Pending::default()),
            flushing: tokio::sync::Mutex::new(()),
            routes: RwLock::new(HashMap::new()),
            horizon_minutes: horizon_minutes.max(1),
            tallies: RouteTallies::new(outlook_days),
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
        let update = Update {
            at,
            dims,
            status,
            delta,
            latency_ms,
        };
        self.record_all([(tenant, update)]);
    }

    /// Adds each update under one lock (a bulk call's events would
    /// otherwise take it one by one). The route's and the sender's
    /// dimensions are derived once per run of updates with the same
    /// dimensions, as a contact's or a provider's batch mostly has.
    pub fn record_all<'a>(&self, updates: impl IntoIterator<Item = (&'a Tenant, Update<'a>)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut derived: Option<(&Dims, Dims, Vec<Dims>)> = None;
        for (tenant, u) in updates {
            if derived.as_ref().is_none_or(|(dims, ..)| *dims != u.dims) {
                derived = Some((u.dims, u.dims.route(), sender_dims(u.dims)));
            }
            let (_, route, senders) = derived.as_ref().expect("derived above");
            let by_dims = slot(&mut pending, tenant);
            let minute = [(Granularity::Minute, route)];
            let per_sender = senders.iter().map(|d| (Granularity::Minute, d));
            for (granularity, dims) in [(Granularity::Day, u.dims)]
                .into_iter()
                .chain(minute)
                .chain(per_sender)
            {
                let cell = slot(by_dims, dims)
                    .entry((granularity, granularity.bucket(u.at)))
                    .or_default();
                cell.add(u.status, u.delta);
                if let Some(ms) = u.latency_ms {
                    cell.latency.record(ms);
                }
            }
        }
    }

    pub fn horizon_minutes(&self) -> u32 {
        self.horizon_minutes
    }

    /// Writes the pending deltas to the store; those it could not write stay
    /// pending, the written ones reach the route cells in memory.
    pub async fn flush<S: Store>(&self, store: &S, now: Millis) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().await;
        let mut taken =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let oldest = Granularity::Minute
            .bucket(now)
            .saturating_sub(self.horizon_minutes);
        // Minute cells older than the horizon are not written: housekeeping
        // trims the store's at that same horizon and nothing reads them
        // (the health windows and `reload` stay within it; the outlook's
        // hours take them from memory, below). Events replayed from a day
        // touch a minute cell per minute of it on every flush: writing them
        // was 6.6% of a bulk stream's server CPU on such events.
        let mut deltas: Vec<StatDelta> = taken
            .iter()
            .flat_map(|(tenant, by_dims)| {
                by_dims.iter().flat_map(move |(dims, cells)| {
                    cells
                        .iter()
                        .filter(move |&(&(granularity, bucket), _)| {
                            granularity != Granularity::Minute || bucket >= oldest
                        })
                        .map(move |(&(granularity, bucket), cell)| StatDelta {
                            tenant: tenant.clone(),
                            granularity,
                            bucket,
                            dims: dims.clone(),
                            cell: cell.clone(),
                        })
                })
            })
            .collect();
        let written = store.add_stats(&mut deltas).await;
        if !deltas.is_empty() {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for delta in deltas {
                if let Some(cells) = taken
                    .get_mut(&delta.tenant)
                    .and_then(|by_dims| by_dims.get_mut(&delta.dims))
                {
                    cells.remove(&(delta.granularity, delta.bucket));
                }
                slot(slot(&mut pending, &delta.tenant), &delta.dims)
                    .entry((delta.granularity, delta.bucket))
                    .or_default()
                    .merge(&delta.cell);
            }
        }
        let cells = taken.iter().flat_map(|(tenant, by_dims)| {
            by_dims.iter().flat_map(move |(dims, cells)| {
                cells.iter().map(move |(&(granularity, bucket), cell)| {
                    (tenant, granularity, bucket, dims, cell)
                })
            })
        });
        self.tallies.add(cells, now);
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        for (tenant, by_dims) in taken {
            for (dims, cells) in by_dims {
                let mut minutes = cells
                    .into_iter()
                    .filter(|&((granularity, bucket), _)| {
                        granularity == Granularity::Minute && bucket >= oldest
                    })
                    .peekable();
                if minutes.peek().is_none() {
                    continue;
                }
                let into = routes.entry((tenant.clone(), dims)).or_default();
                for ((_, bucket), cell) in minutes {
                    into.entry(bucket).or_default().merge(&cell);
                }
            }
        }
        for minutes in routes.values_mut() {
            minutes.retain(|&m, _| m >= oldest);
        }
        routes.retain(|_, minutes| !minutes.is_empty());
        written
    }

    /// Replaces the minute cells in memory with the store's: at start, and
    /// with several replicas on one store, where each has flushed only its
    /// own events into memory while the store holds everyone's.
    pub async fn reload<S: Store>(&self, store: &S, now: Millis) -> Result<(), StoreError> {
        // No flush in between: one would add its deltas to memory twice.
        let _one_at_a_time = self.flushing.lock().await;
        let to = Granularity::Minute.bucket(now);
        let from = to.saturating_sub(self.horizon_minutes);
        let mut fresh: HashMap<RouteKey, BTreeMap<u32, StatCell>> = HashMap::new();
        for (tenant, minute, dims, cell) in store.minute_stats(from, to).await? {
            fresh
                .entry((tenant, dims))
                .or_default()
                .entry(minute)
                .or_default()
                .merge(&cell);
        }
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.tallies.reload(store, now).await
    }

    /// The day and hour tallies of every route, with `tenant`'s days read
    /// from the store the first time they are asked for.
    pub async fn day_tallies<S: Store>(
        &self,
        store: &S,
        tenant: &Tenant,
        now: Millis,
    ) -> Result<&RouteTallies, StoreError> {
        if !self.tallies.is_loaded(tenant) {
            // No flush in between: it would add deltas the load also reads.
            let _one_at_a_time = self.flushing.lock().await;
            if !self.tallies.is_loaded(tenant) {
                self.tallies.load(store, tenant, now).await?;
            }
        }
        Ok(&self.tallies)
    }

    /// The sum of a route's hour tallies in `[from, to]` (hour numbers).
    pub fn route_hours(&self, tenant: &Tenant, route: &Dims, from: u32, to: u32) -> DayTally {
        self.tallies.hours(tenant, route, from, to)
    }

    /// The routes of `tenant` (or of every tenant) with recent cells.
    pub fn routes(&self, tenant: Option<&Tenant>) -> Vec<(Tenant, Dims)> {
        self.minute_keys(tenant, |d| d.sender_id.is_empty())
    }

    /// The (sender, campaign) cells of `tenant` (or of every tenant) with
    /// recent outcomes; an empty campaign is the sender as a whole.
    pub fn senders(&self, tenant: Option<&Tenant>) -> Vec<(Tenant, Dims)> {
        self.minute_keys(tenant, |d| !d.sender_id.is_empty())
    }

    fn minute_keys(
        &self,
        tenant: Option<&Tenant>,
        keep: impl Fn(&Dims) -> bool,
    ) -> Vec<(Tenant, Dims)> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes
            .keys()
            .filter(|(t, d)| tenant.is_none_or(|wanted| t == wanted) && keep(d))
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

/// The minute cells a sender's outcome also counts in: the sender as a
/// whole and, if the event named one, its campaign. They carry no channel
/// or route, which keeps them apart from route cells (empty sender).
fn sender_dims(dims: &Dims) -> Vec<Dims> {
    if dims.sender_id.is_empty() {
        return Vec::new();
    }
    let whole = Dims {
        sender_id: dims.sender_id.clone(),
        ..Dims::default()
    };
    if dims.campaign_id.is_empty() {
        return vec![whole];
    }
    let campaign = Dims {
        campaign_id: dims.campaign_id.clone(),
        ..whole.clone()
    };
    vec![whole, campaign]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;

    #[test]
    fn records_into_day_and_route_minute_cells() {
        let stats = StatsAggregator::new(60, 16);
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
        let by_dims = &pending[&tenant];
        let cells: usize = by_dims.values().map(HashMap::len).sum();
        assert_eq!(cells, 2, "one day cell, one route minute cell");
        let minute = &by_dims[&dims.route()][&(Granularity::Minute, 2)];
        assert_eq!(
            (minute.count(Status::Delivered), minute.latency.total()),
            (2, 1)
        );
    }

    /// A flush writes minute cells within the horizon and day cells, not
    /// minute cells older than the horizon (housekeeping would trim them
    /// unread); those still count in the day cells.
    #[tokio::test]
    async fn minute_cells_past_the_horizon_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::SledStore::open(dir.path(), &Default::default()).unwrap();
        let stats = StatsAggregator::new(60, 16);
        let tenant = Tenant::default();
        let dims = Dims {
            channel: Some(Channel::Sms),
            carrier: "c1".into(),
            ..Dims::default()
        };
        let now = Millis(1_790_000_000_000);
        let old = Millis(now.0 - 3 * 3_600_000);
        for at in [old, now] {
            stats.record(&tenant, at, &dims, Status::Delivered, 1, None);
        }
        stats.flush(&store, now).await.unwrap();
        let minutes: Vec<u32> = store
            .minute_stats(0, u32::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, minute, _, _)| minute)
            .collect();
        assert_eq!(minutes, [Granularity::Minute.bucket(now)]);
        let day = Granularity::Day.bucket(now);
        let delivered: i64 = store
            .day_stats(&tenant, day - 1, day)
            .await
            .unwrap()
            .iter()
            .map(|(_, _, cell)| cell.count(Status::Delivered))
            .sum();
        assert_eq!(delivered, 2, "both events in the day cells");
        assert!(
            stats.pending.lock().unwrap().is_empty(),
            "nothing left pending"
        );
    }

    /// A batch whose dimensions change from one update to the next (and
    /// back) lands in the same cells as the updates recorded one by one.
    #[test]
    fn a_batch_records_what_its_updates_record_one_by_one() {
        let (one_by_one, batched) = (StatsAggregator::new(60, 16), StatsAggregator::new(60, 16));
        let tenants = [Tenant::default(), Tenant::new("other").unwrap()];
        let dims = |carrier: &str, sender: &str, campaign: &str| Dims {
            channel: Some(Channel::Sms),
            carrier: carrier.into(),
            sender_id: sender.into(),
            campaign_id: campaign.into(),
            ..Dims::default()
        };
        let all = [
            dims("c1", "", ""),
            dims("c1", "s1", "spring"),
            dims("c2", "s1", ""),
        ];
        let updates: Vec<(&Tenant, Update)> = [0, 0, 1, 1, 1, 2, 0, 2, 2, 1]
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let update = Update {
                    at: Millis(60_000 * (i as i64 % 3) + 86_400_000 * (i as i64 % 2)),
                    dims: &all[d],
                    status: [Status::Delivered, Status::BouncedHard][i % 2],
                    delta: 1 + i as i64,
                    latency_ms: (i % 3 == 0).then_some(100 * i as i64),
                };
                (&tenants[i % 4 / 3], update)
            })
            .collect();
        for &(tenant, u) in &updates {
            one_by_one.record(tenant, u.at, u.dims, u.status, u.delta, u.latency_ms);
        }
        batched.record_all(updates.iter().copied());
        let one_by_one = one_by_one.pending.into_inner().unwrap();
        assert_eq!(batched.pending.into_inner().unwrap(), one_by_one);
        let sender_cells = one_by_one[&tenants[0]]
            .keys()
            .filter(|d| d.channel.is_none())
            .count();
        assert_eq!(
            sender_cells, 2,
            "the sender, and the sender in its campaign"
        );
    }
}
