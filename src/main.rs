//! `reach`: args -> config -> telemetry -> bind -> serve.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc: glibc malloc's arena locks showed up as 12% of a read-heavy
/// profile (contended between tokio workers). Against mimalloc, which was
/// used first, it gave the same throughput with 70 MiB less RSS on the
/// 1,000,000-contact store, and an RSS that stays flat while the store
/// grows (mimalloc's stepped up by 12% in the 30-minute soak while the live
/// heap stayed flat; docs/reliability.md). The `system-allocator` feature
/// leaves glibc's in place, for heap profilers that hook malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    reach::cli::Cli::parse().run()
}
