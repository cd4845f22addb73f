//! `falco.tokens`: console tokens, issued, listed and revoked over the socket (admin role).

use tonic::{Request, Response, Status};

use crate::proto::tokens::{self as pb, service_server::Service};
use crate::services::tokens::Token;
use crate::services::App;

pub struct TokensService {
    app: App,
}

impl TokensService {
    pub fn new(app: App) -> Self {
        TokensService { app }
    }
}

fn info(t: Token) -> pb::TokenInfo {
    pb::TokenInfo {
        name: t.name,
        role: t.role,
        created_ns: t.created_ns,
        expires_ns: t.expires_ns,
        revoked: t.revoked,
        author: t.author,
    }
}

#[tonic::async_trait]
impl Service for TokensService {
    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let author = super::auth::author(&request);
        let r = request.into_inner();
        let tokens = self.app.tokens.clone();
        let (token, stored) = tokio::task::spawn_blocking(move || {
            tokens.create(&r.name, &r.role, r.ttl_secs, &author)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::CreateResponse {
            token,
            info: Some(info(stored)),
        }))
    }

    async fn list(
        &self,
        _: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        Ok(Response::new(pb::ListResponse {
            tokens: self.app.tokens.list().into_iter().map(info).collect(),
        }))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let name = request.into_inner().name;
        let tokens = self.app.tokens.clone();
        tokio::task::spawn_blocking(move || tokens.revoke(&name))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::RevokeResponse {}))
    }

    async fn rotate_key(
        &self,
        _: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        let tokens = self.app.tokens.clone();
        tokio::task::spawn_blocking(move || tokens.rotate_key())
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::RotateKeyResponse {}))
    }
}
