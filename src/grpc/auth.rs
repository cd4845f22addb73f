//! Identities and roles. A tower layer in front of every service finds the caller's identity —
//! the Unix peer's uid, or the verified client certificate's CN and SANs — maps it to roles, and
//! refuses calls that need a role the caller lacks (`PERMISSION_DENIED` naming it; no identity:
//! `UNAUTHENTICATED`). The identity travels in the request's extensions as the author of changes.

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
use tonic::Status;

use crate::net::listen::Tracked;

pub use crate::net::identity::{certificate_names, Identity, Policy, Role};

impl GrpcIdentify for Policy {
    /// The caller's identity from the connection information tonic attached to the request.
    fn identify(&self, ext: &http::Extensions) -> Option<Identity> {
        if let Some(uid) = ext
            .get::<Tracked<UdsConnectInfo>>()
            .and_then(|i| i.info.peer_cred)
            .map(|c| c.uid())
        {
            let names = vec![format!("uid:{uid}")];
            let roles = self.roles_of(&names, Some(uid));
            return Some(Identity {
                name: names[0].clone(),
                names,
                roles,
            });
        }
        let certs = ext
            .get::<TlsConnectInfo<Tracked<TcpConnectInfo>>>()?
            .peer_certs()?;
        self.identify_certificate(certs.first()?.as_ref())
    }
}

/// Finding the caller from what tonic attached to a request.
pub trait GrpcIdentify {
    fn identify(&self, ext: &http::Extensions) -> Option<Identity>;
}

/// The role a method needs; `None` for health checking and reflection.
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    Some(match service {
        "falco.version.service"
        | "falco.outputs.service"
        | "falco.drops.service"
        | "falco.metrics.service"
        | "falco.fleet.service" => Role::Reader,
        "falco.inputs.service" => Role::Ingest,
        "falco.rules.service" => match method {
            "list" | "get" | "history" | "validate" | "effective" => Role::Reader,
            _ => Role::Admin,
        },
        "falco.configs.service" => match method {
            "get" | "history" => Role::Reader,
            _ => Role::Admin,
        },
        "falco.tokens.service" | "falco.store.service" => Role::Admin,
        "falco.sidecar.service" => match method {
            "position" | "status" => Role::Reader,
            _ => Role::Ingest,
        },
        _ => return None,
    })
}

/// The layer checking every call against the policy.
#[derive(Clone)]
pub struct AuthLayer {
    policy: Arc<Policy>,
}

impl AuthLayer {
    pub fn new(policy: Arc<Policy>) -> Self {
        AuthLayer { policy }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    policy: Arc<Policy>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let identity = self.policy.identify(req.extensions());
        let required = required_role(req.uri().path());
        let denied = match (required, &identity) {
            (None, _) => None,
            (Some(_), None) => Some(Status::unauthenticated(
                "no client identity: connect over the Unix socket or with a client certificate",
            )),
            (Some(role), Some(id)) if !id.roles.contains(&role) => {
                let mut has: Vec<&str> = id.roles.iter().map(|r| r.name()).collect();
                has.sort_unstable();
                Some(Status::permission_denied(format!(
                    "{} needs the role '{}'; {} has {}",
                    req.uri().path(),
                    role.name(),
                    id.name,
                    if has.is_empty() {
                        "no role".to_string()
                    } else {
                        has.join(", ")
                    }
                )))
            }
            _ => None,
        };
        if let Some(status) = denied {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        if let Some(id) = identity {
            req.extensions_mut().insert(id);
        }
        // The clone is ready (as required), the original stays for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(req).await })
    }
}

/// The identity recorded for a request (the author of a change, the client of a drop).
pub fn author<T>(request: &tonic::Request<T>) -> String {
    request
        .extensions()
        .get::<Identity>()
        .map_or_else(|| "unknown".to_string(), |i| i.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_roles() {
        assert_eq!(
            required_role("/falco.outputs.service/sub"),
            Some(Role::Reader)
        );
        assert_eq!(
            required_role("/falco.inputs.service/send"),
            Some(Role::Ingest)
        );
        assert_eq!(required_role("/falco.rules.service/put"), Some(Role::Admin));
        assert_eq!(
            required_role("/falco.rules.service/get"),
            Some(Role::Reader)
        );
        assert_eq!(
            required_role("/falco.configs.service/set"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role("/falco.sidecar.service/alerts"),
            Some(Role::Ingest)
        );
        assert_eq!(
            required_role("/falco.sidecar.service/status"),
            Some(Role::Reader)
        );
        assert_eq!(
            required_role("/falco.metrics.service/get"),
            Some(Role::Reader)
        );
        assert_eq!(
            required_role("/falco.tokens.service/list"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role("/falco.store.service/backup"),
            Some(Role::Admin)
        );
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn policy_grants_mapped_roles_and_admin_reads() {
        let policy = Policy {
            roles: [("cn:ops".to_string(), vec![Role::Admin])].into(),
            socket_owner_is_admin: true,
            own_uid: 1000,
        };
        let ops = policy.roles_of(&["cn:ops".into()], None);
        assert!(
            ops.contains(&Role::Admin)
                && ops.contains(&Role::Reader)
                && !ops.contains(&Role::Ingest)
        );
        assert_eq!(policy.roles_of(&["uid:1000".into()], Some(1000)).len(), 3);
        assert!(policy.roles_of(&["uid:1001".into()], Some(1001)).is_empty());
    }
}
