//! One execution environment: a platform, the real extension, and a real runtime process, started
//! in Lambda's order (extensions register, then the runtime starts, through the layer's wrapper).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{binary, free_port, status, workspace, Options, Outcome, Platform, RuntimeClient};

#[derive(Debug, Clone)]
pub enum Runtime {
    /// `python -m awslambdaric <handler>` in `tests/python`.
    Python { handler: String },
    /// `aws-lambda-ric <handler>` (AWS's Node.js runtime client) in `tests/node`.
    Node { handler: String },
    /// The Rust `test-function` on `lambda_runtime`.
    Rust { stream: bool },
    /// No runtime: the test drives the Runtime API itself.
    None,
}

/// What the runtime talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeApi {
    /// The layer: the extension, and the runtime started through the wrapper.
    Layer,
    /// The wrapper without the extension: it must fall back to Lambda's Runtime API.
    WrapperWithoutExtension,
    /// Lambda's Runtime API, no layer: the baseline.
    Direct,
    /// The extension runs, but the runtime starts without the wrapper and talks to Lambda's
    /// Runtime API itself (`AWS_LAMBDA_EXEC_WRAPPER` unset, or a `provided.*` runtime).
    ExtensionBypassed,
    /// The minimal pass-through (`floor-proxy`) instead of the layer: what one extra loopback
    /// hop costs with no logic in it.
    FloorProxy,
    /// The smallest proxy (`floor-blocking`: blocking sockets, a thread per connection, no async
    /// runtime): the physical floor of a hop on this machine.
    BlockingFloor,
}

impl RuntimeApi {
    /// The pass-through's binary, for the two floors.
    fn floor_binary(self) -> Option<&'static str> {
        match self {
            RuntimeApi::FloorProxy => Some("floor-proxy"),
            RuntimeApi::BlockingFloor => Some("floor-blocking"),
            _ => None,
        }
    }
}

pub struct Builder {
    env: HashMap<String, String>,
    /// Variables Lambda sets in the runtime's environment only, not in the extensions'.
    runtime_env: HashMap<String, String>,
    runtime: Runtime,
    runtime_api: RuntimeApi,
    /// Another build of the layer than this workspace's (a benchmark's baseline): a folder
    /// holding `lambda-admission` and `lambda-admission-wrapper`.
    layer_dir: Option<std::path::PathBuf>,
    options: Options,
    /// Control groups the extension (or floor) and the runtime join before they start: a
    /// benchmark's CPU quota and accounting.
    cgroups: Option<Cgroups>,
}

/// Control-group folders (each holding a `cgroup.procs`) for the environment's processes.
#[derive(Debug, Clone, Default)]
pub struct Cgroups {
    /// For the extension, or the floor standing in for it.
    pub extension: Vec<std::path::PathBuf>,
    pub runtime: Vec<std::path::PathBuf>,
}

/// `cmd`, made to join `groups` before it execs (through `sh`), so that everything it runs is
/// counted from its first instruction.
fn in_cgroups(cmd: &Command, groups: &[std::path::PathBuf]) -> Command {
    let std = cmd.as_std();
    let mut wrapped = Command::new("sh");
    wrapped
        .arg("-c")
        .arg(r#"for g in $CGROUPS; do echo $$ > "$g/cgroup.procs" || exit 97; done; unset CGROUPS; exec "$@""#)
        .arg("sh")
        .arg(std.get_program())
        .args(std.get_args());
    if let Some(dir) = std.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.env_clear();
    for (k, v) in std.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    let list: Vec<String> = groups.iter().map(|g| g.display().to_string()).collect();
    wrapped.env("CGROUPS", list.join(" "));
    wrapped
}

/// Lines a child process wrote, kept for assertions.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Vec<String>>>, Arc<tokio::sync::Notify>);

impl Output {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().clone()
    }
    /// Waits until a line containing `text` has been written; false if none came in time.
    pub async fn wait_for(&self, text: &str, timeout: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < until {
            if self.0.lock().iter().any(|l| l.contains(text)) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }
    /// Waits until the stream has been read to its end (the process closed it).
    pub async fn closed(&self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.1.notified()).await;
    }
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }
    fn capture(&self, stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) {
        let (out, done) = (self.0.clone(), self.1.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                out.lock().push(line);
            }
            done.notify_one();
        });
    }
}

