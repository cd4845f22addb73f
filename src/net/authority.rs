//! Accepting every gRPC client over the Unix socket, whatever `:authority` it sends.
//!
//! Over Unix sockets, clients put the socket path in `:authority` (grpcio ≥ 1.57 percent-encodes
//! it, grpc-go < 1.31 sends `unix:///…`, grpc-java the bare path), and the HTTP/2 library under
//! tonic refuses the whole request as malformed. This adapter sits between a socket connection
//! and the HTTP/2 server and rewrites, on the client-to-server side only, the header blocks of
//! HEADERS and CONTINUATION frames: an `:authority` that is not a valid URI authority becomes
//! `localhost`. Everything else passes through byte for byte: the connection preface, every other
//! frame, and all server-to-client bytes.
//!
//! A client uses one authority for the whole connection (it comes from the channel's target), so
//! the first header block decides: when its `:authority` is valid (or absent), that block and
//! everything after it pass through untouched and the connection costs nothing more. Otherwise
//! the connection is rewritten to its end. Header blocks are HPACK-compressed against a dynamic
//! table the client's encoder maintains, so a block cannot be edited in place: every block is
//! decoded with a decoder that follows the client's table, and encoded again with an encoder
//! whose table the server's decoder follows (both see the same stream), so the tables stay
//! consistent on each side. A re-encoded block is sent as one HEADERS frame (flags END_STREAM
//! and PRIORITY kept, padding dropped) followed by CONTINUATION frames when it exceeds the
//! minimum frame size every peer accepts.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Every HTTP/2 peer accepts frames this large (SETTINGS_MAX_FRAME_SIZE's minimum).
const MAX_FRAME: usize = 16_384;
/// A header block larger than this closes the connection (the server's own header list limit is
/// far lower; this only bounds what the adapter buffers).
const MAX_BLOCK: usize = 1 << 20;
/// What a rewritten `:authority` becomes.
const LOCALHOST: &[u8] = b"localhost";

/// A header block being gathered from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as received, for a block that goes through untouched.
    raw: Vec<u8>,
}

/// The rewriting state of one connection's client-to-server direction.
pub struct Rewriter {
    /// Bytes read from the client, not yet parsed.
    input: Vec<u8>,
    /// Bytes ready for the server.
    output: Vec<u8>,
    preface_seen: bool,
    /// Not HTTP/2 after all, or a client whose first authority was valid: pass everything
    /// through.
    passthrough: bool,
    /// The first header block showed an invalid authority: rewrite every block.
    rewriting: bool,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    /// The first authority rewritten on this connection, logged once.
    logged: bool,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            input: Vec::new(),
            output: Vec::new(),
            preface_seen: false,
            passthrough: false,
            rewriting: false,
            block: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
            logged: false,
        }
    }
}

