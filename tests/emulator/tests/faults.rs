//! Faults injected for real (the scenarios live in `lambda_emulator::faults`, which the
//! `reliability` command also runs): for each, no invocation lost or run twice, no lease left in
//! the shared count after the stated bound, and the client sees what it should.

use lambda_emulator::faults;

async fn check(name: &str, client_saw: &str) {
    let report = faults::run(name).await;
    assert!(report.clean(), "{report:?}");
    assert!(
        report.client_saw.starts_with(client_saw),
        "{name}: the client saw {}",
        report.client_saw
    );
    assert!(
        !report.bound.starts_with("more than") && !report.bound.starts_with("not within"),
        "{name}: {}",
        report.bound
    );
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

#[tokio::test]
async fn an_event_whose_runtime_hung_up_during_the_decision_reaches_its_next_call() {
    check("runtime-hangs-up-while-deciding", "200").await;
}

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

#[tokio::test]
async fn a_release_lost_with_its_connection_goes_back_with_the_next_round_trip() {
    check("redis-connection-cut", "200").await;
}

#[tokio::test]
async fn redis_stopped_between_acquire_and_release_holds_nothing_up() {
    check("redis-stopped", "200 (served, not held up)").await;
}

#[tokio::test]
async fn a_failover_that_leaves_the_old_primary_a_replica_is_followed() {
    check("redis-failover", "200").await;
}

#[tokio::test]
async fn a_flushed_script_cache_costs_no_decision() {
    check("redis-script-flush", "200, each counted at once").await;
}

#[tokio::test]
async fn one_slow_reply_does_not_cost_the_connection() {
    check(
        "redis-slow-reply",
        "200 (admitted unchecked); the connection is kept",
    )
    .await;
}

#[tokio::test]
async fn a_runtime_crash_returns_every_lease_at_shutdown() {
    check("runtime-crash", "Lambda's own error").await;
}
