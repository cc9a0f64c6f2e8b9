//! The blocking path's keep-alive connection to the Runtime API: one exchange at a time (the
//! head, the body as it comes from the runtime, Lambda's whole answer), sent again only when
//! nothing of it can have reached Lambda. Kept by a forwarder thread from one runtime connection
//! to the next.

use std::io::{self, Write};
use std::net::TcpStream;

use crate::runtime_api::wire::{closed, read_answer, Answer, Wire};

/// The connection to the Runtime API at `address`, opened on first use and after Lambda closes
/// it.
pub struct Upstream {
    address: String,
    wire: Option<Wire>,
}

/// Where an exchange failed.
#[derive(Debug)]
pub enum Failed {
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

impl Upstream {
    pub fn new(address: &str) -> Upstream {
        Upstream {
            address: address.to_string(),
            wire: None,
        }
    }

    fn connected(&mut self) -> io::Result<&mut Wire> {
        match &mut self.wire {
            Some(wire) => Ok(wire),
            slot => {
                let stream = TcpStream::connect(&self.address)?;
                stream.set_nodelay(true)?;
                Ok(slot.insert(Wire::new(stream)))
            }
        }
    }

    /// Writes `head` (already rewritten for upstream) and the `body` bytes that follow it from
    /// `runtime`, then reads Lambda's whole answer. A reused connection Lambda closed meanwhile is
    /// replaced once when nothing could have reached Lambda: the write failed, or (for a `GET`)
    /// no answer came.
    pub fn exchange(
        &mut self,
        runtime: &mut Wire,
        head: &[u8],
        body: usize,
        idempotent: bool,
    ) -> Result<Answer, Failed> {
        // A post is not sent again: it goes on a connection Lambda has not closed (one peek).
        if !idempotent && self.wire.as_ref().is_some_and(|w| closed(&w.stream)) {
            self.wire = None;
        }
        let reused = self.wire.is_some();
        let sent = match self.send(runtime, head, body) {
            Err(Failed::Unsent(_)) if reused => {
                self.wire = None;
                self.send(runtime, head, body)
            }
            other => other,
        };
        match sent {
            Ok(()) => {}
            Err(Failed::Lambda(e)) => {
                // Lambda stopped reading part-way (a body it will not take): its answer, if it
                // gave one, is the runtime's. The connection is done either way: it goes when the
                // answer is discarded, after the answer's bytes (in its buffer) are forwarded.
                return match self.receive() {
                    Ok(answer) => Ok(Answer {
                        close: true,
                        early: true,
                        ..answer
                    }),
                    Err(_) => {
                        self.wire = None;
                        Err(Failed::Lambda(e))
                    }
                };
            }
            Err(other) => {
                // Part of the request may have gone: the connection is unusable.
                self.wire = None;
                return Err(other);
            }
        }
        match self.receive() {
            // Closed before a byte of the answer: the request never reached Lambda, or (a
            // `GET`) asking again is harmless.
            Err((e, false)) if reused && idempotent && dropped(&e) => {
                self.send(runtime, head, 0)?;
                self.receive().map_err(|(e, _)| Failed::Lambda(e))
            }
            other => other.map_err(|(e, _)| Failed::Lambda(e)),
        }
    }

    /// Writes the head and `body` bytes from the runtime upstream. A connection that cannot be
    /// opened sent nothing: no answer is waited for on the next one.
    fn send(&mut self, runtime: &mut Wire, head: &[u8], body: usize) -> Result<(), Failed> {
        let lambda = self.connected().map_err(Failed::Unsent)?;
        send(runtime, lambda, head, body)
    }

    /// Lambda's answer; on failure, whether any of it came.
    fn receive(&mut self) -> Result<Answer, (io::Error, bool)> {
        let Some(lambda) = self.wire.as_mut() else {
            return Err((io::ErrorKind::NotConnected.into(), false));
        };
        let answer = read_answer(lambda);
        if let Err(e) = answer {
            let came = self.wire.as_ref().is_some_and(|w| !w.data().is_empty());
            self.wire = None;
            return Err((e, came));
        }
        answer.map_err(|e| (e, true))
    }

    /// Done with `answer`: its bytes go, and with them the connection if Lambda closes it.
    pub fn discard(&mut self, answer: Answer) {
        if let Some(lambda) = &mut self.wire {
            lambda.consume(answer.len);
        }
        if answer.close {
            self.wire = None;
        }
    }

    /// The body of `answer`, unframed.
    pub fn body<'a>(&'a self, answer: &'a Answer) -> &'a [u8] {
        match &answer.decoded {
            Some(decoded) => decoded,
            None => self
                .raw(answer, answer.len)
                .get(answer.head_len..)
                .unwrap_or(&[]),
        }
    }

    /// The first `len` bytes of `answer`, as they came.
    pub fn raw(&self, answer: &Answer, len: usize) -> &[u8] {
        self.wire
            .as_ref()
            .and_then(|w| w.data().get(..len.min(answer.len)))
            .unwrap_or(&[])
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
            runtime.room_for(left);
            runtime.fill_waiting().map_err(Failed::Runtime)?;
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;

    /// A connected pair of loopback sockets.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (near, listener.accept().unwrap().0)
    }

    #[test]
    fn an_answer_lambda_gives_before_it_stops_reading_reaches_the_runtime() {
        // Lambda reads the head, answers at once and hangs up without reading the body.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut lambda, _) = listener.accept().unwrap();
            let mut head = [0u8; 256];
            let _ = lambda.read(&mut head).unwrap();
            lambda
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlarge")
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
        // The runtime sends a body larger than any socket buffer.
        let (runtime, mut peer) = pair();
        let body = 64 << 20;
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..64 {
                if peer.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let mut runtime = Wire::new(runtime);
        let mut upstream = Upstream::new(&address);
        let head = b"POST /2018-06-01/runtime/invocation/a/response HTTP/1.1\r\nhost: x\r\n\r\n";
        let answer = upstream
            .exchange(&mut runtime, head, body, false)
            .map_err(|e| e.to_string())
            .unwrap();
        assert!(answer.early && answer.close);
        assert_eq!(answer.status, 413);
        assert!(upstream
            .raw(&answer, answer.len)
            .ends_with(b"\r\n\r\nlarge"));
        upstream.discard(answer);
        assert!(
            upstream.wire.is_none(),
            "the connection goes after the answer"
        );
    }

    #[test]
    fn a_connection_that_cannot_be_opened_sent_nothing_and_waits_for_nothing() {
        // A port nothing listens on.
        let address = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let (runtime, _peer) = pair();
        let mut runtime = Wire::new(runtime);
        let mut upstream = Upstream::new(&address);
        let head = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n";
        let failed = upstream.exchange(&mut runtime, head, 0, true);
        let unsent = matches!(failed, Err(Failed::Unsent(_)));
        assert!(unsent, "{:?}", failed.err());
        assert!(upstream.wire.is_none());
    }
}