pub struct Environment {
    pub platform: Arc<Platform>,
    pub port: u16,
    pub extension: Option<Child>,
    /// The minimal pass-through, when it stands in for the layer.
    pub floor: Option<Child>,
    pub runtime: Option<Child>,
    pub extension_stdout: Output,
    pub extension_stderr: Output,
    pub runtime_stderr: Output,
}

/// An environment of the real extension with `vars`, whose runtime the caller drives by hand
/// through the returned client.
pub async fn hand_driven(vars: &[(&str, &str)]) -> (Environment, RuntimeClient) {
    let env = Builder::new(Runtime::None).envs(vars).start().await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{}", env.port));
    (env, runtime)
}

impl Builder {
    pub fn new(runtime: Runtime) -> Builder {
        Builder {
            env: HashMap::new(),
            runtime_env: HashMap::new(),
            runtime,
            runtime_api: RuntimeApi::Layer,
            layer_dir: None,
            options: Options::default(),
            cgroups: None,
        }
    }
    /// Starts the extension (or floor) and the runtime inside these control groups.
    pub fn cgroups(mut self, cgroups: Cgroups) -> Builder {
        self.cgroups = Some(cgroups);
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Builder {
        self.env.insert(k.to_string(), v.to_string());
        self
    }
    /// [`Builder::env`] for each pair.
    pub fn envs<'a>(self, vars: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> Builder {
        vars.into_iter().fold(self, |b, (k, v)| b.env(k, v))
    }
    /// A variable for the runtime process only.
    pub fn runtime_env(mut self, k: &str, v: &str) -> Builder {
        self.runtime_env.insert(k.to_string(), v.to_string());
        self
    }
    pub fn runtime_api(mut self, runtime_api: RuntimeApi) -> Builder {
        self.runtime_api = runtime_api;
        self
    }
    /// Runs the layer (extension and wrapper) in `dir` instead of the workspace's.
    pub fn layer_from(mut self, dir: std::path::PathBuf) -> Builder {
        self.layer_dir = Some(dir);
        self
    }
    /// Leaves the extension out: the wrapper must fall back to the real Runtime API.
    pub fn without_extension(self) -> Builder {
        self.runtime_api(RuntimeApi::WrapperWithoutExtension)
    }
    /// Runs the runtime directly against the platform: the "no layer" baseline.
    pub fn without_layer(self) -> Builder {
        self.runtime_api(RuntimeApi::Direct)
    }
    /// Managed Instances as Lambda runs them: `AWS_LAMBDA_MAX_CONCURRENCY` is set for the
    /// runtime only (Lambda filters it out of the extensions' environment).
    pub fn managed_instances(mut self, max_concurrency: u32) -> Builder {
        self.options.managed_instances = true;
        self.runtime_env.insert(
            "AWS_LAMBDA_MAX_CONCURRENCY".into(),
            max_concurrency.to_string(),
        );
        self.env("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances")
    }
    /// The platform accounts the environment's CPU ([`crate::platform::CpuModel`]) and, with a
    /// folder, the extension reads it there (`ADMISSION_CPU_CGROUP`).
    pub fn cpu(mut self, model: crate::platform::CpuModel) -> Builder {
        if let Some(dir) = &model.dir {
            let _ = std::fs::create_dir_all(dir);
            let quota = (model.vcpus * 100_000.0).round() as u64;
            let _ = std::fs::write(dir.join("cpu.max"), format!("{quota} 100000\n"));
            let _ = std::fs::write(dir.join("cpu.stat"), "usage_usec 0\n");
            self.env
                .insert("ADMISSION_CPU_CGROUP".into(), dir.display().to_string());
        }
        self.options.cpu = Some(model);
        self
    }

    pub fn event_header(mut self, k: &str, v: &str) -> Builder {
        self.options
            .event_headers
            .push((k.to_string(), v.to_string()));
        self
    }

