//! The emulated platform throttles as Lambda does, on all three axes: the invoke rate (10 × N a
//! second, sheds included), concurrency, and scale-up (environments start cold, count as busy
//! while they initialise, and no faster than the scale-up rate). The project's claims are measured
//! on this platform, so its throttles are tested like the product.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_emulator::fleet::{
    ApiGateway, Fleet, FleetConfig, Invoke, Layer, PlatformLimits, Throttle,
};
use lambda_emulator::Runtime;

fn config(n: usize, platform: PlatformLimits) -> FleetConfig {
    FleetConfig {
        environments: n,
        per_environment: 1,
        runtime: Runtime::Rust { stream: false },
        layer: Layer::None,
        shed_at: None,
        pool: "platform".into(),
        platform,
        extension_env: Vec::new(),
        runtime_env: Vec::new(),
        managed: None,
    }
}

fn sleeping(ms: u64) -> String {
    ApiGateway::event("/x", &[("op", "sleep"), ("ms", &ms.to_string())])
}

#[tokio::test]
async fn more_than_ten_invokes_a_second_per_unit_of_concurrency_are_throttled() {
    let fleet = Fleet::start(&config(2, PlatformLimits::lambda())).await;
    // One at a time, a little apart: concurrency rarely binds (a slot is busy until its runtime
    // asks for the next event), the rate does.
    let (mut done, mut rate, mut concurrency) = (0, 0, 0);
    let started = Instant::now();
    for _ in 0..80 {
        match fleet.invoke(sleeping(0), Duration::from_secs(5)).await {
            Invoke::Done(_) => done += 1,
            Invoke::Throttled(Throttle::Rate) => rate += 1,
            Invoke::Throttled(Throttle::Concurrency) => concurrency += 1,
            Invoke::Throttled(Throttle::Cpu) => panic!("no CPU protection on demand"),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // 20 a second for N = 2: the one-second burst, plus what refills while the loop runs.
    let refill = (started.elapsed().as_secs_f64() * 20.0).ceil() as usize;
    assert!(
        done + concurrency <= 20 + refill && done >= 10,
        "{done} done, {rate} rate-throttled, {concurrency} concurrency-throttled in {:?}",
        started.elapsed()
    );
    assert!(rate >= 80 - 20 - refill, "{rate} rate-throttled");
}

#[tokio::test]
async fn environments_start_cold_count_as_busy_and_no_more_than_n_exist() {
    let mut limits = PlatformLimits::lambda();
    limits.warm = Some(0);
    limits.init_delay = Duration::from_millis(300);
    let fleet = Arc::new(Fleet::start(&config(2, limits)).await);
    assert_eq!(fleet.started(), 0);
    let started = Instant::now();
    let mut invokes = Vec::new();
    for _ in 0..3 {
        let f = fleet.clone();
        invokes.push(tokio::spawn(async move {
            f.invoke(sleeping(100), Duration::from_secs(10)).await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut outcomes = Vec::new();
    for i in invokes {
        outcomes.push(i.await.unwrap());
    }
    // Two environments start for the first two invokes; the third finds both initialising
    // (busy, as Lambda counts them) and N reached: throttled, before any code runs.
    assert!(matches!(outcomes[0], Invoke::Done(_)) && matches!(outcomes[1], Invoke::Done(_)));
    assert_eq!(outcomes[2], Invoke::Throttled(Throttle::Concurrency));
    assert_eq!(fleet.started(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "a cold invoke waits for its environment's init and then runs"
    );
    // Warm now: the next invoke reuses an idle environment and starts nothing.
    let t = Instant::now();
    assert!(matches!(
        fleet.invoke(sleeping(0), Duration::from_secs(5)).await,
        Invoke::Done(_)
    ));
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(fleet.started(), 2);
}

#[tokio::test]
async fn environments_start_no_faster_than_the_scale_up_rate() {
    let mut limits = PlatformLimits::lambda();
    limits.warm = Some(0);
    limits.scale_up_per_second = 1.0;
    let fleet = Arc::new(Fleet::start(&config(5, limits)).await);
    let (a, b) = tokio::join!(
        fleet.invoke(sleeping(200), Duration::from_secs(10)),
        fleet.invoke(sleeping(200), Duration::from_secs(10))
    );
    let throttled = [&a, &b]
        .iter()
        .filter(|o| ***o == Invoke::Throttled(Throttle::Concurrency))
        .count();
    assert_eq!(
        throttled, 1,
        "one start a second: the burst's second invoke finds no room"
    );
    assert_eq!(fleet.started(), 1);
}
