//! The reachability model in plain Rust: taxonomy, contact profiles, scoring
//! and suppression. Nothing here knows about gRPC or the store.

pub mod action;
pub mod address;
pub mod contact;
pub mod decimals;
pub mod e164;
pub mod event;
pub mod evidence;
pub mod latency;
pub mod message;
pub mod model;
pub mod numbering_plan;
pub mod policy;
pub mod profile;
pub mod quiet_hours;
pub mod route_health;
pub mod route_outlook;
pub mod route_silence;
pub mod scoring;
pub mod sender;
pub mod sender_health;
pub mod stats;
pub mod suppression;
pub mod taxonomy;
pub mod time;

pub use event::{ChannelEvent, EventAddress, EventLimits, InvalidField};
pub use model::ScoringModel;
pub use profile::{ChannelState, ContactProfile};
pub use scoring::{BestChannel, ChannelAssessment, Reachability};
pub use taxonomy::{Channel, Effect, Status};
pub use time::Millis;
