//! What a contact's routes say about its scores, as of an ask's time: how
//! much a silence weighs on each (`domain/route_silence.rs`) and whether
//! each delivers below its baseline (`domain/route_outlook.rs`).

use crate::{
    domain::{
        Channel, ContactProfile, Millis, Reachability,
        profile::Route,
        route_health::RouteHealthConfig,
        route_outlook::{Outlook, outlook},
        route_silence::{RouteSilences, route_silence},
        scoring::{apply_route_outlook, assess_on},
        stats::Dims,
    },
    engine::{Engine, route_tallies::hour, routes::describe_parts},
    error::Result,
    storage::{Store, Tenant},
};

impl<S: Store> Engine<S> {
    /// The profile's scores as of `at`: silences weighed by what their
    /// routes' receipts make them, then the routes' outlooks applied.
    pub(super) async fn assess_on_routes(
        &self,
        tenant: &Tenant,
        profile: &ContactProfile,
        at: Millis,
    ) -> Result<Reachability> {
        let windows = Windows::of(at, self.routes.config());
        let silences = self.route_silences(tenant, profile, &windows).await?;
        let mut reach = assess_on(profile, &self.model, at, &silences);
        let outlooks = self.route_outlooks(tenant, &reach, &windows).await?;
        apply_route_outlook(&mut reach, &outlooks);
        Ok(reach)
    }

    /// The routes of the profile's channels and addresses that lose
    /// receipts, judged on the outlook's baseline days.
    async fn route_silences(
        &self,
        tenant: &Tenant,
        profile: &ContactProfile,
        w: &Windows,
    ) -> Result<RouteSilences> {
        let mut silences = RouteSilences::default();
        let config = self.routes.config();
        if !config.silence_by_route {
            return Ok(silences);
        }
        let routes = Channel::ALL
            .iter()
            .filter_map(|&c| Some((c, profile.channel(c)?.last_route.as_ref()?)))
            .chain(
                profile
                    .addresses
                    .iter()
                    .filter_map(|a| Some((a.channel, a.state.last_route.as_ref()?))),
            );
        let mut judged: Vec<(Channel, &Route)> = Vec::new();
        for (channel, route) in routes {
            let same = |(c, r): &(Channel, &Route)| {
                *c == channel && r.carrier == route.carrier && r.country == route.country
            };
            if judged.iter().any(same) {
                continue;
            }
            judged.push((channel, route));
            let now = Millis::now();
            let store = self.store.as_ref();
            let (from, to) = (w.baseline_from, w.baseline_to);
            let tallies = self.stats.day_tallies(store, tenant, now).await?;
            let usual = tallies.usual_silence(tenant, channel, from, to, config.min_samples);
            let tally = tallies.days(tenant, &route_dims(channel, route), from, to);
            if let Some(s) = route_silence(tally, usual, config.min_samples) {
                let name = describe_parts(channel, &route.carrier, &route.country);
                silences.insert(channel, route, name, s);
            }
        }
        Ok(silences)
    }

    /// Per channel (in [`Channel::ALL`] order), the outlook of the route of
    /// its chosen address's latest event, with the route's name.
    async fn route_outlooks(
        &self,
        tenant: &Tenant,
        reach: &Reachability,
        w: &Windows,
    ) -> Result<[Option<(String, Outlook)>; 4]> {
        let mut outlooks = [None, None, None, None];
        let config = self.routes.config();
        if !config.outlook {
            return Ok(outlooks);
        }
        for (channel, a) in Channel::ALL.iter().zip(&reach.channels) {
            let Some(route) = &a.last_route else { continue };
            let dims = route_dims(*channel, route);
            let recent = self
                .stats
                .route_hours(tenant, &dims, w.recent_from, w.recent_to);
            let baseline = self
                .stats
                .day_tallies(self.store.as_ref(), tenant, Millis::now())
                .await?
                .each_day(tenant, &dims, w.baseline_from, w.baseline_to);
            outlooks[channel.index()] = outlook(recent, &baseline, config).map(|o| {
                let name = describe_parts(*channel, &route.carrier, &route.country);
                (name, o)
            });
        }
        Ok(outlooks)
    }
}

/// The outlook's windows as of an ask: the `outlook_window` hours before
/// `at`'s hour (and that hour too when it is the current one, since it then
/// holds nothing later), and the `outlook_baseline` whole days before the
/// window's first day.
struct Windows {
    recent_from: u32,
    recent_to: u32,
    baseline_from: u32,
    baseline_to: u32,
}

impl Windows {
    fn of(at: Millis, config: &RouteHealthConfig) -> Windows {
        let at_hour = hour(at);
        let recent_to = if at_hour >= hour(Millis::now()) {
            at_hour
        } else {
            at_hour.saturating_sub(1)
        };
        let recent_from = at_hour.saturating_sub(config.outlook_window_hours());
        let first_day = recent_from / 24;
        Windows {
            recent_from,
            recent_to,
            baseline_from: first_day.saturating_sub(config.outlook_baseline_days()),
            baseline_to: first_day.saturating_sub(1),
        }
    }
}

fn route_dims(channel: Channel, route: &Route) -> Dims {
    Dims {
        channel: Some(channel),
        carrier: route.carrier.clone(),
        country: route.country.clone(),
        ..Dims::default()
    }
}
