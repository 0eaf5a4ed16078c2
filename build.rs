//! Compiles `proto/` with protox (no system `protoc` needed), generates the
//! tonic server and client, and writes the encoded descriptor set that server
//! reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/reachability/v1/events.proto",
    "proto/reachability/v1/reachability_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    // compile_fds ignores file_descriptor_set_path, so the set for
    // reflection is written here by hand.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("reachability_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
