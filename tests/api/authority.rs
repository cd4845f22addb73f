//! Clients that put the socket path in `:authority` (grpcio, old grpc-go, grpc-java) are served
//! over the real Unix socket. The client here speaks HTTP/2 frames itself, since no Rust client
//! will send such an authority: each variant gets `version`, a legacy `get` that ends OK, and a
//! legacy `sub` that streams a live alert across 100 polls; one connection then makes a
//! thousand calls with an indexing HPACK encoder, and a header block split over CONTINUATION
//! frames is served.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::common::TestServer;

type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Raw {
    stream: UnixStream,
    encoder: loona_hpack::Encoder<'static>,
    decoder: loona_hpack::Decoder<'static>,
    next_id: u32,
    /// Per stream: DATA payload bytes, and the trailers once they came.
    data: HashMap<u32, Vec<u8>>,
    trailers: HashMap<u32, HeaderList>,
    /// Streams whose response headers came.
    answered: std::collections::HashSet<u32>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A gRPC message frame carrying `message`.
fn grpc(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

impl Raw {
    async fn connect(socket: &std::path::Path) -> Raw {
        let mut stream = UnixStream::connect(socket).await.unwrap();
        stream.write_all(PREFACE).await.unwrap();
        stream.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        Raw {
            stream,
            encoder: loona_hpack::Encoder::new(),
            decoder: loona_hpack::Decoder::new(),
            next_id: 1,
            data: HashMap::new(),
            trailers: HashMap::new(),
            answered: Default::default(),
        }
    }

    /// Opens a stream for `path`; `split` sends the header block over HEADERS + CONTINUATION.
    async fn open(&mut self, path: &str, authority: Option<&str>, split: bool) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let mut headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.as_bytes()),
        ];
        if let Some(a) = authority {
            headers.push((b":authority", a.as_bytes()));
        }
        headers.push((b"content-type", b"application/grpc"));
        headers.push((b"te", b"trailers"));
        let block = self.encoder.encode(headers);
        if split {
            let (a, b) = block.split_at(block.len() / 2);
            self.write(&frame(0x1, 0, id, a)).await;
            self.write(&frame(0x9, 0x4, id, b)).await;
        } else {
            self.write(&frame(0x1, 0x4, id, &block)).await;
        }
        id
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, id: u32, message: &[u8], end: bool) {
        self.write(&frame(0x0, u8::from(end), id, &grpc(message)))
            .await;
    }

    /// Reads frames until `done` holds (answering SETTINGS and PINGs, keeping windows open).
    async fn read_until(&mut self, mut done: impl FnMut(&Raw) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !done(self) {
            let mut head = [0u8; 9];
            tokio::time::timeout_at(deadline, self.stream.read_exact(&mut head))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no answer in time; streams answered {:?}, data {:?}, trailers {:?}",
                        self.answered,
                        self.data
                            .iter()
                            .map(|(k, v)| (k, v.len()))
                            .collect::<Vec<_>>(),
                        self.trailers.keys().collect::<Vec<_>>()
                    )
                })
                .expect("read a frame");
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await.unwrap();
            match kind {
                0x0 => {
                    self.data.entry(id).or_default().extend_from_slice(&payload);
                    let update = (len as u32).to_be_bytes();
                    self.write(&frame(0x8, 0, 0, &update)).await;
                    self.write(&frame(0x8, 0, id, &update)).await;
                }
                0x1 => {
                    let headers = self
                        .decoder
                        .decode(&payload)
                        .expect("server headers decode");
                    self.answered.insert(id);
                    if flags & 0x1 != 0 {
                        self.trailers.insert(id, headers);
                    }
                }
                0x3 => panic!("the server reset stream {id}: {payload:?}"),
                0x4 if flags & 0x1 == 0 => self.write(&frame(0x4, 0x1, 0, &[])).await,
                0x6 if flags & 0x1 == 0 => self.write(&frame(0x6, 0x1, 0, &payload)).await,
                0x7 => panic!("the server sent GOAWAY: {payload:?}"),
                _ => {}
            }
        }
    }

    fn status(&self, id: u32) -> Option<String> {
        self.trailers.get(&id).and_then(|t| {
            t.iter()
                .find(|(n, _)| n == b"grpc-status")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        })
    }

    /// A unary or server-streaming call with an empty request, to its trailers.
    async fn call(
        &mut self,
        path: &str,
        authority: Option<&str>,
        split: bool,
    ) -> (String, Vec<u8>) {
        let id = self.open(path, authority, split).await;
        self.send(id, b"", true).await;
        self.read_until(|r| r.trailers.contains_key(&id)).await;
        let status = self.status(id).unwrap_or_default();
        (status, self.data.remove(&id).unwrap_or_default())
    }
}

const AUTHORITIES: [Option<&str>; 5] = [
    Some("%2Ftmp%2Ffalco-api%2Fs.sock"),
    Some("unix:///tmp/falco-api/s.sock"),
    Some("/tmp/falco-api/s.sock"),
    Some("localhost"),
    None,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authority_is_served_over_the_socket() {
    let server = TestServer::start(1000).await;
    for authority in AUTHORITIES {
        let mut raw = Raw::connect(&server.socket).await;
        let (status, body) = raw
            .call("/falco.version.service/version", authority, false)
            .await;
        assert_eq!(status, "0", "{authority:?}");
        assert!(
            body.windows(5).any(|w| w == b"0.1.0"),
            "{authority:?}: {body:?}"
        );
        let (status, _) = raw
            .call("/falco.outputs.service/get", authority, false)
            .await;
        assert_eq!(status, "0", "legacy get ends OK for {authority:?}");
        // Legacy sub: the first (empty) request, then an alert, across 100 more polls.
        let id = raw
            .open("/falco.outputs.service/sub", authority, false)
            .await;
        raw.send(id, b"", false).await;
        // The stream is open (and "live" fixed) once its response headers came.
        raw.read_until(|r| r.answered.contains(&id)).await;
        let before = raw.data.get(&id).map_or(0, Vec::len);
        for poll in 0..100 {
            raw.send(id, b"", false).await;
            if poll == 50 {
                server.append(1).await;
            }
        }
        raw.read_until(|r| r.data.get(&id).map_or(0, Vec::len) > before)
            .await;
        assert!(raw.status(id).is_none(), "the sub stream is still open");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_indexed_requests_and_continuation_frames_on_one_connection() {
    let server = TestServer::start(1000).await;
    let mut raw = Raw::connect(&server.socket).await;
    for i in 0..1000 {
        let authority = AUTHORITIES[i % AUTHORITIES.len()];
        let split = i % 7 == 0;
        let (status, _) = raw
            .call("/falco.version.service/version", authority, split)
            .await;
        assert_eq!(status, "0", "request {i}");
    }
    drop(raw);
    server.stop().await;
}