fn protocol_error(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// Whether the HTTP/2 server would accept `value` as an authority.
pub fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

impl Rewriter {
    /// Takes bytes from the client.
    pub fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.passthrough {
            self.output.extend_from_slice(bytes);
            return Ok(());
        }
        self.input.extend_from_slice(bytes);
        self.process()
    }

    /// Nothing more to rewrite and nothing buffered: reads can go straight to the connection.
    pub fn done(&self) -> bool {
        self.passthrough && self.input.is_empty() && self.output.is_empty()
    }

    /// Bytes ready for the server.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// At the client's end of stream: whatever is left goes through as it is.
    pub fn finish(&mut self) {
        let rest = std::mem::take(&mut self.input);
        self.output.extend_from_slice(&rest);
    }

    fn process(&mut self) -> io::Result<()> {
        if !self.preface_seen {
            let n = self.input.len().min(PREFACE.len());
            if self.input[..n] != PREFACE[..n] {
                // Not the HTTP/2 preface: nothing here to rewrite.
                self.passthrough = true;
                let all = std::mem::take(&mut self.input);
                self.output.extend_from_slice(&all);
                return Ok(());
            }
            if n < PREFACE.len() {
                return Ok(());
            }
            self.output.extend_from_slice(PREFACE);
            self.input.drain(..PREFACE.len());
            self.preface_seen = true;
        }
        let mut at = 0;
        while !self.passthrough && self.input.len() - at >= FRAME_HEADER {
            let head = &self.input[at..at + FRAME_HEADER];
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            if self.input.len() - at < FRAME_HEADER + len {
                break;
            }
            let end = at + FRAME_HEADER + len;
            let kind = self.input[at + 3];
            if kind == HEADERS || kind == CONTINUATION {
                let frame = self.input[at..end].to_vec();
                self.frame(&frame)?;
            } else {
                // Everything else goes through as it came.
                self.output.extend_from_slice(&self.input[at..end]);
            }
            at = end;
        }
        self.input.drain(..at);
        if self.passthrough {
            let rest = std::mem::take(&mut self.input);
            self.output.extend_from_slice(&rest);
        }
        Ok(())
    }

    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        match kind {
            HEADERS => {
                let (priority, fragment) = headers_payload(flags, payload)?;
                let block = Block {
                    stream,
                    flags,
                    priority,
                    fragment: fragment.to_vec(),
                    raw: frame.to_vec(),
                };
                self.gather(block, flags & END_HEADERS != 0)
            }
            CONTINUATION => match self.block.take() {
                Some(mut block) if block.stream == stream => {
                    block.fragment.extend_from_slice(payload);
                    block.raw.extend_from_slice(frame);
                    self.gather(block, flags & END_HEADERS != 0)
                }
                // Not after HEADERS: a protocol error the server reports itself.
                other => {
                    self.block = other;
                    self.output.extend_from_slice(frame);
                    Ok(())
                }
            },
            _ => {
                self.output.extend_from_slice(frame);
                Ok(())
            }
        }
    }

    fn gather(&mut self, block: Block, complete: bool) -> io::Result<()> {
        if block.fragment.len() > MAX_BLOCK {
            return Err(protocol_error("header block over 1 MiB"));
        }
        if complete {
            self.rewrite(block)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    /// Decodes a whole header block, fixes `:authority`, and emits it encoded again.
    fn rewrite(&mut self, block: Block) -> io::Result<()> {
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                headers.push((name.into_owned(), value.into_owned()))
            })
            .map_err(|e| protocol_error(&format!("bad header block: {e}")))?;
        let bad = headers
            .iter()
            .any(|(n, v)| n.as_slice() == b":authority" && !valid_authority(v));
        if !self.rewriting && !bad {
            // A well-behaved client: this block and the rest of the connection go through.
            self.output.extend_from_slice(&block.raw);
            self.passthrough = true;
            return Ok(());
        }
        self.rewriting = true;
        for (name, value) in headers.iter_mut() {
            if name.as_slice() == b":authority" && !valid_authority(value) {
                if !self.logged {
                    tracing::debug!(
                        authority = %String::from_utf8_lossy(value),
                        "serving a request whose :authority is not a URI authority as localhost"
                    );
                    self.logged = true;
                }
                *value = LOCALHOST.to_vec();
            }
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        self.emit(&block, &encoded);
        Ok(())
    }

    fn emit(&mut self, block: &Block, encoded: &[u8]) {
        let priority = block.priority.filter(|_| block.flags & PRIORITY != 0);
        let first_room = MAX_FRAME - priority.map_or(0, |p| p.len());
        let (first, mut rest) = encoded.split_at(encoded.len().min(first_room));
        let mut flags = block.flags & (END_STREAM | PRIORITY);
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        let len = first.len() + priority.map_or(0, |p| p.len());
        self.frame_header(len, HEADERS, flags, block.stream);
        if let Some(p) = priority {
            self.output.extend_from_slice(&p);
        }
        self.output.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            let flags = if tail.is_empty() { END_HEADERS } else { 0 };
            self.frame_header(chunk.len(), CONTINUATION, flags, block.stream);
            self.output.extend_from_slice(chunk);
            rest = tail;
        }
    }

    fn frame_header(&mut self, len: usize, kind: u8, flags: u8, stream: u32) {
        let len = len as u32;
        self.output.extend_from_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
        ]);
        self.output.extend_from_slice(&stream.to_be_bytes());
    }
}

