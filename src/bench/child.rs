//! Servers under test run as child processes of the bench, so that their
//! memory can be read from /proc and the client shares the machine with them
//! exactly as a real client would.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{Mutex, Once},
    time::{Duration, Instant},
};

use anyhow::Context;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

pub struct ServerProcess {
    pub addr: String,
    /// The admin HTTP port (`/metrics`) of a reach server; none for echo.
    pub admin: Option<SocketAddr>,
    /// From spawn until the health service said SERVING (or the port answered).
    pub ready_in: Duration,
    child: std::process::Child,
}

impl ServerProcess {
    /// `reach serve` on `data_dir`, with an ephemeral port.
    pub async fn reach(data_dir: &Path) -> anyhow::Result<Self> {
        Self::reach_with(data_dir, None, &[]).await
    }

    /// `reach serve` on `data_dir` with a config file, if given, and
    /// settings in `REACH_*` variables (over the file's).
    pub async fn reach_with(
        data_dir: &Path,
        config: Option<&Path>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = data_dir.to_str().context("data dir is not UTF-8")?;
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", dir];
        if let Some(config) = config {
            args.push("--config");
            args.push(config.to_str().context("config path is not UTF-8")?);
        }
        Self::spawn(&args, env, true).await
    }

    /// The echo baseline server.
    pub async fn echo() -> anyhow::Result<Self> {
        Self::spawn(
            &["bench", "echo-server", "--listen", "127.0.0.1:0"],
            &[],
            false,
        )
        .await
    }

    /// Spawns the server; a reach server (`reach`: one with an admin port,
    /// which it announces on its second line) is waited for until its
    /// health service says SERVING.
    async fn spawn(args: &[&str], env: &[(&str, &str)], reach: bool) -> anyhow::Result<Self> {
        let started = Instant::now();
        // A profiler to run the server under (e.g. `heaptrack -o
        // /tmp/soak`): its words go before the server's command line. The
        // RSS read is then the wrapper's, not the server's.
        let wrapper = std::env::var("REACH_BENCH_SERVER_WRAPPER").unwrap_or_default();
        let mut words: Vec<String> = wrapper.split_whitespace().map(str::to_owned).collect();
        let wrapped = !words.is_empty();
        words.push(std::env::current_exe()?.to_string_lossy().into_owned());
        let mut child = Command::new(&words[0])
            .args(&words[1..])
            .args(args)
            // Not a config key: `REACH_` variables are read as config.
            .env_remove("REACH_BENCH_SERVER_WRAPPER")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            // An ephemeral admin port, announced by the server: a port
            // picked free here could be taken before the server binds it.
            .env("REACH_ADMIN_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the server")?;
        children::adopt(child.id());
        let stdout = child.stdout.take().context("child stdout")?;
        // The server's first line names its address, a reach server's
        // second its admin port's; a wrapper may print its own lines before.
        let (line, admin_line, skipped) = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut skipped = Vec::new();
            while let Some(line) = lines.next().transpose()? {
                if line.starts_with("reach listening on ") || !wrapped {
                    let admin_line = match reach {
                        true => lines.next().transpose()?.unwrap_or_default(),
                        false => String::new(),
                    };
                    return Ok((line, admin_line, skipped));
                }
                skipped.push(line);
            }
            Ok::<_, std::io::Error>((String::new(), String::new(), skipped))
        })
        .await??;
        let addr = line
            .trim()
            .strip_prefix("reach listening on ")
            .with_context(|| {
                format!("unexpected first line from server: {line:?} (after {skipped:?})")
            })?
            .to_string();
        let admin = match reach {
            true => Some(
                admin_line
                    .trim()
                    .strip_prefix("reach admin on ")
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    .with_context(|| {
                        format!("unexpected second line from server: {admin_line:?}")
                    })?,
            ),
            false => None,
        };
        if reach {
            wait_serving(&addr).await?;
        }
        Ok(ServerProcess {
            addr,
            admin,
            ready_in: started.elapsed(),
            child,
        })
    }

    /// Peak resident set size so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmHWM:").map(|kib| kib * 1024)
    }

    /// CPU time (user and system) the server has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        crate::bench::cpu_times::process_cpu(self.child.id())
    }

    /// Read system calls on files the server has made so far.
    pub fn file_reads(&self) -> Option<u64> {
        crate::bench::cpu_times::process_file_reads(self.child.id())
    }

    /// Resident set size now (VmRSS), in bytes.
    pub fn rss(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmRSS:").map(|kib| kib * 1024)
    }

    /// The server's allocator figures now, from its `/metrics`, if it has an
    /// admin port and runs on jemalloc.
    pub async fn allocator(&self) -> Option<crate::memory::AllocatorStats> {
        let text = get_metrics(self.admin?).await.ok()?;
        let gauge = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
        };
        Some(crate::memory::AllocatorStats {
            allocated: gauge("reach_allocator_allocated_bytes")?,
            active: gauge("reach_allocator_active_bytes")?,
            resident: gauge("reach_allocator_resident_bytes")?,
            metadata: gauge("reach_allocator_metadata_bytes")?,
        })
    }

    /// The server's own histogram of the soak's calls, from its `/metrics`,
    /// if it has an admin port.
    pub async fn request_durations(&self) -> Option<crate::bench::server_latency::Buckets> {
        let text = get_metrics(self.admin?).await.ok()?;
        Some(crate::bench::server_latency::Buckets::parse(&text))
    }

    /// Graceful stop (SIGTERM), waiting for the exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

/// `GET /metrics` on a server's admin port.
async fn get_metrics(admin: SocketAddr) -> anyhow::Result<String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(admin).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, admin.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "/metrics: {}",
        response.status()
    );
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        children::release(self.child.id());
    }
}

/// A bench stopped by SIGTERM or SIGINT exits without running `Drop`, and
/// a server left behind holds its store's lock: the first child spawned
/// installs a handler that stops every live child before exiting.
mod children {
    use super::*;

    static LIVE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
    static HANDLER: Once = Once::new();

    pub fn adopt(pid: u32) {
        LIVE.lock().expect("child registry").insert(pid);
        HANDLER.call_once(|| {
            tokio::spawn(stop_all_on_signal());
        });
    }

    pub fn release(pid: u32) {
        LIVE.lock().expect("child registry").remove(&pid);
    }

    async fn stop_all_on_signal() {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        let code = tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        };
        let pids: Vec<u32> = LIVE
            .lock()
            .expect("child registry")
            .iter()
            .copied()
            .collect();
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        std::process::exit(code);
    }
}

async fn wait_serving(addr: &str) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel);
    let mut updates = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    while let Some(update) = updates.message().await? {
        if update.status == ServingStatus::Serving as i32 {
            return Ok(());
        }
    }
    anyhow::bail!("server closed the health stream before SERVING")
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}
