//! Who counts the in-flight invocations that a decision compares against the limit.
//!
//! [`Coordinator::Local`] counts this environment's own invocations: right for Managed Instances
//! (many invocations per environment) and for a single environment. A shared coordinator counts
//! the whole fleet; it plugs in here, behind the same two calls. The local tracker always records
//! the invocation too, since durations and the in-flight maximum are measured there.

use std::time::Instant;

use crate::inflight::{InFlight, Slot};

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
}

pub enum Coordinator {
    Local,
}

impl Coordinator {
    pub fn name(&self) -> &'static str {
        match self {
            Coordinator::Local => "local",
        }
    }

    /// Takes a slot for `id` if fewer than `threshold` are in flight.
    pub async fn acquire(
        &self,
        in_flight: &InFlight,
        id: &str,
        deadline: Instant,
        threshold: Option<u64>,
        now: Instant,
    ) -> Result<Slot, CoordinatorError> {
        match self {
            Coordinator::Local => Ok(in_flight.try_take(id, deadline, threshold, now)),
        }
    }

    /// Frees `id`'s slot. The local tracker has already been updated by the caller.
    pub async fn release(&self, _id: &str) -> Result<(), CoordinatorError> {
        match self {
            Coordinator::Local => Ok(()),
        }
    }
}
