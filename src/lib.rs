//! reach: per-contact channel reachability over gRPC.
#![forbid(unsafe_code)]

pub mod domain;

/// Generated protobuf and gRPC code for `reachability.v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("reachability.v1");

    /// The echo baseline of `reach bench` (not served by `reach serve`).
    pub mod bench {
        tonic::include_proto!("reachbench.v1");
    }

    /// Encoded descriptor set of `proto/`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("reachability_descriptor");
}
pub mod admin;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod memory;
pub mod providers;
pub mod server;
pub mod sim;
pub mod storage;
pub mod telemetry;
pub mod webhooks;
