//! lambda-admission: concurrency admission control for AWS Lambda, as an external extension.
//!
//! The extension sits between the function's runtime and Lambda's Runtime API. For every event it
//! decides, before the runtime sees it, whether the function has room for it; an HTTP request that
//! does not fit is answered at once with a proxy-format 429 and `Retry-After`, instead of letting
//! the platform throttle it into an API Gateway 500.
//!
//! # Layout
//! The data path, in the order an event meets it:
//! - [`config`]: every `ADMISSION_*` variable, parsed and validated once at init.
//! - [`lifecycle`]: the Extensions API (register, events, init errors).
//! - [`proxy`]: the Runtime API proxy the runtime talks to; forwards, holds `next` for a decision.
//! - [`admission`]: the decision: admit, shed, or admit and count what would have been shed.
//! - [`coordinator`]: who counts in-flight invocations (this environment, or the fleet in Redis).
//! - [`inflight`]: this environment's in-flight invocations, durations and `Retry-After`.
//! - [`limits`]: the limit read from the Lambda API (reserved concurrency, the account's pool).
//! - [`front_door`]: which service sent an event and the 429 it expects back.
//! - [`metrics`]: admitted/shed counts as CloudWatch Embedded Metric Format lines.
//! - [`logging`]: `tracing` set up from Lambda's log level and format.
//! - [`run`]: the extension's main loop, wiring the above together.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod admission;
pub mod config;
pub mod coordinator;
pub mod front_door;
pub mod inflight;
pub mod lifecycle;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod run;
