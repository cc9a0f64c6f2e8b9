//! The runtime's connection on a thread of its own, with blocking sockets.
//!
//! An invocation is two requests from the runtime (`next`, then its answer). Through tokio and
//! hyper each hop costs epoll wake-ups, reads that end in `EAGAIN`, task hand-offs and header
//! maps; on a small function's CPU quota (7 % of a vCPU at 128 MB, shared with the runtime) that
//! is what clients feel. Here a request is read with a blocking read, written upstream with one
//! write, and Lambda's answer read with a blocking read: close to the syscalls a hop cannot avoid.
//! The decision, shed answers, the coordinator and everything else stay on the async runtime,
//! reached with [`Handle::block_on`] (the main thread drives its I/O and timers).
//!
//! Only the two hot requests are served here, framed as the runtime clients frame them:
//! `GET .../invocation/next` and `POST .../{id}/response|error` with a `Content-Length` body. Anything
//! else (a streamed answer, `Expect: 100-continue`, an oversized or malformed head, the proxy's
//! own routes, an init error) hands the connection, with the bytes already read, to the hyper
//! server for the rest of its life. A `next` while another fetch is under way (Managed
//! Instances, or a runtime that hung up and asks again) takes the async path, whose wait also
//! watches for parked events; an event whose runtime hung up is parked for it.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::runtime::Handle;

use crate::runtime_api::proxy::{self, Fetched, Proxy, MAX_HEAD_BYTES};

/// Headers a head may carry here; more hand the connection to hyper.
const MAX_HEADERS: usize = 96;
const READ_SIZE: usize = 16 * 1024;
/// The largest answer from Lambda taken whole: events are 6 MB at most (200 MB only for
/// asynchronous invocations' payloads, which never exceed 1 MB per event).
const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// A buffer grown past this for a large message shrinks back once it is empty.
const KEEP_BUFFER: usize = 1024 * 1024;
/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 5] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
];

/// Idle threads kept waiting for a connection; more end when their connection does. Runtimes
/// keep one connection per concurrent invocation, and some open one per request.
const MAX_IDLE: usize = 4;

/// The threads that accept the runtime's connections and serve them. Each blocks in `accept`,
/// serves what it accepted until it closes, and accepts again; the last idle one to accept
/// starts another, so a thread is always waiting. A thread keeps its connection to the Runtime
/// API from one runtime connection to the next (some runtime clients open one per request).
struct Workers {
    listener: std::net::TcpListener,
    idle: AtomicUsize,
    proxy: Arc<Proxy>,
    handle: Handle,
}

/// Starts serving `listener` on threads; gives it back if not even one can be started.
pub(crate) fn start(
    proxy: Arc<Proxy>,
    listener: std::net::TcpListener,
    handle: Handle,
) -> Result<(), (std::net::TcpListener, io::Error)> {
    let workers = Arc::new(Workers {
        listener,
        idle: AtomicUsize::new(0),
        proxy,
        handle,
    });
    match spawn(&workers) {
        Ok(()) => Ok(()),
        Err(e) => match Arc::try_unwrap(workers) {
            Ok(w) => Err((w.listener, e)),
            // The thread started after all.
            Err(_) => Ok(()),
        },
    }
}

fn spawn(workers: &Arc<Workers>) -> io::Result<()> {
    workers.idle.fetch_add(1, Ordering::AcqRel);
    let w = workers.clone();
    std::thread::Builder::new()
        .name("runtime-connections".into())
        .stack_size(2 << 20)
        .spawn(move || work(&w))
        .map(drop)
        .inspect_err(|_| {
            workers.idle.fetch_sub(1, Ordering::AcqRel);
        })
}

