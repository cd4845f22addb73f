//! `falco.fleet`: the followers' reports on the rules this server publishes.

use tonic::{Request, Response, Status};

use crate::proto::fleet::{self as pb, service_server::Service};
use crate::services::App;

pub struct FleetService {
    app: App,
}

impl FleetService {
    pub fn new(app: App) -> Self {
        FleetService { app }
    }
}

#[tonic::async_trait]
impl Service for FleetService {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let fleet = &self.app.nodes.fleet;
        Ok(Response::new(pb::StatusResponse {
            published_revision: fleet.published(),
            following: self.app.rules.publisher().unwrap_or_default(),
            nodes: fleet
                .list()
                .into_iter()
                .map(|n| pb::Node {
                    hostname: n.hostname,
                    applied_revision: n.applied_revision,
                    seen_revision: n.seen_revision,
                    error: n.error,
                    local_revision: n.local_revision,
                    time: n.time,
                })
                .collect(),
        }))
    }
}
