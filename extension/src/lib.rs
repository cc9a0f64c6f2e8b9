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
//! - [`proxy`]: the Runtime API proxy the runtime talks to; forwards, holds `next` for a decision,
//!   answers the wrapper's health probe and the status route. Its hot path (`next` and the
//!   runtime's answers) runs on threads with blocking sockets (`forwarder`); the rest on hyper.
//! - [`admission`]: the decision, one pass per event: admit, shed, or admit and count what would
//!   have been shed.
//! - [`lease`]: the vocabulary: a lease per invocation, a deadline, a grant.
//! - [`inflight`]: this environment's ledger of leases, durations and `Retry-After`.
//! - [`coordinator`]: the fleet's count when one environment cannot see it (Redis), behind the
//!   fail-open policy every backend shares.
//! - [`limit`]: the limit as one published value; [`lambda_api`] publishes the one read from the
//!   Lambda API (reserved concurrency, the account's pool).
//! - [`front_door`]: which service sent an event, what the class rules read of it, and the 429
//!   it expects back; [`classes`]: the rules that make a request critical, sheddable or exempt.
//! - [`metrics`]: admitted/shed counts as CloudWatch Embedded Metric Format lines.
//! - [`warnings`]: settings that protect nothing, named in the log and the status.
//! - [`http`]: the HTTP plumbing both APIs share; [`logging`]: `tracing` set up from Lambda's log
//!   settings.
//! - [`run`]: the extension's life, wiring the above together.

pub mod adaptive;
pub mod admission;
pub mod aws;
pub mod classes;
pub mod config;
pub mod coordinator;
mod forwarder;
pub mod front_door;
pub mod http;
pub mod inflight;
pub mod lambda_api;
pub mod lease;
pub mod lifecycle;
pub mod limit;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod run;
pub mod tenants;
pub mod warnings;