fn work(workers: &Arc<Workers>) {
    // Tasks spawned from here (the decision's background work) go to the async runtime.
    let _context = workers.handle.enter();
    let mut lambda = None;
    loop {
        let stream = match workers.listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        if workers.idle.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Err(e) = spawn(workers) {
                // No other thread to accept: this connection goes to hyper, this thread accepts.
                tracing::warn!(error = %e, "no thread for another runtime connection; serving this one on the async runtime");
                workers.idle.fetch_add(1, Ordering::AcqRel);
                workers
                    .proxy
                    .clone()
                    .hand_off(stream, Bytes::new(), &workers.handle);
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        lambda = serve(&workers.proxy, &workers.handle, stream, lambda);
        if workers.idle.fetch_add(1, Ordering::AcqRel) >= MAX_IDLE {
            workers.idle.fetch_sub(1, Ordering::AcqRel);
            return;
        }
    }
}

/// Serves one runtime connection until it closes, or hands it to hyper; gives back the
/// connection to the Runtime API for the next.
fn serve(
    proxy: &Arc<Proxy>,
    handle: &Handle,
    runtime: TcpStream,
    lambda: Option<Wire>,
) -> Option<Wire> {
    let mut conn = Connection {
        proxy: proxy.clone(),
        handle: handle.clone(),
        runtime: Wire::new(runtime),
        lambda,
    };
    loop {
        match conn.one() {
            Ok(Step::Again) => {}
            Ok(Step::Close) => return conn.lambda,
            Ok(Step::HandOff) => {
                let line = conn
                    .runtime
                    .data()
                    .split(|b| *b == b'\n')
                    .next()
                    .unwrap_or(&[]);
                tracing::debug!(request = %String::from_utf8_lossy(line).trim_end(), "a request off the hot path: the connection goes to the async path");
                let unread = Bytes::copy_from_slice(conn.runtime.data());
                proxy.clone().hand_off(conn.runtime.stream, unread, handle);
                return conn.lambda;
            }
            Err(e) => {
                tracing::trace!(error = %e, "runtime connection closed");
                return conn.lambda;
            }
        }
    }
}

/// What follows a request.
enum Step {
    /// The next request.
    Again,
    /// The runtime asked to close.
    Close,
    /// This request, and the rest, are hyper's.
    HandOff,
}

/// A socket and what has been read from it but not consumed.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Wire {
    fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUFFER {
                self.buf.truncate(READ_SIZE);
                self.buf.shrink_to_fit();
            }
        }
    }

    /// Reads more; EOF is an error (every caller expects more bytes).
    fn fill(&mut self) -> io::Result<()> {
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
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// Reads until at least `n` bytes are buffered.
    fn fill_to(&mut self, n: usize) -> io::Result<()> {
        if self.buf.len() - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
        }
        while self.end - self.start < n {
            self.fill()?;
        }
        Ok(())
    }
}

/// A request the thread serves itself.
enum Hot {
    Next,
    /// An answer for `id` with a `Content-Length` body.
    Answer {
        id: String,
        errored: bool,
        length: usize,
    },
}

/// A request head, read.
struct Head {
    len: usize,
    hot: Option<Hot>,
    /// A hot request's head as it goes upstream (see [`rewrite`]).
    upstream: Vec<u8>,
    /// The runtime asked to close the connection after this exchange.
    close: bool,
}

/// Lambda's answer, whole, at the front of the upstream buffer.
struct Answer {
    /// The message's length in the buffer, as it came (head and framed body).
    len: usize,
    head_len: usize,
    status: u16,
    /// The body, unframed.
    body: Bytes,
    close: bool,
    /// Given before the request's body was all sent.
    early: bool,
    /// An event's request id, deadline and tenant (a 200 with a request id).
    event: Option<EventHead>,
}

struct Connection {
    proxy: Arc<Proxy>,
    handle: Handle,
    runtime: Wire,
    /// The keep-alive connection to the Runtime API, opened on first use.
    lambda: Option<Wire>,
}

impl Connection {
    fn one(&mut self) -> io::Result<Step> {
        let Some(head) = self.read_head()? else {
            return Ok(Step::HandOff);
        };
        let Some(hot) = head.hot else {
            return Ok(Step::HandOff);
        };
        match hot {
            Hot::Next => self.next(head.len, &head.upstream)?,
            Hot::Answer {
                id,
                errored,
                length,
            } => {
                if !self.answer(head.len, &head.upstream, &id, errored, length)? {
                    // What is left of its body is unread: the connection cannot go on.
                    return Ok(Step::Close);
                }
            }
        }
        Ok(if head.close { Step::Close } else { Step::Again })
    }

