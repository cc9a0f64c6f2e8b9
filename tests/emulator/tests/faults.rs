//! Faults injected for real (the scenarios live in `lambda_emulator::faults`, which the
//! `reliability` command also runs): for each, no invocation lost or run twice, no lease left in
//! the shared count after the stated bound, and the client sees what it should.

use lambda_emulator::faults::{self, Auth};

async fn check(name: &str, client_saw: &str) {
    check_with(name, client_saw, Auth::Password).await;
}

async fn check_with(name: &str, client_saw: &str, auth: Auth) {
    let report = faults::run_with(name, auth).await;
    assert!(report.clean(), "{report:?}");
    assert!(
        report.client_saw.starts_with(client_saw),
        "{name}: the client saw {}",
        report.client_saw
    );
    assert!(
        !report.bound.starts_with("more than") && !report.bound.starts_with("not within"),
        "{name} ({auth:?}): {}",
        report.bound
    );
}

/// A fault of the coordinator: run as is, and again with the extension authenticating with
/// ElastiCache IAM tokens through the checking TLS front (a connection replaced after the fault
/// must present a token the front accepts).
macro_rules! coordinated {
    ($test:ident, $name:literal, $client_saw:literal) => {
        #[tokio::test]
        async fn $test() {
            check($name, $client_saw).await;
        }

        mod $test {
            #[tokio::test]
            async fn with_iam_auth() {
                super::check_with($name, $client_saw, super::Auth::Iam).await;
            }
        }
    };
}

#[tokio::test]
async fn a_lost_acknowledgement_of_a_429_does_not_run_the_event_too() {
    check("shed-ack-lost", "429").await;
}

#[tokio::test]
async fn a_429_lambda_refused_once_is_posted_again() {
    check("shed-refused-once", "429").await;
}

#[tokio::test]
async fn an_event_for_a_runtime_that_hung_up_waits_for_its_next_call() {
    check("runtime-hangs-up-next", "200").await;
}

#[tokio::test]
async fn an_event_for_an_abandoned_next_reaches_the_runtimes_new_call() {
    check("runtime-retries-next", "200").await;
}

coordinated!(
    an_event_whose_runtime_hung_up_during_the_decision_reaches_its_next_call,
    "runtime-hangs-up-while-deciding",
    "200"
);

#[tokio::test]
async fn an_event_that_breaks_off_costs_no_lease_and_nothing_after_it() {
    check(
        "event-breaks-off",
        "no answer (the event never arrived whole",
    )
    .await;
}

#[tokio::test]
async fn lambdas_refusals_of_next_reach_the_runtime_unchanged() {
    check("next-refused", "the runtime gets 500 and 410 unchanged").await;
}

coordinated!(
    a_release_lost_with_its_connection_goes_back_with_the_next_round_trip,
    "redis-connection-cut",
    "200"
);

coordinated!(
    redis_stopped_between_acquire_and_release_holds_nothing_up,
    "redis-stopped",
    "200 (served, not held up)"
);

coordinated!(
    a_lease_kept_while_redis_was_down_goes_back_with_no_invocation_to_carry_it,
    "redis-stopped-then-idle",
    "200 (served, not held up)"
);

coordinated!(
    a_failover_that_leaves_the_old_primary_a_replica_is_followed,
    "redis-failover",
    "200"
);

coordinated!(
    a_flushed_script_cache_costs_no_decision,
    "redis-script-flush",
    "200, each counted at once"
);

coordinated!(
    one_slow_reply_does_not_cost_the_connection,
    "redis-slow-reply",
    "200 (admitted unchecked); the connection is kept"
);

coordinated!(
    a_runtime_crash_returns_every_lease_at_shutdown,
    "runtime-crash",
    "Lambda's own error"
);

/// A fault scenario with a shared coordinator that is not declared with `coordinated!` would
/// never run with IAM auth.
#[test]
fn every_fault_of_the_coordinator_runs_with_iam_auth_too() {
    let source: String = include_str!("faults.rs")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let declared: Vec<&str> = source
        .split("coordinated!(")
        .skip(1) // the text before the first use
        .filter_map(|s| s.split(')').next())
        .collect();
    for name in faults::COORDINATED {
        let quoted = format!("\"{name}\"");
        assert!(
            declared.iter().any(|d| d.contains(&quoted)),
            "{name} is not declared with coordinated!: {declared:?}"
        );
    }
}
