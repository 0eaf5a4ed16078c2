//! The route monitor: judges every route with recent traffic against its
//! window and baseline, remembers which are degraded, and turns changes into
//! ROUTE_DEGRADED / ROUTE_RECOVERED actions.

use std::{collections::HashMap, sync::Mutex};

use crate::{
    domain::{
        Channel, Millis,
        action::{Action, ActionKind},
        route_health::{RouteHealthConfig, judge},
        stats::{Dims, StatCell},
    },
    engine::stats::StatsAggregator,
    storage::{Granularity, Tenant},
};

#[derive(Clone, Debug, Default)]
struct RouteState {
    degraded: bool,
    since: Option<Millis>,
    reason: String,
}

/// A route as reported by `GetRouteHealth`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteReport {
    pub route: Dims,
    pub window: StatCell,
    pub baseline: StatCell,
    pub degraded: bool,
    pub since: Option<Millis>,
    pub reason: String,
}

pub struct RouteMonitor {
    config: RouteHealthConfig,
    state: Mutex<HashMap<(Tenant, Dims), RouteState>>,
}

impl RouteMonitor {
    pub fn new(config: RouteHealthConfig) -> Self {
        RouteMonitor {
            config,
            state: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &RouteHealthConfig {
        &self.config
    }

    /// Minutes the statistics must keep for the window and baseline.
    pub fn horizon_minutes(config: &RouteHealthConfig) -> u32 {
        ((config.window + config.baseline).as_secs() / 60 + 2) as u32
    }

    fn cells(
        &self,
        stats: &StatsAggregator,
        tenant: &Tenant,
        route: &Dims,
        now: Millis,
    ) -> (StatCell, StatCell) {
        let now_minute = Granularity::Minute.bucket(now) + 1;
        let window = (self.config.window.as_secs() / 60).max(1) as u32;
        let baseline = (self.config.baseline.as_secs() / 60).max(1) as u32;
        let window_start = now_minute.saturating_sub(window);
        (
            stats.route_cell(tenant, route, window_start, now_minute),
            stats.route_cell(
                tenant,
                route,
                window_start.saturating_sub(baseline),
                window_start,
            ),
        )
    }

    /// Judges every route (of `tenant`, or all); returns the actions for the
    /// routes whose state changed, with their tenant.
    pub fn evaluate(
        &self,
        stats: &StatsAggregator,
        tenant: Option<&Tenant>,
        now: Millis,
    ) -> Vec<(Tenant, Action)> {
        let mut actions = Vec::new();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (route_tenant, route) in stats.routes(tenant) {
            let (window, baseline) = self.cells(stats, &route_tenant, &route, now);
            let entry = state
                .entry((route_tenant.clone(), route.clone()))
                .or_default();
            let verdict = judge(&window, &baseline, entry.degraded, &self.config);
            if verdict.degraded != entry.degraded {
                let kind = if verdict.degraded {
                    ActionKind::RouteDegraded
                } else {
                    ActionKind::RouteRecovered
                };
                let reason = if verdict.degraded {
                    format!("route {} degraded: {}", describe(&route), verdict.reason)
                } else {
                    format!("route {} recovered", describe(&route))
                };
                let mut action = Action::new(kind, now, reason);
                action.channel = route.channel;
                action.carrier = route.carrier.clone();
                action.country = route.country.clone();
                actions.push((route_tenant.clone(), action));
                entry.since = Some(now);
            }
            entry.degraded = verdict.degraded;
            entry.reason = verdict.reason;
        }
        actions
    }

    /// The routes of `tenant` as last judged.
    pub fn report(
        &self,
        stats: &StatsAggregator,
        tenant: &Tenant,
        now: Millis,
    ) -> Vec<RouteReport> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut reports: Vec<RouteReport> = stats
            .routes(Some(tenant))
            .into_iter()
            .map(|(t, route)| {
                let (window, baseline) = self.cells(stats, &t, &route, now);
                let judged = state.get(&(t, route.clone())).cloned().unwrap_or_default();
                RouteReport {
                    route,
                    window,
                    baseline,
                    degraded: judged.degraded,
                    since: judged.since,
                    reason: judged.reason,
                }
            })
            .collect();
        reports.sort_by(|a, b| a.route.cmp(&b.route));
        reports
    }

    /// Whether the route of `channel` through `carrier` to `country` is
    /// degraded, and why.
    pub fn degraded(
        &self,
        tenant: &Tenant,
        channel: Channel,
        carrier: &str,
        country: &str,
    ) -> Option<String> {
        let route = Dims {
            channel: Some(channel),
            carrier: carrier.to_string(),
            country: country.to_string(),
            ..Dims::default()
        };
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .get(&(tenant.clone(), route))
            .filter(|s| s.degraded)
            .map(|s| {
                format!(
                    "route {} degraded: {}",
                    describe_parts(channel, carrier, country),
                    s.reason
                )
            })
    }
}

fn describe(route: &Dims) -> String {
    describe_parts(
        route.channel.unwrap_or(Channel::Sms),
        &route.carrier,
        &route.country,
    )
}

pub(super) fn describe_parts(channel: Channel, carrier: &str, country: &str) -> String {
    let or_any = |s: &str| {
        if s.is_empty() {
            "any".to_string()
        } else {
            s.to_string()
        }
    };
    format!("{channel}/{}/{}", or_any(carrier), or_any(country))
}
