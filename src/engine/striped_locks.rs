//! Per-contact write serialization inside one process. The store's
//! compare-and-swap keeps concurrent writers correct on its own; these locks
//! only keep writers of one process from wasting work on conflicts.

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

use crate::storage::ContactKey;

pub struct StripedLocks {
    stripes: Vec<Mutex<()>>,
    hasher: RandomState,
}

impl StripedLocks {
    pub fn new(stripes: usize) -> Self {
        StripedLocks {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    pub async fn lock(&self, key: &ContactKey) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(key) as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}
