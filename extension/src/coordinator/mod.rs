//! Who counts the in-flight invocations that a decision compares against the limit.
//!
//! [`Coordinator::Local`] counts this environment's own invocations: right for Managed Instances
//! (many invocations per environment) and for a single environment. [`Coordinator::Redis`] counts
//! the whole fleet's, in a pool shared by every environment (and by other functions naming the
//! same `ADMISSION_POOL`). Either way the local tracker records the invocation too, since
//! durations and the in-flight maximum are measured there.

pub mod breaker;
pub mod redis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, CoordinatorConfig};
use crate::inflight::{Deadline, InFlight, Slot};

pub use self::redis::RedisCoordinator;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("coordinator error: {0}")]
    Unavailable(String),
    #[error("coordinator did not answer within {0:?}")]
    Timeout(Duration),
    #[error("coordinator skipped after repeated failures (circuit breaker open)")]
    BreakerOpen,
    #[error("coordinator not connected yet")]
    NotConnected,
}

impl CoordinatorError {
    /// Whether a round trip was attempted and failed (as opposed to skipped).
    pub fn is_round_trip(&self) -> bool {
        matches!(
            self,
            CoordinatorError::Unavailable(_) | CoordinatorError::Timeout(_)
        )
    }
}

pub enum Coordinator {
    Local,
    Redis(Arc<RedisCoordinator>),
}

impl Coordinator {
    /// The coordinator the configuration asks for; a shared one starts connecting at once, in
    /// the background.
    pub fn from_config(config: &Config) -> Result<Coordinator, CoordinatorError> {
        match &config.coordinator {
            CoordinatorConfig::Local => Ok(Coordinator::Local),
            CoordinatorConfig::Redis { url } => {
                let redis = Arc::new(RedisCoordinator::new(url, &config.shared)?);
                redis.connect_in_background();
                Ok(Coordinator::Redis(redis))
            }
        }
    }

    pub fn is_shared(&self) -> bool {
        !matches!(self, Coordinator::Local)
    }

    /// Takes a slot for `id` if fewer than `threshold` are in flight (`None`: take it anyway).
    pub async fn acquire(
        &self,
        in_flight: &InFlight,
        id: &str,
        deadline: Deadline,
        threshold: Option<u64>,
        now: Instant,
    ) -> Result<Slot, CoordinatorError> {
        match self {
            Coordinator::Local => Ok(in_flight.try_take(id, deadline.at, threshold, now)),
            Coordinator::Redis(redis) => {
                let slot = redis.acquire(id, deadline.unix_ms, threshold).await?;
                match slot {
                    Slot::Taken { .. } => {
                        in_flight.take(id, deadline.at, now);
                    }
                    Slot::Full { .. } => in_flight.refused(now),
                }
                Ok(slot)
            }
        }
    }

    /// Frees `id`'s slot. The local tracker has already been updated by the caller.
    pub async fn release(&self, id: &str) -> Result<(), CoordinatorError> {
        match self {
            Coordinator::Local => Ok(()),
            Coordinator::Redis(redis) => redis.release(id).await,
        }
    }
}
