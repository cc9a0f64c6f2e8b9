//! The smallest proxy: blocking sockets, a few threads each accepting and serving connections in
//! turn (and keeping its connection upstream from one to the next), no async runtime, no copy of
//! a message it can avoid. It forwards HTTP/1.1 messages framed by `Content-Length` (what the
//! runtime clients and the emulator send) byte for byte, and nothing else: the physical floor of
//! one loopback hop on this machine, for the small-function benchmark.
//! `FLOOR_PORT` to listen on (127.0.0.1), `FLOOR_UPSTREAM` = `host:port` to forward to.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let port: u16 = std::env::var("FLOOR_PORT")
        .expect("FLOOR_PORT")
        .parse()
        .expect("port");
    let upstream = std::env::var("FLOOR_UPSTREAM").expect("FLOOR_UPSTREAM");
    let listener = std::sync::Arc::new(TcpListener::bind(("127.0.0.1", port)).expect("bind"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (listener, upstream) = (listener.clone(), upstream.clone());
            std::thread::spawn(move || {
                let mut lambda = None;
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    if serve(stream, &upstream, &mut lambda).is_err() {
                        lambda = None;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// Serves one connection until it closes; `lambda` is kept for the next.
fn serve(runtime: TcpStream, upstream: &str, lambda: &mut Option<Message>) -> io::Result<()> {
    runtime.set_nodelay(true)?;
    let mut runtime = Message::new(runtime);
    loop {
        if lambda.is_none() {
            let stream = TcpStream::connect(upstream)?;
            stream.set_nodelay(true)?;
            *lambda = Some(Message::new(stream));
        }
        let lambda = lambda.as_mut().expect("connected above");
        let request = match runtime.read(true) {
            Ok(n) => n,
            // The runtime closed: the connection upstream stays.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        lambda.stream.write_all(&runtime.buf[..request])?;
        runtime.consume(request);
        let response = lambda.read(false)?;
        runtime.stream.write_all(&lambda.buf[..response])?;
        lambda.consume(response);
    }
}

/// A socket and what has been read from it.
struct Message {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
}

impl Message {
    fn new(stream: TcpStream) -> Message {
        Message {
            stream,
            buf: vec![0; 64 * 1024],
            filled: 0,
        }
    }

    /// Reads one whole message; its length in `buf`.
    fn read(&mut self, request: bool) -> io::Result<usize> {
        loop {
            if let Some(len) = self.complete(request)? {
                if len <= self.filled {
                    return Ok(len);
                }
                if self.buf.len() < len {
                    self.buf.resize(len, 0);
                }
            } else if self.filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buf[self.filled..])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.filled += n;
        }
    }

    /// The length of the message at the front of `buf` once its head is in.
    fn complete(&self, request: bool) -> io::Result<Option<usize>> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let data = &self.buf[..self.filled];
        let parsed = if request {
            let mut r = httparse::Request::new(&mut headers);
            r.parse(data)
        } else {
            let mut r = httparse::Response::new(&mut headers);
            r.parse(data)
        };
        let head = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        let mut body = 0;
        for h in headers.iter().take_while(|h| !h.name.is_empty()) {
            if h.name.eq_ignore_ascii_case("content-length") {
                body = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the floor forwards Content-Length bodies only",
                ));
            }
        }
        Ok(Some(head + body))
    }

    fn consume(&mut self, len: usize) {
        self.buf.copy_within(len..self.filled, 0);
        self.filled -= len;
    }
}
