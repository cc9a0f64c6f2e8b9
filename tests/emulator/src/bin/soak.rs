//! The soak (not a test, though CI runs a minute of it): `SOAK_SECONDS` (default 600) of a fleet
//! under retrying clients at 2–5× while faults strike at random, drawn from `SOAK_SEED` (printed;
//! by default from the clock). Writes `target/soak/summary.json`, prints a one-line verdict, and
//! exits non-zero if any check failed. `SOAK_ENVIRONMENTS` sets the fleet's size (default 4).

use lambda_emulator::{env_or, soak, workspace};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let spec = soak::SoakSpec {
        seconds: env_or("SOAK_SECONDS", 600.0),
        seed: env_or("SOAK_SEED", clock % 1_000_000),
        environments: env_or("SOAK_ENVIRONMENTS", 4),
    };
    eprintln!(
        "soak: {} s, {} environments, seed {} (replay: SOAK_SEED={} scripts/soak.sh)",
        spec.seconds, spec.environments, spec.seed, spec.seed
    );
    let summary = soak::run(&spec).await;
    let path = workspace().join("target/soak/summary.json");
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, text + "\n") {
        eprintln!("soak: cannot write {}: {e}", path.display());
    }
    println!("{}", soak::verdict(&summary));
    if summary["passed"] != true {
        std::process::exit(1);
    }
}
