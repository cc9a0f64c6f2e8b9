//! Real services the tests start on loopback: `redis-server` (plain, TLS, cluster mode) and moto
//! (the Lambda API). Each runs as a child process that dies with its handle.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::free_port;

pub struct RedisServer {
    pub port: u16,
    /// A plain-TCP port for the tests' own commands ([`RedisServer::cli`]); 0 when there is none.
    admin_port: u16,
    child: Option<Child>,
    args: Vec<String>,
    /// The CA that signed the server's certificate, when TLS is on.
    pub ca_file: Option<PathBuf>,
    dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    Plain,
    Tls,
    Cluster,
    /// Cluster mode over TLS only, as ElastiCache Serverless serves; the tests' own commands go
    /// to a separate plain port.
    TlsCluster,
    /// Cluster mode without slots: one node of a [`RedisCluster`].
    ClusterNode,
}

impl RedisServer {
    pub async fn start(mode: RedisMode) -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "lambda-admission-redis-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(dir.display().to_string());
        let tls = matches!(mode, RedisMode::Tls | RedisMode::TlsCluster);
        let admin_port = match mode {
            RedisMode::Plain | RedisMode::Cluster | RedisMode::ClusterNode => port,
            RedisMode::Tls => 0,
            RedisMode::TlsCluster => free_port(),
        };
        args.extend(["--port".into(), admin_port.to_string()]);
        if matches!(
            mode,
            RedisMode::Cluster | RedisMode::TlsCluster | RedisMode::ClusterNode
        ) {
            args.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                dir.join("nodes.conf").display().to_string(),
            ]);
        }
        let mut ca_file = None;
        if tls {
            make_certificates(&dir);
            ca_file = Some(dir.join("ca.crt"));
            args.extend([
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                dir.join("server.crt").display().to_string(),
                "--tls-key-file".into(),
                dir.join("server.key").display().to_string(),
                "--tls-ca-cert-file".into(),
                dir.join("ca.crt").display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
                // Cluster nodes announce their TLS port and talk to each other over TLS.
                "--tls-cluster".into(),
                "yes".into(),
            ]);
        }
        let mut server = RedisServer {
            port,
            admin_port,
            child: None,
            args,
            ca_file,
            dir,
        };
        server.run().await;
        if matches!(mode, RedisMode::Cluster | RedisMode::TlsCluster) {
            server
                .cli(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
                .await;
            for _ in 0..100 {
                if server
                    .cli(&["CLUSTER", "INFO"])
                    .await
                    .contains("cluster_state:ok")
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        server
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        assert!(
            listening(self.port, Duration::from_secs(2)).await,
            "redis-server did not start on port {}",
            self.port
        );
    }

    pub fn url(&self) -> String {
        match self.ca_file {
            Some(_) => format!("rediss://127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.run().await;
    }

    /// Calls and CPU microseconds the server spent on `commands` (e.g. `evalsha`) since its last
    /// `CONFIG RESETSTAT`, from `INFO commandstats`: its own cost, whatever the clients do.
    pub async fn command_stats(&self, commands: &[&str]) -> (f64, f64) {
        let stats = self.cli(&["INFO", "commandstats"]).await;
        let (mut calls, mut usec) = (0.0, 0.0);
        for line in stats.lines() {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            if !commands
                .iter()
                .any(|c| name.strip_prefix("cmdstat_") == Some(c))
            {
                continue;
            }
            let field = |key: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            calls += field("calls=");
            usec += field("usec=");
        }
        (calls, usec)
    }

    /// A command over plain TCP in RESP (not for [`RedisMode::Tls`], which has no plain port).
    pub async fn cli(&self, args: &[&str]) -> String {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.admin_port))
            .await
            .expect("connect");
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// A Redis cluster of several primaries on loopback, the slots split evenly between them.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start(n: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(RedisServer::start(RedisMode::ClusterNode).await);
        }
        for node in &nodes[1..] {
            nodes[0]
                .cli(&["CLUSTER", "MEET", "127.0.0.1", &node.port.to_string()])
                .await;
        }
        for (j, node) in nodes.iter().enumerate() {
            let (lo, hi) = (16384 * j / n, 16384 * (j + 1) / n - 1);
            node.cli(&["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()])
                .await;
        }
        for _ in 0..200 {
            let mut ok = true;
            for node in &nodes {
                ok &= node
                    .cli(&["CLUSTER", "INFO"])
                    .await
                    .contains("cluster_state:ok");
            }
            if ok {
                return RedisCluster { nodes };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the cluster did not come up");
    }

    /// A seed URL (any node; the client discovers the rest).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}

/// Whether something accepts connections on loopback `port` within `within`.
async fn listening(port: u16, within: Duration) -> bool {
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command-line tool.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "openssl {args:?} failed");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=lambda-admission test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
}

/// moto in server mode: the Lambda (and IAM) API on loopback.
pub struct Moto {
    pub port: u16,
    _child: Child,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("MOTO_LAMBDA_CONCURRENCY_QUOTA", "1000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto (pip install 'moto[server]')");
        assert!(
            listening(port, Duration::from_secs(15)).await,
            "moto did not start"
        );
        Moto {
            port,
            _child: child,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `tests/python/moto_lambda.py` against this server: `create NAME`, `reserve NAME N`,
    /// `unreserve NAME`.
    pub async fn lambda(&self, args: &[&str]) {
        let out = Command::new("python3")
            .arg(crate::workspace().join("tests/python/moto_lambda.py"))
            .arg(self.endpoint())
            .args(args)
            .output()
            .await
            .expect("python3");
        assert!(
            out.status.success(),
            "moto_lambda.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// ElastiCache's IAM authentication in front of a plain `redis-server`
/// (`tests/python/iam_front.py`): TLS 1.3, every token signed again with botocore and refused
/// unless it comes out the same, connections closed `max_auth_age` after their last AUTH.
pub struct IamFront {
    pub port: u16,
    pub cache: String,
    pub ca_file: PathBuf,
    events: PathBuf,
    dir: PathBuf,
    _child: Child,
}

/// The credentials the tests give the extension, and the front checks tokens with.
pub const IAM_USER: &str = "admission";
pub const IAM_REGION: &str = "eu-west-1";
pub const IAM_ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
pub const IAM_SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const IAM_SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE//session+token=";

#[derive(Clone, Copy, Default)]
pub struct IamFrontOptions {
    pub serverless: bool,
    /// Seconds a connection lives after its last AUTH (ElastiCache: 12 hours); 0: forever.
    pub max_auth_age: f64,
}

impl IamFront {
    /// A front for the redis-server (or forwarder) listening on plain `upstream`.
    pub async fn start(upstream: u16, options: IamFrontOptions) -> IamFront {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "lambda-admission-iam-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        make_certificates(&dir);
        let events = dir.join("events.jsonl");
        let cache = if options.serverless {
            "admission-cache"
        } else {
            "admission-nodes"
        };
        let path = |name: &str| dir.join(name).display().to_string();
        let mut cmd = Command::new("python3");
        cmd.arg(crate::workspace().join("tests/python/iam_front.py"))
            .args(["--listen", &port.to_string()])
            .args(["--upstream", &upstream.to_string()])
            .args(["--cert", &path("server.crt"), "--key", &path("server.key")])
            .args(["--cache", cache, "--user", IAM_USER, "--region", IAM_REGION])
            .args([
                "--access-key",
                IAM_ACCESS_KEY,
                "--secret-key",
                IAM_SECRET_KEY,
            ])
            .args(["--session-token", IAM_SESSION_TOKEN])
            .args(["--max-auth-age", &options.max_auth_age.to_string()])
            .args(["--events", &events.display().to_string()]);
        if options.serverless {
            cmd.arg("--serverless");
        }
        let child = cmd
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with botocore (pip install 'moto[server]')");
        assert!(
            listening(port, Duration::from_secs(6)).await,
            "iam_front.py did not start"
        );
        IamFront {
            port,
            cache: cache.to_string(),
            ca_file: dir.join("ca.crt"),
            events,
            dir,
            _child: child,
        }
    }

    /// The URL the extension is given: TLS, the user, no password.
    pub fn url(&self) -> String {
        format!("rediss://{IAM_USER}@127.0.0.1:{}", self.port)
    }

    /// The extension's variables for IAM auth through this front, with the function's
    /// credentials as Lambda sets them.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ADMISSION_COORDINATOR", self.url()),
            ("ADMISSION_REDIS_AUTH", "iam".into()),
            ("ADMISSION_REDIS_IAM_CACHE", self.cache.clone()),
            (
                "ADMISSION_REDIS_CA_FILE",
                self.ca_file.display().to_string(),
            ),
            ("AWS_REGION", IAM_REGION.into()),
            ("AWS_ACCESS_KEY_ID", IAM_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", IAM_SECRET_KEY.into()),
            ("AWS_SESSION_TOKEN", IAM_SESSION_TOKEN.into()),
        ]
    }

    /// What the front saw, one JSON object per event (`connect`, `auth` with `ok`, `why` and
    /// `reauth`, `refused`, `drop`, `close`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `auth` events, as (ok, why, reauth).
    pub fn auths(&self) -> Vec<(bool, String, bool)> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "auth")
            .map(|e| {
                (
                    e["ok"] == true,
                    e["why"].as_str().unwrap_or("").to_string(),
                    e["reauth"] == true,
                )
            })
            .collect()
    }
}

impl Drop for IamFront {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
