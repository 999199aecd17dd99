//! The HTML report: the terminal tables and four charts drawn with plotters' SVG backend, inline
//! in one self-contained file (no scripts, no external resources).
//!
//! Charts: TTFT percentiles against the achieved request rate, ITL percentiles against it (each
//! request's mean gap, and the p99 and max of every gap pooled, where stalls show), output
//! throughput against it (each profile is a point, joined in rate order), and the cumulative
//! distribution of TTFT per profile. Text uses plotters' built-in size estimate, so no font files
//! are needed; the browser renders the `<text>` elements.

use std::path::Path;

use plotters::prelude::*;

use super::report::Report;
use super::stats::Summary;
use super::BenchError;

const SIZE: (u32, u32) = (760, 420);
const COLORS: [RGBColor; 6] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];

/// One line of a chart.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

fn plot_error<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Plot(e.to_string())
}

/// A range covering `values` with a little room, never empty.
fn range(values: impl Iterator<Item = f64>, from_zero: bool) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.08 } else { hi.abs().max(1.0) * 0.1 };
    hi += pad;
    if !from_zero {
        lo -= pad;
    }
    lo..hi
}

/// An SVG line chart with a point on every datum.
fn line_chart(title: &str, x_desc: &str, y_desc: &str, series: &[Series], from_zero: bool) -> Result<String, BenchError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let xs = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), from_zero);
        let ys = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), true);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(xs, ys)
            .map_err(plot_error)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(plot_error)?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(plot_error)?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Profiles in order of achieved request rate.
fn by_rate(report: &Report) -> Vec<&Summary> {
    let mut s: Vec<&Summary> = report.profiles.iter().map(|p| &p.summary).filter(|s| s.completed > 0).collect();
    s.sort_by(|a, b| a.requests_per_s.total_cmp(&b.requests_per_s));
    s
}

fn percentile_series(profiles: &[&Summary], pick: fn(&Summary) -> Option<&super::stats::Distribution>, name: &str, stats: &[&str]) -> Vec<Series> {
    stats
        .iter()
        .map(|stat| Series {
            label: format!("{name} {stat}"),
            points: profiles.iter().filter_map(|s| Some((s.requests_per_s, pick(s)?.get(stat)?))).collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// The cumulative distribution of TTFT, one line per profile.
fn ttft_cdf(report: &Report) -> Vec<Series> {
    report
        .profiles
        .iter()
        .filter_map(|p| {
            let mut ttft: Vec<f64> = p.records.iter().filter(|r| r.outcome == super::client::Outcome::Ok).filter_map(|r| r.ttft_ms()).collect();
            if ttft.is_empty() {
                return None;
            }
            ttft.sort_by(f64::total_cmp);
            let n = ttft.len() as f64;
            let points = ttft.iter().enumerate().map(|(i, t)| (*t, (i + 1) as f64 / n)).collect();
            Some(Series { label: p.summary.profile.clone(), points })
        })
        .collect()
}

/// Write the HTML report.
pub fn write_html(report: &Report, path: &Path) -> Result<(), BenchError> {
    let profiles = by_rate(report);
    let mut itl = percentile_series(&profiles, |s| s.itl_ms.as_ref(), "ITL", &["p50", "p95", "p99"]);
    itl.extend(percentile_series(&profiles, |s| s.itl_gap_ms.as_ref(), "every gap", &["p99", "max"]));
    let charts = [
        line_chart("Time to first token vs request rate", "requests/s", "ms", &percentile_series(&profiles, |s| s.ttft_ms.as_ref(), "TTFT", &["p50", "p95", "p99"]), true)?,
        line_chart("Inter-token latency vs request rate", "requests/s", "ms", &itl, true)?,
        line_chart(
            "Throughput vs request rate",
            "requests/s",
            "tokens/s",
            &[
                Series { label: "output tok/s".into(), points: profiles.iter().map(|s| (s.requests_per_s, s.output_tokens_per_s)).collect() },
                Series { label: "total tok/s".into(), points: profiles.iter().map(|s| (s.requests_per_s, s.total_tokens_per_s)).collect() },
            ],
            true,
        )?,
        line_chart("TTFT distribution (cumulative)", "TTFT ms", "fraction of requests", &ttft_cdf(report), false)?,
    ];
    let mut html = String::from("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>hearth bench</title>\n");
    html += "<style>body{font-family:sans-serif;margin:2em;max-width:1600px}pre{background:#f6f6f6;padding:1em;overflow-x:auto}.charts{display:flex;flex-wrap:wrap;gap:1em}</style>\n";
    html += "</head><body>\n<h1>hearth bench</h1>\n<pre>";
    html += &escape(&report.render());
    html += "</pre>\n<div class=\"charts\">\n";
    for chart in &charts {
        html += chart;
        html += "\n";
    }
    html += "</div>\n</body></html>\n";
    std::fs::write(path, html).map_err(|source| BenchError::Io { path: path.to_owned(), source })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_title_and_labels() {
        let series = vec![Series { label: "TTFT p50".into(), points: vec![(1.0, 10.0), (2.0, 20.0)] }];
        let svg = line_chart("A title", "requests/s", "ms", &series, true).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("A title") && svg.contains("TTFT p50") && svg.contains("requests/s"));
    }

    #[test]
    fn single_points_and_empty_charts_still_draw() {
        assert!(line_chart("one", "x", "y", &[Series { label: "s".into(), points: vec![(3.0, 3.0)] }], true).is_ok());
        assert!(line_chart("none", "x", "y", &[], false).is_ok());
        assert_eq!(range(std::iter::empty(), true), 0.0..1.0);
    }
}
