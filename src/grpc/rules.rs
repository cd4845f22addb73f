//! `falco.rules`: thin adapters over `control::rules`.

use tonic::{Request, Response, Status};

use super::blocking;
use super::inputs::client_identity;
use super::status::diagnostic;
use crate::proto::convert::timestamp;
use crate::proto::rules::{self as pb, service_server::Service};
use crate::services::control::rules::{digest, Counts, Example, TuneAsk, Tuned};
use crate::services::control::target::{Effect, Kind, Target};
use crate::services::control::Change;
use crate::services::App;
use crate::store::HistoryRecord;

pub struct RulesService {
    app: App,
}

impl RulesService {
    pub fn new(app: App) -> Self {
        RulesService { app }
    }
}

fn change(c: crate::store::Change) -> pb::Change {
    let Ok(target) = c.target.parse::<Target>() else {
        return pb::Change {
            target: c.target,
            ..Default::default()
        };
    };
    let effect = Effect::of(&target, c.value.as_deref());
    pb::Change {
        action: effect.name().into(),
        digest: match effect {
            Effect::Put { digest } => digest,
            _ => String::new(),
        },
        target: match target.kind {
            Kind::File => target.name,
            _ => target.to_string(),
        },
    }
}

fn history_entry(r: HistoryRecord) -> pb::HistoryEntry {
    pb::HistoryEntry {
        revision: r.revision,
        action: r.action,
        author: r.author,
        time: Some(timestamp(r.time_ns)),
        comment: r.comment,
        changes: r.changes.into_iter().map(change).collect(),
    }
}

