//! The Runtime API's HTTP/1 as the blocking path reads and writes it: a socket with its buffer,
//! the runtime's request heads sorted (the two hot requests, or hyper's) and rewritten for
//! upstream, Lambda's answers read whole (`Content-Length` or chunked, interim answers skipped),
//! responses serialized. It knows neither transport: the forwarder drives it, and the hyper
//! proxy only shares its names of the Runtime API's paths and headers.

use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::net::TcpStream;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use crate::lease::Deadline;

pub const NEXT: &str = "/2018-06-01/runtime/invocation/next";
pub const INVOCATION: &str = "/2018-06-01/runtime/invocation/";
pub const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
pub const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
/// Sent with each event of a function in tenant-isolation mode.
pub const TENANT_ID: &str = "lambda-runtime-aws-tenant-id";
pub const RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";
/// The largest request head, and the largest trailer block, the proxy accepts from the runtime:
/// AWS's Python, Java and Ruby clients send `Lambda-Runtime-Function-XRay-Error-Cause` up to 1 MiB,
/// and a streamed answer's error trailers carry a base64 body. hyper's defaults (~400 KB heads,
/// 16 KiB trailers) would refuse what Lambda accepts.
pub const MAX_HEAD_BYTES: usize = 2 * 1024 * 1024;

/// Headers a head may carry here; more hand the connection to hyper.
pub const MAX_HEADERS: usize = 96;
const READ_SIZE: usize = 16 * 1024;
/// The largest read a long body is carried in (as hyper's largest read buffer, about).
const LONG_READ: usize = 256 * 1024;
/// The largest answer from Lambda taken whole: events are 6 MB at most (200 MB only for
/// asynchronous invocations' payloads, which never exceed 1 MB per event).
const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// A buffer grown past this for a large message shrinks back once it is empty...
const KEEP_BUFFER: usize = 1024 * 1024;
/// ... unless a large message came within this many messages: a function that takes large
/// events keeps the room for them (fresh memory costs a page fault per 4 KiB, more CPU than
/// the copies), one that took a single large upload gives it back soon.
const KEEP_LARGE_FOR: u32 = 16;
/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), and `Host`,
/// which upstream is Lambda's: both transports drop them on the way to Lambda.
pub const HOP_BY_HOP: [&str; 5] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
];

/// The request id of `POST .../invocation/{id}/response` or `.../error`.
pub fn answered_invocation(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(INVOCATION)?;
    let id = rest
        .strip_suffix("/response")
        .or_else(|| rest.strip_suffix("/error"))?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// A socket and what has been read from it but not consumed.
pub struct Wire {
    pub stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Messages consumed since the buffer last held more than [`KEEP_BUFFER`].
    since_large: u32,
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
            since_large: 0,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            if self.end > KEEP_BUFFER {
                self.since_large = 0;
            } else {
                self.since_large = self.since_large.saturating_add(1);
            }
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUFFER && self.since_large >= KEEP_LARGE_FOR {
                self.buf.truncate(READ_SIZE);
                self.buf.shrink_to_fit();
            }
        }
    }

    /// Room for a read of up to `n` bytes (at most [`LONG_READ`]) once the buffer is empty: a
    /// long body is carried in large reads, not [`READ_SIZE`] ones.
    pub fn room_for(&mut self, n: usize) {
        let n = n.min(LONG_READ);
        if self.start == self.end && self.buf.len() < n {
            self.buf.resize(n, 0);
        }
    }

    /// Reads more; EOF is an error (every caller expects more bytes).
    pub fn fill(&mut self) -> io::Result<()> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = (self.buf.len() * 2).max(READ_SIZE);
                self.buf.resize(grown, 0);
            }
        }
        let n = loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                // A read with a timeout (see `fill_waiting`) is not restarted after the process
                // was stopped and resumed, as Lambda freezes and thaws an environment: again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                read => break read?,
            }
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// Reads more of a message under way, waiting out the idle timeout the socket may carry
    /// (which bounds only the wait for a message to begin).
    pub fn fill_waiting(&mut self) -> io::Result<()> {
        loop {
            match self.fill() {
                Err(e) if timed_out(&e) => {}
                done => return done,
            }
        }
    }

    /// Reads until at least `n` bytes are buffered. A message larger than the buffer is read
    /// straight into room reserved for it, never zeroed first, in reads as large as the socket
    /// gives; one that fits is read into the buffer as it is.
    pub fn fill_to(&mut self, n: usize) -> io::Result<()> {
        let have = self.end - self.start;
        if have >= n {
            return Ok(());
        }
        if self.buf.len() - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end = have;
            self.start = 0;
            if self.buf.len() < n {
                self.buf.truncate(self.end);
                self.buf.reserve_exact(n - have);
                let want = (n - have) as u64;
                let read = (&self.stream).take(want).read_to_end(&mut self.buf);
                self.end = self.buf.len();
                if read? < want as usize {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                return Ok(());
            }
        }
        while self.end - self.start < n {
            self.fill()?;
        }
        Ok(())
    }
}

