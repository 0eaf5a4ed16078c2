//! The limits reach is compared with that are not the echo service: raw sled
//! durable inserts, the on-disk cost of dedupe markers, and how a profile's
//! encoded size behaves as its history grows.

use std::{path::Path, sync::Arc, time::Instant};

use crate::{
    bench::load::{Load, Measured, drive},
    domain::{
        Channel, ChannelEvent, ContactProfile, Millis, ScoringModel, Status, event::EventMetadata,
    },
    storage::{
        AsRead, Commit, CommitOp, ContactKey, DedupeKey, SledConfig, SledStore, Store, Tenant,
        codec, group_commit::GroupCommit,
    },
};

/// Raw sled inserts of `value_bytes`-byte values under random keys, each
/// writer waiting for a group-commit flush (gathered as reach's store
/// gathers them by default) before its next insert: the ceiling for durable
/// single writes on this disk.
pub async fn sled_group_commit(
    dir: &Path,
    load: Load,
    value_bytes: usize,
) -> anyhow::Result<Measured> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(64 << 20)
        .open()?;
    let flush_db = db.clone();
    let gather = SledConfig::default().commit_gather;
    let group = Arc::new(GroupCommit::start("bench-flusher", gather, move || {
        flush_db.flush().map(drop).map_err(|e| e.to_string())
    })?);
    let value = Arc::new(vec![7u8; value_bytes]);
    let measured = drive(load, move |worker, seq| {
        let (db, group, value) = (db.clone(), group.clone(), value.clone());
        async move {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&(worker as u64).to_be_bytes());
            key[8..].copy_from_slice(&seq.to_be_bytes());
            db.insert(key, value.as_slice())
                .map_err(|e| e.to_string())?;
            group.sync().await?;
            Ok::<u64, String>(1)
        }
    })
    .await;
    Ok(measured)
}

/// On-disk cost of dedupe markers: the marginal bytes of `markers` markers
/// held by contacts with four each (the common, inline case), the bytes per
/// marker of one busy contact whose markers spill to the shared buckets, and
/// how long dropping the expired spill generation takes.
#[derive(Clone, Debug)]
pub struct MarkerFootprint {
    pub markers: u64,
    pub inline_bytes_per_marker: f64,
    pub spilled_bytes_per_marker: f64,
    pub expire_seconds: f64,
    pub generations_dropped: usize,
}

const MARKERS_PER_CONTACT: u64 = 4;

/// Writes `contacts` contacts with a 100-byte profile and `per_contact`
/// markers each; returns the store's size on disk.
async fn store_with_markers(
    dir: &Path,
    contacts: u64,
    per_contact: u64,
    now: Millis,
) -> anyhow::Result<u64> {
    let store = SledStore::open(dir, &SledConfig::default())?;
    let tenant = Tenant::default();
    let mut ops = Vec::with_capacity(1000);
    for c in 0..contacts {
        let key = ContactKey::new(&tenant, &format!("contact-{c:08}"));
        let markers = (0..per_contact)
            .map(|i| DedupeKey::new(&key, &format!("event-{i}")))
            .collect();
        ops.push(CommitOp {
            key,
            expected: None,
            value: vec![7; 100],
            markers,
            read: AsRead::default(),
        });
        if ops.len() == 1000 || c + 1 == contacts {
            store.commit_many(std::mem::take(&mut ops), now).await?;
        }
    }
    store.sync().await?;
    Ok(store.size_on_disk()?)
}

pub async fn marker_footprint(dir: &Path, markers: u64) -> anyhow::Result<MarkerFootprint> {
    let now = Millis::now();
    let contacts = (markers / MARKERS_PER_CONTACT).max(1);
    let without = store_with_markers(&dir.join("without"), contacts, 0, now).await?;
    let with = store_with_markers(&dir.join("with"), contacts, MARKERS_PER_CONTACT, now).await?;
    let inline_markers = contacts * MARKERS_PER_CONTACT;

    let config = SledConfig::default();
    let store = SledStore::open(dir.join("busy"), &config)?;
    store.flush_blocking()?;
    let before = store.size_on_disk()?;
    let key = ContactKey::new(&Tenant::default(), "busy-contact");
    let spilled = markers.min(200_000);
    let mut version = None;
    let mut batch = Vec::with_capacity(1_000);
    for i in 0..spilled {
        batch.push(DedupeKey::new(&key, &format!("event-{i}")));
        if batch.len() == 1_000 || i + 1 == spilled {
            let op = CommitOp {
                key: key.clone(),
                expected: version,
                value: Vec::new(),
                markers: std::mem::take(&mut batch),
                read: AsRead::default(),
            };
            match store.commit_many(vec![op], now).await?[..] {
                [Commit::Applied(v)] => version = Some(v),
                _ => anyhow::bail!("marker bench commit conflicted"),
            }
        }
    }
    store.sync().await?;
    let after = store.size_on_disk()?;
    let started = Instant::now();
    let later = now.saturating_add(config.dedupe_window * 2);
    let generations_dropped = store.expire_markers(later).await?;
    Ok(MarkerFootprint {
        markers: inline_markers,
        inline_bytes_per_marker: with.saturating_sub(without) as f64 / inline_markers as f64,
        spilled_bytes_per_marker: after.saturating_sub(before) as f64 / spilled as f64,
        expire_seconds: started.elapsed().as_secs_f64(),
        generations_dropped,
    })
}

/// Encoded size of a profile after `events` events of a typical mix.
pub fn profile_bytes_after(events: u64) -> usize {
    let model = ScoringModel::default();
    let mut profile = ContactProfile::default();
    let statuses = [
        Status::Delivered,
        Status::Delivered,
        Status::Sent,
        Status::PendingRetry,
        Status::BouncedHard,
        Status::Opened,
        Status::Unconfirmed,
        Status::BlockedCompliance,
    ];
    let start = Millis::now().0 - 365 * 86_400_000;
    for i in 0..events {
        let event = ChannelEvent {
            event_id: String::new(),
            contact_id: String::new(),
            channel: Channel::ALL[(i % 3) as usize],
            status: statuses[(i % statuses.len() as u64) as usize],
            occurred_at: Millis(start + (i as i64 * 7919) % (365 * 86_400_000)),
            sent_at: None,
            metadata: EventMetadata::default(),
            address: Default::default(),
        };
        profile.apply(&event, &model);
    }
    codec::encode_profile(&profile).len()
}
