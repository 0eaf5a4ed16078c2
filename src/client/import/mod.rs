//! `reach import FILE`: backfills through the API, resumable.
//!
//! Lines are sent in batches, several in flight; normalized events as one
//! `RecordEvents` stream per batch, provider callbacks as
//! `RecordProviderEvent` calls. Batches complete in file order, and after
//! each one the checkpoint (`FILE.import-state`) records how far the file is
//! acknowledged, so an interrupted import resumes there. A batch that was
//! in flight is sent again on resume: ingestion is idempotent, so it counts
//! as duplicates, never twice.

mod checkpoint;
mod source;

use std::{
    collections::VecDeque,
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tonic::Code;

pub use checkpoint::Totals;
use checkpoint::{Checkpoint, fingerprint};
pub use source::{Format, Payload, parse_bytes};
use source::{Item, Source};

use crate::{
    client::{
        ClientArgs,
        connect::{Client, describe},
    },
    proto,
};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// JSON Lines (a ChannelEvent or RecordEventRequest per line) or CSV
    /// (columns named after ChannelEvent fields).
    pub file: PathBuf,
    /// jsonl or csv; from the file's extension if omitted.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The file is a raw export of this provider's callbacks (a JSON body per
    /// line, or a CSV of form fields per callback), sent through
    /// RecordProviderEvent and its mapping tables.
    #[arg(long)]
    pub provider: Option<String>,
    /// Lines per batch. At most 100, so that every rejected line of a batch
    /// is itemized (the server details the first 100 of a stream).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub batch: u16,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub in_flight: u16,
    /// Where rejected lines go (JSON lines: line, field, reason, text)
    /// [default: FILE.rejected.jsonl].
    #[arg(long)]
    pub rejected: Option<PathBuf>,
    /// The checkpoint file [default: FILE.import-state].
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Ignore a saved checkpoint and start from the first line.
    #[arg(long)]
    pub restart: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A rejected line, as written to the rejected-lines file.
#[derive(serde::Serialize)]
struct Rejected {
    line: u64,
    field: String,
    reason: String,
    text: String,
}

/// What a batch came to.
#[derive(Default)]
struct Outcome {
    totals: Totals,
    rejected: Vec<Rejected>,
}

/// A batch on its way: where the file is acknowledged once it completes.
struct Pending {
    task: JoinHandle<anyhow::Result<Outcome>>,
    end: (u64, u64),
    lines: u64,
}

struct Batch {
    items: Vec<Item>,
}

impl Batch {
    fn end(&self) -> (u64, u64) {
        self.items
            .last()
            .map_or((0, 0), |item| (item.end, item.end_line))
    }
}

pub async fn run(client_args: &ClientArgs, args: ImportArgs) -> anyhow::Result<Totals> {
    let format = match args.format {
        Some(format) => format,
        None => Format::of(&args.file)?,
    };
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| beside(&args.file, ".import-state"));
    let rejected_path = args
        .rejected
        .clone()
        .unwrap_or_else(|| beside(&args.file, ".rejected.jsonl"));
    let file_len = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();

    let mut checkpoint = match Checkpoint::load(&state_path)? {
        Some(saved) if !args.restart => {
            saved.check_applies(&args.file, format, args.provider.as_deref())?;
            eprintln!(
                "resuming {} at line {} ({} of {} bytes done); --restart to start over",
                args.file.display(),
                saved.line + 1,
                saved.offset,
                file_len
            );
            saved
        }
        _ => Checkpoint::new(format, args.provider.clone()),
    };
    let mut rejected_file = checkpoint.open_rejected(&rejected_path)?;
    let client = client_args.connect().await?;
    let mut source = Source::open(
        &args.file,
        format,
        args.provider.clone(),
        checkpoint.offset,
        checkpoint.line,
    )?;

    let progress = progress_bar(file_len, checkpoint.offset);
    let started = Instant::now();
    let mut sent_this_run = 0u64;
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    let mut done = false;
    while !done || !in_flight.is_empty() {
        if !done && in_flight.len() < usize::from(args.in_flight) {
            let mut items = Vec::with_capacity(usize::from(args.batch));
            while items.len() < usize::from(args.batch) {
                match source.next_item()? {
                    Some(item) => items.push(item),
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            if !items.is_empty() {
                let batch = Batch { items };
                in_flight.push_back(Pending {
                    end: batch.end(),
                    lines: batch.items.len() as u64,
                    task: tokio::spawn(send(client.clone(), batch)),
                });
            }
            continue;
        }
        let Some(Pending {
            task,
            end: (offset, line),
            lines,
        }) = in_flight.pop_front()
        else {
            break;
        };
        let outcome = task.await.context("a batch task failed")?.with_context(|| {
            format!(
                "import stopped at line {}; what was acknowledged is kept: run the same command again to resume",
                checkpoint.line + 1
            )
        })?;
        for rejected in &outcome.rejected {
            serde_json::to_writer(&mut rejected_file, rejected)?;
            rejected_file.write_all(b"\n")?;
        }
        rejected_file.flush()?;
        checkpoint.advance(
            offset,
            line,
            &outcome.totals,
            rejected_file.metadata()?.len(),
        );
        checkpoint.fingerprint = fingerprint(&args.file, checkpoint.offset)?;
        checkpoint.save(&state_path)?;
        sent_this_run += lines;
        progress.set_position(offset);
        let rate = sent_this_run as f64 / started.elapsed().as_secs_f64().max(1e-3);
        progress.set_message(format!(
            "{} lines, {rate:.0}/s, {} rejected",
            checkpoint.line, checkpoint.totals.rejected
        ));
    }
    progress.finish_and_clear();
    let totals = checkpoint.totals.clone();
    if totals.rejected == 0 {
        drop(rejected_file);
        let _ = std::fs::remove_file(&rejected_path);
    }
    summarize(
        &args,
        &totals,
        started.elapsed(),
        sent_this_run,
        &rejected_path,
    )?;
    Ok(totals)
}

fn progress_bar(len: u64, at: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {percent:>3}% {msg}, ETA {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_position(at);
    bar
}

fn summarize(
    args: &ImportArgs,
    totals: &Totals,
    elapsed: std::time::Duration,
    sent: u64,
    rejected_path: &Path,
) -> anyhow::Result<()> {
    if args.json {
        out!("{}", serde_json::to_string_pretty(totals)?);
        return Ok(());
    }
    let secs = elapsed.as_secs_f64();
    out!(
        "imported {}: {} lines, {} recorded, {} duplicates, {} dead-lettered, {} rejected",
        args.file.display(),
        totals.lines,
        totals.accepted,
        totals.duplicates,
        totals.dead_lettered,
        totals.rejected
    );
    out!(
        "this run: {sent} lines in {secs:.1}s ({:.0}/s)",
        sent as f64 / secs.max(1e-3)
    );
    if totals.rejected > 0 {
        out!("rejected lines: {}", rejected_path.display());
    }
    Ok(())
}

/// Sends one batch; an error is a failure of the call itself (server down,
/// unauthenticated...), which stops the import before the checkpoint moves.
async fn send(mut client: Client, batch: Batch) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    outcome.totals.lines = batch.items.len() as u64;
    let mut events = Vec::new();
    let mut event_lines = Vec::new();
    for item in &batch.items {
        match &item.payload {
            Err(reason) => outcome.reject(item, "", reason),
            Ok(Payload::Event(event)) => {
                events.push(proto::RecordEventRequest {
                    event: Some(event.clone()),
                });
                event_lines.push(item);
            }
            Ok(Payload::Provider(request)) => {
                match client.record_provider_event(request.clone()).await {
                    Ok(response) => outcome.provider_results(&response.into_inner()),
                    Err(status) if status.code() == Code::InvalidArgument => {
                        outcome.reject(item, "", status.message())
                    }
                    Err(status) => {
                        return Err(describe(&status).context(format!("line {}", item.line)));
                    }
                }
            }
        }
    }
    if !events.is_empty() {
        let response = client
            .record_events(tokio_stream::iter(events))
            .await
            .map_err(|status| describe(&status))?
            .into_inner();
        outcome.totals.accepted += response.accepted;
        outcome.totals.duplicates += response.duplicates;
        let mut itemized = 0;
        for error in &response.errors {
            if let Some(item) = event_lines.get(error.index as usize) {
                outcome.reject(item, &error.field, &error.message);
                itemized += 1;
            }
        }
        // The server itemizes at most 100 per stream and batches hold at
        // most 100, so this only guards against a server that says less.
        outcome.totals.rejected += response.rejected.saturating_sub(itemized);
    }
    Ok(outcome)
}

impl Outcome {
    fn reject(&mut self, item: &Item, field: &str, reason: &str) {
        self.totals.rejected += 1;
        self.rejected.push(Rejected {
            line: item.line,
            field: field.to_string(),
            reason: reason.to_string(),
            text: item.text.clone(),
        });
    }

    fn provider_results(&mut self, response: &proto::ProviderEventResponse) {
        for result in &response.results {
            if result.dead_lettered {
                self.totals.dead_lettered += 1;
            } else if result.duplicate {
                self.totals.duplicates += 1;
            } else {
                self.totals.accepted += 1;
            }
        }
    }
}
