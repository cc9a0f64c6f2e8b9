//! A shared downstream of finite capacity, as the handlers of a fleet see a database or an API:
//! `workers` requests served at once, each taking `service` (±10 %); past that, requests wait
//! in a FIFO queue and latency grows with it. Optionally it collapses: a request that finds more
//! than `collapse_at` waiting costs `collapse_factor` × the service time (a database thrashing
//! under too many connections), so goodput falls as the queue grows.
//!
//! It speaks just enough HTTP on loopback: the test function's `?op=downstream&port=P` sends a
//! request and waits for the answer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy)]
pub struct DownstreamSpec {
    pub workers: usize,
    pub service: Duration,
    /// Past this many waiting, each request costs `collapse_factor` × the service time.
    pub collapse_at: Option<usize>,
    pub collapse_factor: f64,
}

impl DownstreamSpec {
    /// Requests a second it serves when busy and not collapsed.
    pub fn capacity_rps(&self) -> f64 {
        self.workers as f64 / self.service.as_secs_f64()
    }
}

pub struct Downstream {
    pub port: u16,
    pub spec: DownstreamSpec,
    served: Arc<AtomicU64>,
    waiting: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Downstream {
    pub async fn start(spec: DownstreamSpec) -> Downstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (served, waiting) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
        let workers = Arc::new(Semaphore::new(spec.workers));
        let task = {
            let (served, waiting) = (served.clone(), waiting.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let (served, waiting, workers) =
                        (served.clone(), waiting.clone(), workers.clone());
                    tokio::spawn(async move {
                        let mut buf = [0u8; 2048];
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                            if seen.len() > 16 * 1024 {
                                return;
                            }
                        }
                        let queued = waiting.fetch_add(1, Ordering::Relaxed);
                        let Ok(_permit) = workers.acquire().await else {
                            return;
                        };
                        waiting.fetch_sub(1, Ordering::Relaxed);
                        let collapsed = spec.collapse_at.is_some_and(|q| queued > q);
                        let factor = if collapsed { spec.collapse_factor } else { 1.0 };
                        let jitter = 0.9 + 0.2 * fastrand::f64();
                        tokio::time::sleep(spec.service.mul_f64(jitter * factor)).await;
                        served.fetch_add(1, Ordering::Relaxed);
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                    });
                }
            })
        };
        Downstream {
            port,
            spec,
            served,
            waiting,
            task,
        }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Requests waiting for a worker now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