#[tonic::async_trait]
impl Service for RulesService {
    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let (files, revision) = self.app.rules.list(request.into_inner().revision)?;
        let files = files
            .into_iter()
            .map(|(name, c)| pb::RulesFile {
                name,
                content: String::new(),
                revision: c.revision,
                digest: digest(&c.value),
            })
            .collect();
        Ok(Response::new(pb::ListResponse { files, revision }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::RulesFile>, Status> {
        let req = request.into_inner();
        let c = self.app.rules.get(&req.name, req.revision)?;
        Ok(Response::new(pb::RulesFile {
            name: req.name,
            digest: digest(&c.value),
            content: c.value,
            revision: c.revision,
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let author = client_identity(&request);
        let req = request.into_inner();
        let app = self.app.clone();
        let (revision, warnings) = blocking(move || {
            app.rules.put(
                &req.name,
                &req.content,
                Change {
                    expected: req.expected_revision,
                    author: &author,
                    comment: &req.comment,
                },
            )
        })
        .await?;
        Ok(Response::new(pb::ChangeResponse {
            revision,
            warnings: warnings.iter().map(diagnostic).collect(),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let author = client_identity(&request);
        let req = request.into_inner();
        let app = self.app.clone();
        let (revision, warnings) = blocking(move || {
            app.rules.delete(
                &req.name,
                Change {
                    expected: req.expected_revision,
                    author: &author,
                    comment: &req.comment,
                },
            )
        })
        .await?;
        Ok(Response::new(pb::ChangeResponse {
            revision,
            warnings: warnings.iter().map(diagnostic).collect(),
        }))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let req = request.into_inner();
        let limit = super::page_limit(req.limit);
        let records = self.app.rules.history(&req.target, req.before, limit)?;
        let next_before = super::next_page(&records, limit);
        Ok(Response::new(pb::HistoryResponse {
            entries: records.into_iter().map(history_entry).collect(),
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
        let (revision, warnings) = blocking(move || {
            app.rules.rollback(
                req.revision,
                &req.name,
                Change {
                    expected: req.expected_revision,
                    author: &author,
                    comment: &req.comment,
                },
            )
        })
        .await?;
        Ok(Response::new(pb::ChangeResponse {
            revision,
            warnings: warnings.iter().map(diagnostic).collect(),
        }))
    }

    async fn validate(
        &self,
        request: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        let files: Vec<(String, String)> = request
            .into_inner()
            .files
            .into_iter()
            .map(|f| (f.name, f.content))
            .collect();
        let app = self.app.clone();
        let result = tokio::task::spawn_blocking(move || app.rules.validate(&files))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(match result {
            Ok(warnings) => pb::ValidateResponse {
                ok: true,
                errors: Vec::new(),
                warnings: warnings.iter().map(diagnostic).collect(),
            },
            Err(crate::services::control::ControlError::Invalid { error, warnings }) => {
                pb::ValidateResponse {
                    ok: false,
                    errors: vec![diagnostic(&error)],
                    warnings: warnings.iter().map(diagnostic).collect(),
                }
            }
            Err(other) => return Err(other.into()),
        }))
    }

    async fn effective(
        &self,
        _request: Request<pb::EffectiveRequest>,
    ) -> Result<Response<pb::EffectiveResponse>, Status> {
        let (infos, revision) = self.app.rules.effective();
        let rules = infos
            .into_iter()
            .map(|i| pb::EffectiveRule {
                name: i.name,
                source: i.source,
                priority: i.priority as i32,
                tags: i.tags,
                enabled: i.enabled,
                file: i.file,
                compiled: i.compiled,
            })
            .collect();
        Ok(Response::new(pb::EffectiveResponse { rules, revision }))
    }

    async fn toggle(
        &self,
        request: Request<pb::ToggleRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let author = client_identity(&request);
        let req = request.into_inner();
        let app = self.app.clone();
        let (revision, warnings) = blocking(move || {
            app.rules.toggle(
                &req.rules,
                &req.tags,
                req.enabled,
                Change {
                    expected: req.expected_revision,
                    author: &author,
                    comment: &req.comment,
                },
            )
        })
        .await?;
        Ok(Response::new(pb::ChangeResponse {
            revision,
            warnings: warnings.iter().map(diagnostic).collect(),
        }))
    }

    async fn tune(
        &self,
        request: Request<pb::TuneRequest>,
    ) -> Result<Response<pb::TuneResponse>, Status> {
        let author = client_identity(&request);
        let req = request.into_inner();
        let app = self.app.clone();
        let ask = TuneAsk {
            seq: req.alert_seq,
            fields: req.fields,
            comps: req.comps,
            exception: req.exception,
            dry_run: req.dry_run,
            days: req.days,
            examples: req.examples as usize,
        };
        let tuned = blocking(move || {
            app.rules.tune(
                app.logs.outputs_log(),
                &ask,
                Change {
                    expected: req.expected_revision,
                    author: &author,
                    comment: &req.comment,
                },
            )
        })
        .await?;
        Ok(Response::new(tune_response(tuned)))
    }
}

fn tune_response(t: Tuned) -> pb::TuneResponse {
    let counts = |c: &Counts| pb::TuneCounts {
        examined: c.examined,
        suppressed: c.suppressed,
        uncounted: c.uncounted,
    };
    let examples = |list: Vec<Example>| {
        list.into_iter()
            .map(|e| pb::TuneExample {
                seq: e.seq,
                time: Some(timestamp(e.time_ns)),
                hostname: e.hostname,
                output: e.output,
            })
            .collect()
    };
    pb::TuneResponse {
        rule: t.rule,
        source: t.source,
        exception: t.exception,
        reused: t.reused,
        fields: t
            .keyed
            .into_iter()
            .map(|k| pb::TunedField {
                field: k.field,
                comp: k.comp,
                value: k.value,
            })
            .collect(),
        offered_fields: t.offered,
        file: t.file,
        entry: t.entry,
        preview: t.preview.map(|p| pb::TunePreview {
            all: Some(counts(&p.all)),
            recent: Some(counts(&p.recent)),
            recent_since: Some(timestamp(p.recent_since_ns)),
            reaches: p.reaches_ns.map(timestamp),
            missing_fields: p.missing,
            suppressed: examples(p.suppressed),
            alerting: examples(p.alerting),
            scanned: p.scanned,
            limited: p.limited,
        }),
        revision: t.revision,
        warnings: t.warnings.iter().map(diagnostic).collect(),
    }
}