/// A HEADERS payload's priority fields and header block fragment (padding removed).
fn headers_payload(flags: u8, payload: &[u8]) -> io::Result<(Option<[u8; 5]>, &[u8])> {
    let mut body = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        let (&n, tail) = body
            .split_first()
            .ok_or_else(|| protocol_error("HEADERS frame too short for its padding"))?;
        pad = usize::from(n);
        body = tail;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        if body.len() < 5 {
            return Err(protocol_error("HEADERS frame too short for its priority"));
        }
        priority = Some([body[0], body[1], body[2], body[3], body[4]]);
        body = &body[5..];
    }
    if pad > body.len() {
        return Err(protocol_error("HEADERS padding longer than the frame"));
    }
    Ok((priority, &body[..body.len() - pad]))
}

/// A socket connection whose client-to-server header blocks go through a [`Rewriter`].
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    eof: bool,
    enabled: bool,
    /// Reused for every read from the client.
    chunk: Box<[u8]>,
}

/// Whether socket connections are rewritten: on unless `FALCO_API_AUTHORITY_FIX=0` (a switch
/// for measuring what the adapter costs).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("FALCO_API_AUTHORITY_FIX").map_or(true, |v| v != "0"))
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::default(),
            eof: false,
            enabled: enabled(),
            chunk: vec![0u8; 16 * 1024].into_boxed_slice(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.enabled || this.rewriter.done() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            let ready = this.rewriter.output();
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    this.eof = true;
                    this.rewriter.finish();
                }
                Poll::Ready(Ok(())) => this.rewriter.push(read.filled())?,
            }
        }
    }
}

