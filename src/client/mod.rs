//! The client side of `reach`: subcommands for people (tables by default,
//! `--json` for scripts) and `reach import` for backfills.

pub mod backup;
pub mod commands;
pub mod connect;
pub mod import;
pub mod json;

pub use connect::{Client, ClientArgs};
