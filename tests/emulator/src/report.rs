//! The side-by-side table and the plot of a set of scenario outcomes.

use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::scenario::Outcome;

/// (second, 2xx, 429, 500)
type Second = (usize, usize, usize, usize);
/// A line of the plot: its label, colour, and value per second.
type Series = (&'static str, RGBColor, fn(&Second) -> usize);

/// Prints the table and writes the plot to `svg` (under the workspace's `target/demo`).
pub fn publish(outcomes: &[Outcome], svg: &str, title: &str) {
    println!("\n{}", table(outcomes));
    let path = crate::workspace().join("target/demo").join(svg);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let refs: Vec<&Outcome> = outcomes.iter().collect();
    match plot(&path, &refs, title) {
        Ok(()) => println!("plot: {}", path.display()),
        Err(e) => println!("plot not written: {e}"),
    }
}

/// One markdown table: a row per scenario and load step.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| scenario | load | requests | 2xx | 429 (with Retry-After) | of which API Gateway's | 500 (rate / concurrency throttles) | 502 | goodput / capacity | p50 ms (2xx) | p99 ms (2xx) | 429 p50 / p99 ms | genuine errors (misreported) | peak busy / N | recovery |"
    );
    let _ = writeln!(
        t,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for o in outcomes {
        for (i, s) in o.steps.iter().enumerate() {
            let recovery = if i + 1 == o.steps.len() {
                match o.recovery_seconds {
                    Some(r) => format!("{r:.1} s"),
                    None => "not recovered".into(),
                }
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "| {} | {}× | {} | {} | {} ({}) | {} | {} ({} / {}) | {} | {:.0}% | {:.0} | {:.0} | {} | {} ({}) | {}/{} | {} |",
                if i == 0 { o.name.as_str() } else { "" },
                s.multiple,
                s.requests,
                s.ok,
                s.too_many,
                s.too_many_with_retry_after,
                s.gateway_too_many,
                s.server_errors,
                s.rate_throttled,
                s.concurrency_throttled,
                s.bad_gateway,
                100.0 * s.goodput_share,
                s.p50_ms,
                s.p99_ms,
                if s.too_many > 0 { format!("{:.2} / {:.2}", s.shed_p50_ms, s.shed_p99_ms) } else { String::new() },
                s.genuine_errors,
                s.errors_misreported,
                s.peak_busy,
                o.capacity,
                recovery,
            );
        }
    }
    t
}

/// 2xx, 429 and 500 per second over time, one panel per outcome, written as SVG.
pub fn plot(
    path: &Path,
    outcomes: &[&Outcome],
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let height = 300 * outcomes.len() as u32 + 40;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let panels = root.split_evenly((outcomes.len(), 1));
    let y_max = outcomes
        .iter()
        .flat_map(|o| o.per_second.iter().map(|&(_, a, b, c)| a.max(b).max(c)))
        .max()
        .unwrap_or(1)
        .max(1);
    for (panel, o) in panels.iter().zip(outcomes) {
        let seconds = o.per_second.len().max(1);
        let mut chart = ChartBuilder::on(panel)
            .caption(&o.name, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0usize..seconds, 0usize..y_max + y_max / 10)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("responses / s")
            .draw()?;
        let series: [Series; 3] = [
            ("2xx", GREEN, |p| p.1),
            ("429", BLUE, |p| p.2),
            ("500", RED, |p| p.3),
        ];
        for (label, color, value) in series {
            chart
                .draw_series(LineSeries::new(
                    o.per_second.iter().map(|p| (p.0, value(p))),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
