use falco_api::proto::version::{service_client::ServiceClient, Request};

use crate::common::TestServer;

#[tokio::test]
async fn version_fills_every_upstream_field() {
    let server = TestServer::start(100).await;
    let mut client = ServiceClient::new(server.channel().await);
    let v = client
        .version(Request {})
        .await
        .expect("version")
        .into_inner();
    assert_eq!(v.version, env!("CARGO_PKG_VERSION"));
    let parts: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!((v.major, v.minor, v.patch), (parts[0], parts[1], parts[2]));
    assert_eq!(v.prerelease, "");
    assert_eq!(v.build, "");
    assert_eq!(v.engine_version, "0.62.0");
    assert_eq!((v.engine_major, v.engine_minor, v.engine_patch), (0, 62, 0));
    assert_eq!(v.engine_fields_checksum.len(), 64);
    assert!(v
        .engine_fields_checksum
        .bytes()
        .all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        v.engine_fields_checksum,
        falco_api::engine::fields_checksum()
    );
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

    let server = TestServer::start(100).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "falco.outputs.service", "falco.version.service"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of '{service}': {e}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service '{service}'");
    }
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "falco.nope.service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("reflection reply")
        .expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection reply: {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "falco.outputs.service",
        "falco.version.service",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    server.stop().await;
}
