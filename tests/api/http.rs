//! The HTTP surface: role guards, and the rule that plain HTTP stays on loopback unless opened.

use std::collections::HashSet;
use std::process::Command;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use falco_api::http::{require, Caller};
use falco_api::net::identity::{Identity, Role};
use tower::ServiceExt;

use crate::common::process::EXE;

fn caller(roles: &[Role]) -> Option<Identity> {
    Some(Identity {
        name: "cn:alice".into(),
        names: vec!["cn:alice".into()],
        roles: roles.iter().copied().collect::<HashSet<_>>(),
    })
}

async fn status_for(identity: Option<Identity>) -> (u16, String) {
    let router = Router::new()
        .route("/guarded", get(|| async { "in" }))
        .layer(axum::middleware::from_fn(|req, next| {
            require(Role::Reader, req, next)
        }));
    let mut request = http::Request::get("/guarded").body(Body::empty()).unwrap();
    request.extensions_mut().insert(Caller {
        addr: "127.0.0.1:1".parse().unwrap(),
        identity,
    });
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn guarded_endpoints_use_the_grpc_roles() {
    let (status, body) = status_for(None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = status_for(caller(&[Role::Ingest])).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cn:alice lacks the reader role"), "{body}");
    let (status, body) = status_for(caller(&[Role::Reader])).await;
    assert_eq!((status, body.as_str()), (200, "in"));
}

#[test]
fn plain_http_beyond_loopback_is_refused_at_boot() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(EXE)
        .args(["serve", "--webhook", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .arg("--listen")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("would serve plain HTTP beyond this machine")
            && stderr.contains("webhook.allow_remote_plaintext"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("s.sock").exists(),
        "refused before binding"
    );
}
