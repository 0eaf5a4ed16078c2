//! How far an import is acknowledged, saved after every batch.

use std::{
    fs::{File, OpenOptions},
    io::Read,
    path::Path,
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Format;

/// Running counts of an import, over every run of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub rejected: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.lines += other.lines;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.dead_lettered += other.dead_lettered;
        self.rejected += other.rejected;
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    format: String,
    provider: Option<String>,
    /// Bytes of the file acknowledged.
    pub offset: u64,
    /// Lines of the file acknowledged.
    pub line: u64,
    /// BLAKE3 of the acknowledged bytes' first 64 KiB: resuming on a
    /// different file is refused.
    pub fingerprint: String,
    /// Length of the rejected-lines file at this checkpoint: lines written
    /// after it (by a batch not yet checkpointed) are dropped on resume and
    /// written again.
    rejected_len: u64,
    pub totals: Totals,
}

const FINGERPRINT_BYTES: u64 = 64 * 1024;

/// BLAKE3 of the first `min(64 KiB, len)` bytes of `path`.
pub fn fingerprint(path: &Path, len: u64) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(len.min(FINGERPRINT_BYTES))
        .read_to_end(&mut bytes)?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
    }
}

impl Checkpoint {
    pub fn new(format: Format, provider: Option<String>) -> Self {
        Checkpoint {
            format: format_name(format).into(),
            provider,
            offset: 0,
            line: 0,
            fingerprint: String::new(),
            rejected_len: 0,
            totals: Totals::default(),
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not an import checkpoint", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Refuses to resume on another file, format or provider.
    pub fn check_applies(
        &self,
        file: &Path,
        format: Format,
        provider: Option<&str>,
    ) -> anyhow::Result<()> {
        if self.format != format_name(format) || self.provider.as_deref() != provider {
            bail!(
                "the checkpoint is of a {} import{}: pass the same --format/--provider, or --restart",
                self.format,
                self.provider
                    .as_deref()
                    .map(|p| format!(" of {p}"))
                    .unwrap_or_default()
            );
        }
        let len = std::fs::metadata(file)?.len();
        if len < self.offset || fingerprint(file, self.offset)? != self.fingerprint {
            bail!(
                "{} changed since the checkpoint (it is not the file that was {} bytes into): pass --restart to import it from the start",
                file.display(),
                self.offset
            );
        }
        Ok(())
    }

    /// Opens the rejected-lines file for appending, cut back to what this
    /// checkpoint covers.
    pub fn open_rejected(&self, path: &Path) -> anyhow::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.set_len(self.rejected_len)?;
        Ok(file)
    }

    pub fn advance(&mut self, offset: u64, line: u64, batch: &Totals, rejected_len: u64) {
        self.offset = offset;
        self.line = line;
        self.totals.add(batch);
        self.rejected_len = rejected_len;
    }

    /// Writes the checkpoint atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", Path::new(&tmp).display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}
