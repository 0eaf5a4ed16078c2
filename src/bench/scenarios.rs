//! The calls the load driver makes: reach's RPCs and the echo stand-ins
//! sized like them.

use std::{fmt, sync::Arc};

use prost::Message;
use tonic::transport::Channel as Connection;

use crate::{
    bench::{
        load::{Load, Measured, drive},
        preload::{address_for, bench_metadata, contact_id},
    },
    domain::{Channel, Millis},
    grpc::{channel_to_proto, timestamp},
    proto::{
        self,
        bench::{EchoRequest, echo_service_client::EchoServiceClient},
        reachability_service_client::ReachabilityServiceClient,
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    BestChannel,
    Reachability,
    RecordEvent,
    RecordEvents,
    Mixed,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::BestChannel,
        Scenario::Reachability,
        Scenario::RecordEvent,
        Scenario::RecordEvents,
        Scenario::Mixed,
    ];

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::BestChannel => "best",
            Scenario::Reachability => "reachability",
            Scenario::RecordEvent => "record",
            Scenario::RecordEvents => "bulk",
            Scenario::Mixed => "mixed",
        }
    }

    /// One call in this many of the mixed load is a `RecordEvent`; the
    /// others are `GetBestChannel`.
    pub const MIXED_WRITE_EVERY: u64 = 5;

    /// Whether the `seq`th call of a mixed worker is its `RecordEvent`.
    pub fn mixed_writes(seq: u64) -> bool {
        seq % Self::MIXED_WRITE_EVERY == Self::MIXED_WRITE_EVERY - 1
    }

    /// Whether the echo service is the baseline (bulk is compared with raw sled).
    pub fn echo_baseline(self) -> bool {
        self != Scenario::RecordEvents
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running reach with a preloaded store, and how to hit it.
#[derive(Clone)]
pub struct Target {
    pub connections: Arc<Vec<Connection>>,
    pub contacts: u64,
    /// Makes event ids unique across bench runs on the same store.
    pub run_id: u64,
    pub bulk_size: usize,
    /// Consecutive events of one contact in a bulk stream (a message's
    /// lifecycle: sent, delivered, opened...).
    pub bulk_per_contact: usize,
}

impl Target {
    fn client(&self, worker: usize) -> ReachabilityServiceClient<Connection> {
        ReachabilityServiceClient::new(self.connections[worker % self.connections.len()].clone())
    }

    fn random_contact(&self) -> String {
        contact_id(fastrand::u64(0..self.contacts))
    }

    fn best_request(&self) -> proto::GetBestChannelRequest {
        proto::GetBestChannelRequest {
            contact_id: self.random_contact(),
            ..Default::default()
        }
    }

    fn event(&self, worker: usize, seq: u64, k: usize) -> proto::RecordEventRequest {
        self.event_for(self.random_contact(), worker, seq, k)
    }

    pub(crate) fn event_for(
        &self,
        contact_id: String,
        worker: usize,
        seq: u64,
        k: usize,
    ) -> proto::RecordEventRequest {
        let now = Millis::now();
        let status = match fastrand::u32(0..100) {
            0..80 => proto::Status::Delivered,
            80..90 => proto::Status::Sent,
            90..95 => proto::Status::PendingRetry,
            95..98 => proto::Status::Opened,
            _ => proto::Status::BouncedHard,
        };
        // Production events name their address, so the bench pays for
        // validating and hashing it.
        let channel = Channel::ALL[fastrand::usize(..Channel::ALL.len())];
        let metadata = bench_metadata();
        proto::RecordEventRequest {
            event: Some(proto::ChannelEvent {
                event_id: format!("bench-{}-{worker}-{seq}-{k}", self.run_id),
                address: address_for(&contact_id, channel),
                contact_id,
                channel: channel_to_proto(channel) as i32,
                status: status as i32,
                occurred_at: Some(timestamp(Millis(now.0 - fastrand::i64(0..86_400_000)))),
                provider: metadata.provider,
                carrier: metadata.carrier,
                country: metadata.country,
                campaign_id: metadata.campaign_id,
                ..Default::default()
            }),
        }
    }

    /// Encoded request and response sizes of one call of `scenario`, for
    /// sizing the echo stand-in.
    pub async fn sizes(&self, scenario: Scenario) -> anyhow::Result<(usize, usize)> {
        let mut client = self.client(0);
        let best = self.best_request();
        let best_sizes = (
            best.encoded_len(),
            client
                .get_best_channel(best)
                .await?
                .into_inner()
                .encoded_len(),
        );
        let record = self.event(0, u64::MAX, 0);
        let record_req = record.encoded_len();
        let record_sizes = (
            record_req,
            client
                .record_event(record)
                .await?
                .into_inner()
                .encoded_len(),
        );
        Ok(match scenario {
            Scenario::BestChannel | Scenario::RecordEvents => best_sizes,
            Scenario::Reachability => {
                let req = proto::GetReachabilityRequest {
                    contact_id: self.random_contact(),
                    ..Default::default()
                };
                (
                    req.encoded_len(),
                    client
                        .get_reachability(req)
                        .await?
                        .into_inner()
                        .encoded_len(),
                )
            }
            Scenario::RecordEvent => record_sizes,
            // Four reads to one write.
            Scenario::Mixed => (
                (4 * best_sizes.0 + record_sizes.0) / 5,
                (4 * best_sizes.1 + record_sizes.1) / 5,
            ),
        })
    }

    pub async fn run(&self, scenario: Scenario, load: Load) -> Measured {
        let target = self.clone();
        drive(load, move |worker, seq| {
            let target = target.clone();
            async move { target.call(scenario, worker, seq).await }
        })
        .await
    }

    pub(crate) async fn call(
        &self,
        scenario: Scenario,
        worker: usize,
        seq: u64,
    ) -> Result<u64, tonic::Status> {
        let mut client = self.client(worker);
        match scenario {
            Scenario::BestChannel => client
                .get_best_channel(self.best_request())
                .await
                .map(|_| 1),
            Scenario::Reachability => client
                .get_reachability(proto::GetReachabilityRequest {
                    contact_id: self.random_contact(),
                    ..Default::default()
                })
                .await
                .map(|_| 1),
            Scenario::RecordEvent => client
                .record_event(self.event(worker, seq, 0))
                .await
                .map(|_| 1),
            Scenario::RecordEvents => {
                let per_contact = self.bulk_per_contact.max(1);
                let mut contact = String::new();
                let events: Vec<_> = (0..self.bulk_size)
                    .map(|k| {
                        if k % per_contact == 0 {
                            contact = self.random_contact();
                        }
                        self.event_for(contact.clone(), worker, seq, k)
                    })
                    .collect();
                let reply = client
                    .record_events(tokio_stream::iter(events))
                    .await?
                    .into_inner();
                Ok(reply.accepted + reply.duplicates)
            }
            Scenario::Mixed if Scenario::mixed_writes(seq) => client
                .record_event(self.event(worker, seq, 0))
                .await
                .map(|_| 1),
            Scenario::Mixed => client
                .get_best_channel(self.best_request())
                .await
                .map(|_| 1),
        }
    }
}

/// The echo service with requests and replies of the given sizes.
pub async fn run_echo(
    connections: Arc<Vec<Connection>>,
    load: Load,
    request_bytes: usize,
    reply_bytes: usize,
) -> Measured {
    let payload = Arc::new(vec![b'x'; request_bytes]);
    drive(load, move |worker, _| {
        let mut client = EchoServiceClient::new(connections[worker % connections.len()].clone());
        let payload = payload.clone();
        async move {
            client
                .echo(EchoRequest {
                    payload: payload.to_vec(),
                    reply_bytes: reply_bytes as u32,
                })
                .await
                .map(|_| 1)
        }
    })
    .await
}
