//! `reach`: args -> config -> telemetry -> bind -> serve.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: glibc malloc's arena locks showed up as 12% of a read-heavy
/// profile (contended between tokio workers); mimalloc's per-thread heaps
/// remove that. The `system-allocator` feature leaves glibc's in place, for
/// heap profilers that hook malloc (heaptrack; docs/reliability.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    reach::cli::Cli::parse().run()
}
