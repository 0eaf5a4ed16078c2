//! A throwaway Redis Cluster on loopback (3 primaries, 3 replicas) for the
//! tests and the bench: real `redis-server` processes on ports of their
//! own, torn down with this value, or with the process that started them
//! (each node runs under a small shell watchdog that kills it when that
//! process is gone, so a failed test leaves nothing behind).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub struct LocalCluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

pub struct Node {
    pub port: u16,
    bus: u16,
    node_timeout: Duration,
    dir: PathBuf,
    watchdog: Child,
}

/// One cluster per process, started on first use and stopped by the node
/// watchdogs when the process exits (tests share it, each under its own
/// key prefix).
pub fn shared() -> anyhow::Result<&'static LocalCluster> {
    static SHARED: std::sync::OnceLock<Result<LocalCluster, String>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| LocalCluster::start(Duration::from_secs(1)).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Whether `redis-server` and `redis-cli` can be run here.
pub fn available() -> bool {
    ["redis-server", "redis-cli"].iter().all(|program| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Runs `redis-cli` against `port`; its standard output.
pub fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running redis-cli")?;
    if !out.status.success() {
        bail!(
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl LocalCluster {
    /// Starts six nodes and joins them into a cluster. `node_timeout` is
    /// `cluster-node-timeout`: how long a silent primary has before its
    /// replica takes over.
    pub fn start(node_timeout: Duration) -> anyhow::Result<Self> {
        // A port found free can be taken (by an outgoing connection's
        // source port, on a busy machine) before redis binds it: try again
        // on other ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(node_timeout) {
                Err(e) if attempt < 3 => eprintln!("redis cluster start failed, retrying: {e:#}"),
                result => return result,
            }
        }
    }

    fn try_start(node_timeout: Duration) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "reach-redis-cluster-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let ports = free_ports(12)?;
        // Built first, so that a failure below stops what was started.
        let mut cluster = LocalCluster {
            nodes: Vec::new(),
            dir,
        };
        for (i, pair) in ports.chunks(2).enumerate() {
            let node_dir = cluster.dir.join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir)?;
            let node = Node::spawn(&node_dir, pair[0], pair[1], node_timeout)?;
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            wait_for(Duration::from_secs(10), || {
                Ok(cli(node.port, &["ping"]).is_ok_and(|r| r.trim() == "PONG"))
            })
            .with_context(|| format!("redis node on port {} did not start", node.port))?;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        cli(cluster.nodes[0].port, &args).context("redis-cli --cluster create")?;
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// `redis://` URLs of every node, as reach's `store.redis.nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Waits until every live node reports `cluster_state:ok` with all
    /// slots served, and every live replica is in sync with its primary.
    pub fn wait_healthy(&self, limit: Duration) -> anyhow::Result<()> {
        wait_for(limit, || {
            Ok(self.nodes.iter().filter(|n| n.alive()).all(|n| {
                let ok = cli(n.port, &["cluster", "info"]).is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                });
                ok && cli(n.port, &["info", "replication"]).is_ok_and(|info| {
                    if info.contains("role:master") {
                        !info.contains("connected_slaves:0")
                    } else {
                        info.contains("master_link_status:up")
                            && info.contains("master_sync_in_progress:0")
                    }
                })
            }))
        })
        .context("the cluster did not become healthy")
    }

    /// Ports of the nodes that are primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .filter(|n| cli(n.port, &["role"]).is_ok_and(|r| r.starts_with("master")))
            .map(|n| n.port)
            .collect()
    }

    /// SIGKILLs the node on `port` (a crash: no shutdown, no last save).
    pub fn kill(&mut self, port: u16) -> anyhow::Result<()> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .context("no such node")?;
        node.kill_server()
    }

    /// Starts a killed node again on its data (as an orchestrator would):
    /// a former primary rejoins as a replica of the one that replaced it.
    pub fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .context("no such node")?;
        anyhow::ensure!(!node.alive(), "node {port} is running");
        *node = Node::spawn(&node.dir.clone(), node.port, node.bus, node.node_timeout)?;
        wait_for(Duration::from_secs(10), || {
            Ok(cli(port, &["ping"]).is_ok_and(|r| r.trim() == "PONG"))
        })
    }

    /// The server's pid, from its pid file.
    pub fn pid(&self, port: u16) -> Option<u32> {
        let node = self.nodes.iter().find(|n| n.port == port)?;
        node.pid()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Node {
    fn spawn(dir: &Path, port: u16, bus: u16, node_timeout: Duration) -> anyhow::Result<Node> {
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\ncluster-port {bus}\nbind 127.0.0.1\nprotected-mode no\n\
                 cluster-enabled yes\ncluster-config-file nodes.conf\n\
                 cluster-node-timeout {}\nappendonly yes\nappendfsync everysec\n\
                 save \"\"\ndir {}\npidfile {}\nlogfile {}\n",
                node_timeout.as_millis(),
                dir.display(),
                dir.join("redis.pid").display(),
                dir.join("redis.log").display(),
            ),
        )?;
        // The watchdog kills the server when the process that started the
        // cluster is gone; the shell itself exits (and reaps it) when the
        // server does.
        let script = r#"redis-server "$1" & r=$!
(while kill -0 "$2" && kill -0 "$r"; do sleep 1; done 2>/dev/null; kill -9 "$r" 2>/dev/null) &
wait "$r"
kill -0 "$2" 2>/dev/null || { rm -rf "$3"; rmdir "${3%/*}"; } 2>/dev/null"#;
        let watchdog = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(&conf)
            .arg(std::process::id().to_string())
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed?)")?;
        Ok(Node {
            port,
            bus,
            node_timeout,
            dir: dir.to_path_buf(),
            watchdog,
        })
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("redis.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn alive(&self) -> bool {
        self.pid()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    fn kill_server(&mut self) -> anyhow::Result<()> {
        let pid = self.pid().context("no pid file")?;
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        let _ = self.watchdog.wait();
        let _ = std::fs::remove_file(self.dir.join("redis.pid"));
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if node.alive() {
                let _ = node.kill_server();
            }
            let _ = node.watchdog.kill();
            let _ = node.watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(
    limit: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
