//! The reliability table (not a test): every fault of `lambda_emulator::faults`, repeated
//! `RELIABILITY_RUNS` times (default 5), against the real extension, real redis-server and the
//! emulated Runtime API. Prints the table kept in docs/reliability.md. `RELIABILITY_ONLY` (names,
//! comma-separated) runs some of the faults.

use lambda_emulator::{env_or, faults};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = env_or("RELIABILITY_RUNS", 5);
    println!("| fault injected | runs | what the client saw | invocations lost | run twice | leases left after the bound | count true again |");
    println!("|---|---|---|---|---|---|---|");
    let only: String = env_or("RELIABILITY_ONLY", String::new());
    let mut dirty = 0;
    for name in faults::ALL
        .iter()
        .filter(|n| only.is_empty() || only.split(',').any(|o| o == **n))
    {
        let mut reports = Vec::new();
        for _ in 0..runs {
            reports.push(faults::run(name).await);
        }
        let first = &reports[0];
        let mut saw: Vec<&str> = reports.iter().map(|r| r.client_saw.as_str()).collect();
        saw.dedup();
        let mut bounds: Vec<&str> = reports.iter().map(|r| r.bound).collect();
        bounds.dedup();
        let lost: usize = reports.iter().map(|r| r.lost).sum();
        let twice: usize = reports.iter().map(|r| r.duplicated).sum();
        let left: u64 = reports.iter().map(|r| r.leases_left).sum();
        dirty += reports.iter().filter(|r| !r.clean()).count();
        println!(
            "| {} | {runs} | {} | {lost} | {twice} | {left} | {} |",
            first.fault,
            saw.join("; "),
            bounds.join("; ")
        );
        eprintln!("{name}: done");
    }
    if dirty > 0 {
        eprintln!("{dirty} runs lost, duplicated or leaked");
        std::process::exit(1);
    }
}
