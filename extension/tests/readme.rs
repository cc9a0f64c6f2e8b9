//! The README, the docs, the wrapper and the code agree: same variables and defaults, same
//! metrics, same warnings; what they show users to deploy is taken from files CI checks; the
//! figures they work out are the code's; every page they link exists.

use lambda_admission::config::{self, VARIABLES};
use lambda_admission::decision::metrics::METRICS;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The first two cells of every table row in `file` that starts with `prefix`.
fn rows_in(file: &str, prefix: &str) -> Vec<(String, String)> {
    repo_file(file)
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
    same_rows(&rows_in("README.md", "| `ADMISSION_"), &code);
}

#[test]
fn readme_metric_table_matches_the_metrics_in_the_code() {
    let documented: Vec<(String, String)> = rows_in("docs/metrics.md", "| `")
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

/// A line without its indentation and a comment marker: a command quoted from a script's usage
/// comment is the command.
fn bare(line: &str) -> &str {
    let t = line.trim();
    t.strip_prefix("//")
        .or_else(|| t.strip_prefix('#'))
        .map_or(t, str::trim)
}

/// Whether a code block deploys something: AWS resources, AWS CLI calls, the construct.
fn deploys(block: &str) -> bool {
    [
        "Type: AWS::",
        "aws lambda ",
        "aws apigateway ",
        "aws cloudformation ",
        "aws iam ",
        "sam deploy",
        "cdk deploy",
        "new LambdaAdmission",
        ".protect(",
        "AWS_LAMBDA_EXEC_WRAPPER",
        "ThrottlingRateLimit",
        "\"Effect\"",
        "protect.sh --",
    ]
    .iter()
    .any(|t| block.contains(t))
}

/// Every fenced block of the README, with the line before its fence.
fn blocks(readme: &str) -> Vec<(String, Vec<String>)> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```") {
            let before = if i > 0 { lines[i - 1] } else { "" };
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim_start().starts_with("```"))
                .unwrap_or(lines.len());
            found.push((
                before.to_string(),
                lines[i + 1..end].iter().map(|l| l.to_string()).collect(),
            ));
            i = end + 1;
        } else {
            i += 1;
        }
    }
    found
}

/// What the README shows users to deploy is a copy of a file CI synthesizes, lints or runs: each
/// such block names its file (`<!-- from: PATH -->` on the line before it) and appears there
/// verbatim, line after line, indentation kept relative to its first line.
#[test]
fn every_block_that_deploys_something_is_taken_from_a_tested_file() {
    let mut checked = 0;
    for page in pages() {
        checked += deploying_blocks_are_taken_from_tested_files(&page);
    }
    assert!(checked >= 5, "only {checked} deploying blocks found");
}

/// The README and every page under docs/.
fn pages() -> Vec<String> {
    let dir = format!("{}/../docs", env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    pages.sort();
    pages.insert(0, "README.md".into());
    pages
}

/// The deploying blocks of `page` checked against their files; how many there were.
fn deploying_blocks_are_taken_from_tested_files(page: &str) -> usize {
    let readme = repo_file(page);
    let mut checked = 0;
    for (before, block) in blocks(&readme) {
        let text = block.join("\n");
        let source = before
            .trim()
            .strip_prefix("<!-- from: ")
            .and_then(|s| s.strip_suffix(" -->"));
        if !deploys(&text) {
            assert!(
                source.is_none(),
                "a block marked from {source:?} deploys nothing:\n{text}"
            );
            continue;
        }
        let Some(source) = source else {
            panic!(
                "this README block deploys something but names no file it is taken from:\n{text}"
            );
        };
        assert!(
            source.starts_with("deploy/") || source.starts_with("scripts/"),
            "{source}: not a file CI checks"
        );
        let file = repo_file(source);
        let file: Vec<&str> = file.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        // A quote from inside a marked block (`lambda-admission: begin NAME` ... `end NAME`) is
        // the whole block: half of one (the variables without the coordinator's) protects nothing.
        let whole = |start: usize| {
            let begin = file[..=start]
                .iter()
                .rposition(|l| l.contains("lambda-admission: begin"));
            let end = file[..=start]
                .iter()
                .rposition(|l| l.contains("lambda-admission: end"));
            match (begin, end) {
                (Some(b), e) if e.is_none_or(|e| e < b) => {
                    b + 1 == start
                        && file
                            .get(start + block.len())
                            .is_some_and(|l| l.contains("lambda-admission: end"))
                }
                _ => true,
            }
        };
        let found = (0..file.len()).any(|start| {
            block.len() <= file.len() - start
                && block.iter().enumerate().all(|(k, line)| {
                    let theirs = file[start + k];
                    bare(theirs) == bare(line)
                        && (line.trim().is_empty()
                            || indent(theirs) as isize - indent(file[start]) as isize
                                == indent(line) as isize - indent(&block[0]) as isize)
                })
                && whole(start)
        });
        assert!(
            found,
            "this block of {page} is not in {source} (or is part of a marked block there):\n{text}"
        );
        checked += 1;
    }
    checked
}

/// The commands the ElastiCache user may run, as `+command` grants in an access string.
fn grants(access: &str) -> Vec<String> {
    let mut g: Vec<String> = access
        .split_whitespace()
        .filter_map(|a| a.strip_prefix('+'))
        .map(str::to_string)
        .collect();
    g.sort();
    g
}

/// One list of commands for the cache's user, in the construct, the SAM template, the CLI's
/// cache template and the docs' ACL bullet.
#[test]
fn the_cache_users_commands_are_one_list() {
    let acl = repo_file("deploy/cdk/src/acl.ts");
    let mut construct: Vec<String> = acl
        .lines()
        .filter_map(|l| l.strip_prefix("  '")?.strip_suffix("',"))
        .map(str::to_string)
        .collect();
    construct.sort();
    assert!(construct.len() > 10, "{construct:?}");
    for template in ["deploy/sam/template.yaml", "deploy/cli/cache.yaml"] {
        let text = repo_file(template);
        let access = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("AccessString: "))
            .unwrap_or_else(|| panic!("{template} has no AccessString"))
            .trim_matches('"');
        assert_eq!(grants(access), construct, "{template}");
    }
    let fleet = repo_file("docs/fleet.md");
    let bullet = &fleet[fleet
        .find("- A Redis ACL user needs")
        .expect("the ACL bullet")..];
    let bullet = &bullet[..bullet.find("\n- ").unwrap_or(bullet.len())];
    for command in &construct {
        assert!(
            bullet.contains(&format!("`{}`", command.to_uppercase())),
            "the ACL bullet of docs/fleet.md lacks {command}"
        );
    }
}

