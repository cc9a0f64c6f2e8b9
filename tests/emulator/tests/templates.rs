//! The SAM template, read as the emulator runs it (`fleet-bench --template`, the demo): what it
//! deploys for each parameter set, and what its rules refuse. (The CDK example's synthesized
//! template is run on the platform by `scripts/test.sh`, through the same reader.)

use lambda_emulator::fleet::StageThrottle;
use lambda_emulator::template::{self, Coordinator, TemplateRecipe};
use lambda_emulator::workspace;

fn sam(parameters: &[(&str, &str)]) -> Result<TemplateRecipe, String> {
    let parameters: Vec<(String, String)> = parameters
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    template::read(&workspace().join("deploy/sam/template.yaml"), &parameters)
}

fn variable<'a>(r: &'a TemplateRecipe, name: &str) -> Option<&'a str> {
    r.variables
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_default_deploys_the_recipe_with_a_shared_count() {
    let r = sam(&[]).unwrap();
    let n = r.reserved_concurrency;
    assert_eq!(r.coordinator, Coordinator::Shared { iam: true });
    assert_eq!(
        variable(&r, "ADMISSION_LIMIT"),
        Some(n.to_string().as_str())
    );
    assert_eq!(variable(&r, "ADMISSION_MODE"), Some("enforce"));
    assert_eq!(
        r.stage,
        Some(StageThrottle {
            rate: 8.0 * n as f64,
            burst: n as f64,
            retry_after: Some(1)
        })
    );
}

#[test]
fn every_size_keeps_the_limit_the_reservation_and_the_throttle_together() {
    for n in [5, 20, 100, 1000] {
        let r = sam(&[("ReservedConcurrency", &n.to_string())]).unwrap();
        assert_eq!(r.reserved_concurrency, n);
        assert_eq!(
            variable(&r, "ADMISSION_LIMIT"),
            Some(n.to_string().as_str())
        );
        let stage = r.stage.expect("a stage throttle");
        assert_eq!((stage.rate, stage.burst), (8.0 * n as f64, n as f64));
    }
    assert!(
        sam(&[("ReservedConcurrency", "7")]).is_err(),
        "no row, no deploy"
    );
}

#[test]
fn local_needs_the_acknowledgement_and_redis_a_url() {
    let e = sam(&[("Coordinator", "local")]).unwrap_err();
    assert!(e.contains("protects nothing"), "{e}");
    let r = sam(&[
        ("Coordinator", "local"),
        ("AcknowledgeLocalProtectsNothing", "yes"),
    ])
    .unwrap();
    assert_eq!(r.coordinator, Coordinator::Local);
    let e = sam(&[("Coordinator", "redis")]).unwrap_err();
    assert!(e.contains("RedisUrl"), "{e}");
    let r = sam(&[("Coordinator", "redis"), ("RedisUrl", "redis://cache:6379")]).unwrap();
    assert_eq!(r.coordinator, Coordinator::Shared { iam: false });
    // Blank variables are unset for the extension, as in the template.
    assert_eq!(variable(&r, "ADMISSION_COORDINATOR_TIMEOUT_MS"), Some(""));
}

#[test]
fn observe_mode_and_a_timeout_reach_the_extension() {
    let r = sam(&[("Mode", "observe"), ("CoordinatorTimeoutMs", "25")]).unwrap();
    assert_eq!(variable(&r, "ADMISSION_MODE"), Some("observe"));
    assert_eq!(variable(&r, "ADMISSION_COORDINATOR_TIMEOUT_MS"), Some("25"));
}
