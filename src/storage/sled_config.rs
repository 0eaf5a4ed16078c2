//! Settings of the embedded sled store, `[store]` in the config file
//! (docs/configuration.md lists them with their defaults).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BackendKind, RedisConfig};

/// Every field has the default of [`SledConfig::default`], which the file
/// or the environment (`REACH_STORE__CACHE_CAPACITY_MIB=512`) overrides
/// field by field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SledConfig {
    /// Where the data lives: "sled" (embedded, in `data_dir`) or "redis"
    /// (a Redis Cluster, `[store.redis]`).
    pub backend: BackendKind,
    /// sled's page cache, in MiB. The main lever on memory use.
    pub cache_capacity_mib: u64,
    /// How long a recorded event id is remembered for deduplication.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// Memory, in MiB, for the filters that tell a busy contact's new
    /// events from its spilled dedupe markers without reading their
    /// buckets (about 1.4 bytes per spilled marker in the window). Past it,
    /// a generation's markers are looked up in their buckets, as with 0.
    pub marker_filter_mib: u64,
    /// How long a flush to disk is held back, while writers are concurrent,
    /// so that it covers more of them (zero: flush at once). A writer alone
    /// never waits for it. See `storage::group_commit`.
    #[serde(with = "humantime_serde")]
    pub commit_gather: Duration,
    /// How often sled's background thread runs. Each run writes out what
    /// sled buffered (acknowledged writes are durable already, through
    /// `sync`) and then cleans its log, but never more than one 512 KiB
    /// segment per run: this interval is what bounds how fast the space of
    /// overwritten records comes back. sled's own default, 500 ms, reclaims
    /// at most 1 MiB/s, less than a busy server writes, and its log then
    /// grows without bound (docs/reliability.md, "What the store's growth
    /// is").
    #[serde(with = "humantime_serde")]
    pub cleaning_interval: Duration,
    /// The Redis Cluster, if `backend = "redis"`.
    pub redis: RedisConfig,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            backend: BackendKind::Sled,
            cache_capacity_mib: 64,
            dedupe_window: Duration::from_secs(30 * 24 * 3600),
            marker_filter_mib: 32,
            commit_gather: Duration::from_micros(500),
            cleaning_interval: Duration::from_millis(50),
            redis: RedisConfig::default(),
        }
    }
}
