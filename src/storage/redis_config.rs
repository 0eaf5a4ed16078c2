//! Settings of the Redis Cluster store (`[store.redis]`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Seed nodes of the cluster, as `redis://host:port` (credentials may go
    /// in the URL: `redis://user:password@host:port`). The client discovers
    /// the others.
    pub nodes: Vec<String>,
    /// Prefix of every key, so that several deployments can share a cluster.
    pub key_prefix: String,
    /// Replicas that must hold a write before it is acknowledged (Redis
    /// `WAIT`; default 1); 0 acknowledges once the primary applied it. See
    /// `docs/scaleout.md` for the loss window of each setting.
    pub wait_replicas: u32,
    /// How long the replicas have to confirm a write before it is answered
    /// UNAVAILABLE (asked in slices shorter than `response_timeout`).
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// Connecting to a node.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Any one command; past it the call fails UNAVAILABLE instead of
    /// hanging while a failed primary is replaced.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Counter shards per statistics bucket; each replica writes one, reads
    /// sum them all.
    pub stat_shards: u32,
    /// Shards of the silence sweep's deadline index.
    pub deadline_shards: u32,
    /// How long minute statistics (route health) are kept.
    #[serde(with = "humantime_serde")]
    pub minute_stats_ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            nodes: Vec::new(),
            key_prefix: "reach".into(),
            wait_replicas: 1,
            wait_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            stat_shards: 8,
            deadline_shards: 16,
            minute_stats_ttl: Duration::from_secs(2 * 86_400),
        }
    }
}
