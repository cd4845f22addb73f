//! `falco.store`: online backup (admin role). The store writes a point-in-time copy to a private
//! file in the data directory; this streams it in chunks and removes it, whether or not the client
//! stayed to the end.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::proto::store::{self as pb, service_server::Service};
use crate::services::App;
use crate::store::BackupSummary;

/// Bytes per streamed chunk (well under the 4 MiB a client decodes by default).
const CHUNK: usize = 1 << 20;

pub struct StoreService {
    app: App,
    running: Arc<AtomicBool>,
}

impl StoreService {
    pub fn new(app: App) -> Self {
        StoreService {
            app,
            running: Arc::new(AtomicBool::new(false)),
        }
    }
}

fn summary(s: &BackupSummary) -> pb::BackupSummary {
    pb::BackupSummary {
        outputs_oldest: s.outputs.oldest,
        outputs_newest: s.outputs.newest,
        drops_oldest: s.drops.oldest,
        drops_newest: s.drops.newest,
        revision: s.revision,
        consumers: s.consumers,
        schema_version: s.schema_version,
        bytes: s.bytes,
    }
}

/// Releases the one-backup-at-a-time flag and removes the temporary copy.
struct Running {
    flag: Arc<AtomicBool>,
    file: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        self.flag.store(false, Ordering::Release);
    }
}

type Tx = mpsc::Sender<Result<pb::BackupResponse, Status>>;

/// Writes the copy, then sends it in chunks and the summary last; on the blocking pool.
fn run(app: &App, running: &Running, tx: &Tx) -> Result<(), Status> {
    let store = app.store.clone();
    let summary_of = store.backup(&running.file)?;
    let mut file = std::fs::File::open(&running.file)
        .map_err(|e| Status::internal(format!("reading the backup copy: {e}")))?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Status::internal(format!("reading the backup copy: {e}")))?;
        if n == 0 {
            break;
        }
        let chunk = pb::BackupResponse {
            chunk: buffer[..n].to_vec(),
            summary: None,
        };
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Ok(()); // the client went away
        }
    }
    let last = pb::BackupResponse {
        chunk: Vec::new(),
        summary: Some(summary(&summary_of)),
    };
    let _ = tx.blocking_send(Ok(last));
    Ok(())
}

#[tonic::async_trait]
impl Service for StoreService {
    type backupStream = ReceiverStream<Result<pb::BackupResponse, Status>>;

    async fn backup(
        &self,
        _request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::backupStream>, Status> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Err(Status::failed_precondition(
                "a backup is already running: wait for it to finish",
            ));
        }
        let dir = self
            .app
            .store
            .path()
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let running = Running {
            flag: self.running.clone(),
            file: crate::store::backup_scratch_path(&dir),
        };
        let (tx, rx) = mpsc::channel(4);
        let app = self.app.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(status) = run(&app, &running, &tx) {
                let _ = tx.blocking_send(Err(status));
            }
            drop(running);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