/// A read that ended on the socket's timeout (`SO_RCVTIMEO`: `EAGAIN` on Linux), having read
/// nothing. (`ETIMEDOUT` is a connection that died.)
pub fn timed_out(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A request the thread serves itself.
pub enum Hot {
    Next,
    /// An answer for `id` with a `Content-Length` body.
    Answer {
        id: String,
        errored: bool,
        length: usize,
    },
}

/// A request head, read.
pub struct Head {
    pub len: usize,
    pub hot: Option<Hot>,
    /// A hot request's head as it goes upstream (see [`rewrite`]).
    pub upstream: Vec<u8>,
    /// The runtime asked to close the connection after this exchange.
    pub close: bool,
}

/// Lambda's answer, whole, at the front of the upstream buffer.
pub struct Answer {
    /// The message's length in the buffer, as it came (head and framed body).
    pub len: usize,
    pub head_len: usize,
    pub status: u16,
    /// A chunked body, decoded; `None`: the body is in the buffer, right after the head.
    pub decoded: Option<Bytes>,
    pub close: bool,
    /// Given before the request's body was all sent.
    pub early: bool,
    /// An event's request id, deadline and tenant (a 200 with a request id).
    pub event: Option<EventHead>,
}

/// What the thread does with a request; `host`: Lambda's, for the head that goes upstream.
pub fn classify(req: &httparse::Request<'_, '_>, len: usize, host: &str) -> Head {
    let mut close = false;
    let mut length: Option<usize> = None;
    let mut unusual = req.version != Some(1);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            unusual |= parsed.is_none() || length.is_some();
            length = parsed;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case(RESPONSE_MODE)
        {
            unusual = true;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let path = req.path.unwrap_or("");
    let hot = match req.method {
        _ if unusual => None,
        Some("GET") if path == NEXT && length.unwrap_or(0) == 0 => Some(Hot::Next),
        Some("POST") => answered_invocation(path).and_then(|id| {
            Some(Hot::Answer {
                id: id.to_string(),
                errored: path.ends_with("/error"),
                length: length?,
            })
        }),
        _ => None,
    };
    let upstream = if hot.is_some() {
        rewrite(req, host)
    } else {
        Vec::new()
    };
    Head {
        len,
        hot,
        upstream,
        close,
    }
}

/// `req` for upstream: the same request line and headers, less those of the runtime's
/// connection, with Lambda's `Host`.
pub fn rewrite(req: &httparse::Request<'_, '_>, host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        if HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"host: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// Reads one whole answer from Lambda: framed by `Content-Length`, chunked, or bodiless.
pub fn read_answer(wire: &mut Wire) -> io::Result<Answer> {
    let head = loop {
        match read_answer_head(wire)? {
            // An interim answer: skip it.
            Some(head) if (100..200).contains(&head.status) => wire.consume(head.len),
            Some(head) => break head,
            None => wire.fill()?,
        }
    };
    let head_len = head.len;
    let (len, decoded) = match head.framing {
        Framing::None => (head_len, None),
        Framing::Length(n) => {
            wire.fill_to(head_len + n)?;
            (head_len + n, None)
        }
        Framing::Chunked => {
            let mut chunks = Chunks::default();
            loop {
                if let Some(end) = chunks.advance(&wire.data()[head_len..])? {
                    break (head_len + end, Some(Bytes::from(chunks.body)));
                }
                wire.fill()?;
            }
        }
    };
    Ok(Answer {
        len,
        head_len,
        status: head.status,
        decoded,
        close: head.close,
        early: false,
        event: head.event,
    })
}

/// An answer's head, as far as it is known.
struct AnswerHead {
    len: usize,
    status: u16,
    framing: Framing,
    close: bool,
    event: Option<EventHead>,
}

/// The head at the front of `wire`'s buffer; `None`: not all of it is there yet.
fn read_answer_head(wire: &Wire) -> io::Result<Option<AnswerHead>> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(wire.data()) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if wire.data().len() < MAX_HEAD_BYTES => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(invalid("an oversized head")),
        Err(e) => return Err(invalid(&format!("a malformed head ({e})"))),
    };
    let status = res.code.unwrap_or(0);
    let mut framing = Framing::None;
    let mut close = res.version != Some(1);
    let (mut id, mut deadline_ms, mut tenant) = (None, None, None);
    for h in res.headers.iter() {
        let text = || std::str::from_utf8(h.value).ok();
        if h.name.eq_ignore_ascii_case(REQUEST_ID) {
            id = text();
        } else if h.name.eq_ignore_ascii_case(DEADLINE_MS) {
            deadline_ms = text().and_then(|v| v.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case(TENANT_ID) {
            tenant = text();
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = text()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| invalid("invalid Content-Length from the Runtime API"))?;
            if n > MAX_ANSWER {
                return Err(invalid("an answer larger than any event"));
            }
            framing = Framing::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            framing = Framing::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let interim = (100..200).contains(&status);
    if !interim && matches!(framing, Framing::None) && !matches!(status, 204 | 304) {
        // Read to the close: not how the Runtime API answers.
        return Err(invalid("an answer from the Runtime API without a length"));
    }
    let event = id.filter(|_| status == 200).map(|id| EventHead {
        id: id.to_string(),
        deadline: Deadline::from_unix_ms(deadline_ms),
        tenant: tenant.map(str::to_string),
    });
    Ok(Some(AnswerHead {
        len,
        status,
        framing,
        close,
        event,
    }))
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// A chunked body decoded as it arrives.
#[derive(Default)]
struct Chunks {
    /// Where decoding stopped in the body's bytes.
    at: usize,
    body: Vec<u8>,
}

impl Chunks {
    /// The body's framed length once its last chunk and trailers are in.
    fn advance(&mut self, data: &[u8]) -> io::Result<Option<usize>> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidData, "a malformed chunked body");
        loop {
            let rest = &data[self.at..];
            let (size_len, size) = match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete(c)) => c,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(invalid()),
            };
            let size = usize::try_from(size).map_err(|_| invalid())?;
            if size == 0 {
                let mut trailers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                return match httparse::parse_headers(&rest[size_len..], &mut trailers) {
                    Ok(httparse::Status::Complete((n, _))) => Ok(Some(self.at + size_len + n)),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(_) => Err(invalid()),
                };
            }
            if self.body.len().saturating_add(size) > MAX_ANSWER {
                return Err(invalid());
            }
            let end = size_len + size + 2;
            if rest.len() < end {
                return Ok(None);
            }
            if &rest[end - 2..end] != b"\r\n" {
                return Err(invalid());
            }
            self.body
                .extend_from_slice(&rest[size_len..size_len + size]);
            self.at += end;
        }
    }
}

/// What the decision reads of an event's head.
pub struct EventHead {
    pub id: String,
    pub deadline: Deadline,
    pub tenant: Option<String>,
}

/// The runtime's request headers, for the async path.
pub fn request_headers(head: &[u8]) -> HeaderMap {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let mut map = HeaderMap::new();
    if req.parse(head).is_ok() {
        for h in req.headers.iter() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                map.append(name, value);
            }
        }
    }
    map
}

