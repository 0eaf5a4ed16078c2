//! Compiles `proto/` with protox (no system `protoc` needed), generates the
//! tonic servers and clients, and writes the encoded descriptor set that
//! server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

/// The served API; its descriptor set is what reflection shows.
const API: &[&str] = &[
    "proto/reachability/v1/events.proto",
    "proto/reachability/v1/delivery.proto",
    "proto/reachability/v1/providers.proto",
    "proto/reachability/v1/contacts.proto",
    "proto/reachability/v1/senders.proto",
    "proto/reachability/v1/policies.proto",
    "proto/reachability/v1/reachability_service.proto",
    "proto/reachability/v1/admin_service.proto",
];
/// The benchmark's echo baseline: generated, never served by `reach serve`.
const BENCH: &[&str] = &["proto/reachbench/v1/echo.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let api = protox::compile(API, ["proto"])?;
    // compile_fds ignores file_descriptor_set_path, so the set for
    // reflection is written here by hand.
    fs::write(
        out_dir.join("reachability_descriptor.bin"),
        api.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(api)?;
    tonic_prost_build::configure().compile_fds(protox::compile(BENCH, ["proto"])?)?;
    Ok(())
}
