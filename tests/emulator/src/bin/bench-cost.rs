//! The inputs of the cost formulas (docs/costs.md, "What it costs, in money"), measured (not a test): what one
//! admitted invocation and one shed ask of Redis, in server CPU time and bytes, against a plain
//! `GET`/`SET` of a small value, which ElastiCache Serverless bills as one ECPU.
//!
//! ElastiCache Serverless bills a command the larger of its vCPU time relative to a simple
//! `GET`/`SET` and the kilobytes it transfers, at least one ECPU. The vCPU ratio here is
//! `redis-server`'s own accounting (`INFO commandstats`, µs per call) on this machine, an
//! estimate of what Valkey on ElastiCache bills, not its bill.
//!
//! `cargo run -p lambda-emulator --bin bench-cost` (the figures are the server's, so the
//! client's build profile does not matter).

use std::collections::HashMap;
use std::time::Duration;

use lambda_admission::config::Config;
use lambda_admission::coordinator;
use lambda_admission::decision::admission::{Admission, Decision};
use lambda_admission::decision::limit;
use lambda_admission::lease::{unix_ms, Deadline};
use lambda_emulator::services::{RedisMode, RedisServer};

const EVENT: &[u8] = br#"{"httpMethod":"GET","path":"/orders","headers":{"accept":"*/*"},"requestContext":{"stage":"prod"}}"#;

fn admission(vars: &[(&str, &str)]) -> Admission {
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9001".into());
    env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), "cost".into());
    let config = Config::from_strings(&env).expect("config");
    let coordinator = coordinator::from_config(&config).expect("coordinator");
    let (_, limit) = limit::channel(config.limit);
    Admission::new(&config, limit, coordinator)
}