    /// Starts the platform, the extension (waiting for it to register), then the runtime.
    pub async fn start(self) -> Environment {
        let platform = Platform::start(self.options).await;
        let port = free_port();
        let mut env = self.env;
        env.insert("AWS_LAMBDA_RUNTIME_API".into(), platform.address());
        env.entry("ADMISSION_PORT".into())
            .or_insert_with(|| port.to_string());
        env.entry("AWS_LAMBDA_FUNCTION_NAME".into())
            .or_insert_with(|| "test-function".into());
        let port: u16 = env["ADMISSION_PORT"].trim().parse().unwrap_or(port);
        let (extension_stdout, extension_stderr) = (Output::default(), Output::default());
        let extension = if matches!(
            self.runtime_api,
            RuntimeApi::Layer | RuntimeApi::ExtensionBypassed
        ) {
            let path = self.layer_dir.as_ref().map_or_else(
                || binary("lambda-admission"),
                |dir| dir.join("lambda-admission"),
            );
            let mut cmd = Command::new(path);
            cmd.env_clear().envs(&env).envs(base_env());
            if let Some(groups) = &self.cgroups {
                cmd = in_cgroups(&cmd, &groups.extension);
            }
            let child = spawn(cmd, Some(&extension_stdout), &extension_stderr);
            assert!(
                platform.wait_registered(1, Duration::from_secs(10)).await,
                "the extension did not register: {}",
                extension_stderr.text()
            );
            Some(child)
        } else {
            None
        };
        let mut floor = None;
        if let Some(name) = self.runtime_api.floor_binary() {
            let mut cmd = Command::new(binary(name));
            cmd.env("FLOOR_PORT", port.to_string())
                .env("FLOOR_UPSTREAM", platform.address());
            if let Some(groups) = &self.cgroups {
                cmd = in_cgroups(&cmd, &groups.extension);
            }
            floor = Some(spawn(cmd, None, &Output::default()));
            for _ in 0..200 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            env.insert("AWS_LAMBDA_RUNTIME_API".into(), format!("127.0.0.1:{port}"));
        }
        let runtime_stderr = Output::default();
        let runtime = match &self.runtime {
            Runtime::None => None,
            kind => {
                let mut args: Vec<String> = Vec::new();
                if matches!(
                    self.runtime_api,
                    RuntimeApi::Layer | RuntimeApi::WrapperWithoutExtension
                ) {
                    let dir = self
                        .layer_dir
                        .clone()
                        .unwrap_or_else(|| workspace().join("layer-build"));
                    args.push(dir.join("lambda-admission-wrapper").display().to_string());
                }
                let mut cmd_env = env.clone();
                cmd_env.extend(self.runtime_env.clone());
                match kind {
                    Runtime::Python { handler } => {
                        args.extend([
                            "python3".into(),
                            "-m".into(),
                            "awslambdaric".into(),
                            handler.clone(),
                        ]);
                        cmd_env.insert("_HANDLER".into(), handler.clone());
                    }
                    Runtime::Node { handler } => {
                        args.extend([
                            "node".into(),
                            workspace()
                                .join("tests/node/node_modules/aws-lambda-ric/bin/index.mjs")
                                .display()
                                .to_string(),
                            handler.clone(),
                        ]);
                        cmd_env.insert("_HANDLER".into(), handler.clone());
                        cmd_env.insert(
                            "LAMBDA_TASK_ROOT".into(),
                            workspace().join("tests/node").display().to_string(),
                        );
                    }
                    Runtime::Rust { stream } => {
                        args.push(binary("test-function").display().to_string());
                        if *stream {
                            cmd_env.insert("TEST_FUNCTION_STREAM".into(), "1".into());
                        }
                        cmd_env.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "128".into());
                        cmd_env.insert("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into());
                        cmd_env.insert("AWS_LAMBDA_LOG_STREAM_NAME".into(), "test".into());
                        cmd_env.insert("AWS_LAMBDA_LOG_GROUP_NAME".into(), "test".into());
                    }
                    Runtime::None => unreachable!(),
                }
                let mut cmd = Command::new(&args[0]);
                cmd.args(&args[1..])
                    .current_dir(workspace().join(match kind {
                        Runtime::Node { .. } => "tests/node",
                        _ => "tests/python",
                    }))
                    .env_clear()
                    .envs(&cmd_env)
                    .envs(base_env());
                if let Some(groups) = &self.cgroups {
                    cmd = in_cgroups(&cmd, &groups.runtime);
                }
                Some(spawn(cmd, None, &runtime_stderr))
            }
        };
        Environment {
            platform,
            port,
            extension,
            floor,
            runtime,
            extension_stdout,
            extension_stderr,
            runtime_stderr,
        }
    }
}

