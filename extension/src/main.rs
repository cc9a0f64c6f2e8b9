//! The `lambda-admission` extension binary: wiring only, see the library.

use std::process::ExitCode;

use lambda_admission::{config::Env, logging, run};

fn main() -> ExitCode {
    logging::init(&Env);
    // Lambda knows an extension by its file name in /opt/extensions.
    let name = std::env::args()
        .next()
        .as_deref()
        .and_then(|p| {
            std::path::Path::new(p)
                .file_name()?
                .to_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "lambda-admission".to_string());
    // One thread: the proxy's work per event is microseconds, and a single thread keeps start-up,
    // memory and wake-up latency low.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run::run(&Env, &name));
    // Not dropped: the runtime connections' threads may be inside it (the process ends here).
    std::mem::forget(runtime);
    code
}
