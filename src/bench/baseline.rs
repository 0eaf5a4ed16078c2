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
        Commit, CommitOp, ContactKey, DedupeKey, SledConfig, SledStore, Store, Tenant, codec,
        group_commit::GroupCommit,
    },
};

/// Raw sled inserts of `value_bytes`-byte values under random keys, each
/// writer waiting for a group-commit flush before its next insert: the
/// ceiling for durable single writes on this disk.
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
    let group = Arc::new(GroupCommit::start("bench-flusher", move || {
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

/// On-disk bytes per dedupe marker, and how long dropping a whole expired
/// generation of them takes.
#[derive(Clone, Debug)]
pub struct MarkerFootprint {
    pub markers: u64,
    pub bytes_per_marker: f64,
    pub expire_seconds: f64,
    pub generations_dropped: usize,
}

pub async fn marker_footprint(dir: &Path, markers: u64) -> anyhow::Result<MarkerFootprint> {
    let config = SledConfig::default();
    let store = SledStore::open(dir, &config)?;
    let now = Millis::now();
    store.flush_blocking()?;
    let before = store.size_on_disk()?;
    let key = ContactKey::new(&Tenant::default(), "marker-bench");
    let mut batch = Vec::with_capacity(10_000);
    let mut version = None;
    for i in 0..markers {
        batch.push(DedupeKey::new(&key, &format!("event-{i}")));
        if batch.len() == 10_000 || i + 1 == markers {
            let op = CommitOp {
                key: key.clone(),
                expected: version,
                value: Vec::new(),
                markers: std::mem::take(&mut batch),
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
        markers,
        bytes_per_marker: after.saturating_sub(before) as f64 / markers as f64,
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
        };
        profile.apply(&event, &model);
    }
    codec::encode_profile(&profile).len()
}
