//! The gRPC transport: `reachability.v1` handlers, health and reflection.

mod convert;
mod delivery;
mod providers;
mod service;
mod status;

pub use convert::{millis_from, timestamp};
pub use service::ReachabilityApi;
