//! `metrics.csv` and the loss curve `loss.svg`.

use std::fmt::Write as _;
use std::path::Path;

use crate::atomic::write_bytes_atomically;
use crate::error::{Error, Result};

/// The header of `metrics.csv`.
pub const METRICS_HEADER: &str =
    "step,epoch,split,loss,perplexity,bits_per_token,lr,tokens_per_s,elapsed_s";

/// One row of `metrics.csv`: the loss of one split at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// Optimizer steps taken.
    pub step: usize,
    /// Epoch of that step (0-based).
    pub epoch: usize,
    /// `train` (mean training loss since the previous evaluation) or `valid`.
    pub split: String,
    /// Mean loss per token, in nats.
    pub loss: f64,
    /// The learning rate of the step.
    pub lr: f64,
    /// Training throughput since the previous evaluation.
    pub tokens_per_s: f64,
    /// Training time so far, resumed runs included.
    pub elapsed_s: f64,
}

impl MetricsRow {
    fn to_csv(&self) -> String {
        format!(
            "{},{},{},{:.6},{:.4},{:.6},{:.3e},{:.1},{:.2}",
            self.step,
            self.epoch,
            self.split,
            self.loss,
            self.loss.exp(),
            self.loss / std::f64::consts::LN_2,
            self.lr,
            self.tokens_per_s,
            self.elapsed_s
        )
    }

    fn from_csv(line: &str) -> Option<MetricsRow> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 9 {
            return None;
        }
        Some(MetricsRow {
            step: f[0].parse().ok()?,
            epoch: f[1].parse().ok()?,
            split: f[2].to_string(),
            loss: f[3].parse().ok()?,
            lr: f[6].parse().ok()?,
            tokens_per_s: f[7].parse().ok()?,
            elapsed_s: f[8].parse().ok()?,
        })
    }
}

/// Writes all rows to `path` (atomically, the whole file each time: it is small).
pub fn write_metrics(path: &Path, rows: &[MetricsRow]) -> Result<()> {
    let mut csv = String::from(METRICS_HEADER);
    csv.push('\n');
    for row in rows {
        csv.push_str(&row.to_csv());
        csv.push('\n');
    }
    write_bytes_atomically(path, csv.as_bytes()).map_err(Error::write(path))
}

/// Reads the rows of a `metrics.csv` written by [`write_metrics`]; lines that do not parse are skipped.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let text = std::fs::read_to_string(path).map_err(Error::read(path))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(MetricsRow::from_csv)
        .collect())
}

/// A line of the plot: its split, its colour and its (step, loss) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Draws the training and validation loss against the step as a small self-contained SVG.
pub fn loss_svg(rows: &[MetricsRow], title: &str) -> String {
    const W: f64 = 640.0;
    const H: f64 = 400.0;
    const L: f64 = 64.0; // left margin
    const R: f64 = 16.0;
    const T: f64 = 40.0;
    const B: f64 = 48.0;
    let series: Vec<Series> = [("train", "#1f77b4"), ("valid", "#ff7f0e")]
        .iter()
        .map(|&(split, color)| {
            let points = rows
                .iter()
                .filter(|r| r.split == split && r.loss.is_finite())
                .map(|r| (r.step as f64, r.loss))
                .collect();
            (split, color, points)
        })
        .collect();
    let all = series.iter().flat_map(|s| s.2.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    if y_max - y_min < 1e-9 {
        y_max = y_min + 1.0;
    }
    let pad = 0.05 * (y_max - y_min);
    let (y_lo, y_hi) = ((y_min - pad).max(0.0), y_max + pad);
    let px = |x: f64| L + (W - L - R) * x / x_max;
    let py = |y: f64| T + (H - T - B) * (1.0 - (y - y_lo) / (y_hi - y_lo));

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(svg, r##"<rect width="{W}" height="{H}" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"##,
        W / 2.0,
        escape(title)
    );
    // Axes, grid and ticks.
    let _ = writeln!(svg, r##"<g stroke="#999" stroke-width="1">"##);
    let _ = writeln!(
        svg,
        r##"<line x1="{L}" y1="{}" x2="{}" y2="{}"/>"##,
        H - B,
        W - R,
        H - B
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{L}" y1="{T}" x2="{L}" y2="{}"/>"##,
        H - B
    );
    let _ = writeln!(svg, "</g>");
    for i in 0..=5 {
        let y = y_lo + (y_hi - y_lo) * i as f64 / 5.0;
        let x = x_max * i as f64 / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{L}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#eee"/><text x="{2}" y="{3:.1}" text-anchor="end">{4:.2}</text>"##,
            py(y),
            W - R,
            L - 6.0,
            py(y) + 4.0,
            y
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##,
            px(x),
            H - B + 16.0,
            x.round()
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle">step</text>"##,
        (L + W - R) / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">loss (nats/token)</text>"##,
        (T + H - B) / 2.0
    );
    for (i, (split, color, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let coords: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            coords.join(" ")
        );
        let ly = T + 8.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{2}" y="{3}">{split}</text>"##,
            W - R - 90.0,
            W - R - 66.0,
            W - R - 60.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: usize, split: &str, loss: f64) -> MetricsRow {
        MetricsRow {
            step,
            epoch: 0,
            split: split.into(),
            loss,
            lr: 1e-3,
            tokens_per_s: 1000.0,
            elapsed_s: 1.5,
        }
    }

    #[test]
    fn rows_round_trip_through_the_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let rows = vec![row(10, "train", 2.5), row(10, "valid", 2.25)];
        write_metrics(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(METRICS_HEADER));
        assert!(text.contains("10,0,valid,2.250000,9.4877,3.246"), "{text}");
        assert_eq!(read_metrics(&path).unwrap(), rows);
    }

    #[test]
    fn the_plot_has_one_line_per_split() {
        let svg = loss_svg(
            &[
                row(0, "train", 4.0),
                row(50, "train", 2.0),
                row(50, "valid", 2.2),
            ],
            "a <b>",
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // No data: still a valid, empty plot.
        assert_eq!(loss_svg(&[], "empty").matches("<polyline").count(), 0);
    }
}
