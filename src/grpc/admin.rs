//! `reachability.v1.AdminService`: backups while serving.

use std::{
    io::{BufWriter, Read},
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    engine::Engine,
    error::Error,
    proto::{self, admin_service_server::AdminService},
    storage::{Backend, StoreError},
};

/// Bytes per streamed chunk: well under the default 4 MiB message limit.
const CHUNK: usize = 1 << 20;
/// Data-directory files that belong in a backup beside the store.
const DATA_FILES: &[&str] = &["address-hash.key"];

pub struct AdminApi {
    engine: Arc<OnceLock<Engine<Backend>>>,
    data_dir: PathBuf,
}

impl AdminApi {
    pub fn new(engine: Arc<OnceLock<Engine<Backend>>>, data_dir: PathBuf) -> Self {
        AdminApi { engine, data_dir }
    }
}

fn unavailable(e: std::io::Error) -> Status {
    Error::Store(StoreError::Unavailable(format!("backup: {e}"))).into()
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    type CreateBackupStream = ReceiverStream<Result<proto::CreateBackupResponse, Status>>;

    async fn create_backup(
        &self,
        _request: Request<proto::CreateBackupRequest>,
    ) -> Result<Response<Self::CreateBackupStream>, Status> {
        let engine = self.engine.get().ok_or(Error::NotReady)?;
        if engine.store().sled().is_none() {
            return Err(Status::failed_precondition(
                "this server runs on Redis Cluster: back it up with Redis's own snapshots \
                 (RDB/AOF, see docs/scaleout.md)",
            ));
        }
        // Statistics buffered in memory belong in the snapshot too.
        engine.flush_stats().await?;
        let store = engine.store().clone();
        let mut files = Vec::new();
        for name in DATA_FILES {
            match std::fs::read(self.data_dir.join(name)) {
                Ok(content) => files.push((*name, content)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        // Written to the data volume first (fast, local), so writes pause
        // only for the copy, not for the client's download.
        let path = self.data_dir.join(format!(
            ".backup-{}-{:08x}.partial",
            std::process::id(),
            fastrand::u32(..)
        ));
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&target)
                .map_err(|e| StoreError::Unavailable(format!("backup file: {e}")))?;
            let sled = store
                .sled()
                .ok_or_else(|| StoreError::Internal("not a sled store".into()))?;
            let (out, stats, pause) = sled.backup_blocking(BufWriter::new(file), &files)?;
            let file = out
                .into_inner()
                .map_err(|e| StoreError::Unavailable(format!("backup file: {e}")))?;
            file.sync_all()
                .map_err(|e| StoreError::Unavailable(format!("backup file: {e}")))?;
            Ok::<_, StoreError>((stats, pause))
        })
        .await
        .map_err(|e| Status::internal(format!("backup task failed: {e}")))?;
        let (stats, pause) = match written {
            Ok(written) => written,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(Error::Store(e).into());
            }
        };
        metrics::counter!("reach_backups_total").increment(1);
        metrics::gauge!("reach_backup_write_pause_seconds").set(pause.as_secs_f64());
        tracing::info!(
            entries = stats.entries,
            bytes = stats.bytes,
            write_pause_ms = pause.as_millis() as u64,
            "backup snapshot taken"
        );
        let summary = proto::BackupSummary {
            entries: stats.entries,
            bytes: stats.bytes,
            write_pause_ms: pause.as_millis() as u64,
            blake3: stats.blake3,
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            stream_file(&path, summary, &tx);
            let _ = std::fs::remove_file(&path);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends the file in chunks, the summary with the last one; stops if the
/// client goes away.
fn stream_file(
    path: &std::path::Path,
    summary: proto::BackupSummary,
    tx: &mpsc::Sender<Result<proto::CreateBackupResponse, Status>>,
) {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            let _ = tx.blocking_send(Err(unavailable(e)));
            return;
        }
    };
    let mut summary = Some(summary);
    let mut buf = vec![0; CHUNK];
    loop {
        let n = match read_full(&mut file, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.blocking_send(Err(unavailable(e)));
                return;
            }
        };
        let last = n < CHUNK;
        let message = proto::CreateBackupResponse {
            chunk: buf[..n].to_vec(),
            summary: if last { summary.take() } else { None },
        };
        if tx.blocking_send(Ok(message)).is_err() || last {
            return;
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
