//! The questions about delivery as a whole: route health, delivery
//! statistics grouped and filtered, and the action stream.

use std::collections::BTreeMap;

use tokio::sync::watch;

use crate::{
    domain::{
        Millis,
        action::Action,
        stats::{Dimension, StatCell},
    },
    engine::{Engine, RouteReport},
    error::{Error, Result},
    storage::{Granularity, Store, StoreError, Tenant},
};

/// A `QueryDeliveryStats` question.
#[derive(Clone, Debug, Default)]
pub struct StatsQuery {
    pub from: Millis,
    pub to: Millis,
    pub group_by: Vec<Dimension>,
    /// Each dimension must take one of the values.
    pub filters: Vec<(Dimension, Vec<String>)>,
}

/// One group of a statistics answer.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsRow {
    pub group: Vec<(Dimension, String)>,
    pub cell: StatCell,
}

/// `YYYY-MM-DD` of a day number.
fn day_name(day: u32) -> String {
    Millis(day as i64 * Granularity::Day.millis()).to_string()[..10].to_string()
}

impl<S: Store> Engine<S> {
    /// Every route of `tenant` with traffic in the route-health horizon, judged now.
    pub async fn route_health(&self, tenant: &Tenant) -> Result<Vec<RouteReport>> {
        self.judge_routes().await?;
        Ok(self.routes.report(&self.stats, tenant, Millis::now()))
    }

    /// Delivery statistics of `tenant` from the day cells.
    pub async fn delivery_stats(
        &self,
        tenant: &Tenant,
        query: &StatsQuery,
    ) -> Result<Vec<StatsRow>> {
        if query.to < query.from {
            return Err(Error::InvalidArgument(crate::domain::InvalidField::new(
                "to",
                "is before from",
            )));
        }
        self.flush_stats().await?;
        let (from, to) = (
            Granularity::Day.bucket(query.from),
            Granularity::Day.bucket(query.to),
        );
        let cells = self.store.day_stats(tenant, from, to).await?;
        let mut rows: BTreeMap<Vec<String>, StatCell> = BTreeMap::new();
        for (day, dims, cell) in cells {
            let value = |d: Dimension| {
                if d == Dimension::Day {
                    day_name(day)
                } else {
                    dims.value(d)
                }
            };
            if !query
                .filters
                .iter()
                .all(|(d, values)| values.contains(&value(*d)))
            {
                continue;
            }
            let key: Vec<String> = query.group_by.iter().map(|&d| value(d)).collect();
            rows.entry(key).or_default().merge(&cell);
        }
        Ok(rows
            .into_iter()
            .map(|(values, cell)| StatsRow {
                group: query.group_by.iter().copied().zip(values).collect(),
                cell,
            })
            .collect())
    }

    /// Up to `limit` actions of `tenant` after sequence `after`.
    pub async fn actions_after(
        &self,
        tenant: &Tenant,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Action)>> {
        let raw = self.store.actions_after(tenant, after, limit).await?;
        raw.into_iter()
            .map(|(seq, _, bytes)| {
                Action::decode(&bytes).map(|a| (seq, a)).map_err(|reason| {
                    Error::Store(StoreError::Corrupt {
                        contact: format!("action {seq}"),
                        reason,
                    })
                })
            })
            .collect()
    }

    /// Changes whenever new actions are durable.
    pub fn subscribe_actions(&self) -> watch::Receiver<u64> {
        self.outbox.subscribe()
    }
}