/// The construct's metric table (deploy/cdk/src/metrics.ts) is the extension's.
#[test]
fn the_constructs_metrics_are_the_extensions() {
    let ts = repo_file("deploy/cdk/src/metrics.ts");
    let construct: Vec<(String, String)> = ts
        .lines()
        .filter_map(|l| {
            let (name, unit) = l.strip_prefix("  ")?.split_once(": '")?;
            Some((name.to_string(), unit.strip_suffix("',")?.to_string()))
        })
        .collect();
    let code: Vec<(String, String)> = METRICS
        .iter()
        .map(|(n, u)| (n.to_string(), u.to_string()))
        .collect();
    assert_eq!(construct, code);
    let variables = repo_file("deploy/cdk/src/variables.ts");
    for line in variables.lines() {
        if let Some(rest) = line.strip_prefix("export const ADMISSION_") {
            let name = format!("ADMISSION_{}", &rest[..rest.find(' ').unwrap()]);
            assert!(
                VARIABLES.iter().any(|v| v.name == name),
                "the construct writes {name}, which the extension does not read"
            );
        }
    }
}

/// The README's table of warnings is the code's.
#[test]
fn readme_warning_table_matches_the_code() {
    let page = repo_file("docs/failing-open.md");
    let documented: Vec<(String, String)> = page
        .lines()
        .filter(|l| l.starts_with("| warning:"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1]
                    .trim_start_matches("warning:")
                    .trim()
                    .trim_matches('`')
                    .to_string(),
                cells[2].trim_matches('`').to_string(),
            )
        })
        .collect();
    let code: Vec<(String, String)> = lambda_admission::warnings::CODES
        .iter()
        .map(|(c, v)| (c.to_string(), v.to_string()))
        .collect();
    same_rows(&documented, &code);
}

/// Every relative link in the README and the docs leads to a file that exists.
#[test]
fn every_page_linked_exists() {
    let mut links = 0;
    for page in pages() {
        let text = repo_file(&page);
        let base = std::path::Path::new(&page)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            rest = &rest[end..];
            if target.starts_with("http") || target.starts_with('#') || target.contains(' ') {
                continue;
            }
            let file = target.split('#').next().unwrap_or(target);
            let path = format!(
                "{}/../{}",
                env!("CARGO_MANIFEST_DIR"),
                base.join(file).display()
            );
            assert!(
                std::path::Path::new(&path).exists(),
                "{page} links {target}, which does not exist"
            );
            links += 1;
        }
    }
    assert!(links >= 20, "only {links} links found");
}

/// The README stays short: what it is, the problem, how to protect a function, how it works, the
/// recipe, the three ways to deploy and the configuration; the rest is in docs/.
#[test]
fn the_readme_is_short_and_starts_with_how_to_protect_a_function() {
    let readme = repo_file("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    assert!(lines.len() <= 310, "README.md has {} lines", lines.len());
    let first = lines[..60].join("\n");
    for needle in [
        "Protect an on-demand function",
        "reserved concurrency",
        "Valkey",
        "8 × N",
        "costs",
    ] {
        assert!(
            first.contains(needle),
            "the first 60 lines do not mention {needle:?}"
        );
    }
}

/// The figures the docs work out are the code's own.
#[test]
fn the_worked_thresholds_are_computed_by_the_code() {
    use lambda_admission::decision::ledger::DEFAULT_SHED_SECS;
    use lambda_admission::decision::limit::{Limit, LimitSource};
    let threshold = |n: u64, shed: f64| Limit::new(n, LimitSource::Env).threshold(None, shed, 0.0);
    let page = repo_file("docs/threshold.md");
    let measured = 0.000_25;
    for (n, expected) in [(100, 95), (20, 17), (5, 3)] {
        assert_eq!(threshold(n, measured), expected, "limit {n}");
        assert!(
            page.contains(&format!("threshold {expected}")),
            "{n}: {expected}"
        );
    }
    assert_eq!(threshold(100, DEFAULT_SHED_SECS), 91);
    assert_eq!(threshold(5, DEFAULT_SHED_SECS), 2);
    assert!(page.contains("9 spare, threshold 91") && page.contains("3 spare, threshold 2"));
    let status = repo_file("docs/status.md");
    assert!(status.contains("\"threshold\": 95") && status.contains("\"threshold\": 91"));
    // The README's "How it works": 9 and about 5 of 100 kept free, 3 of 5.
    let readme = repo_file("README.md");
    assert_eq!(100 - threshold(100, DEFAULT_SHED_SECS), 9);
    assert_eq!(100 - threshold(100, measured), 5);
    assert_eq!(5 - threshold(5, DEFAULT_SHED_SECS), 3);
    assert!(readme.contains(
        "at a limit of 100, 9 until a shed has been timed and about 5 after; at a limit of 5, 3"
    ));
}
