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
//!
//! The threads are bounded, and an idle connection holds none (`threads.rs`).

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::runtime::Handle;

use crate::http::Body;
use crate::runtime_api::client::bad_gateway;
use crate::runtime_api::invocation::{Fetched, Invocations, Verdict};
use crate::runtime_api::upstream::{Failed, Upstream};
use crate::runtime_api::wire::{
    classify, closed, request_headers, serialize, timed_out, Answer, Head, Hot, Wire, MAX_HEADERS,
    MAX_HEAD_BYTES, REQUEST_ID,
};

mod threads;

pub(crate) use threads::start;
use threads::{Workers, IDLE};

/// Serves one runtime connection until it closes, or hands it to hyper; gives back the
/// connection to the Runtime API for the next.
fn serve(workers: &Arc<Workers>, runtime: TcpStream, lambda: Upstream) -> Upstream {
    // Waiting for a request, not reading one: see `Step::Idle`.
    let _ = runtime.set_read_timeout(Some(IDLE));
    let mut conn = Connection {
        core: workers.core.clone(),
        handle: workers.handle.clone(),
        runtime: Wire::new(runtime),
        lambda,
    };
    loop {
        match conn.one() {
            Ok(Step::Again) => {}
            Ok(Step::Close) => return conn.lambda,
            Ok(Step::Idle) => {
                workers.rest(conn.runtime.stream);
                return conn.lambda;
            }
            Ok(Step::HandOff) => {
                let line = conn
                    .runtime
                    .data()
                    .split(|b| *b == b'\n')
                    .next()
                    .unwrap_or(&[]);
                tracing::debug!(request = %String::from_utf8_lossy(line).trim_end(), "a request off the hot path: the connection goes to the async path");
                let unread = Bytes::copy_from_slice(conn.runtime.data());
                workers.hand_off(conn.runtime.stream, unread);
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
    /// No request came for [`IDLE`]: the connection waits on the async runtime for its next,
    /// without a thread.
    Idle,
    /// This request, and the rest, are hyper's.
    HandOff,
}

struct Connection {
    core: Arc<Invocations>,
    handle: Handle,
    runtime: Wire,
    /// The keep-alive connection to the Runtime API.
    lambda: Upstream,
}

impl Connection {
    fn one(&mut self) -> io::Result<Step> {
        let head = match self.read_head()? {
            Ok(head) => head,
            Err(step) => return Ok(step),
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

    /// The next request's head; else the step instead: [`Step::HandOff`] for a head this
    /// thread does not read (too large, not HTTP/1.1 as parsed here, or begun and stalled for
    /// [`IDLE`]), [`Step::Idle`] when none came for [`IDLE`].
    fn read_head(&mut self) -> io::Result<Result<Head, Step>> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(self.runtime.data()) {
                Ok(httparse::Status::Complete(len)) => {
                    return Ok(Ok(classify(&req, len, self.core.lambda().address())))
                }
                Ok(httparse::Status::Partial) if self.runtime.data().len() < MAX_HEAD_BYTES => {}
                // Too large, malformed or too many headers: hyper answers as it always has.
                _ => return Ok(Err(Step::HandOff)),
            }
            match self.runtime.fill() {
                Ok(()) => {}
                Err(e) if timed_out(&e) && self.runtime.data().is_empty() => {
                    return Ok(Err(Step::Idle))
                }
                Err(e) if timed_out(&e) => return Ok(Err(Step::HandOff)),
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET next`: a parked event, else events fetched until one is admitted.
    fn next(&mut self, head_len: usize, upstream: &[u8]) -> io::Result<()> {
        let core = self.core.clone();
        core.runtime_ready();
        let Some(_fetching) = core.claim_fetch() else {
            // Another fetch is under way: the async path waits for either.
            return self.next_async(head_len);
        };
        self.runtime.consume(head_len);
        if let Some(parked) = core.take_parked() {
            return self.deliver(parked);
        }
        loop {
            let mut answer = match self.lambda.exchange(&mut self.runtime, upstream, 0, true) {
                Ok(a) => a,
                Err(e) => return self.write_response(bad_gateway(&e)),
            };
            if core.admission().is_none() || answer.status != 200 {
                return self.forward_answer(answer);
            }
            let Some(event) = answer.event.take() else {
                tracing::warn!("event without a request id; passing it through");
                return self.forward_answer(answer);
            };
            let verdict = self.handle.block_on(core.admit(
                &event.id,
                event.deadline,
                self.lambda.body(&answer),
                event.tenant.as_deref(),
            ));
            if verdict == Verdict::HandOver {
                return self.hand_over(answer);
            }
            self.lambda.discard(answer);
        }
    }

    /// The async `next`, for when another fetch is under way. As on hyper, a runtime that hangs
    /// up meanwhile drops the call, and the fetch parks what it gets.
    fn next_async(&mut self, head_len: usize) -> io::Result<()> {
        let headers = request_headers(&self.runtime.data()[..head_len]);
        self.runtime.consume(head_len);
        let core = self.core.clone();
        let watch = self.runtime.stream.try_clone();
        let collected = self.handle.block_on(async move {
            let next = core.next(headers);
            let watch = watch
                .and_then(|w| w.set_nonblocking(true).map(|()| w))
                .and_then(tokio::net::TcpStream::from_std);
            let response = match &watch {
                // A fetch dropped here parks what it gets (see `Invocations::next`).
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
        if parts.status == StatusCode::OK && parts.headers.contains_key(REQUEST_ID) {
            let event = Fetched { parts, event: body };
            if let Err(e) = blocking {
                self.core.park(event);
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
            self.core.park(event);
        }
        written
    }

    /// Gives an admitted event to the runtime, or parks it if the runtime hung up meanwhile.
    fn hand_over(&mut self, answer: Answer) -> io::Result<()> {
        let written = if closed(&self.runtime.stream) {
            Err(io::ErrorKind::ConnectionAborted.into())
        } else {
            (&self.runtime.stream).write_all(self.lambda.raw(&answer, answer.len))
        };
        if let Err(e) = written {
            if let Some(fetched) = fetched(
                self.lambda.raw(&answer, answer.head_len),
                Bytes::copy_from_slice(self.lambda.body(&answer)),
            ) {
                self.core.park(fetched);
            }
            self.lambda.discard(answer);
            return Err(e);
        }
        self.lambda.discard(answer);
        Ok(())
    }

    /// Lambda's answer to the runtime as it came.
    fn forward_answer(&mut self, answer: Answer) -> io::Result<()> {
        let written = (&self.runtime.stream).write_all(self.lambda.raw(&answer, answer.len));
        self.lambda.discard(answer);
        written
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
        let forwarded = self
            .lambda
            .exchange(&mut self.runtime, upstream, length, false);
        // Whatever became of the post, as the async path does; a runtime that broke off
        // mid-body leaves no sample.
        let broke_off = matches!(forwarded, Err(Failed::Runtime(_)));
        self.handle
            .block_on(self.core.release(id, errored || broke_off));
        match forwarded {
            Ok(answer) => {
                let whole = !answer.early;
                self.forward_answer(answer)?;
                Ok(whole)
            }
            Err(Failed::Runtime(e)) => Err(e),
            // The body may be part-read: the runtime gets its 502 and a new connection.
            Err(e) => self.write_response(bad_gateway(&e)).map(|()| false),
        }
    }

    fn write_response(&mut self, response: http::Response<Body>) -> io::Result<()> {
        let collected = self.handle.block_on(collect(response));
        self.write_collected(collected)
    }

    fn write_collected(&mut self, (parts, body): (http::response::Parts, Bytes)) -> io::Result<()> {
        let bytes = serialize(parts.status, &parts.headers, &body);
        self.runtime.stream.write_all(&bytes)
    }
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

async fn collect(response: http::Response<Body>) -> (http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(b) => (parts, b.to_bytes()),
        Err(e) => {
            let (parts, body) = bad_gateway(&e).into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (parts, body)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
