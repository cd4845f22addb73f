//! `falco.sidecar`: Falco alert lines from a file or a program (`falco-api send --alerts`), the
//! followed file's stored position, and what is known about the Falco nodes (`falco status`).

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::base::event::Origin;
use crate::proto::convert::timestamp;
use crate::proto::sidecar::{self as pb, service_server::Service};
use crate::services::App;

/// Lines in one request at most.
const MAX_LINES: usize = 100_000;
/// A followed file's name is stored with its position; at most this long.
const MAX_FOLLOW_NAME: usize = 4096;

fn check_follow_name(name: &str) -> Result<(), Status> {
    if name.len() > MAX_FOLLOW_NAME {
        return Err(Status::invalid_argument(format!(
            "follow name of {} bytes; at most {MAX_FOLLOW_NAME}",
            name.len()
        )));
    }
    Ok(())
}

pub struct SidecarService {
    app: App,
}

impl SidecarService {
    pub fn new(app: App) -> Self {
        SidecarService { app }
    }
}

/// The marks that record how far a followed file was read.
pub fn follow_marks(name: &str, offset: u64, file_id: u64) -> Vec<(String, u64)> {
    vec![
        (format!("follow:{name}:offset"), offset),
        (format!("follow:{name}:file"), file_id),
    ]
}

async fn store(
    app: &App,
    client: &str,
    req: pb::AlertsRequest,
) -> Result<pb::AlertsResponse, Status> {
    if req.lines.len() > MAX_LINES {
        return Err(Status::invalid_argument(format!(
            "{} lines in one request; at most {MAX_LINES}",
            req.lines.len()
        )));
    }
    check_follow_name(&req.follow)?;
    let origin = match req.origin.as_str() {
        "" | "falco-file" => Origin::FalcoFile,
        "falco-program" => Origin::FalcoProgram,
        other => {
            return Err(Status::invalid_argument(format!(
                "origin '{other}': expected falco-file or falco-program"
            )))
        }
    };
    let hostname = app.current_hostname();
    let mut alerts = Vec::with_capacity(req.lines.len());
    let mut rejected = Vec::new();
    for (i, line) in req.lines.iter().enumerate() {
        match crate::falco::parse(line.as_bytes(), origin, &hostname) {
            Ok(a) => alerts.push(a),
            Err(reason) => rejected.push(pb::RejectedLine {
                index: i as u32,
                reason: reason.to_string(),
            }),
        }
    }
    let marks = if req.follow.is_empty() {
        Vec::new()
    } else {
        follow_marks(&req.follow, req.follow_offset, req.follow_file_id)
    };
    let stored = crate::falco::store(&app.logs, alerts, client, marks).await?;
    Ok(pb::AlertsResponse {
        first_seq: stored.seqs.start,
        stored: stored.seqs.end - stored.seqs.start,
        rejected,
        drops: stored.drops,
    })
}

#[tonic::async_trait]
impl Service for SidecarService {
    type alertsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::AlertsResponse, Status>> + Send>,
    >;

    async fn alerts(
        &self,
        request: Request<Streaming<pb::AlertsRequest>>,
    ) -> Result<Response<Self::alertsStream>, Status> {
        let client = super::auth::author(&request);
        let mut inbound = request.into_inner();
        let app = self.app.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    m = inbound.next() => m,
                    _ = app.shutdown.cancelled() => None,
                };
                let reply = match next {
                    Some(Ok(req)) => store(&app, &client, req).await,
                    Some(Err(status)) => Err(status),
                    None => return,
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn position(
        &self,
        request: Request<pb::PositionRequest>,
    ) -> Result<Response<pb::PositionResponse>, Status> {
        let name = request.into_inner().follow;
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "position needs the followed file's name",
            ));
        }
        let marks = follow_marks(&name, 0, 0);
        let offset = self.app.logs.outputs.mark(&marks[0].0)?;
        let file_id = self.app.logs.outputs.mark(&marks[1].0)?;
        Ok(Response::new(pb::PositionResponse {
            known: offset.is_some(),
            offset: offset.unwrap_or(0),
            file_id: file_id.unwrap_or(0),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let nodes = self
            .app
            .nodes
            .list()
            .into_iter()
            .map(|n| pb::Node {
                event_rate: n.event_rate(),
                hostname: n.hostname,
                last_seen: Some(timestamp(n.last_seen_ns)),
                alerts: n.alerts,
                alert_rate: n.alert_rate,
                syscall_drops: n.syscall_drops,
                drop_alerts: n.drop_alerts,
                metrics_time: (n.metrics_time_ns != 0).then(|| timestamp(n.metrics_time_ns)),
                metrics: n
                    .metrics
                    .into_iter()
                    .map(|(name, value)| pb::Metric { name, value })
                    .collect(),
                origins: n.origins.iter().map(|o| o.to_string()).collect(),
            })
            .collect();
        let sync = self
            .app
            .nodes
            .sync_states()
            .into_iter()
            .map(|(kind, s)| pb::SyncTarget {
                kind: kind.to_string(),
                path: s.path,
                written_revision: s.written,
                wanted_revision: s.wanted,
                error: s.error,
            })
            .collect();
        Ok(Response::new(pb::StatusResponse { nodes, sync }))
    }
}
