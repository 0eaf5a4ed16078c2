//! `reachability.v1.ReachabilityService` handlers: convert, call the engine,
//! convert back. No business logic lives here.

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    domain::{InvalidField, Millis},
    engine::{Engine, MAX_DEAD_LETTER_PAGE, StatsQuery, Valid},
    error::Error,
    grpc::{contacts, convert, delivery, policies, providers, senders},
    proto::{self, reachability_service_server::ReachabilityService},
    storage::{Store, Tenant},
};

/// Actions read from the outbox at a time by a watcher.
const ACTION_PAGE: usize = 256;
/// Events a bulk stream buffers before applying them and sharing one flush.
const BULK_CHUNK: usize = 1024;
/// Rejected events reported in detail per bulk stream (all are counted).
const MAX_REPORTED_ERRORS: usize = 100;

/// The gRPC face of the engine. The engine slot is filled once the store is
/// open; until then every call is UNAVAILABLE.
pub struct ReachabilityApi<S> {
    engine: Arc<OnceLock<Engine<S>>>,
    /// Turns true when the server starts shutting down: long-lived streams end.
    shutdown: watch::Receiver<bool>,
}

impl<S> ReachabilityApi<S> {
    pub fn new(engine: Arc<OnceLock<Engine<S>>>, shutdown: watch::Receiver<bool>) -> Self {
        ReachabilityApi { engine, shutdown }
    }
}

impl<S: Store> ReachabilityApi<S> {
    async fn provider_event(
        &self,
        request: Request<proto::ProviderEventRequest>,
        dry_run: bool,
    ) -> Result<Response<proto::ProviderEventResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let request = providers::request_from(request.into_inner()).map_err(invalid)?;
        let outcomes = engine
            .record_provider_event(&tenant, request, dry_run)
            .await?;
        Ok(Response::new(proto::ProviderEventResponse {
            results: outcomes.iter().map(providers::mapped_event).collect(),
        }))
    }

    fn engine(&self) -> Result<&Engine<S>, Status> {
        self.engine.get().ok_or_else(|| Error::NotReady.into())
    }

    /// The caller's tenant: the one its bearer token maps to (set by the
    /// authentication interceptor), the default tenant when auth is off.
    fn tenant<T>(&self, request: &Request<T>) -> Tenant {
        let tenant = request
            .extensions()
            .get::<Tenant>()
            .cloned()
            .unwrap_or_default();
        tracing::Span::current().record("tenant", tenant.as_str());
        tenant
    }
}

fn invalid(field: InvalidField) -> Status {
    Error::InvalidArgument(field).into()
}

fn as_of(ts: Option<prost_types::Timestamp>) -> Result<Option<Millis>, Status> {
    ts.map(|ts| convert::millis_from("as_of", &ts))
        .transpose()
        .map_err(invalid)
}

fn valid_event<S: Store>(
    engine: &Engine<S>,
    event: Option<proto::ChannelEvent>,
    now: Millis,
) -> Result<Valid, InvalidField> {
    let event = event.ok_or_else(|| InvalidField::new("event", "is required"))?;
    convert::event_from(event)
        .and_then(|e| engine.validate(e, now))
        .map_err(|f| f.within("event"))
}

