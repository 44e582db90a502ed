//! Server-rendered SVG charts (plotters' SVG backend): counts per time bucket.

use chrono::{DateTime, Utc};
use plotters::prelude::*;

/// Chart size and the plotting area's left and right edges (the browser maps a drag
/// across the area back to a time range).
pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 160;
pub const LEFT: u32 = 56;
pub const RIGHT: u32 = 12;

/// A bar chart of `counts` over `[from, to)` (equal buckets) as an SVG document.
pub fn histogram(from: DateTime<Utc>, to: DateTime<Utc>, counts: &[u64]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let max = counts.iter().copied().max().unwrap_or(0).max(1);
        let n = counts.len().max(1);
        let drawn =
            ChartBuilder::on(&root)
                .margin_right(RIGHT)
                .margin_top(8)
                .x_label_area_size(24)
                .y_label_area_size(LEFT)
                .build_cartesian_2d(0..n, 0u64..max + max / 10 + 1)
                .and_then(|mut chart| {
                    let span = (to - from).num_seconds().max(1);
                    let label = move |i: &usize| {
                        let t = from + chrono::Duration::seconds(span * *i as i64 / n as i64);
                        if span > 2 * 86_400 {
                            t.format("%m-%d %H:%M").to_string()
                        } else {
                            t.format("%H:%M:%S").to_string()
                        }
                    };
                    chart
                        .configure_mesh()
                        .disable_x_mesh()
                        .x_labels(6)
                        .y_labels(4)
                        .x_label_formatter(&label)
                        .draw()?;
                    chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
                        Rectangle::new([(i, 0), (i + 1, *c)], BLUE.mix(0.6).filled())
                    }))?;
                    Ok(())
                });
        if drawn.is_err() {
            return String::new();
        }
        let _ = root.present();
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_an_svg_with_one_bar_per_bucket() {
        let from: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        let to = from + chrono::Duration::hours(1);
        let svg = histogram(from, to, &[1, 5, 0, 3]);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("10:00:00"), "time labels");
        assert!(!svg.contains("<script"));
    }
}
