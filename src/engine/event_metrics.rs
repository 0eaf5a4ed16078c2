//! What ingestion tells Prometheus about every event: events recorded by
//! channel and status, duplicates, and route health (outcomes and
//! sent-to-delivered latency by channel, carrier and country: what the
//! dashboard's route panels show).
//!
//! Series are resolved once and kept. `metrics::counter!` with labels
//! builds a key (labels allocated, hashed, looked up in the registry) on
//! every call: per event of a bulk stream that was about 4% of the
//! server's CPU.

use std::{
    collections::HashMap,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use metrics::{Counter, Histogram};

use crate::domain::{Channel, Status, stats::Dims};

/// Routes whose series are kept; past it (carriers and countries are the
/// clients' strings) a route's series are looked up each time, as before.
const KEPT_ROUTES: usize = 4096;

/// A dense index per `Option<Channel>`: the channels, then none.
const CHANNEL_SLOTS: usize = Channel::ALL.len() + 1;

#[derive(Default)]
pub struct EventMetrics {
    recorded: [[OnceLock<Counter>; Status::ALL.len()]; Channel::ALL.len()],
    duplicates: OnceLock<Counter>,
    /// By carrier, then country.
    routes: RwLock<HashMap<String, HashMap<String, Arc<RouteSeries>>>>,
    kept: AtomicUsize,
}

/// One carrier and country's series, by channel slot.
#[derive(Default)]
struct RouteSeries {
    outcomes: [[OnceLock<Counter>; Status::ALL.len()]; CHANNEL_SLOTS],
    latency: [OnceLock<Histogram>; CHANNEL_SLOTS],
}

impl EventMetrics {
    /// A new event of `status` on `channel`.
    pub fn recorded(&self, channel: Channel, status: Status) {
        self.recorded[channel.index()][status as usize]
            .get_or_init(|| {
                metrics::counter!(
                    "reach_events_total",
                    "channel" => channel.name(),
                    "status" => status.name()
                )
            })
            .increment(1);
    }

    /// An event already recorded (a dedupe hit).
    pub fn duplicate(&self) {
        self.duplicates
            .get_or_init(|| metrics::counter!("reach_events_duplicate_total"))
            .increment(1);
    }

    /// `delta` outcomes of `status` on `dims`' route, and the latency from
    /// send to this receipt, if known. Corrections (negative deltas) are
    /// left out: a counter only grows.
    pub fn route(&self, dims: &Dims, status: Status, delta: i64, latency_ms: Option<i64>) {
        if delta <= 0 {
            return;
        }
        let slot = dims.channel.map_or(Channel::ALL.len(), Channel::index);
        let Some(series) = self.series(&dims.carrier, &dims.country) else {
            let labels = route_labels(dims);
            let mut with_status = labels.to_vec();
            with_status.push(("status", status.name().to_string()));
            metrics::counter!("reach_route_outcomes_total", &with_status).increment(delta as u64);
            if let Some(ms) = latency_ms {
                metrics::histogram!("reach_delivery_latency_seconds", &labels)
                    .record(ms as f64 / 1000.0);
            }
            return;
        };
        series.outcomes[slot][status as usize]
            .get_or_init(|| {
                let mut labels = route_labels(dims).to_vec();
                labels.push(("status", status.name().to_string()));
                metrics::counter!("reach_route_outcomes_total", &labels)
            })
            .increment(delta as u64);
        if let Some(ms) = latency_ms {
            series.latency[slot]
                .get_or_init(|| {
                    metrics::histogram!("reach_delivery_latency_seconds", &route_labels(dims))
                })
                .record(ms as f64 / 1000.0);
        }
    }

    /// The kept series of a carrier and country, made if there is room.
    fn series(&self, carrier: &str, country: &str) -> Option<Arc<RouteSeries>> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        if let Some(series) = routes.get(carrier).and_then(|c| c.get(country)) {
            return Some(series.clone());
        }
        drop(routes);
        if self.kept.load(Ordering::Relaxed) >= KEPT_ROUTES {
            return None;
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let series = routes
            .entry(carrier.to_string())
            .or_default()
            .entry(country.to_string())
            .or_insert_with(|| {
                self.kept.fetch_add(1, Ordering::Relaxed);
                Arc::default()
            });
        Some(series.clone())
    }
}

fn route_labels(dims: &Dims) -> [(&'static str, String); 3] {
    [
        ("channel", dims.channel.map_or("", |c| c.name()).to_string()),
        ("carrier", dims.carrier.clone()),
        ("country", dims.country.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    fn route(n: usize) -> Dims {
        Dims {
            channel: Some(Channel::Sms),
            carrier: format!("carrier-{n}"),
            country: "US".into(),
            ..Dims::default()
        }
    }

    /// Kept series and those looked up past `KEPT_ROUTES` count alike.
    #[test]
    fn routes_past_those_kept_are_still_counted() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let events = EventMetrics::default();
        metrics::with_local_recorder(&recorder, || {
            for n in 0..KEPT_ROUTES + 2 {
                for _ in 0..2 {
                    events.route(&route(n), Status::Delivered, 1, Some(1_500));
                }
                events.route(&route(n), Status::Delivered, -1, None);
            }
        });
        assert_eq!(events.kept.load(Ordering::Relaxed), KEPT_ROUTES);
        let text = handle.render();
        for n in [0, KEPT_ROUTES - 1, KEPT_ROUTES + 1] {
            let series = format!(
                "reach_route_outcomes_total{{channel=\"sms\",carrier=\"carrier-{n}\",country=\"US\",status=\"DELIVERED\"}} 2"
            );
            assert!(text.lines().any(|l| l == series), "{series}");
            let latency = format!(
                "reach_delivery_latency_seconds_count{{channel=\"sms\",carrier=\"carrier-{n}\",country=\"US\"}} 2"
            );
            assert!(text.lines().any(|l| l == latency), "{latency}");
        }
    }
}
