//! `reach backup`: a consistent snapshot from a running server, verified
//! before it is kept; `reach restore`: into an empty data directory.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use clap::Args;

use crate::{
    client::{ClientArgs, connect::describe},
    config::{Config, Overrides},
    proto,
    storage::{SledStore, backup},
};

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup; written to FILE.partial and renamed once
    /// complete and verified.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file (from `reach backup`).
    pub backup: PathBuf,
    /// The data directory to create; must be empty or absent. Stop the
    /// server first; start it on this directory afterwards.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server's config file (for data_dir and store settings).
    #[arg(long, env = "REACH_CONFIG")]
    pub config: Option<PathBuf>,
}

pub async fn backup(client: &ClientArgs, args: BackupArgs) -> anyhow::Result<()> {
    let mut partial = args.out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut stream = client
        .connect_admin()
        .await?
        .create_backup(proto::CreateBackupRequest {})
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    let mut summary = None;
    while let Some(message) = stream.message().await.map_err(|s| describe(&s))? {
        file.write_all(&message.chunk)?;
        if message.summary.is_some() {
            summary = message.summary;
        }
    }
    file.sync_all()?;
    drop(file);
    let summary = summary.context("the server ended the backup stream early")?;
    let verified = backup::read(std::fs::File::open(&partial)?, |_| Ok(()))
        .context("the downloaded backup does not verify")?;
    anyhow::ensure!(
        verified.blake3 == summary.blake3 && verified.bytes == summary.bytes,
        "the downloaded backup differs from what the server wrote"
    );
    std::fs::rename(&partial, &args.out)?;
    out!(
        "backup {}: {} entries, {} bytes, writes paused {} ms, blake3 {}",
        args.out.display(),
        summary.entries,
        summary.bytes,
        summary.write_pause_ms,
        summary.blake3
    );
    Ok(())
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        ..Default::default()
    };
    let config = Config::load(args.config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    let stats = SledStore::restore(&args.backup, &config.data_dir, &config.store)?;
    out!(
        "restored {} entries into {} (backup blake3 {})",
        stats.entries,
        config.data_dir.display(),
        stats.blake3
    );
    Ok(())
}
