//! A TCP forwarder on loopback whose target can change: what a DNS name does when ElastiCache
//! fails over (new connections reach the new primary, open ones stay where they were).

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Forwarder {
    pub port: u16,
    target: Arc<Mutex<SocketAddr>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = Arc::new(Mutex::new(target));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (t, c) = (target.clone(), connections.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *t.lock();
                c.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Forwarder {
            port,
            target,
            connections,
            acceptor,
        }
    }

    /// New connections go to `target`; open ones stay where they are.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock() = target;
    }

    /// Cuts every open connection, as a dead network path would.
    pub fn cut(&self) {
        for c in self.connections.lock().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
