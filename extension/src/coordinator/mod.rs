//! The fleet's in-flight count, when one environment cannot see it: on demand, every environment
//! runs one invocation at a time, so admission needs a count shared by all of them.
//!
//! A backend implements [`SharedCount`]: connect, and acquire or release a lease in one round
//! trip. [`FailOpen`] wraps any backend in the policy every one of them needs (a time budget per
//! round trip, a circuit breaker, a connection replaced in the background) and is what the
//! decision talks to, as a [`Coordinator`]. Without a shared coordinator, the decision counts in
//! this environment's own ledger and nothing here is used.

pub mod breaker;
pub mod count;
pub mod fail_open;
pub mod iam;
pub mod redis;

use std::sync::Arc;

use crate::config::{Config, CoordinatorConfig};

pub use self::count::{
    BoxFuture, Coordinator, CoordinatorError, RideAlong, SharedCount, CONNECT_TIMEOUT,
};
pub use self::fail_open::FailOpen;
pub use self::redis::RedisCount;

/// The shared coordinator the configuration asks for, connecting in the background; `None` for
/// `local`.
pub fn from_config(config: &Config) -> Result<Option<Arc<dyn Coordinator>>, CoordinatorError> {
    match &config.coordinator {
        CoordinatorConfig::Local => Ok(None),
        CoordinatorConfig::Redis { url, iam } => {
            let redis = RedisCount::new(url, iam.clone(), &config.shared)?;
            let coordinator = FailOpen::new("redis", redis, &config.shared);
            coordinator.connect_in_background();
            Ok(Some(Arc::new(coordinator)))
        }
    }
}
