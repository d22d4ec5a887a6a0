//! What the classifying commands (`classify`, `images`) print the same way: the validation accuracies of a
//! run, its best validation pass, an evaluation as JSON, and the most probable classes of each input.

use std::io::Write;

use seqlab_train::{ClassificationMetrics, TrainSummary};

/// `validation accuracy by step: 10: 0.8000, ...` on stderr, when the run validated.
pub fn print_accuracies(steps: impl IntoIterator<Item = (usize, f64)>) {
    let steps: Vec<String> = steps
        .into_iter()
        .map(|(step, accuracy)| format!("{step}: {accuracy:.4}"))
        .collect();
    if !steps.is_empty() {
        eprintln!("validation accuracy by step: {}", steps.join(", "));
    }
}

/// The best validation pass and what the kept weights score there.
pub fn print_best(
    out: &mut impl Write,
    summary: &TrainSummary,
    best: Option<&ClassificationMetrics>,
) -> std::io::Result<()> {
    if let (Some((loss, step)), Some(best)) = (summary.best_valid, best) {
        writeln!(
            out,
            "best validation loss {loss:.4} at step {step}: accuracy {:.4}, macro-F1 {:.4}",
            best.accuracy, best.macro_f1
        )?;
    }
    Ok(())
}

/// An evaluation as one JSON object: accuracy, macro-F1, labels, confusion, per-class figures, loss and the
/// number of examples.
pub fn metrics_json(m: &ClassificationMetrics, loss: f64) -> serde_json::Value {
    serde_json::json!({
        "accuracy": m.accuracy,
        "macro_f1": m.macro_f1,
        "labels": m.labels,
        "confusion": m.confusion,
        "per_class": m.per_class,
        "loss": loss,
        "examples": m.examples,
    })
}

/// One line per row of class probabilities: the `top` most probable classes with their probabilities, tab
/// separated (ties by class order), then `extra(row)` when it gives a cell.
pub fn print_top(
    out: &mut impl Write,
    probabilities: &[Vec<f32>],
    labels: &[String],
    top: usize,
    extra: impl Fn(usize) -> Option<String>,
) -> std::io::Result<()> {
    for (i, row) in probabilities.iter().enumerate() {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        let mut cells: Vec<String> = order
            .iter()
            .take(top)
            .map(|&c| format!("{}\t{:.4}", labels[c], row[c]))
            .collect();
        cells.extend(extra(i));
        writeln!(out, "{}", cells.join("\t"))?;
    }
    Ok(())
}
