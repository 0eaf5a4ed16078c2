//! The data generator: N contacts with realistic histories, written straight
//! into a store directory (the server is not running), so that reads hit a
//! store of real size. Seeded: the same spec gives the same store.
//!
//! A history's events name what the bench's own events name (each channel's
//! address, the route, the provider and campaign), as production events do:
//! a contact preloaded without them would be smaller than any contact the
//! bench then writes to, and a store would grow under the bench only
//! because its contacts learnt their addresses late.

use std::{path::Path, time::Instant};

use fastrand::Rng;

use crate::{
    config::Config,
    domain::{
        Channel, ChannelEvent, ContactProfile, EventAddress, Millis, ScoringModel, Status,
        address::{AddressBook, AddressConfig},
        event::EventMetadata,
    },
    storage::{
        AsRead, CommitOp, ContactKey, DedupeKey, SledConfig, SledStore, Store, Tenant, codec,
    },
};

const DAY_MS: i64 = 86_400_000;
/// Histories span this many days back from now.
const HISTORY_DAYS: i64 = 180;
/// Events younger than this get dedupe markers, as live ingestion would leave.
const MARKER_DAYS: i64 = 30;
const BATCH: usize = 2_000;

/// What a preload wrote.
#[derive(Clone, Debug)]
pub struct Preloaded {
    pub contacts: u64,
    pub events: u64,
    pub markers: u64,
    /// Mean encoded profile size (what a raw insert of "a profile" writes).
    pub record_bytes_mean: u64,
    pub bytes_on_disk: u64,
    pub seconds: f64,
}

pub fn contact_id(i: u64) -> String {
    format!("contact-{i:08}")
}

/// The address an event of `contact_id` on `channel` goes to: one per
/// contact and channel.
pub(crate) fn address_for(contact_id: &str, channel: Channel) -> String {
    let digits: String = contact_id.chars().filter(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().unwrap_or(0);
    match channel {
        Channel::Email => format!("c{n}@example.com"),
        Channel::Push => format!("token-{n:016x}"),
        // One number per contact: exchange 200-999, line 0000-9999.
        Channel::Sms | Channel::Voice => {
            format!("+1650{:03}{:04}", 200 + (n / 10_000) % 800, n % 10_000)
        }
    }
}

/// What every bench event names besides its address.
pub(crate) fn bench_metadata() -> EventMetadata {
    EventMetadata {
        provider: "bench".into(),
        carrier: "carrier-a".into(),
        country: "US".into(),
        campaign_id: "campaign-1".into(),
        ..Default::default()
    }
}

/// Channel mix and status mix of a typical marketing contact base.
fn history(rng: &mut Rng, now: Millis, events_mean: u32) -> Vec<(Channel, Status, Millis)> {
    let mut channels: Vec<Channel> = [
        (Channel::Email, 90),
        (Channel::Sms, 70),
        (Channel::Push, 40),
        (Channel::Voice, 15),
    ]
    .into_iter()
    .filter(|&(_, pct)| rng.u32(0..100) < pct)
    .map(|(c, _)| c)
    .collect();
    if channels.is_empty() {
        channels.push(Channel::Email);
    }
    let troubled = rng.u32(0..100) < 5;
    let n = rng.u32(events_mean / 4..=events_mean * 7 / 4).max(1);
    (0..n)
        .map(|_| {
            let channel = channels[rng.usize(0..channels.len())];
            let at = Millis(now.0 - rng.i64(0..HISTORY_DAYS * DAY_MS));
            (channel, status(rng, channel, troubled), at)
        })
        .collect()
}

fn status(rng: &mut Rng, channel: Channel, troubled: bool) -> Status {
    if troubled && rng.u32(0..100) < 40 {
        return Status::BouncedHard;
    }
    let engagement_ok = matches!(channel, Channel::Email | Channel::Push);
    match rng.u32(0..1000) {
        0..700 => Status::Delivered,
        700..780 => Status::Sent,
        780..830 => Status::PendingRetry,
        830..860 => Status::Unconfirmed,
        860..880 => Status::BouncedHard,
        880..950 if engagement_ok => Status::Opened,
        950..970 if engagement_ok => Status::Clicked,
        970..980 => Status::BlockedCompliance,
        980..985 => Status::SenderError,
        985..990 => Status::OptOut,
        990..992 => Status::Complaint,
        992..1000 => Status::OptIn,
        _ => Status::Delivered,
    }
}

/// Writes `contacts` contacts with about `events_mean` events each into `dir`.
pub async fn preload(
    dir: &Path,
    contacts: u64,
    events_mean: u32,
    seed: u64,
) -> anyhow::Result<Preloaded> {
    let started = Instant::now();
    let store = SledStore::open(dir, &SledConfig::default())?;
    // The key the server will hash addresses with, written where it looks.
    let key = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
    .address_key()
    .map_err(anyhow::Error::msg)?;
    let addresses = AddressBook::new(key, AddressConfig::default());
    let metadata = bench_metadata();
    let model = ScoringModel::default();
    let tenant = Tenant::default();
    let now = Millis::now();
    let mut rng = Rng::with_seed(seed);
    let (mut events, mut marker_count, mut record_bytes) = (0u64, 0u64, 0u64);
    let mut ops = Vec::with_capacity(BATCH);
    for i in 0..contacts {
        let key = ContactKey::new(&tenant, &contact_id(i));
        let mut profile = ContactProfile::default();
        let mut markers = Vec::new();
        for (j, (channel, status, at)) in
            history(&mut rng, now, events_mean).into_iter().enumerate()
        {
            let raw = address_for(&key.contact_id, channel);
            let resolved = addresses
                .resolve(channel, &raw, &metadata.country)
                .map_err(|e| anyhow::anyhow!("bench address {raw}: {e}"))?;
            let event = ChannelEvent {
                event_id: format!("pre-{j}"),
                contact_id: key.contact_id.clone(),
                channel,
                status,
                occurred_at: at,
                sent_at: None,
                metadata: metadata.clone(),
                address: EventAddress {
                    raw: Default::default(),
                    resolved: Some(resolved),
                },
            };
            profile.apply(&event, &model);
            events += 1;
            if now.0 - at.0 < MARKER_DAYS * DAY_MS {
                markers.push(DedupeKey::new(&key, &event.event_id));
            }
        }
        let value = codec::encode_profile(&profile);
        record_bytes += value.len() as u64;
        marker_count += markers.len() as u64;
        ops.push(CommitOp {
            key,
            expected: None,
            value,
            markers,
            read: AsRead::default(),
        });
        if ops.len() == BATCH {
            store.commit_many(std::mem::take(&mut ops), now).await?;
        }
    }
    store.commit_many(ops, now).await?;
    store.sync().await?;
    drop(store);
    Ok(Preloaded {
        contacts,
        events,
        markers: marker_count,
        record_bytes_mean: record_bytes / contacts.max(1),
        bytes_on_disk: dir_size(dir)?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Bytes of all files under `dir`.
/// What a store directory takes on disk and what it holds (every key and
/// value), read with the server stopped. Blocking.
pub fn store_contents(dir: &Path) -> anyhow::Result<StoreContents> {
    let store = SledStore::open(dir, &SledConfig::default())?;
    Ok(StoreContents {
        live_bytes: store.live_bytes()?,
        disk_bytes: dir_size(dir)?,
    })
}

#[derive(Clone, Copy, Debug)]
pub struct StoreContents {
    pub live_bytes: u64,
    pub disk_bytes: u64,
}

pub fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