/// A response as HTTP/1.1 bytes, framed by its length.
pub fn serialize(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// Whether the peer closed its end (or reset it): one non-blocking peek.
pub fn closed(stream: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit()];
    let sock = socket2::SockRef::from(stream);
    match sock.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_reads_with_trailers() {
        let whole = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let mut chunks = Chunks::default();
        for cut in 0..whole.len() - 4 {
            let mut c = Chunks::default();
            assert_eq!(c.advance(&whole[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(chunks.advance(whole).unwrap(), Some(whole.len() - 4));
        assert_eq!(chunks.body, b"hello world");
        let mut bad = Chunks::default();
        assert!(bad.advance(b"5\r\nhelloXX0\r\n\r\n").is_err());
    }

    #[test]
    fn the_upstream_head_loses_the_connection_headers_and_gets_lambdas_host() {
        let head = b"POST /2018-06-01/runtime/invocation/a/response HTTP/1.1\r\nHost: 127.0.0.1:9009\r\nConnection: keep-alive\r\nContent-Length: 2\r\nX-Custom: v\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(head).unwrap();
        let out = String::from_utf8(rewrite(&req, "lambda:9001")).unwrap();
        assert_eq!(
            out,
            "POST /2018-06-01/runtime/invocation/a/response HTTP/1.1\r\nContent-Length: 2\r\nX-Custom: v\r\nhost: lambda:9001\r\n\r\n"
        );
    }

    #[test]
    fn only_the_two_hot_requests_stay_on_the_thread() {
        let hot = |raw: &[u8]| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(len)) = req.parse(raw) else {
                panic!("parse");
            };
            match classify(&req, len, "lambda:9001").hot {
                Some(Hot::Next) => "next".to_string(),
                Some(Hot::Answer {
                    id,
                    errored,
                    length,
                }) => format!("{id} {errored} {length}"),
                None => "hyper".to_string(),
            }
        };
        assert_eq!(
            hot(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n"),
            "next"
        );
        assert_eq!(
            hot(b"POST /2018-06-01/runtime/invocation/ab/response HTTP/1.1\r\nContent-Length: 7\r\n\r\n"),
            "ab false 7"
        );
        assert_eq!(
            hot(b"POST /2018-06-01/runtime/invocation/ab/error HTTP/1.1\r\ncontent-length: 0\r\n\r\n"),
            "ab true 0"
        );
        for raw in [
            &b"POST /2018-06-01/runtime/invocation/ab/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST /2018-06-01/runtime/invocation/ab/response HTTP/1.1\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n",
            b"POST /2018-06-01/runtime/invocation/ab/response HTTP/1.1\r\nContent-Length: 7\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n\r\n",
            b"POST /2018-06-01/runtime/invocation/ab/response HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
            b"POST /2018-06-01/runtime/invocation/ab/response HTTP/1.1\r\n\r\n",
            b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
            b"GET /lambda-admission/health HTTP/1.1\r\n\r\n",
            b"GET /2018-06-01/runtime/invocation/next HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(hot(raw), "hyper", "{}", String::from_utf8_lossy(raw));
        }
    }

    /// A socket pair on loopback: what the peer writes, in pieces, arrives on the returned wire.
    pub(super) fn wire_fed(pieces: Vec<Vec<u8>>) -> Wire {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut peer = std::net::TcpStream::connect(address).unwrap();
            for piece in pieces {
                peer.write_all(&piece).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        Wire::new(listener.accept().unwrap().0)
    }

    #[test]
    fn a_large_answer_is_read_whole_in_place_and_a_cut_one_is_an_error() {
        let body: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
        let head = format!(
            "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut message = head.clone().into_bytes();
        message.extend_from_slice(&body);
        message.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        // Cut anywhere: in the head, in the body, at the next answer.
        let pieces: Vec<Vec<u8>> = [0, 10, head.len() + 1, 1 << 20, 2 << 20, message.len()]
            .windows(2)
            .map(|w| message[w[0]..w[1]].to_vec())
            .collect();
        let mut wire = wire_fed(pieces);
        let answer = read_answer(&mut wire).unwrap();
        assert_eq!(answer.head_len, head.len());
        assert_eq!(answer.len, head.len() + body.len());
        assert!(answer.decoded.is_none());
        assert!(
            wire.data()[answer.head_len..answer.len] == body[..],
            "the body as sent"
        );
        assert_eq!(answer.event.as_ref().map(|e| e.id.as_str()), Some("r1"));
        wire.consume(answer.len);
        let next = read_answer(&mut wire).unwrap();
        assert_eq!((next.status, next.len), (204, 27), "what follows is intact");

        let cut = message[..head.len() + 1000].to_vec();
        let mut wire = wire_fed(vec![cut]);
        let e = read_answer(&mut wire).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_room_a_large_message_took_is_kept_while_large_ones_keep_coming() {
        let large = |id: usize| {
            let body = vec![b'x'; 2 << 20];
            let mut m = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-N: {id}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            m.extend_from_slice(&body);
            m
        };
        let small = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        let mut pieces = vec![large(1), large(2)];
        pieces.extend(std::iter::repeat_n(small, KEEP_LARGE_FOR as usize));
        let mut wire = wire_fed(pieces);
        let next = |wire: &mut Wire| {
            let answer = read_answer(wire).unwrap();
            wire.consume(answer.len);
            wire.buf.len()
        };
        let room = next(&mut wire);
        assert!(room > 2 << 20, "{room}");
        assert_eq!(
            next(&mut wire),
            room,
            "the second large one reuses the room"
        );
        for i in 1..KEEP_LARGE_FOR {
            assert_eq!(next(&mut wire), room, "kept after {i} small ones");
        }
        assert_eq!(
            next(&mut wire),
            READ_SIZE,
            "given back after {KEEP_LARGE_FOR}"
        );
    }
}

/// Lambda's answers and the runtime's request heads, as the blocking path reads them: arbitrary
/// bytes never panic, and a well-formed message cut anywhere reads as the message sent.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// An answer as Lambda might frame it, and the body it carries.
    fn answer() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        let status = prop_oneof![Just(200u16), Just(202), Just(400), Just(413), Just(500)];
        let body = prop::collection::vec(any::<u8>(), 0..3000);
        // Chunk sizes, for a chunked body; empty: framed by its length.
        let chunks = prop::collection::vec(1usize..700, 0..6);
        let extras = prop::collection::vec(("[a-z][a-z-]{0,10}", "[ -~]{0,20}"), 0..4);
        (status, body, chunks, extras, any::<bool>(), any::<bool>()).prop_map(
            |(status, body, chunks, extras, id, trailer)| {
                let mut m = format!("HTTP/1.1 {status} X\r\n").into_bytes();
                if id {
                    m.extend_from_slice(b"Lambda-Runtime-Aws-Request-Id: r-1\r\n");
                }
                for (name, value) in extras {
                    if ["content-length", "transfer-encoding", "connection"]
                        .contains(&name.as_str())
                    {
                        continue;
                    }
                    m.extend_from_slice(format!("x-{name}: {}\r\n", value.trim()).as_bytes());
                }
                if chunks.is_empty() {
                    m.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    m.extend_from_slice(&body);
                    return (m, body);
                }
                m.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                for size in chunks.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, after) = rest.split_at((*size).min(rest.len()));
                    m.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
                    m.extend_from_slice(chunk);
                    m.extend_from_slice(b"\r\n");
                    rest = after;
                }
                m.extend_from_slice(b"0\r\n");
                if trailer {
                    m.extend_from_slice(b"x-trailer: t\r\n");
                }
                m.extend_from_slice(b"\r\n");
                (m, body)
            },
        )
    }

    /// `bytes` cut at `cuts` (positions anywhere in it, in any order).
    fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.extend([0, bytes.len()]);
        at.sort_unstable();
        at.dedup();
        at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Two answers back to back on one connection, cut anywhere: the first reads whole,
        /// its body as sent, and the second is intact behind it.
        #[test]
        fn answers_cut_anywhere_read_as_sent(
            (first, body) in answer(),
            (second, second_body) in answer(),
            cuts in prop::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut stream = first.clone();
            stream.extend_from_slice(&second);
            let mut wire = tests::wire_fed(pieces(&stream, &cuts));
            for (message, body) in [(&first, &body), (&second, &second_body)] {
                let answer = read_answer(&mut wire).unwrap();
                prop_assert_eq!(answer.len, message.len());
                let got = answer
                    .decoded
                    .clone()
                    .unwrap_or_else(|| Bytes::copy_from_slice(&wire.data()[answer.head_len..answer.len]));
                prop_assert_eq!(&got[..], &body[..]);
                wire.consume(answer.len);
            }
        }

        /// Whatever Lambda sends before it closes, an answer or an error comes back: no panic,
        /// no wait past the close.
        #[test]
        fn arbitrary_answers_end_in_an_answer_or_an_error(
            bytes in prop::collection::vec(any::<u8>(), 0..2048),
            head in prop::sample::select(vec![
                &b""[..],
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n",
            ]),
            cuts in prop::collection::vec(any::<usize>(), 0..4),
        ) {
            let mut stream = head.to_vec();
            stream.extend_from_slice(&bytes);
            let mut wire = tests::wire_fed(pieces(&stream, &cuts));
            if let Ok(answer) = read_answer(&mut wire) {
                prop_assert!(answer.len <= stream.len());
            }
        }

        /// Arbitrary request heads classify without panicking; a hot one goes upstream as a
        /// head that parses again, with the same request line, Lambda's host and nothing of the
        /// runtime's connection.
        #[test]
        fn request_heads_classify_and_rewrite(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            id in "[a-zA-Z0-9-]{1,40}",
            length in 0usize..10_000_000,
            extras in prop::collection::vec(
                (prop::sample::select(vec!["Host", "Connection", "Keep-Alive", "TE", "User-Agent", "X-Amzn-Trace-Id", "Accept"]), "[!-~][ -~]{0,30}"),
                0..5,
            ),
        ) {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(len)) = req.parse(&bytes) {
                let _ = classify(&req, len, "lambda:9001");
            }
            let mut raw = format!("POST {INVOCATION}{id}/response HTTP/1.1\r\nContent-Length: {length}\r\n");
            for (name, value) in &extras {
                raw.push_str(&format!("{name}: {}\r\n", value.trim()));
            }
            raw.push_str("\r\n");
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(len)) = req.parse(raw.as_bytes()) else {
                panic!("a well-formed head: {raw}");
            };
            let head = classify(&req, len, "lambda:9001");
            let closes = extras.iter().any(|(n, v)| *n == "Connection" && v.to_ascii_lowercase().split(',').any(|t| t.trim() == "close"));
            prop_assert_eq!(head.close, closes);
            let Some(Hot::Answer { id: got, errored, length: got_length }) = head.hot else {
                panic!("not hot: {raw}");
            };
            prop_assert_eq!((got.as_str(), errored, got_length), (id.as_str(), false, length));
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut up = httparse::Request::new(&mut headers);
            prop_assert!(matches!(up.parse(&head.upstream), Ok(httparse::Status::Complete(n)) if n == head.upstream.len()));
            prop_assert_eq!(up.method, Some("POST"));
            prop_assert_eq!(up.path, req.path);
            let hosts: Vec<&[u8]> = up.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).map(|h| h.value).collect();
            prop_assert_eq!(hosts, vec![&b"lambda:9001"[..]]);
            // Everything else as the runtime sent it, in its order; nothing of its connection.
            let hop = |h: &httparse::Header<'_>| HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n));
            let sent: Vec<_> = req.headers.iter().filter(|h| !hop(h)).map(|h| (h.name, h.value)).collect();
            let went: Vec<_> = up.headers.iter().filter(|h| !h.name.eq_ignore_ascii_case("host")).map(|h| (h.name, h.value)).collect();
            prop_assert_eq!(sent, went);
        }
    }
}
