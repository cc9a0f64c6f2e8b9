//! The README's configuration table and the code agree: same variables, same defaults.

use lambda_admission::config::VARIABLES;

#[test]
fn readme_table_matches_the_variables_in_the_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let rows: Vec<(String, String)> = readme
        .lines()
        .filter(|l| l.starts_with("| `ADMISSION_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].trim_matches('`').to_string(),
            )
        })
        .collect();
    let code: Vec<(String, String)> = VARIABLES
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect();
    for var in &code {
        assert!(
            rows.contains(var),
            "README lacks the row {var:?} (rows: {rows:?})"
        );
    }
    for row in &rows {
        assert!(
            code.contains(row),
            "README documents {row:?}, which the code does not have"
        );
    }
}
