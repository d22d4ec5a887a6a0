//! The attention matrix of one translation as an SVG heat map.

use std::fmt::Write as _;

/// Draws `weights` (one row per target token, one column per source token, each in [0, 1]) as a heat map:
/// source tokens along the top, target tokens down the left, darker cells for more attention, the weight
/// of each cell in its tooltip. Rows or columns beyond the token lists are ignored.
pub fn attention_svg(
    source_tokens: &[String],
    target_tokens: &[String],
    weights: &[Vec<f32>],
) -> String {
    const CELL: usize = 28;
    let char_width = 7.5;
    let widest =
        |tokens: &[String]| tokens.iter().map(|t| t.chars().count()).max().unwrap_or(1) as f64;
    let left = (widest(target_tokens) * char_width) as usize + 16;
    // Source labels are written at -60°: their height is about 0.87 of their length.
    let top = (widest(source_tokens) * char_width * 0.87) as usize + 20;
    let (cols, rows) = (source_tokens.len(), target_tokens.len());
    let width = left + cols * CELL + 40;
    let height = top + rows * CELL + 20;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    for (j, token) in source_tokens.iter().enumerate() {
        let x = left + j * CELL + CELL / 2;
        let y = top - 6;
        let _ = writeln!(
            svg,
            r#"<text x="{x}" y="{y}" transform="rotate(-60 {x} {y})">{}</text>"#,
            escape(token)
        );
    }
    for (i, token) in target_tokens.iter().enumerate() {
        let y = top + i * CELL + CELL / 2 + 4;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{y}" text-anchor="end">{}</text>"#,
            left - 6,
            escape(token)
        );
        for (j, source) in source_tokens.iter().enumerate() {
            let w = weights
                .get(i)
                .and_then(|row| row.get(j))
                .copied()
                .unwrap_or(0.0);
            let w = if w.is_finite() {
                w.clamp(0.0, 1.0)
            } else {
                0.0
            };
            // White to dark blue.
            let shade = |full: f32| (255.0 - (255.0 - full) * w).round() as u8;
            let _ = writeln!(
                svg,
                r##"<rect x="{}" y="{}" width="{CELL}" height="{CELL}" fill="#{:02x}{:02x}{:02x}" stroke="#eeeeee"><title>{} → {}: {w:.3}</title></rect>"##,
                left + j * CELL,
                top + i * CELL,
                shade(8.0),
                shade(48.0),
                shade(107.0),
                escape(source),
                escape(token)
            );
        }
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#888888"/>"##,
        cols * CELL,
        rows * CELL
    );
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heat_map_has_a_cell_per_pair_and_escaped_labels() {
        let source = vec!["la".to_string(), "<unk>".to_string()];
        let target = vec!["the".to_string(), "x&y".to_string(), "<eos>".to_string()];
        let weights = vec![vec![1.0, 0.0], vec![0.25, 0.75], vec![0.5, 0.5]];
        let svg = attention_svg(&source, &target, &weights);
        assert_eq!(svg.matches("<title>").count(), 6);
        assert!(svg.contains("&lt;unk&gt;") && svg.contains("x&amp;y"));
        assert!(!svg.contains("<unk>"));
        // Full attention is the darkest blue, none is white.
        assert!(
            svg.contains(r##"fill="#08306b" stroke="#eeeeee"><title>la → the: 1.000"##),
            "{svg}"
        );
        assert!(
            svg.contains(r##"fill="#ffffff" stroke="#eeeeee"><title>&lt;unk&gt; → the: 0.000"##)
        );
    }
}