    /// The next request's head; `None` when it is not one this thread reads (too large, not
    /// HTTP/1.1 as parsed here).
    fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(self.runtime.data()) {
                Ok(httparse::Status::Complete(len)) => {
                    return Ok(Some(classify(&req, len, self.proxy.upstream_address())))
                }
                Ok(httparse::Status::Partial) if self.runtime.data().len() < MAX_HEAD_BYTES => {}
                // Too large, malformed or too many headers: hyper answers as it always has.
                _ => return Ok(None),
            }
            self.runtime.fill()?;
        }
    }

    fn lambda(&mut self) -> io::Result<&mut Wire> {
        match &mut self.lambda {
            Some(wire) => Ok(wire),
            slot => {
                let stream = TcpStream::connect(self.proxy.upstream_address())?;
                stream.set_nodelay(true)?;
                Ok(slot.insert(Wire::new(stream)))
            }
        }
    }

    /// Writes `head` (already rewritten for upstream) and what follows it from the runtime, then
    /// reads Lambda's whole answer. A reused connection Lambda closed meanwhile is replaced once
    /// when nothing could have reached Lambda: the write failed, or (for a `GET`) no answer came.
    fn exchange(&mut self, head: &[u8], body: usize, idempotent: bool) -> Result<Answer, Failed> {
        // A post is not sent again: it goes on a connection Lambda has not closed (one peek).
        if !idempotent && self.lambda.as_ref().is_some_and(|w| closed(&w.stream)) {
            self.lambda = None;
        }
        let reused = self.lambda.is_some();
        let sent = match self.send(head, body) {
            Err(Failed::Unsent(_)) if reused => {
                self.lambda = None;
                self.send(head, body)
            }
            other => other,
        };
        match sent {
            Ok(()) => {}
            Err(Failed::Lambda(e)) => {
                // Lambda stopped reading part-way (a body it will not take): its answer, if it
                // gave one, is the runtime's. The connection is done either way.
                let early = self.receive();
                self.lambda = None;
                return match early {
                    Ok(answer) => Ok(Answer {
                        close: true,
                        early: true,
                        ..answer
                    }),
                    Err(_) => Err(Failed::Lambda(e)),
                };
            }
            Err(other) => {
                // Part of the request may have gone: the connection is unusable.
                self.lambda = None;
                return Err(other);
            }
        }
        match self.receive() {
            // Closed before a byte of the answer: the request never reached Lambda, or (a
            // `GET`) asking again is harmless.
            Err((e, false)) if reused && idempotent && dropped(&e) => {
                self.send(head, 0)?;
                self.receive().map_err(|(e, _)| Failed::Lambda(e))
            }
            other => other.map_err(|(e, _)| Failed::Lambda(e)),
        }
    }

    /// Writes the head and `body` bytes from the runtime upstream.
    fn send(&mut self, head: &[u8], body: usize) -> Result<(), Failed> {
        self.lambda().map_err(Failed::Lambda)?;
        let (runtime, Some(lambda)) = (&mut self.runtime, &mut self.lambda) else {
            return Err(Failed::Lambda(io::ErrorKind::NotConnected.into()));
        };
        send(runtime, lambda, head, body)
    }

    /// Lambda's answer; on failure, whether any of it came.
    fn receive(&mut self) -> Result<Answer, (io::Error, bool)> {
        let lambda = self.lambda().map_err(|e| (e, false))?;
        let answer = read_answer(lambda);
        if let Err(e) = answer {
            let came = self.lambda.as_ref().is_some_and(|w| !w.data().is_empty());
            self.lambda = None;
            return Err((e, came));
        }
        answer.map_err(|e| (e, true))
    }

    /// `GET next`: a parked event, else events fetched until one is admitted.
    fn next(&mut self, head_len: usize, upstream: &[u8]) -> io::Result<()> {
        let proxy = self.proxy.clone();
        if let Some(admission) = proxy.admission() {
            admission.runtime_ready();
        }
        // Claimed before looking for a parked event: one parked after the look is parked by a
        // fetch that was under way, and this call takes the async path, which waits for it.
        let Some(_fetching) = proxy::Fetching::alone(&proxy) else {
            // Another fetch is under way: the async path waits for either.
            return self.next_async(head_len);
        };
        if let Some(parked) = proxy.take_parked() {
            self.runtime.consume(head_len);
            return self.deliver(parked);
        }
        self.runtime.consume(head_len);
        loop {
            let mut answer = match self.exchange(upstream, 0, true) {
                Ok(a) => a,
                Err(e) => return self.write_response(proxy::bad_gateway(&e)),
            };
            let Some(admission) = proxy.admission() else {
                return self.forward_answer(answer);
            };
            if answer.status != 200 {
                return self.forward_answer(answer);
            }
            let Some(event) = answer.event.take() else {
                tracing::warn!("event without a request id; passing it through");
                return self.forward_answer(answer);
            };
            let admitted = self.handle.block_on(proxy.admit(
                admission,
                &event.id,
                event.deadline,
                &answer.body,
                event.tenant.as_deref(),
            ));
            if admitted {
                return self.hand_over(answer);
            }
            self.discard(answer);
        }
    }

    /// The async `next`, for when another fetch is under way. As on hyper, a runtime that hangs
    /// up meanwhile drops the call, and the fetch parks what it gets.
    fn next_async(&mut self, head_len: usize) -> io::Result<()> {
        let headers = request_headers(&self.runtime.data()[..head_len]);
        self.runtime.consume(head_len);
        let proxy = self.proxy.clone();
        let watch = self.runtime.stream.try_clone();
        let collected = self.handle.block_on(async move {
            let next = async {
                match proxy.admission().cloned() {
                    Some(admission) => proxy.next(admission, headers).await,
                    // Off mode: a plain forward, as hyper would make it.
                    None => proxy.forward_next(headers).await,
                }
            };
            let watch = watch
                .and_then(|w| w.set_nonblocking(true).map(|()| w))
                .and_then(tokio::net::TcpStream::from_std);
            let response = match &watch {
                // A fetch dropped here parks what it gets (see `Proxy::next`).
                Ok(watch) => tokio::select! {
                    biased;
                    response = next => Some(response),
                    () = hung_up(watch) => None,
                },
                Err(_) => Some(next.await),
            };
            match response {
                Some(response) => Some(collect(response).await),
                None => None,
            }
        });
        // The watch shared the socket's file status: blocking again.
        let blocking = self.runtime.stream.set_nonblocking(false);
        let Some((parts, body)) = collected else {
            return Err(io::ErrorKind::ConnectionAborted.into());
        };
        if parts.status == StatusCode::OK && parts.headers.contains_key(proxy::REQUEST_ID) {
            let event = Fetched { parts, event: body };
            if let Err(e) = blocking {
                self.proxy.park(event);
                return Err(e);
            }
            return self.deliver(event);
        }
        blocking?;
        self.write_collected((parts, body))
    }

    /// Gives an event (parked, or fetched on the async path) to the runtime, or parks it if the
    /// runtime hung up meanwhile.
    fn deliver(&mut self, event: Fetched) -> io::Result<()> {
        let bytes = serialize(event.parts.status, &event.parts.headers, &event.event);
        let written = if closed(&self.runtime.stream) {
            Err(io::ErrorKind::ConnectionAborted.into())
        } else {
            (&self.runtime.stream).write_all(&bytes)
        };
        if written.is_err() {
            tracing::warn!(
                "the runtime hung up while its event was on the way; keeping it for its next call"
            );
            self.proxy.park(event);
        }
        written
    }

    /// Gives an admitted event to the runtime, or parks it if the runtime hung up meanwhile.
    fn hand_over(&mut self, answer: Answer) -> io::Result<()> {
        let written = if closed(&self.runtime.stream) {
            Err(io::ErrorKind::ConnectionAborted.into())
        } else {
            (&self.runtime.stream).write_all(self.raw(&answer, answer.len))
        };
        if let Err(e) = written {
            tracing::warn!(
                "the runtime hung up while its event was on the way; keeping it for its next call"
            );
            if let Some(fetched) = fetched(self.raw(&answer, answer.head_len), answer.body.clone())
            {
                self.proxy.park(fetched);
            }
            self.discard(answer);
            return Err(e);
        }
        self.discard(answer);
        Ok(())
    }

    /// Lambda's answer to the runtime as it came.
    fn forward_answer(&mut self, answer: Answer) -> io::Result<()> {
        let written = (&self.runtime.stream).write_all(self.raw(&answer, answer.len));
        self.discard(answer);
        written
    }

    /// Done with `answer`: its bytes go, and with them the connection if Lambda closes it.
    fn discard(&mut self, answer: Answer) {
        if let Some(lambda) = &mut self.lambda {
            lambda.consume(answer.len);
        }
        if answer.close {
            self.lambda = None;
        }
    }

    /// The bytes of `answer`, as they came.
    fn raw(&self, answer: &Answer, len: usize) -> &[u8] {
        self.lambda
            .as_ref()
            .and_then(|w| w.data().get(..len.min(answer.len)))
            .unwrap_or(&[])
    }

    /// `POST .../{id}/response|error`: forwarded, then the lease returned, then the runtime told.
    /// False: the connection must close (its request's body was not all read).
    fn answer(
        &mut self,
        head_len: usize,
        upstream: &[u8],
        id: &str,
        errored: bool,
        length: usize,
    ) -> io::Result<bool> {
        self.runtime.consume(head_len);
        let forwarded = self.exchange(upstream, length, false);
        if let Some(admission) = self.proxy.admission() {
            // Whatever became of the post, as the async path does; a runtime that broke off
            // mid-body leaves no sample.
            let broke_off = matches!(forwarded, Err(Failed::Runtime(_)));
            self.handle
                .block_on(admission.release(id, errored || broke_off));
        }
        match forwarded {
            Ok(answer) => {
                let whole = !answer.early;
                self.forward_answer(answer)?;
                Ok(whole)
            }
            Err(Failed::Runtime(e)) => Err(e),
            // The body may be part-read: the runtime gets its 502 and a new connection.
            Err(e) => self.write_response(proxy::bad_gateway(&e)).map(|()| false),
        }
    }

    fn write_response(&mut self, response: http::Response<proxy::Body>) -> io::Result<()> {
        let collected = self.handle.block_on(collect(response));
        self.write_collected(collected)
    }

    fn write_collected(&mut self, (parts, body): (http::response::Parts, Bytes)) -> io::Result<()> {
        let bytes = serialize(parts.status, &parts.headers, &body);
        self.runtime.stream.write_all(&bytes)
    }
}

