//! A per-tenant cache of a small catalog (senders, send policies): loaded
//! whole from the store on first use, replaced entry by entry on writes, so
//! that reads on the hot path (every gated GetBestChannel) touch no store.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use crate::{
    error::{Error, Result},
    storage::{Catalog, Store, StoreError, Tenant},
};

pub type Entries<T> = Arc<BTreeMap<String, T>>;

pub struct CatalogCache<T> {
    catalog: Catalog,
    /// foldhash: every call looks its tenant up here.
    tenants: RwLock<foldhash::HashMap<Tenant, Entries<T>>>,
    /// Writers of one process take turns: a write reads the entry it
    /// replaces (they are rare).
    pub writes: tokio::sync::Mutex<()>,
}

impl<T: Clone> CatalogCache<T> {
    pub fn new(catalog: Catalog) -> Self {
        CatalogCache {
            catalog,
            tenants: RwLock::new(foldhash::HashMap::default()),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The tenant's entries, from the cache or the store.
    pub async fn entries<S: Store>(
        &self,
        store: &S,
        tenant: &Tenant,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<Entries<T>> {
        if let Some(entries) = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
        {
            return Ok(entries.clone());
        }
        let mut map = BTreeMap::new();
        for (id, bytes) in store.list_entries(self.catalog, tenant).await? {
            let value = decode(&bytes).map_err(|e| {
                Error::Store(StoreError::Internal(format!(
                    "{:?} entry {id:?}: {e}",
                    self.catalog
                )))
            })?;
            map.insert(id, value);
        }
        let map = Arc::new(map);
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.clone(), map.clone());
        Ok(map)
    }

    /// Stores `value` under `id` durably, then puts it in the cache. The
    /// caller holds `writes` and has loaded the tenant's `current` entries.
    pub async fn put<S: Store>(
        &self,
        store: &S,
        tenant: &Tenant,
        current: &Entries<T>,
        id: &str,
        value: T,
        bytes: &[u8],
    ) -> Result<()> {
        store.put_entry(self.catalog, tenant, id, bytes).await?;
        store.sync().await?;
        let mut updated = (**current).clone();
        updated.insert(id.to_string(), value);
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.clone(), Arc::new(updated));
        Ok(())
    }
}
