//! Mutual TLS, identities and roles, socket permissions, limits.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use falco_api::cli::certs::{self, ClientArgs, GenerateArgs};
use falco_api::grpc::auth::{Policy, Role};
use falco_api::grpc::{self, ServerOptions};
use falco_api::net::Limits;
use falco_api::proto::rules::{
    service_client::ServiceClient as RulesClient, ListRequest, PutRequest,
};
use falco_api::proto::version::{
    service_client::ServiceClient as VersionClient, Request as VersionRequest,
};
use tonic::transport::Channel;
use tonic::Code;

use crate::common::TestServer;

struct TlsServer {
    server: TestServer,
    url: String,
    certs: tempfile::TempDir,
}

fn make_certs(dir: &Path) {
    certs::generate(&GenerateArgs {
        out: dir.to_path_buf(),
        name: "localhost".into(),
        sans: vec!["127.0.0.1".into()],
        client_name: "falco-api-client".into(),
        days: 2,
    })
    .unwrap();
    for name in ["reader", "admin"] {
        certs::client(&ClientArgs {
            dir: dir.to_path_buf(),
            name: name.into(),
            days: 2,
        })
        .unwrap();
    }
}

async fn start_tls(limits: Limits) -> TlsServer {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let server = TestServer::start(1000).await;
    let read = |f: &str| std::fs::read(certs.path().join(f)).unwrap();
    let tls = grpc::tls_config(&read("server.crt"), &read("server.key"), &read("ca.crt"));
    let policy = Policy {
        roles: [
            ("cn:reader".to_string(), vec![Role::Reader]),
            ("cn:admin".to_string(), vec![Role::Admin, Role::Ingest]),
        ]
        .into(),
        socket_owner_is_admin: true,
        own_uid: falco_api::net::own_uid(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let opts = ServerOptions {
        policy: Arc::new(policy),
        limits,
    };
    tokio::spawn(grpc::serve_tcp(server.app.clone(), listener, tls, opts));
    TlsServer { server, url, certs }
}

impl TlsServer {
    async fn client(&self, name: &str) -> Result<Channel, tonic::transport::Error> {
        let read = |f: String| std::fs::read(self.certs.path().join(f)).unwrap();
        falco_api::cli::client::connect_tls(
            &self.url,
            &read("ca.crt".into()),
            &read(format!("{name}.crt")),
            &read(format!("{name}.key")),
            Some("localhost"),
        )
        .await
    }
}

async fn version_via(channel: Result<Channel, tonic::transport::Error>) -> Result<String, String> {
    let channel = channel.map_err(|e| e.to_string())?;
    VersionClient::new(channel)
        .version(VersionRequest {})
        .await
        .map(|v| v.into_inner().version)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn mutual_tls_round_trip_and_the_certificate_names_the_author() {
    let t = start_tls(Limits::default()).await;
    assert_eq!(
        version_via(t.client("admin").await).await.unwrap(),
        env!("CARGO_PKG_VERSION")
    );
    let mut rules = RulesClient::new(t.client("admin").await.unwrap());
    let put = PutRequest {
        name: "a.yaml".into(),
        content: "- list: x\n  items: [a]\n".into(),
        expected_revision: None,
        comment: String::new(),
    };
    rules.put(put).await.unwrap();
    let h = rules
        .history(falco_api::proto::rules::HistoryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.entries[0].author, "cn:admin");
    t.server.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_or_from_another_ca_is_refused() {
    let t = start_tls(Limits::default()).await;
    // No client certificate at all.
    let ca = std::fs::read(t.certs.path().join("ca.crt")).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
        .domain_name("localhost");
    let bare = async {
        tonic::transport::Endpoint::from_shared(t.url.clone())?
            .tls_config(tls)?
            .connect()
            .await
    };
    assert!(
        version_via(bare.await).await.is_err(),
        "a client without a certificate must be refused"
    );
    // A certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    let read = |f: &str| std::fs::read(other.path().join(f)).unwrap();
    let foreign = falco_api::cli::client::connect_tls(
        &t.url,
        &ca,
        &read("admin.crt"),
        &read("admin.key"),
        Some("localhost"),
    )
    .await;
    assert!(
        version_via(foreign).await.is_err(),
        "a certificate from another CA must be refused"
    );
    // The server keeps serving verified clients.
    assert!(version_via(t.client("reader").await).await.is_ok());
    t.server.stop().await;
}

#[tokio::test]
async fn a_reader_cannot_put_rules_and_an_admin_can() {
    let t = start_tls(Limits::default()).await;
    let mut reader = RulesClient::new(t.client("reader").await.unwrap());
    reader
        .list(ListRequest::default())
        .await
        .expect("a reader lists");
    let put = PutRequest {
        name: "a.yaml".into(),
        content: "- list: x\n  items: [a]\n".into(),
        expected_revision: None,
        comment: String::new(),
    };
    let denied = reader.put(put.clone()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("needs the role 'admin'")
            && denied.message().contains("cn:reader has reader"),
        "{}",
        denied.message()
    );
    let mut inputs = falco_api::proto::inputs::service_client::ServiceClient::new(
        t.client("reader").await.unwrap(),
    );
    let send = inputs
        .send(tokio_stream::iter(vec![
            falco_api::proto::inputs::Request::default(),
        ]))
        .await;
    let status = match send {
        Err(s) => s,
        Ok(r) => r.into_inner().message().await.expect_err("denied"),
    };
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("'ingest'"),
        "{}",
        status.message()
    );
    // The default client certificate is verified but mapped to nothing.
    let nobody = VersionClient::new(t.client("client").await.unwrap())
        .version(VersionRequest {})
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::PermissionDenied);
    assert!(
        nobody.message().contains("cn:falco-api-client has no role"),
        "{}",
        nobody.message()
    );
    let mut admin = RulesClient::new(t.client("admin").await.unwrap());
    admin.put(put).await.expect("an admin puts");
    t.server.stop().await;
}

#[tokio::test]
async fn a_certificate_without_names_is_unauthenticated() {
    let t = start_tls(Limits::default()).await;
    let dir = t.certs.path();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let channel = falco_api::cli::client::connect_tls(
        &t.url,
        &ca,
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        Some("localhost"),
    )
    .await
    .unwrap();
    let status = VersionClient::new(channel)
        .version(VersionRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    t.server.stop().await;
}

#[tokio::test]
async fn on_the_socket_roles_follow_the_policy() {
    let server = TestServer::start(1000).await;
    let socket = server.dir.join("second.sock");
    let listener = grpc::bind_unix(&socket).unwrap();
    let policy = Policy {
        roles: [(
            format!("uid:{}", falco_api::net::own_uid()),
            vec![Role::Reader],
        )]
        .into(),
        socket_owner_is_admin: false,
        own_uid: falco_api::net::own_uid(),
    };
    let opts = ServerOptions {
        policy: Arc::new(policy),
        limits: Limits::default(),
    };
    tokio::spawn(grpc::serve_unix_with(server.app.clone(), listener, opts));
    let channel = falco_api::cli::client::connect_unix(&socket).await.unwrap();
    let mut rules = RulesClient::new(channel);
    rules.list(ListRequest::default()).await.expect("reader");
    let put = PutRequest {
        name: "a.yaml".into(),
        content: "- list: x\n  items: [a]\n".into(),
        expected_revision: None,
        comment: String::new(),
    };
    let denied = rules.put(put).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied
            .message()
            .contains(&format!("uid:{} has reader", falco_api::net::own_uid())),
        "{}",
        denied.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_while_the_server_keeps_serving() {
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        ..Limits::default()
    };
    let t = start_tls(limits).await;
    let mut admin = RulesClient::new(t.client("admin").await.unwrap());
    let big = format!(
        "- list: x\n  items: [{}]\n",
        vec!["abcdefgh"; 20_000].join(", ")
    );
    let put = PutRequest {
        name: "big.yaml".into(),
        content: big,
        expected_revision: None,
        comment: String::new(),
    };
    let err = admin.put(put).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    assert!(err.message().contains("too large"), "{}", err.message());
    assert!(
        version_via(t.client("reader").await).await.is_ok(),
        "others are still served"
    );
    let mut again = RulesClient::new(t.client("admin").await.unwrap());
    again
        .list(ListRequest::default())
        .await
        .expect("and so is the same client afterwards");
    t.server.stop().await;
}

#[tokio::test]
async fn fifty_idle_connections_do_not_delay_a_real_clients_handshake() {
    let limits = Limits {
        handshake_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let t = start_tls(limits).await;
    let addr = t.url.trim_start_matches("https://").to_string();
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let started = Instant::now();
    assert!(version_via(t.client("reader").await).await.is_ok());
    // The idle connections would hold a serial handshake for the whole 30 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    drop(idle);
    t.server.stop().await;
}

#[tokio::test]
async fn the_socket_takes_the_configured_mode_and_group_and_is_never_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/falco/x.sock");
    let gid = std::fs::metadata("/").unwrap().gid();
    let listener = grpc::bind_unix_with(&path, 0o640, Some(gid)).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(meta.gid(), gid);
    // A live socket is refused; a stale one (nobody listening) is replaced.
    let err = grpc::bind_unix(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("another server is listening"));
    drop(listener);
    let again = grpc::bind_unix(&path).expect("a stale socket file is replaced");
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o660);
    drop(again);
}

/// 1,100 TCP connections that send nothing (no TLS hello) do not keep a real mTLS client
/// waiting, and are closed within the first-byte timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_never_stop_calls_over_mutual_tls() {
    let _heavy = crate::common::HEAVY.lock().await;
    falco_api::net::listen::raise_open_files_limit();
    let limits = Limits {
        first_byte_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let t = start_tls(limits).await;
    let addr = t.url.trim_start_matches("https://").to_string();
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let started = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        version_via(t.client("reader").await).await
    })
    .await;
    assert!(
        matches!(answered, Ok(Ok(_))),
        "no answer within 2 s: {answered:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let open = crate::common::still_open(idle, Duration::from_secs(5)).await;
    assert_eq!(open, 0, "connections that sent nothing are still open");
    t.server.stop().await;
}
