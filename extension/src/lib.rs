//! lambda-admission: concurrency admission control for AWS Lambda, as an external extension.
//!
//! The extension sits between the function's runtime and Lambda's Runtime API. For every event it
//! decides, before the runtime sees it, whether the function has room for it; an HTTP request that
//! does not fit is answered at once with a proxy-format 429 and `Retry-After`, instead of letting
//! the platform throttle it into an API Gateway 500.
//!
//! # Layout
//! The data path, in the order an event meets it:
//! - [`runtime_api`]: the Runtime API proxy the runtime talks to. Its invocation core,
//!   [`runtime_api::invocation`], owns an event's life whichever transport carries it: the fetch
//!   on the async path and parked events (`invocation/next.rs`), each event's decision and **the
//!   429 a shed event gets** (`invocation/shed.rs`: `Invocations::admit`, `post_shed`), and the
//!   lease's release. Two transports drive it: `runtime_api::forwarder` serves the hot path
//!   (`next`, the runtime's answers) on threads with blocking sockets, over the HTTP/1 framing in
//!   `runtime_api::wire` and its keep-alive connection to Lambda in `runtime_api::upstream`;
//!   [`runtime_api::proxy`] serves the rest on hyper, and the connections the forwarder hands off.
//! - [`decision`]: admit or shed, one pass per event ([`decision::admission`]: the decision, its
//!   thresholds, its life around the decision, its report); which front door sent it and the
//!   429 it expects ([`decision::front_door`]), classes ([`decision::classes`]), tenants
//!   ([`decision::tenants`]), this environment's leases ([`decision::ledger`]), the limit
//!   ([`decision::limit`]) and the adaptive one ([`decision::adaptive`]), the metrics
//!   ([`decision::metrics`]).
//! - [`lease`]: the vocabulary the decision and the coordinator share: a lease per invocation, a
//!   deadline, a grant.
//! - [`coordinator`]: the fleet's count when one environment cannot see it (Redis), behind the
//!   fail-open policy every backend shares.
//! - [`platform`]: Lambda's own APIs: the Extensions API ([`platform::extensions_api`]), the
//!   limit from the Lambda API ([`platform::limit_reader`]), the AWS configuration.
//! - [`config`]: every `ADMISSION_*` variable, parsed and validated once at init into plain data
//!   the parts above read (the rule grammar in [`config::rules`]); it imports none of them;
//!   [`warnings`]: settings that protect nothing, named in the log and the status.
//! - [`http`]: the HTTP plumbing both APIs share; [`logging`]: `tracing` set up from Lambda's log
//!   settings.
//! - [`run`]: the extension's life, wiring the above together.

pub mod config;
pub mod coordinator;
pub mod decision;
pub mod http;
pub mod lease;
pub mod logging;
pub mod platform;
pub mod run;
pub mod runtime_api;
pub mod warnings;
