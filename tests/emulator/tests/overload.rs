//! The claim, in small: under overload, without the layer clients get 500s; with it they get
//! 429s with Retry-After and no 500s; genuine handler errors stay errors either way. A real
//! fleet of environments (Python handlers under awslambdaric, the real extension) behind the
//! API Gateway emulator, with a real redis-server.

use std::time::Duration;

use lambda_emulator::clients::Client;
use lambda_emulator::load::{LoadSpec, Step};
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{scenario, Runtime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_becomes_429s_with_the_layer_and_500s_without() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    // Ten environments; the layer admits up to two, keeping eight free to answer shed requests
    // (generous headroom: while an environment sheds it is busy in Lambda's count, and debug
    // builds on a small shared CI machine shed in milliseconds, not microseconds). 150 requests/s
    // of 100 ms handlers is 1.5× what the fleet can run at once, and 7.5× what the layer admits.
    let spec = LoadSpec {
        steps: vec![
            Step {
                multiple: 0.3,
                seconds: 1.0,
            },
            Step {
                multiple: 1.5,
                seconds: 3.0,
            },
        ],
        mean_ms: 100.0,
        sigma: 0.3,
        error_share: 0.05,
        critical_share: 0.0,
        tenants: Vec::new(),
        seed: 11,
        downstream: None,
        client: Client::Once,
        timeout: Duration::from_secs(30),
        cpu: 0.0,
    };
    let runtime = Runtime::Python {
        handler: "handler.api".into(),
    };
    let scenarios = scenario::only(
        scenario::on_demand(10, 0.2, &redis.url(), runtime),
        &["no-layer", "layer-redis"],
    );
    let results = scenario::run_all(&scenarios, &spec).await;
    assert_eq!((results[0].id, results[1].id), ("no-layer", "layer-redis"));
    let (no_layer, layer) = (&results[0].steps[1], &results[1].steps[1]);
    eprintln!("{}", lambda_emulator::report::table(&results));

    assert!(
        no_layer.server_errors * 5 > no_layer.requests,
        "without the layer, overload is 500s: {no_layer:?}"
    );
    assert_eq!(no_layer.too_many, 0);

    assert_eq!(layer.server_errors, 0, "with the layer, no 500s: {layer:?}");
    assert!(
        layer.too_many * 3 > layer.requests,
        "overload is 429s: {layer:?}"
    );
    assert_eq!(
        layer.too_many, layer.too_many_with_retry_after,
        "every 429 carries Retry-After"
    );
    assert!(layer.ok > 0);

    for r in &results {
        for s in &r.steps {
            assert_eq!(
                s.errors_misreported, 0,
                "{}: a genuine error reported as something else",
                r.name
            );
        }
    }
    assert!(
        results
            .iter()
            .map(|r| r.steps.iter().map(|s| s.genuine_errors).sum::<usize>())
            .sum::<usize>()
            > 0,
        "some handlers failed on purpose"
    );
}

/// Clients that retry every 5xx at once turn an overload into a retry storm at the fleet; behind
/// the recipe they get 429s, which they take as the answer, and the fleet sees about one attempt
/// per request. Both on the complete platform, through the client model of the load generator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_clients_storm_without_the_layer_and_not_behind_the_recipe() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut spec = scenario::clients_load(100.0, 2.0, Client::Naive);
    spec.steps.truncate(2); // 0.5×, then 3×
    let scenarios = scenario::clients(
        5,
        &redis.url(),
        Runtime::Rust { stream: false },
        Client::Naive,
    );
    let results = scenario::run_all(&scenarios, &spec).await;
    assert_eq!(
        (results[0].id, results[1].id),
        ("naive-no-layer", "naive-recipe")
    );
    let (storm, recipe) = (&results[0].steps[1], &results[1].steps[1]);
    eprintln!(
        "no layer: {:?}\nrecipe: {:?}",
        storm.clients, recipe.clients
    );
    // Every attempt is a record; every request made at least one.
    for st in [storm, recipe] {
        assert!(st.clients.requests > 50, "{:?}", st.clients);
        assert!(st.clients.attempts_per_request >= 1.0);
    }
    assert!(
        storm.clients.attempts_per_request > 2.0,
        "a 500 is retried at once, up to 5 times: {:?}",
        storm.clients
    );
    assert!(
        recipe.clients.attempts_per_request < 1.5,
        "a 429 is the answer: {:?}",
        recipe.clients
    );
    assert!(recipe.too_many > 0 && recipe.server_errors * 20 < recipe.requests);
    // Behind the recipe the fleet still serves what it can.
    assert!(recipe.clients.eventual_success > 0.1);
}