/// Where an exchange failed.
#[derive(Debug)]
enum Failed {
    /// The first write to Lambda: nothing of the request went.
    Unsent(io::Error),
    /// Talking to Lambda.
    Lambda(io::Error),
    /// Reading the request's body from the runtime, which broke off.
    Runtime(io::Error),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Unsent(e) | Failed::Lambda(e) => e.fmt(f),
            Failed::Runtime(e) => write!(f, "the runtime broke off its request: {e}"),
        }
    }
}

/// The head, then the body as it comes from the runtime; one write when it is all here.
fn send(runtime: &mut Wire, lambda: &mut Wire, head: &[u8], body: usize) -> Result<(), Failed> {
    if runtime.data().len() >= body && head.len() + body <= 64 * 1024 {
        let mut message = Vec::with_capacity(head.len() + body);
        message.extend_from_slice(head);
        message.extend_from_slice(&runtime.data()[..body]);
        lambda.stream.write_all(&message).map_err(Failed::Unsent)?;
        runtime.consume(body);
        return Ok(());
    }
    lambda.stream.write_all(head).map_err(Failed::Unsent)?;
    let mut left = body;
    while left > 0 {
        if runtime.data().is_empty() {
            runtime.fill().map_err(Failed::Runtime)?;
        }
        let n = runtime.data().len().min(left);
        lambda
            .stream
            .write_all(&runtime.data()[..n])
            .map_err(Failed::Lambda)?;
        runtime.consume(n);
        left -= n;
    }
    Ok(())
}

