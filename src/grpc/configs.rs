//! `falco.configs`: thin adapters over `control::config`.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use super::blocking;
use super::inputs::client_identity;
use crate::proto::configs::{self as pb, service_server::Service};
use crate::proto::convert::timestamp;
use crate::services::control::target::{Kind, Target};
use crate::services::control::Change;
use crate::services::App;

pub struct ConfigsService {
    app: App,
}

impl ConfigsService {
    pub fn new(app: App) -> Self {
        ConfigsService { app }
    }
}

fn history_entry(r: crate::store::HistoryRecord) -> pb::HistoryEntry {
    pb::HistoryEntry {
        revision: r.revision,
        action: r.action,
        author: r.author,
        time: Some(timestamp(r.time_ns)),
        comment: r.comment,
        changes: r
            .changes
            .into_iter()
            .filter_map(|c| match c.target.parse::<Target>() {
                Ok(Target {
                    kind: Kind::Config,
                    name,
                }) => Some(pb::Change {
                    key: name,
                    value: c.value,
                }),
                _ => None,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Service for ConfigsService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let req = request.into_inner();
        let (entries, revision) = self.app.config.get(&req.keys, req.revision)?;
        let entries = entries
            .into_iter()
            .map(|e| pb::Entry {
                key: e.key,
                value: e.value,
                origin: e.origin.into(),
                accepts: e.accepts,
                description: e.description.into(),
                revision: e.revision,
            })
            .collect();
        Ok(Response::new(pb::GetResponse { entries, revision }))
    }

    async fn set(
        &self,
        request: Request<pb::SetRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let author = client_identity(&request);
        let req = request.into_inner();
        let app = self.app.clone();
        let values: BTreeMap<String, String> = req.values.into_iter().collect();
        let changed = blocking(move || {
            app.config.set(
                &values,
                Change {
                    expected: req.expected_revision,
                    author: &author,
                    comment: &req.comment,
                },
            )
        })
        .await?;
        Ok(Response::new(pb::ChangeResponse {
            revision: changed.revision,
            warnings: changed.warnings,
        }))
    }

    async fn unset(
        &self,
        request: Request<pb::UnsetRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let author = client_identity(&request);
        let req = request.into_inner();
        let app = self.app.clone();
        let changed = blocking(move || {
            app.config.unset(
                &req.keys,
                Change {
                    expected: req.expected_revision,
                    author: &author,
                    comment: &req.comment,
                },
            )
        })
        .await?;
        Ok(Response::new(pb::ChangeResponse {
            revision: changed.revision,
            warnings: changed.warnings,
        }))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let req = request.into_inner();
        let limit = super::page_limit(req.limit);
        let records = self.app.config.history(&req.key, req.before, limit)?;
        let next_before = super::next_page(&records, limit);
        let entries = records.into_iter().map(history_entry).collect();
        Ok(Response::new(pb::HistoryResponse {
            entries,
            next_before,
        }))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let author = client_identity(&request);
        let req = request.into_inner();
        let app = self.app.clone();
        let changed = blocking(move || {
            app.config.rollback(
                req.revision,
                Change {
                    expected: req.expected_revision,
                    author: &author,
                    comment: &req.comment,
                },
            )
        })
        .await?;
        Ok(Response::new(pb::ChangeResponse {
            revision: changed.revision,
            warnings: changed.warnings,
        }))
    }
}
