//! The decision: for every event, before the runtime sees it, admit it or answer it with a 429.
//!
//! [`admission`] makes it, in one pass with one question to the count: which front door sent the
//! event and what its 429 looks like ([`front_door`]), which class the request is in ([`classes`])
//! and which tenant ([`tenants`]), this environment's leases and timings ([`ledger`]), the limit
//! in force ([`limit`], or the one [`adaptive`] learns), and the counts it writes as metrics
//! ([`metrics`]). The fleet's count itself is the coordinator's (`crate::coordinator`); the
//! vocabulary both speak, a lease, is `crate::lease`. Nothing here does I/O but through the
//! coordinator: the transports that carry events are `crate::runtime_api`'s.

pub mod adaptive;
pub mod admission;
pub mod classes;
pub mod cpu;
pub mod front_door;
pub mod ledger;
pub mod limit;
pub mod metrics;
pub mod tenants;

pub use admission::{Admission, Decision};