async fn connected(a: &Admission) {
    for _ in 0..500 {
        if a.status()["coordinatorConnected"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not connected to redis");
}

/// Server-side totals: calls and µs of every command, and bytes in and out.
#[derive(Clone, Copy, Default)]
struct Totals {
    calls: f64,
    usec: f64,
    bytes_in: f64,
    bytes_out: f64,
    /// The server process's CPU time (user + system), µs: commands and their I/O.
    cpu_usec: f64,
}

async fn totals(redis: &RedisServer, commands: &[&str]) -> Totals {
    let (calls, usec) = redis.command_stats(commands).await;
    let stats = redis.cli(&["INFO", "stats"]).await;
    let cpu = redis.cli(&["INFO", "cpu"]).await;
    let seconds = |key: &str| {
        cpu.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let field = |key: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Totals {
        calls,
        usec,
        bytes_in: field("total_net_input_bytes:"),
        bytes_out: field("total_net_output_bytes:"),
        cpu_usec: 1e6 * (seconds("used_cpu_user:") + seconds("used_cpu_sys:")),
    }
}

/// Per operation between two readings: command µs, commands, bytes, and server CPU µs.
fn per(n: usize, before: Totals, after: Totals) -> Per {
    let n = n as f64;
    Per {
        usec: (after.usec - before.usec) / n,
        calls: (after.calls - before.calls) / n,
        bytes: (after.bytes_in - before.bytes_in + after.bytes_out - before.bytes_out) / n,
        cpu_usec: (after.cpu_usec - before.cpu_usec) / n,
    }
}

#[derive(Clone, Copy)]
struct Per {
    usec: f64,
    calls: f64,
    bytes: f64,
    cpu_usec: f64,
}

/// Which of a round's figures a table row shows.
type Pick = fn(&Round) -> Per;

/// One round's figures per GET/SET, per admitted invocation, per shed.
struct Round {
    base: Per,
    admit: Per,
    shed: Per,
}

/// Per command: the larger of its vCPU time relative to a GET/SET's and the KB it moves, at
/// least one ECPU. `cpu` picks the time: the command's own (`INFO commandstats`, an upper bound:
/// a GET's own time is tiny) or the server's, I/O included (`INFO cpu`, a lower bound).
fn ecpus(op: Per, base: Per, cpu: fn(&Per) -> f64) -> f64 {
    let per_call_cpu = cpu(&op) / op.calls.max(1.0) / cpu(&base);
    let per_call_kb = op.bytes / op.calls.max(1.0) / 1024.0;
    op.calls * per_call_cpu.max(per_call_kb).max(1.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = 7;
    let (n, sheds) = (1000, 150);
    let redis = RedisServer::start(RedisMode::Plain).await;
    let url = redis.url();
    let commands = ["evalsha", "eval", "zrem", "script", "get", "set"];
    let mut plain = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let admitted = admission(&[
        ("ADMISSION_LIMIT", "1000000"),
        ("ADMISSION_COORDINATOR", &url),
        ("ADMISSION_COORDINATOR_TIMEOUT_MS", "1000"),
        ("ADMISSION_POOL", "admitted"),
    ]);
    connected(&admitted).await;
    // A full pool refuses. Each environment skips Redis for 10 ms after a refusal (the "full"
    // memo), so the sheds go round many environments, back to back like the rest (a server idle
    // between commands runs each slower).
    let environments: Vec<Admission> = (0..sheds)
        .map(|_| {
            admission(&[
                ("ADMISSION_LIMIT", "2"),
                ("ADMISSION_SHED_AT", "0.5"),
                ("ADMISSION_COORDINATOR", &url),
                ("ADMISSION_COORDINATOR_TIMEOUT_MS", "1000"),
                ("ADMISSION_POOL", "full"),
            ])
        })
        .collect();
    for e in &environments {
        connected(e).await;
    }
    let far = Deadline::from_unix_ms(Some(unix_ms() + 600_000));
    assert_eq!(
        environments[0].decide("holder", far, EVENT, None).await,
        Decision::Admit
    );
    let mut results = Vec::new();
    let mut id = 0u64;
    for _ in 0..rounds {
        // The baseline ElastiCache bills as one ECPU: a GET and a SET of a small value.
        let before = totals(&redis, &commands).await;
        for i in 0..n {
            let key = format!("k{}", i % 100);
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg("a small value")
                .query_async(&mut plain)
                .await
                .expect("SET");
            let _: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut plain)
                .await
                .expect("GET");
        }
        let after = totals(&redis, &commands).await;
        let base = per(2 * n, before, after);
        // Admitted invocations: a decision (acquire) and a release each.
        let before = totals(&redis, &commands).await;
        for _ in 0..n {
            id += 1;
            let lease = format!("a{id}");
            let deadline = Deadline::from_unix_ms(Some(unix_ms() + 60_000));
            let d = admitted.decide(&lease, deadline, EVENT, None).await;
            assert_eq!(d, Decision::Admit);
            admitted.release(&lease, false).await;
        }
        let after = totals(&redis, &commands).await;
        let admit = per(n, before, after);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = totals(&redis, &commands).await;
        for e in &environments {
            id += 1;
            let deadline = Deadline::from_unix_ms(Some(unix_ms() + 60_000));
            let d = e.decide(&format!("s{id}"), deadline, EVENT, None).await;
            assert!(matches!(d, Decision::Shed { .. }), "{d:?}");
        }
        let after = totals(&redis, &commands).await;
        let shed = per(sheds, before, after);
        results.push(Round { base, admit, shed });
    }
    let m = |f: &dyn Fn(&Round) -> f64| median(results.iter().map(f).collect());
    println!(
        "ElastiCache Serverless cost inputs: redis-server on 127.0.0.1, this machine; medians of \
         {rounds} rounds ({n} GET+SET, {n} admitted invocations, {sheds} sheds each); ECPUs \
         estimated per round against that round's GET/SET, by the server's CPU time (I/O \
         included) and by the commands' own time"
    );
    println!("\n| what | Redis commands | bytes in + out | server CPU µs | command µs | ECPUs by server CPU | ECPUs by command time |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| a GET or a SET of a small value (billed 1 ECPU) | 1 | {:.0} | {:.1} | {:.2} | 1 | 1 |",
        m(&|r| r.base.bytes),
        m(&|r| r.base.cpu_usec),
        m(&|r| r.base.usec)
    );
    let rows: [(&str, Pick); 2] = [
        ("an admitted invocation (decide + release)", |r| r.admit),
        ("a shed that asks Redis (refused)", |r| r.shed),
    ];
    for (what, pick) in rows {
        let by_cpu: Vec<f64> = results
            .iter()
            .map(|r| ecpus(pick(r), r.base, |p| p.cpu_usec))
            .collect();
        let by_command: Vec<f64> = results
            .iter()
            .map(|r| ecpus(pick(r), r.base, |p| p.usec))
            .collect();
        println!(
            "| {what} | {:.2} | {:.0} | {:.1} | {:.2} | {:.1} | {:.0} |",
            m(&|r| pick(r).calls),
            m(&|r| pick(r).bytes),
            m(&|r| pick(r).cpu_usec),
            m(&|r| pick(r).usec),
            median(by_cpu),
            median(by_command),
        );
    }
    println!(
        "\n(A shed answered from the 10 ms \"full\" memo asks nothing; fleet-bench's round-trips \
         table gives the share that ask.)"
    );
}
