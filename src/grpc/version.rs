//! `falco.version`: this build's version and the engine's, with the field-list checksum.

use tonic::{Request, Response, Status};

use crate::engine;
use crate::proto::version::{self as pb, service_server::Service};

pub struct VersionService {
    response: pb::Response,
}

impl VersionService {
    pub fn new() -> Self {
        VersionService {
            response: version_response(),
        }
    }
}

impl Default for VersionService {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits `CARGO_PKG_VERSION` (semver) into the response's parts.
pub fn version_response() -> pb::Response {
    let full = env!("CARGO_PKG_VERSION");
    let (core, build) = full.split_once('+').unwrap_or((full, ""));
    let (core, prerelease) = core.split_once('-').unwrap_or((core, ""));
    let mut parts = core.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (engine_major, engine_minor, engine_patch) = engine::ENGINE_VERSION;
    pb::Response {
        version: full.to_string(),
        major: parts.next().unwrap_or(0),
        minor: parts.next().unwrap_or(0),
        patch: parts.next().unwrap_or(0),
        prerelease: prerelease.to_string(),
        build: build.to_string(),
        engine_minor,
        engine_fields_checksum: engine::fields_checksum(),
        engine_major,
        engine_patch,
        engine_version: engine::engine_version_string(),
    }
}

#[tonic::async_trait]
impl Service for VersionService {
    async fn version(
        &self,
        _request: Request<pb::Request>,
    ) -> Result<Response<pb::Response>, Status> {
        Ok(Response::new(self.response.clone()))
    }
}