super::wrap::write_through!(AuthorityFix);

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let len = payload.len() as u32;
        out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Decodes every HEADERS/CONTINUATION block of `bytes` (after the preface) as the server does.
    type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

    fn server_view(bytes: &[u8]) -> (Vec<HeaderList>, Vec<u8>) {
        let mut decoder = loona_hpack::Decoder::new();
        let mut blocks = Vec::new();
        let mut others = Vec::new();
        let mut at = PREFACE.len();
        let mut pending = Vec::new();
        while at < bytes.len() {
            let len = (usize::from(bytes[at]) << 16)
                | (usize::from(bytes[at + 1]) << 8)
                | usize::from(bytes[at + 2]);
            let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
            let payload = &bytes[at + 9..at + 9 + len];
            match kind {
                HEADERS | CONTINUATION => {
                    let (_, frag) = if kind == HEADERS {
                        headers_payload(flags, payload).unwrap()
                    } else {
                        (None, payload)
                    };
                    pending.extend_from_slice(frag);
                    if flags & END_HEADERS != 0 {
                        blocks.push(decoder.decode(&pending).unwrap());
                        pending.clear();
                    }
                }
                _ => others.extend_from_slice(&bytes[at..at + 9 + len]),
            }
            at += 9 + len;
        }
        (blocks, others)
    }

    fn authority_of(block: &[(Vec<u8>, Vec<u8>)]) -> Option<String> {
        block
            .iter()
            .find(|(n, _)| n == b":authority")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn bad_authorities_become_localhost_and_the_rest_passes_through() {
        let mut client = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        input.extend_from_slice(&settings);
        let cases: [&[u8]; 5] = [
            b"%2Fvar%2Flib%2Ffalco-api.sock",
            b"unix:///var/lib/falco-api.sock",
            b"/var/lib/falco-api.sock",
            b"localhost",
            b"",
        ];
        for (i, authority) in cases.iter().enumerate() {
            let mut headers: Vec<(&[u8], &[u8])> = vec![
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/falco.version.service/version"),
            ];
            if !authority.is_empty() {
                headers.push((b":authority", authority));
            }
            headers.push((b"content-type", b"application/grpc"));
            let block = client.encode(headers);
            input.extend_from_slice(&frame(HEADERS, END_HEADERS, 1 + 2 * i as u32, &block));
            input.extend_from_slice(&frame(0x0, END_STREAM, 1 + 2 * i as u32, &[0, 0, 0, 0, 0]));
        }
        let mut r = Rewriter::default();
        // Fed a byte at a time: frames split anywhere still come out whole.
        for b in &input {
            r.push(&[*b]).unwrap();
        }
        let out = std::mem::take(r.output());
        assert!(out.starts_with(PREFACE));
        let (blocks, others) = server_view(&out);
        let got: Vec<Option<String>> = blocks.iter().map(|b| authority_of(b)).collect();
        assert_eq!(
            got,
            vec![
                Some("localhost".into()),
                Some("localhost".into()),
                Some("localhost".into()),
                Some("localhost".into()),
                None
            ]
        );
        // SETTINGS and DATA frames pass through byte for byte.
        let mut expected_others = settings.clone();
        for i in 0..5u32 {
            expected_others.extend_from_slice(&frame(0x0, END_STREAM, 1 + 2 * i, &[0, 0, 0, 0, 0]));
        }
        assert_eq!(others, expected_others);
    }

    #[test]
    fn continuation_padding_priority_and_a_thousand_indexed_requests() {
        let mut client = loona_hpack::Encoder::new();
        let mut r = Rewriter::default();
        r.push(PREFACE).unwrap();
        let big = vec![b'x'; 40_000];
        for i in 0..1000u32 {
            let mut headers: Vec<(&[u8], &[u8])> = vec![
                (b":method", b"POST"),
                (b":path", b"/p"),
                (b":authority", b"%2Fsock"),
            ];
            if i == 7 {
                headers.push((b"x-big", &big));
            }
            let block = client.encode(headers);
            let stream = 1 + 2 * i;
            if i % 3 == 0 {
                // Padded, with priority, split over CONTINUATION frames.
                let (a, b) = block.split_at(block.len() / 2);
                let mut payload = vec![4u8];
                payload.extend_from_slice(&[0, 0, 0, 0, 16]);
                payload.extend_from_slice(a);
                payload.extend_from_slice(&[0; 4]);
                r.push(&frame(HEADERS, PADDED | PRIORITY, stream, &payload))
                    .unwrap();
                r.push(&frame(CONTINUATION, END_HEADERS, stream, b))
                    .unwrap();
            } else {
                r.push(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &block))
                    .unwrap();
            }
        }
        let out = std::mem::take(r.output());
        let (blocks, _) = server_view(&out);
        assert_eq!(blocks.len(), 1000);
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(authority_of(b).as_deref(), Some("localhost"), "request {i}");
            assert_eq!(b.iter().find(|(n, _)| n == b":path").unwrap().1, b"/p");
        }
        assert_eq!(
            blocks[7]
                .iter()
                .find(|(n, _)| n == b"x-big")
                .unwrap()
                .1
                .len(),
            40_000
        );
    }

    #[test]
    fn a_connection_whose_first_authority_is_valid_passes_through_byte_for_byte() {
        let mut client = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        for (i, authority) in [&b"localhost"[..], b"%2Flater"].iter().enumerate() {
            let headers: Vec<(&[u8], &[u8])> =
                vec![(b":method", b"POST"), (b":authority", authority)];
            let block = client.encode(headers);
            let mut payload = vec![2u8];
            payload.extend_from_slice(&block);
            payload.extend_from_slice(&[0, 0]);
            input.extend_from_slice(&frame(
                HEADERS,
                END_HEADERS | PADDED,
                1 + 2 * i as u32,
                &payload,
            ));
        }
        let mut r = Rewriter::default();
        r.push(&input).unwrap();
        assert_eq!(r.output().as_slice(), input.as_slice());
    }

    #[test]
    fn not_http2_passes_through_untouched() {
        let mut r = Rewriter::default();
        r.push(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.output().as_slice(), b"GET / HTTP/1.1\r\n\r\n");
    }
}
