//! The README, the wrapper and the code agree: same variables and defaults, same metrics.

use lambda_admission::config::{self, VARIABLES};
use lambda_admission::metrics::METRICS;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The first two cells of every README table row that starts with `prefix`.
fn rows(prefix: &str) -> Vec<(String, String)> {
    repo_file("README.md")
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].trim_matches('`').to_string(),
            )
        })
        .collect()
}

fn same_rows(documented: &[(String, String)], code: &[(String, String)]) {
    for row in code {
        assert!(
            documented.contains(row),
            "README lacks the row {row:?} (rows: {documented:?})"
        );
    }
    for row in documented {
        assert!(
            code.contains(row),
            "README documents {row:?}, which the code does not have"
        );
    }
}

#[test]
fn readme_table_matches_the_variables_in_the_code() {
    let code: Vec<(String, String)> = VARIABLES
        .iter()
        .map(|v| (v.name.to_string(), v.documented_default()))
        .collect();
    same_rows(&rows("| `ADMISSION_"), &code);
}

#[test]
fn readme_metric_table_matches_the_metrics_in_the_code() {
    let documented: Vec<(String, String)> = rows("| `")
        .into_iter()
        .filter(|(name, _)| !name.starts_with("ADMISSION_"))
        .collect();
    let code: Vec<(String, String)> = METRICS
        .iter()
        .map(|(n, u)| (n.to_string(), u.to_string()))
        .collect();
    same_rows(&documented, &code);
}

#[test]
fn the_wrappers_port_default_is_the_extensions() {
    let wrapper = repo_file("layer-build/lambda-admission-wrapper");
    let port = VARIABLES
        .iter()
        .find(|v| v.name == config::PORT)
        .map(|v| v.documented_default())
        .unwrap();
    assert!(
        wrapper.contains(&format!("${{{}", config::PORT)),
        "the wrapper reads {}",
        config::PORT
    );
    let expected = format!("port=\"${{port:-{port}}}\"");
    assert!(
        wrapper.contains(&expected),
        "the wrapper should default the port with {expected}"
    );
}