/// What a process needs from this machine's environment, and nothing of the tests'.
fn base_env() -> Vec<(String, String)> {
    [
        "PATH",
        "HOME",
        "PYTHONPATH",
        "PYENV_ROOT",
        "PYENV_VERSION",
        "LANG",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
    .collect()
}

fn spawn(mut cmd: Command, stdout: Option<&Output>, stderr: &Output) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(if stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn");
    if let (Some(out), Some(pipe)) = (stdout, child.stdout.take()) {
        out.capture(pipe);
    }
    if let Some(pipe) = child.stderr.take() {
        stderr.capture(pipe);
    }
    child
}

impl Environment {
    pub async fn invoke(&self, payload: impl Into<bytes::Bytes>) -> Outcome {
        self.platform.invoke(payload, Duration::from_secs(10)).await
    }

    /// Sends SHUTDOWN and waits for the extension to exit (Lambda allows 2 s with extensions).
    pub async fn shutdown(&mut self) -> Option<std::process::ExitStatus> {
        self.platform.shutdown("spindown", Duration::from_secs(2));
        let ext = self.extension.as_mut()?;
        let status = tokio::time::timeout(Duration::from_secs(2), ext.wait())
            .await
            .ok()?
            .ok();
        self.extension_stdout.closed().await;
        status
    }

    /// The extension's status (`/lambda-admission/v1/status`), as a handler would read it.
    pub async fn status(&self) -> serde_json::Value {
        status(self.port).await
    }

    /// Polls the status until `ready` holds for it; the last status seen if it never does.
    pub async fn wait_status(
        &self,
        timeout: Duration,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let status = self.status().await;
            if ready(&status) {
                return Ok(status);
            }
            if std::time::Instant::now() > until {
                return Err(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (5 s at most) for the shared coordinator to connect; fails the test with the
    /// extension's log if it does not.
    pub async fn wait_connected(&self) {
        let connected = self
            .wait_status(Duration::from_secs(5), |s| {
                s["coordinatorConnected"] == true
            })
            .await;
        assert!(connected.is_ok(), "{}", self.extension_stderr.text());
    }

    /// Invokes `event` (for `tenant`, in tenant-isolation mode) while `runtime` waits in `next`:
    /// the status code the client got, 200 for an admitted event (answered at once).
    pub async fn invoke_answered(
        &self,
        runtime: &RuntimeClient,
        event: String,
        tenant: Option<&str>,
    ) -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!(
            "answered-{}-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::process::id()
        );
        let waiting = {
            let r = runtime.clone();
            tokio::spawn(async move { r.next().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (platform, tenant) = (self.platform.clone(), tenant.map(str::to_string));
        let out = tokio::spawn(async move {
            let timeout = Duration::from_secs(5);
            match tenant {
                Some(t) => platform.invoke_for_tenant(&id, &t, event, timeout).await,
                None => platform.invoke_as(&id, event, timeout).await,
            }
        });
        // Either the runtime gets the event (admitted) or the client its answer first (shed).
        while !waiting.is_finished() && !out.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if waiting.is_finished() {
            if let Ok(event) = waiting.await {
                runtime
                    .respond(&event.id, r#"{"statusCode":200,"body":"ok"}"#)
                    .await;
            }
        } else {
            waiting.abort();
        }
        out.await
            .map_or(0, |o| o.json()["statusCode"].as_u64().unwrap_or(0))
    }

    /// Holds `n` invocations of `event` in flight: invokes each and takes it through the proxy
    /// without answering, as a Managed Instances runtime holds several `next` calls at once.
    pub async fn hold(
        &self,
        runtime: &RuntimeClient,
        n: usize,
        event: &str,
    ) -> Vec<(String, tokio::task::JoinHandle<Outcome>)> {
        self.hold_for(runtime, n, event, None, Duration::from_secs(20))
            .await
    }

    /// [`Environment::hold`], for `tenant` (tenant-isolation mode) and with invocations that
    /// time out after `timeout`.
    pub async fn hold_for(
        &self,
        runtime: &RuntimeClient,
        n: usize,
        event: &str,
        tenant: Option<&str>,
        timeout: Duration,
    ) -> Vec<(String, tokio::task::JoinHandle<Outcome>)> {
        let mut held = Vec::new();
        for _ in 0..n {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let id = format!(
                "held-{}",
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let platform = self.platform.clone();
            let task = {
                let (id, event) = (id.clone(), event.to_string());
                let tenant = tenant.map(str::to_string);
                tokio::spawn(async move {
                    match tenant {
                        Some(t) => platform.invoke_for_tenant(&id, &t, event, timeout).await,
                        None => platform.invoke_as(&id, event, timeout).await,
                    }
                })
            };
            let event = runtime.next().await;
            assert_eq!(event.id, id, "the held event reached the runtime");
            held.push((id, task));
        }
        held
    }

    /// The EMF metric lines the extension printed.
    pub fn metric_lines(&self) -> Vec<serde_json::Value> {
        self.extension_stdout
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("_aws").is_some())
            .collect()
    }
}
