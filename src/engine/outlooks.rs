//! The route outlook of each of a contact's channels, as of an ask's time
//! (the model is in `domain/route_outlook.rs`).

use crate::{
    domain::{
        Channel, ContactProfile, Millis, Reachability,
        route_outlook::{Outlook, outlook},
        scoring::{apply_route_outlook, assess},
        stats::Dims,
    },
    engine::{Engine, route_tallies::hour, routes::describe_parts},
    error::Result,
    storage::{Store, Tenant},
};

impl<S: Store> Engine<S> {
    /// The profile's scores as of `at`, with its routes' outlooks applied.
    pub(super) async fn assess_on_routes(
        &self,
        tenant: &Tenant,
        profile: &ContactProfile,
        at: Millis,
    ) -> Result<Reachability> {
        let mut reach = assess(profile, &self.model, at);
        let outlooks = self.route_outlooks(tenant, &reach, at).await?;
        apply_route_outlook(&mut reach, &outlooks);
        Ok(reach)
    }

    /// Per channel (in [`Channel::ALL`] order), the outlook of the route of
    /// its chosen address's latest event, with the route's name, as of `at`:
    /// the `outlook_window` hours before `at`'s hour (and that hour too when
    /// it is the current one, since it then holds nothing later) against
    /// the `outlook_baseline` whole days before the window's first day.
    async fn route_outlooks(
        &self,
        tenant: &Tenant,
        reach: &Reachability,
        at: Millis,
    ) -> Result<[Option<(String, Outlook)>; 4]> {
        let mut outlooks = [None, None, None, None];
        let config = self.routes.config();
        if !config.outlook {
            return Ok(outlooks);
        }
        let now = Millis::now();
        let at_hour = hour(at);
        let recent_to = if at_hour >= hour(now) {
            at_hour
        } else {
            at_hour.saturating_sub(1)
        };
        let recent_from = at_hour.saturating_sub(config.outlook_window_hours());
        let first_day = recent_from / 24;
        let baseline_to = first_day.saturating_sub(1);
        let baseline_from = first_day.saturating_sub(config.outlook_baseline_days());
        for (channel, a) in Channel::ALL.iter().zip(&reach.channels) {
            let Some(route) = &a.last_route else { continue };
            let dims = Dims {
                channel: Some(*channel),
                carrier: route.carrier.clone(),
                country: route.country.clone(),
                ..Dims::default()
            };
            let recent = self
                .stats
                .route_hours(tenant, &dims, recent_from, recent_to);
            let baseline = self
                .stats
                .route_days(
                    self.store.as_ref(),
                    tenant,
                    &dims,
                    baseline_from,
                    baseline_to,
                    now,
                )
                .await?;
            outlooks[channel.index()] = outlook(recent, baseline, config).map(|o| {
                let name = describe_parts(*channel, &route.carrier, &route.country);
                (name, o)
            });
        }
        Ok(outlooks)
    }
}
