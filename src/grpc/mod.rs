//! The gRPC transport: `reachability.v1` handlers, health and reflection.

mod admin;
mod contacts;
mod convert;
mod delivery;
mod policies;
mod providers;
pub mod reply_frames;
pub mod request_metrics;
mod senders;
mod service;
mod status;

pub use admin::AdminApi;
pub use convert::{
    channel_to as channel_to_proto, event_from, millis_from, status_to as status_to_proto,
    timestamp,
};
pub use providers::request_from;
pub use service::ReachabilityApi;
