//! The core integration suite once more, on a real Redis Cluster (6 nodes
//! on loopback, started once for this process): the same tests, the same
//! assertions, with `store.backend = "redis"`. The shared harness
//! (`common::on_redis`) switches the backend for everything included here.
//!
//! Suites that are about sled itself (crash recovery of its log, disk full,
//! corrupt pages, backups of the data directory) stay sled-only; the
//! Redis-specific behaviour (two replicas, failover) is in
//! `tests/redis_cluster.rs`.

// Each suite includes the shared harness, as it does in its own binary;
// the copies share the one cluster through `reach::bench::redis_cluster`.
#![allow(clippy::duplicate_mod)]

#[path = "addresses.rs"]
mod addresses;
#[path = "auth.rs"]
mod auth;
#[path = "bad_input.rs"]
mod bad_input;
#[path = "clock.rs"]
mod clock;
#[path = "delivery.rs"]
mod delivery;
#[path = "ingest.rs"]
mod ingest;
#[path = "limits.rs"]
mod limits;
#[path = "policies.rs"]
mod policies;
#[path = "providers.rs"]
mod providers;
#[path = "scoring.rs"]
mod scoring;
#[path = "senders.rs"]
mod senders;
