//! Dedupe markers in time generations, so that they expire in bulk.
//!
//! Markers written during one generation (a quarter of the dedupe window)
//! share a sled tree named `markers/<generation>`. A whole tree is dropped
//! once its newest marker is older than the window, so a marker lives between
//! one window and 1.25 windows, and expiry costs one tree drop per generation
//! instead of one delete per marker.

use std::{collections::BTreeMap, sync::RwLock, time::Duration};

use crate::{domain::Millis, storage::StoreError};

const PREFIX: &str = "markers/";
/// Generations per dedupe window: more means tighter expiry but more trees to
/// probe on every lookup.
const GENERATIONS_PER_WINDOW: i64 = 4;
/// A tree is dropped this long after it stopped being live, so no operation
/// that picked it up just before can still be using it.
const DROP_GRACE_MS: i64 = 60_000;

pub struct MarkerGenerations {
    db: sled::Db,
    window_ms: i64,
    span_ms: i64,
    open: RwLock<BTreeMap<i64, sled::Tree>>,
}

impl MarkerGenerations {
    pub fn open(db: &sled::Db, window: Duration) -> Result<Self, StoreError> {
        let window_ms = (window.as_millis() as i64).max(GENERATIONS_PER_WINDOW);
        let mut open = BTreeMap::new();
        for name in db.tree_names() {
            let Some(generation) = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|g| g.parse::<i64>().ok())
            else {
                continue;
            };
            open.insert(
                generation,
                db.open_tree(&name)
                    .map_err(super::sled_store::to_store_error)?,
            );
        }
        Ok(MarkerGenerations {
            db: db.clone(),
            window_ms,
            span_ms: window_ms / GENERATIONS_PER_WINDOW,
            open: RwLock::new(open),
        })
    }

    fn generation_of(&self, now: Millis) -> i64 {
        now.0.div_euclid(self.span_ms)
    }

    /// End of a generation plus the window: when its markers have all expired.
    fn expires_at(&self, generation: i64) -> i64 {
        (generation + 1) * self.span_ms + self.window_ms
    }

    /// The live generations, the current one (where new markers go) first.
    pub fn live(&self, now: Millis) -> Result<Vec<sled::Tree>, StoreError> {
        let current = self.generation_of(now);
        {
            let open = self.open.read().unwrap_or_else(|e| e.into_inner());
            if open.contains_key(&current) {
                return Ok(self.collect_live(&open, current, now));
            }
        }
        let mut open = self.open.write().unwrap_or_else(|e| e.into_inner());
        if let std::collections::btree_map::Entry::Vacant(slot) = open.entry(current) {
            let tree = self
                .db
                .open_tree(format!("{PREFIX}{current}"))
                .map_err(super::sled_store::to_store_error)?;
            slot.insert(tree);
        }
        Ok(self.collect_live(&open, current, now))
    }

    fn collect_live(
        &self,
        open: &BTreeMap<i64, sled::Tree>,
        current: i64,
        now: Millis,
    ) -> Vec<sled::Tree> {
        let mut live = vec![open[&current].clone()];
        live.extend(
            open.iter()
                .rev()
                .filter(|&(&g, _)| g != current && self.expires_at(g) > now.0)
                .map(|(_, tree)| tree.clone()),
        );
        live
    }

    /// Drops every generation whose markers have all expired.
    pub fn expire(&self, now: Millis) -> Result<usize, StoreError> {
        let mut open = self.open.write().unwrap_or_else(|e| e.into_inner());
        let expired: Vec<i64> = open
            .keys()
            .copied()
            .filter(|&g| self.expires_at(g) + DROP_GRACE_MS <= now.0)
            .collect();
        for generation in &expired {
            open.remove(generation);
            self.db
                .drop_tree(format!("{PREFIX}{generation}"))
                .map_err(super::sled_store::to_store_error)?;
        }
        Ok(expired.len())
    }
}
