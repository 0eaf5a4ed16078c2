//! `reach bench redis`: reach on a local Redis Cluster against reach on
//! sled, and both against the raw limit of the cluster (`redis-benchmark`
//! GET/SET on the same nodes), in interleaved rounds on one machine.

use std::{fmt::Write as _, path::PathBuf, process::Command, sync::Arc, time::Duration};

use anyhow::Context;

use crate::bench::{
    child::ServerProcess,
    load::{Load, connect},
    preload::contact_id,
    redis_cluster::LocalCluster,
    report::median,
    scenarios::{Scenario, Target},
};

#[derive(Clone, Debug)]
pub struct CompareSpec {
    pub work_dir: PathBuf,
    pub contacts: u64,
    pub events_per_contact: usize,
    pub load: Load,
    pub rounds: usize,
    /// Requests per redis-benchmark test.
    pub raw_requests: u64,
}

#[derive(Default)]
struct Series {
    sled_best: Vec<f64>,
    redis_best: Vec<f64>,
    sled_record: Vec<f64>,
    redis_record: Vec<f64>,
    raw_get: Vec<f64>,
    raw_set: Vec<f64>,
    sled_best_p99: Vec<f64>,
    redis_best_p99: Vec<f64>,
    sled_record_p99: Vec<f64>,
    redis_record_p99: Vec<f64>,
}

/// Sends `per_contact` events to each of `contacts` contacts in bulk streams.
async fn fill(target: &Target, contacts: u64, per_contact: usize) -> anyhow::Result<()> {
    use crate::proto::reachability_service_client::ReachabilityServiceClient;
    let mut client = ReachabilityServiceClient::new(target.connections[0].clone());
    let mut batch = Vec::new();
    for i in 0..contacts {
        for k in 0..per_contact {
            batch.push(target.event_for(contact_id(i), 0, i, k));
        }
        if batch.len() >= 500 || i + 1 == contacts {
            let events = std::mem::take(&mut batch);
            let reply = client
                .record_events(tokio_stream::iter(events))
                .await?
                .into_inner();
            anyhow::ensure!(reply.rejected == 0, "preload rejected events: {reply:?}");
        }
    }
    Ok(())
}

async fn target(server: &ServerProcess, spec: &CompareSpec) -> anyhow::Result<Target> {
    Ok(Target {
        connections: Arc::new(connect(&server.addr, spec.load.connections).await?),
        contacts: spec.contacts,
        run_id: fastrand::u64(..),
        bulk_size: 1,
        bulk_per_contact: 1,
    })
}

/// `redis-benchmark --cluster` GET and SET rates (requests/s).
fn raw_limits(port: u16, spec: &CompareSpec) -> anyhow::Result<(f64, f64)> {
    let clients = spec.load.concurrency().to_string();
    let out = Command::new("redis-benchmark")
        .args(["--cluster", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "get,set", "-d", "200", "-r", "1000000", "--csv"])
        .args(["-c", &clients, "-n", &spec.raw_requests.to_string()])
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = |test: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
    };
    match (rate("GET"), rate("SET")) {
        (Some(get), Some(set)) => Ok((get, set)),
        _ => anyhow::bail!("unexpected redis-benchmark output: {text}"),
    }
}

pub async fn compare(spec: &CompareSpec) -> anyhow::Result<String> {
    std::fs::create_dir_all(&spec.work_dir)?;
    let cluster = LocalCluster::start(Duration::from_secs(5))?;
    let config = spec.work_dir.join("reach-redis.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "store": {"backend": "redis", "redis": {"nodes": cluster.urls(),
                      "key_prefix": format!("bench{:08x}", fastrand::u32(..))}}
        })
        .to_string(),
    )?;
    let sled_dir = spec.work_dir.join("sled-compare");
    let _ = std::fs::remove_dir_all(&sled_dir);
    let sled = ServerProcess::reach(&sled_dir).await?;
    let redis = ServerProcess::reach_with(
        &spec.work_dir.join("redis-unused"),
        Some(config.as_path()),
        &[],
    )
    .await?;
    let (on_sled, on_redis) = (target(&sled, spec).await?, target(&redis, spec).await?);
    eprintln!("filling both stores with {} contacts", spec.contacts);
    fill(&on_sled, spec.contacts, spec.events_per_contact).await?;
    fill(&on_redis, spec.contacts, spec.events_per_contact).await?;

    let mut s = Series::default();
    for round in 0..spec.rounds {
        let (get, set) = raw_limits(cluster.nodes[0].port, spec)?;
        s.raw_get.push(get);
        s.raw_set.push(set);
        for (scenario, on, rates, p99s) in [
            (
                Scenario::BestChannel,
                &on_sled,
                &mut s.sled_best,
                &mut s.sled_best_p99,
            ),
            (
                Scenario::BestChannel,
                &on_redis,
                &mut s.redis_best,
                &mut s.redis_best_p99,
            ),
            (
                Scenario::RecordEvent,
                &on_sled,
                &mut s.sled_record,
                &mut s.sled_record_p99,
            ),
            (
                Scenario::RecordEvent,
                &on_redis,
                &mut s.redis_record,
                &mut s.redis_record_p99,
            ),
        ] {
            let measured = on.run(scenario, spec.load).await;
            anyhow::ensure!(
                measured.errors == 0,
                "{scenario}: {} errors",
                measured.errors
            );
            rates.push(measured.items_per_sec());
            p99s.push(measured.latency(0.99) as f64 / 1000.0);
        }
        eprintln!(
            "round {}: best sled {:.0}/s redis {:.0}/s; record sled {:.0}/s redis {:.0}/s; raw GET {get:.0}/s SET {set:.0}/s",
            round + 1,
            s.sled_best[round],
            s.redis_best[round],
            s.sled_record[round],
            s.redis_record[round]
        );
    }
    sled.stop()?;
    redis.stop()?;
    let _ = std::fs::remove_dir_all(&sled_dir);
    Ok(render(spec, &s))
}

fn render(spec: &CompareSpec, s: &Series) -> String {
    let m = |v: &Vec<f64>| median(v.clone());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Redis Cluster (3 primaries + 3 replicas, loopback, AOF everysec) vs sled: {} contacts \
         x {} events preloaded, {} connections x {} in flight, {:?} per run, {} rounds (medians); \
         raw limit: redis-benchmark --cluster, {} clients, 200-byte values.\n",
        spec.contacts,
        spec.events_per_contact,
        spec.load.connections,
        spec.load.in_flight,
        spec.load.duration,
        spec.rounds,
        spec.load.concurrency(),
    );
    let _ = writeln!(
        out,
        "| call | on sled /s | on Redis /s | Redis / sled | raw limit /s | Redis / raw | p99 sled ms | p99 Redis ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (name, sled, redis, raw, sled_p99, redis_p99) in [
        (
            "GetBestChannel",
            m(&s.sled_best),
            m(&s.redis_best),
            ("GET", m(&s.raw_get)),
            m(&s.sled_best_p99),
            m(&s.redis_best_p99),
        ),
        (
            "RecordEvent",
            m(&s.sled_record),
            m(&s.redis_record),
            ("SET", m(&s.raw_set)),
            m(&s.sled_record_p99),
            m(&s.redis_record_p99),
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {sled:.0} | {redis:.0} | {:.2}x | {:.0} ({}) | {:.2}x | {sled_p99:.2} | {redis_p99:.2} |",
            redis / sled,
            raw.1,
            raw.0,
            redis / raw.1
        );
    }
    out
}
