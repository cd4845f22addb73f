//! `falco.metrics`: the `/metrics` exposition over gRPC, for `tail --stats` on the socket.

use tonic::{Request, Response, Status};

use crate::proto::metrics::{self as pb, service_server::Service};
use crate::services::App;

pub struct MetricsService {
    app: App,
}

impl MetricsService {
    pub fn new(app: App) -> Self {
        MetricsService { app }
    }
}

#[tonic::async_trait]
impl Service for MetricsService {
    async fn get(&self, _: Request<pb::Request>) -> Result<Response<pb::Response>, Status> {
        if !self.app.telemetry.events.ready() {
            return Err(Status::unavailable(
                "falco-api is counting the alerts stored before this start; try again in a moment",
            ));
        }
        crate::services::metrics::settle(&self.app, std::time::Duration::from_secs(1)).await;
        let app = self.app.clone();
        let text = super::blocking(move || Ok(crate::services::metrics::render(&app))).await?;
        Ok(Response::new(pb::Response { text }))
    }
}