#[tonic::async_trait]
impl<S: Store> ReachabilityService for ReachabilityApi<S> {
    async fn record_event(
        &self,
        request: Request<proto::RecordEventRequest>,
    ) -> Result<Response<proto::RecordEventResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let event =
            valid_event(engine, request.into_inner().event, Millis::now()).map_err(invalid)?;
        let duplicate = engine.record(&tenant, &event).await?;
        Ok(Response::new(proto::RecordEventResponse {
            duplicate,
            event_id: event.event().event_id.clone(),
        }))
    }

    async fn record_events(
        &self,
        request: Request<Streaming<proto::RecordEventRequest>>,
    ) -> Result<Response<proto::RecordEventsResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let mut stream = request.into_inner();
        let mut reply = proto::RecordEventsResponse::default();
        let mut chunk = Vec::with_capacity(BULK_CHUNK);
        let mut index = 0u64;
        let cap = engine.limits().max_events_per_stream;
        while let Some(message) = stream.message().await? {
            if index >= cap {
                // What came before is recorded (and durable) before saying no,
                // so that "the first N were recorded" is true; re-sending them
                // is safe, they are reported as duplicates.
                if !chunk.is_empty() {
                    engine.record_batch(&tenant, &chunk).await?;
                }
                return Err(Status::resource_exhausted(format!(
                    "a RecordEvents stream carries at most {cap} events (limits.max_events_per_stream); the first {cap} were processed (valid ones recorded), send the rest in further streams"
                )));
            }
            let event_id = message
                .event
                .as_ref()
                .map(|e| e.event_id.clone())
                .unwrap_or_default();
            match valid_event(engine, message.event, Millis::now()) {
                Ok(event) => chunk.push(event),
                Err(field) => {
                    reply.rejected += 1;
                    if reply.errors.len() < MAX_REPORTED_ERRORS {
                        reply.errors.push(proto::EventError {
                            index,
                            event_id,
                            field: field.field,
                            message: field.reason,
                        });
                    }
                }
            }
            index += 1;
            if chunk.len() >= BULK_CHUNK {
                let outcome = engine.record_batch(&tenant, &chunk).await?;
                reply.accepted += outcome.accepted;
                reply.duplicates += outcome.duplicates;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            let outcome = engine.record_batch(&tenant, &chunk).await?;
            reply.accepted += outcome.accepted;
            reply.duplicates += outcome.duplicates;
        }
        Ok(Response::new(reply))
    }

    async fn get_reachability(
        &self,
        request: Request<proto::GetReachabilityRequest>,
    ) -> Result<Response<proto::GetReachabilityResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let req = request.into_inner();
        let as_of = as_of(req.as_of)?;
        let ask = policies::ask_from_reachability(req, as_of);
        let reach = engine.reachability(&tenant, &ask).await?;
        Ok(Response::new(convert::reachability(ask.contact_id, reach)))
    }

    async fn get_best_channel(
        &self,
        request: Request<proto::GetBestChannelRequest>,
    ) -> Result<Response<proto::GetBestChannelResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let req = request.into_inner();
        let as_of = as_of(req.as_of)?;
        let ask = policies::ask_from_best(req, as_of).map_err(invalid)?;
        let best = engine.best_channel(&tenant, &ask).await?;
        Ok(Response::new(proto::GetBestChannelResponse {
            contact_id: ask.contact_id,
            channel: best
                .channel
                .map_or(proto::Channel::Unspecified, convert::channel_to)
                .into(),
            address: best
                .address
                .as_ref()
                .map(|a| contacts::address_to(a.id, &a.info)),
            send_after: best.send_after.map(convert::timestamp),
            policy: best.policy,
            ranked: best
                .ranked
                .into_iter()
                .map(convert::channel_score)
                .collect(),
            reason: best.reason,
        }))
    }

    async fn upsert_contact(
        &self,
        request: Request<proto::UpsertContactRequest>,
    ) -> Result<Response<proto::UpsertContactResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let update = contacts::update_from(request.into_inner()).map_err(invalid)?;
        let contact_id = update.contact_id.clone();
        let (profile, reach) = engine
            .upsert_contact(&tenant, update, Millis::now())
            .await?;
        Ok(Response::new(proto::UpsertContactResponse {
            contact: Some(contacts::contact_to(contact_id, &profile, &reach)),
        }))
    }

    async fn get_contact(
        &self,
        request: Request<proto::GetContactRequest>,
    ) -> Result<Response<proto::GetContactResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let contact_id = request.into_inner().contact_id;
        let (profile, reach) = engine.contact(&tenant, &contact_id).await?;
        Ok(Response::new(proto::GetContactResponse {
            contact: Some(contacts::contact_to(contact_id, &profile, &reach)),
        }))
    }

    async fn register_sender(
        &self,
        request: Request<proto::RegisterSenderRequest>,
    ) -> Result<Response<proto::RegisterSenderResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let registration = senders::registration_from(request.into_inner()).map_err(invalid)?;
        let report = engine
            .register_sender(&tenant, registration, Millis::now())
            .await?;
        Ok(Response::new(proto::RegisterSenderResponse {
            sender: Some(senders::sender_to(report)),
        }))
    }

    async fn get_sender(
        &self,
        request: Request<proto::GetSenderRequest>,
    ) -> Result<Response<proto::GetSenderResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let report = engine
            .sender(&tenant, &request.into_inner().sender_id)
            .await?;
        Ok(Response::new(proto::GetSenderResponse {
            sender: Some(senders::sender_to(report)),
        }))
    }

    async fn list_senders(
        &self,
        request: Request<proto::ListSendersRequest>,
    ) -> Result<Response<proto::ListSendersResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let channel = request.into_inner().channel;
        let channel = (channel != proto::Channel::Unspecified as i32)
            .then(|| convert::channel_from("channel", channel))
            .transpose()
            .map_err(invalid)?;
        let reports = engine.list_senders(&tenant, channel).await?;
        Ok(Response::new(proto::ListSendersResponse {
            senders: reports.into_iter().map(senders::sender_to).collect(),
        }))
    }

    async fn set_send_policy(
        &self,
        request: Request<proto::SetSendPolicyRequest>,
    ) -> Result<Response<proto::SetSendPolicyResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let policy = request
            .into_inner()
            .policy
            .ok_or_else(|| invalid(InvalidField::new("policy", "is required")))?;
        let (name, policy) =
            policies::policy_from(policy).map_err(|f| invalid(f.within("policy")))?;
        let policy = engine.set_policy(&tenant, &name, policy).await?;
        Ok(Response::new(proto::SetSendPolicyResponse {
            policy: Some(policies::policy_to(name, policy)),
        }))
    }

    async fn get_send_policy(
        &self,
        request: Request<proto::GetSendPolicyRequest>,
    ) -> Result<Response<proto::GetSendPolicyResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let (name, policy, source) = engine
            .policy(&tenant, &request.into_inner().campaign_type)
            .await?;
        Ok(Response::new(proto::GetSendPolicyResponse {
            policy: Some(policies::policy_to(name, policy)),
            source: policies::source_name(source).into(),
        }))
    }

    async fn list_send_policies(
        &self,
        request: Request<proto::ListSendPoliciesRequest>,
    ) -> Result<Response<proto::ListSendPoliciesResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let all = engine.list_policies(&tenant).await?;
        Ok(Response::new(proto::ListSendPoliciesResponse {
            policies: all
                .into_iter()
                .map(|(name, p, _)| policies::policy_to(name, p))
                .collect(),
        }))
    }

    async fn get_contact_profile(
        &self,
        request: Request<proto::GetContactProfileRequest>,
    ) -> Result<Response<proto::GetContactProfileResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let contact_id = request.into_inner().contact_id;
        let (version, profile) = engine.profile(&tenant, &contact_id).await?;
        Ok(Response::new(convert::profile(
            contact_id, version, &profile,
        )))
    }

    async fn record_provider_event(
        &self,
        request: Request<proto::ProviderEventRequest>,
    ) -> Result<Response<proto::ProviderEventResponse>, Status> {
        self.provider_event(request, false).await
    }

    async fn map_provider_event(
        &self,
        request: Request<proto::ProviderEventRequest>,
    ) -> Result<Response<proto::ProviderEventResponse>, Status> {
        self.provider_event(request, true).await
    }

    async fn list_dead_letters(
        &self,
        request: Request<proto::ListDeadLettersRequest>,
    ) -> Result<Response<proto::ListDeadLettersResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let req = request.into_inner();
        let page_size = if req.page_size == 0 {
            100
        } else {
            req.page_size as usize
        };
        let (letters, next) = engine
            .list_dead_letters(&tenant, &req.provider, &req.page_token, page_size)
            .await?;
        Ok(Response::new(proto::ListDeadLettersResponse {
            dead_letters: letters.iter().map(providers::dead_letter).collect(),
            next_page_token: next,
        }))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<proto::ReplayDeadLettersRequest>,
    ) -> Result<Response<proto::ReplayDeadLettersResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let req = request.into_inner();
        let limit = if req.limit == 0 {
            MAX_DEAD_LETTER_PAGE
        } else {
            req.limit as usize
        };
        let report = engine
            .replay_dead_letters(&tenant, &req.provider, &req.ids, limit)
            .await?;
        Ok(Response::new(proto::ReplayDeadLettersResponse {
            recorded: report.recorded,
            duplicates: report.duplicates,
            still_unmapped: report.still_unmapped,
            results: report
                .outcomes
                .iter()
                .map(providers::mapped_event)
                .collect(),
        }))
    }

    async fn reload_provider_tables(
        &self,
        request: Request<proto::ReloadProviderTablesRequest>,
    ) -> Result<Response<proto::ReloadProviderTablesResponse>, Status> {
        let _tenant = self.tenant(&request);
        let engine = self.engine()?;
        let tables = engine.providers().reload().map_err(Error::BadTables)?;
        tracing::info!(tables = tables.len(), "provider tables reloaded by RPC");
        Ok(Response::new(proto::ReloadProviderTablesResponse {
            tables: tables.iter().map(providers::table).collect(),
        }))
    }

    async fn get_route_health(
        &self,
        request: Request<proto::GetRouteHealthRequest>,
    ) -> Result<Response<proto::GetRouteHealthResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let req = request.into_inner();
        let channel = match req.channel {
            0 => None,
            c => Some(convert::channel_from("channel", c).map_err(invalid)?),
        };
        let routes = engine
            .route_health(&tenant)
            .await?
            .into_iter()
            .filter(|r| channel.is_none_or(|c| r.route.channel == Some(c)))
            .filter(|r| req.carrier.is_empty() || r.route.carrier == req.carrier)
            .filter(|r| {
                req.country.is_empty() || r.route.country.eq_ignore_ascii_case(&req.country)
            })
            .filter(|r| !req.degraded_only || r.degraded)
            .map(|r| delivery::route(&r))
            .collect();
        Ok(Response::new(proto::GetRouteHealthResponse { routes }))
    }

    async fn query_delivery_stats(
        &self,
        request: Request<proto::QueryDeliveryStatsRequest>,
    ) -> Result<Response<proto::QueryDeliveryStatsResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let req = request.into_inner();
        let time = |field: &str, ts: Option<prost_types::Timestamp>| {
            ts.ok_or_else(|| InvalidField::new(field, "is required"))
                .and_then(|ts| convert::millis_from(field, &ts))
                .map_err(invalid)
        };
        let group_by = req
            .group_by
            .iter()
            .enumerate()
            .map(|(i, &d)| delivery::dimension_from(&format!("group_by[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let filters = req
            .filters
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                delivery::dimension_from(&format!("filters[{i}].dimension"), f.dimension)
                    .map(|d| (d, f.values))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let query = StatsQuery {
            from: time("from", req.from)?,
            to: time("to", req.to)?,
            group_by,
            filters,
        };
        let rows = engine.delivery_stats(&tenant, &query).await?;
        Ok(Response::new(proto::QueryDeliveryStatsResponse {
            rows: rows.iter().map(delivery::stats_row).collect(),
        }))
    }

    type WatchActionsStream = ReceiverStream<Result<proto::Action, Status>>;

    async fn watch_actions(
        &self,
        request: Request<proto::WatchActionsRequest>,
    ) -> Result<Response<Self::WatchActionsStream>, Status> {
        let tenant = self.tenant(&request);
        self.engine()?;
        let req = request.into_inner();
        let kinds: Vec<i32> = req.kinds;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (slot, mut shutdown) = (self.engine.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            let Some(engine) = slot.get() else { return };
            let mut latest = engine.subscribe_actions();
            let mut after = req.after_sequence;
            loop {
                let batch = match engine.actions_after(&tenant, after, ACTION_PAGE).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let full = batch.len() == ACTION_PAGE;
                for (seq, action) in batch {
                    after = seq;
                    let wire = delivery::action(seq, &action);
                    if (kinds.is_empty() || kinds.contains(&wire.kind))
                        && tx.send(Ok(wire)).await.is_err()
                    {
                        return;
                    }
                }
                if full {
                    continue;
                }
                // Nothing more for now: wait for new durable actions, the
                // client leaving, or the server shutting down.
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delete_contact(
        &self,
        request: Request<proto::DeleteContactRequest>,
    ) -> Result<Response<proto::DeleteContactResponse>, Status> {
        let tenant = self.tenant(&request);
        let engine = self.engine()?;
        let existed = engine
            .delete_contact(&tenant, &request.into_inner().contact_id)
            .await?;
        Ok(Response::new(proto::DeleteContactResponse { existed }))
    }
}
