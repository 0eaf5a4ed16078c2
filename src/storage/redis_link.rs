//! The connections of the Redis store, replaced as a whole when the cluster
//! stops answering on them.
//!
//! The cluster client of the `redis` crate reconnects a node after a dropped
//! connection, but a command that times out is only retried on the same
//! connection: when a primary is killed and comes back on the same address
//! fast enough to keep its slots (no failover), its old connection can stay
//! mute for good. After a timeout or an I/O error, the link opens fresh
//! connections to the whole cluster in the background (at most one attempt
//! per second) and swaps them in; calls in between fail UNAVAILABLE as
//! before, and the ones after go through the new connections.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use redis::{RedisError, cluster::ClusterClient, cluster_async::ClusterConnection};

/// Writes (and the `WAIT`s that must follow them on the same connection),
/// and reads on connections of their own: a `WAIT` blocks its connection
/// until the replicas answer, and reads must not queue behind it.
pub struct Connections {
    pub writes: ClusterConnection,
    pub reads: ClusterConnection,
}

pub struct Link {
    client: ClusterClient,
    current: ArcSwap<Connections>,
    reconnecting: AtomicBool,
    last_attempt: Mutex<Option<Instant>>,
}

const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Link {
    pub async fn open(client: ClusterClient) -> Result<Arc<Link>, RedisError> {
        let connections = Self::connect(&client).await?;
        Ok(Arc::new(Link {
            client,
            current: ArcSwap::from_pointee(connections),
            reconnecting: AtomicBool::new(false),
            last_attempt: Mutex::new(None),
        }))
    }

    async fn connect(client: &ClusterClient) -> Result<Connections, RedisError> {
        Ok(Connections {
            writes: client.get_async_connection().await?,
            reads: client.get_async_connection().await?,
        })
    }

    /// The connections in use now. A write and its `WAIT` must use the same
    /// snapshot.
    pub fn current(&self) -> Arc<Connections> {
        self.current.load_full()
    }

    /// Notes a failed command; on a timeout or an I/O error, replaces the
    /// connections in the background.
    pub fn failed(self: &Arc<Self>, e: &RedisError) {
        let connection_trouble = e.is_timeout()
            || e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal();
        if !connection_trouble {
            return;
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < MIN_INTERVAL) {
                return;
            }
            if self.reconnecting.swap(true, Ordering::SeqCst) {
                return;
            }
            *last = Some(Instant::now());
        }
        let link = self.clone();
        tokio::spawn(async move {
            match Self::connect(&link.client).await {
                Ok(fresh) => {
                    link.current.store(Arc::new(fresh));
                    metrics::counter!("reach_redis_reconnects_total").increment(1);
                    tracing::warn!("redis cluster not answering: connections replaced");
                }
                Err(e) => tracing::warn!(error = %e, "redis cluster reconnect failed, retrying"),
            }
            link.reconnecting.store(false, Ordering::SeqCst);
        });
    }
}
