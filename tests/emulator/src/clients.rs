//! Clients that retry, each a named policy with the parameters of the library it stands for.
//! The load's arrivals are first attempts; a client's retries come on top of them.
//!
//! - `once`: one attempt, whatever it gets (the load before client models).
//! - `urllib3`: Python's `urllib3.Retry(total=3, backoff_factor=0.5,
//!   status_forcelist=[429, 500, 502, 503, 504])`, as `requests` uses it: up to 4 attempts; a
//!   `Retry-After` on a 413, 429 or 503 is slept as given (capped at `backoff_max`, 120 s),
//!   otherwise urllib3 2's backoff: none after the first failure, then 0.5 × 2^(n−1) s.
//! - `sdk-standard`: the AWS SDKs' standard retry mode: 3 attempts, full-jitter exponential
//!   backoff (random × min(0.5 s × 2^(n−1), 20 s)), throttling and transient statuses (429, 500,
//!   502, 503, 504) retried, `Retry-After` ignored, and a retry quota of 500 tokens per client
//!   process: a retry costs 5, given back when the retried request succeeds; a first attempt that
//!   succeeds adds 1, up to 500.
//! - `naive`: a 5xx retried at once, up to 5 times; anything else is the answer.

use std::time::Duration;

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Once,
    Urllib3,
    SdkStandard,
    Naive,
}

/// The SDK's retry quota, shared by every request of one client process.
#[derive(Debug)]
pub struct Quota {
    tokens: Mutex<u32>,
}

const QUOTA: u32 = 500;
const RETRY_COST: u32 = 5;

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            tokens: Mutex::new(QUOTA),
        }
    }
}

impl Quota {
    fn take(&self, n: u32) -> bool {
        let mut tokens = self.tokens.lock();
        let taken = *tokens >= n;
        if taken {
            *tokens -= n;
        }
        taken
    }

    fn give(&self, n: u32) {
        let mut tokens = self.tokens.lock();
        *tokens = (*tokens + n).min(QUOTA);
    }
}

impl Client {
    pub const ALL: [Client; 4] = [
        Client::Once,
        Client::Urllib3,
        Client::SdkStandard,
        Client::Naive,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Client::Once => "once",
            Client::Urllib3 => "urllib3",
            Client::SdkStandard => "sdk-standard",
            Client::Naive => "naive",
        }
    }

    pub fn parse(id: &str) -> Option<Client> {
        Client::ALL.into_iter().find(|c| c.id() == id)
    }

    /// Attempt `attempt` (1: the first) got `status`, with `Retry-After: retry_after` seconds if
    /// it carried one: how long the client waits before the next attempt, or `None` when it
    /// stops (an answer it takes, or no attempts or quota left).
    pub fn retry(
        self,
        attempt: u32,
        status: u16,
        retry_after: Option<f64>,
        quota: &Quota,
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        let retryable = matches!(status, 429 | 500 | 502 | 503 | 504);
        match self {
            Client::Once => None,
            Client::Urllib3 => {
                if !retryable || attempt > 3 {
                    return None;
                }
                let honoured = retry_after.filter(|_| self.honours_retry_after(status));
                let backoff = if attempt <= 1 {
                    0.0
                } else {
                    0.5 * 2f64.powi(attempt as i32 - 1)
                };
                Some(Duration::from_secs_f64(
                    honoured.unwrap_or(backoff).min(120.0),
                ))
            }
            Client::SdkStandard => {
                if !retryable || attempt >= 3 || !quota.take(RETRY_COST) {
                    return None;
                }
                let ceiling = (0.5 * 2f64.powi(attempt as i32 - 1)).min(20.0);
                Some(Duration::from_secs_f64(rng.f64() * ceiling))
            }
            Client::Naive => (status >= 500 && attempt <= 5).then_some(Duration::ZERO),
        }
    }

    /// Whether the client waits as long as a `Retry-After` on an answer of `status` says
    /// (urllib3's `RETRY_AFTER_STATUS_CODES`).
    pub fn honours_retry_after(self, status: u16) -> bool {
        self == Client::Urllib3 && matches!(status, 413 | 429 | 503)
    }

    /// A request ended in a 2xx after `attempts` attempts: the quota hears of it.
    pub fn succeeded(self, attempts: u32, quota: &Quota) {
        if self == Client::SdkStandard {
            quota.give(if attempts > 1 { RETRY_COST } else { 1 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(client: Client, status: u16, retry_after: Option<f64>) -> Vec<f64> {
        let quota = Quota::default();
        let mut rng = fastrand::Rng::with_seed(1);
        (1..)
            .map_while(|attempt| client.retry(attempt, status, retry_after, &quota, &mut rng))
            .map(|d| d.as_secs_f64())
            .collect()
    }

    #[test]
    fn each_client_retries_as_its_library_does() {
        assert_eq!(delays(Client::Once, 500, None), Vec::<f64>::new());
        // urllib3 2: no backoff after the first failure, then 0.5 × 2^(n-1); Retry-After as
        // given on a 429, not on a 500.
        assert_eq!(delays(Client::Urllib3, 500, None), vec![0.0, 1.0, 2.0]);
        assert_eq!(delays(Client::Urllib3, 429, Some(1.0)), vec![1.0, 1.0, 1.0]);
        assert_eq!(delays(Client::Urllib3, 500, Some(7.0)), vec![0.0, 1.0, 2.0]);
        assert_eq!(delays(Client::Urllib3, 404, None), Vec::<f64>::new());
        // The SDK: two retries, each within its full-jitter ceiling; a 429's Retry-After ignored.
        let sdk = delays(Client::SdkStandard, 429, Some(30.0));
        assert_eq!(sdk.len(), 2);
        assert!(sdk[0] < 0.5 && sdk[1] < 1.0, "{sdk:?}");
        // Naive: a 5xx five times at once, a 429 taken as the answer.
        assert_eq!(delays(Client::Naive, 500, None), vec![0.0; 5]);
        assert_eq!(delays(Client::Naive, 429, Some(1.0)), Vec::<f64>::new());
    }

    #[test]
    fn the_sdk_quota_runs_out_and_fills_again_on_success() {
        let quota = Quota::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let retries = (0..200)
            .filter(|_| {
                Client::SdkStandard
                    .retry(1, 500, None, &quota, &mut rng)
                    .is_some()
            })
            .count();
        assert_eq!(retries, 100, "500 tokens at 5 a retry");
        Client::SdkStandard.succeeded(2, &quota);
        assert!(Client::SdkStandard
            .retry(1, 500, None, &quota, &mut rng)
            .is_some());
        assert!(Client::SdkStandard
            .retry(1, 500, None, &quota, &mut rng)
            .is_none());
    }
}