/// A connection the peer closed or reset.
fn dropped(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Resolves when the runtime closes its end of the connection.
async fn hung_up(stream: &tokio::net::TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        // It sent more (a request after this one): not gone.
        Ok(_) => std::future::pending().await,
    }
}

async fn collect(response: http::Response<proxy::Body>) -> (http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(b) => (parts, b.to_bytes()),
        Err(e) => {
            let (parts, body) = proxy::bad_gateway(&e).into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (parts, body)
        }
    }
}

/// What the thread does with a request; `host`: Lambda's, for the head that goes upstream.
fn classify(req: &httparse::Request<'_, '_>, len: usize, host: &str) -> Head {
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
            || name.eq_ignore_ascii_case(proxy::RESPONSE_MODE)
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
        Some("GET") if path == proxy::NEXT && length.unwrap_or(0) == 0 => Some(Hot::Next),
        Some("POST") => proxy::answered_invocation(path).and_then(|id| {
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
fn rewrite(req: &httparse::Request<'_, '_>, host: &str) -> Vec<u8> {
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
fn read_answer(wire: &mut Wire) -> io::Result<Answer> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let (head_len, status, framing, close, event) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(wire.data()) {
            Ok(httparse::Status::Complete(len)) => {
                let status = res.code.unwrap_or(0);
                let mut framing = Framing::None;
                let mut close = res.version != Some(1);
                let (mut id, mut deadline_ms, mut tenant) = (None, None, None);
                for h in res.headers.iter() {
                    let text = || std::str::from_utf8(h.value).ok();
                    if h.name.eq_ignore_ascii_case(proxy::REQUEST_ID) {
                        id = text();
                    } else if h.name.eq_ignore_ascii_case(proxy::DEADLINE_MS) {
                        deadline_ms = text().and_then(|v| v.trim().parse().ok());
                    } else if h.name.eq_ignore_ascii_case(proxy::TENANT_ID) {
                        tenant = text();
                    } else if h.name.eq_ignore_ascii_case("content-length") {
                        let n = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or_else(|| {
                                invalid("invalid Content-Length from the Runtime API")
                            })?;
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
                if (100..200).contains(&status) {
                    // An interim answer: skip it.
                    wire.consume(len);
                    continue;
                }
                if matches!(framing, Framing::None) && !matches!(status, 204 | 304) {
                    // Read to the close: not how the Runtime API answers.
                    return Err(invalid("an answer from the Runtime API without a length"));
                }
                let event = id.filter(|_| status == 200).map(|id| EventHead {
                    id: id.to_string(),
                    deadline: crate::lease::Deadline::from_unix_ms(deadline_ms),
                    tenant: tenant.map(str::to_string),
                });
                break (len, status, framing, close, event);
            }
            Ok(httparse::Status::Partial) if wire.data().len() < MAX_HEAD_BYTES => wire.fill()?,
            Ok(httparse::Status::Partial) => return Err(invalid("an oversized head")),
            Err(e) => return Err(invalid(&format!("a malformed head ({e})"))),
        }
    };
    let (len, body) = match framing {
        Framing::None => (head_len, Bytes::new()),
        Framing::Length(n) => {
            wire.fill_to(head_len + n)?;
            (
                head_len + n,
                Bytes::copy_from_slice(&wire.data()[head_len..head_len + n]),
            )
        }
        Framing::Chunked => {
            let mut chunks = Chunks::default();
            loop {
                if let Some(end) = chunks.advance(&wire.data()[head_len..])? {
                    break (head_len + end, Bytes::from(chunks.body));
                }
                wire.fill()?;
            }
        }
    };
    Ok(Answer {
        len,
        head_len,
        status,
        body,
        close,
        early: false,
        event,
    })
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
struct EventHead {
    id: String,
    deadline: crate::lease::Deadline,
    tenant: Option<String>,
}

/// An answer's head and body as the async path keeps them (a parked event).
fn fetched(head: &[u8], event: Bytes) -> Option<Fetched> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    res.parse(head).ok()?;
    let mut builder = http::Response::builder().status(res.code?);
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            continue; // the event is kept whole
        }
        builder = builder.header(h.name, h.value);
    }
    let (parts, ()) = builder.body(()).ok()?.into_parts();
    Some(Fetched { parts, event })
}

/// The runtime's request headers, for the async path.
fn request_headers(head: &[u8]) -> HeaderMap {
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
fn serialize(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
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
fn closed(stream: &TcpStream) -> bool {
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

    #[test]
    fn a_parked_event_keeps_its_headers_and_is_framed_by_its_length() {
        let head = b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let f = fetched(head, Bytes::from_static(b"{}")).unwrap();
        assert_eq!(f.parts.headers["lambda-runtime-aws-request-id"], "r1");
        let bytes = serialize(f.parts.status, &f.parts.headers, &f.event);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: r1\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}
