//! Classification metrics: accuracy, macro-F1, per-class precision and recall, the confusion matrix.

use serde::Serialize;

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// The class name.
    pub label: String,
    /// Of the examples predicted as this class, the fraction that are (0 when none is predicted).
    pub precision: f64,
    /// Of the examples of this class, the fraction predicted as it (0 when the class has no example).
    pub recall: f64,
    /// The harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Examples of this class.
    pub support: usize,
}

/// How well predictions match the true classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationMetrics {
    /// Fraction of examples predicted right.
    pub accuracy: f64,
    /// The mean F1 over the classes that have examples or predictions (scikit-learn's `f1_score(average=
    /// "macro")` over the labels present).
    pub macro_f1: f64,
    /// The class names, in class order.
    pub labels: Vec<String>,
    /// `confusion[true][predicted]`: examples of class `true` predicted as `predicted`.
    pub confusion: Vec<Vec<usize>>,
    /// Per class, in class order.
    pub per_class: Vec<ClassMetrics>,
    /// Examples counted.
    pub examples: usize,
}

impl ClassificationMetrics {
    /// The metrics of `predicted` against `truth` (class indices below `labels.len()`; pairs outside are
    /// ignored).
    pub fn new(labels: &[String], truth: &[usize], predicted: &[usize]) -> Self {
        let k = labels.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            if t < k && p < k {
                confusion[t][p] += 1;
            }
        }
        let examples: usize = confusion.iter().flatten().sum();
        let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let per_class: Vec<ClassMetrics> = (0..k)
            .map(|c| {
                let support: usize = confusion[c].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[c]).sum();
                let precision = ratio(confusion[c][c], predicted);
                let recall = ratio(confusion[c][c], support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    label: labels[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let present: Vec<&ClassMetrics> = per_class
            .iter()
            .enumerate()
            .filter(|(c, m)| m.support > 0 || confusion.iter().any(|row| row[*c] > 0))
            .map(|(_, m)| m)
            .collect();
        let macro_f1 = if present.is_empty() {
            0.0
        } else {
            present.iter().map(|m| m.f1).sum::<f64>() / present.len() as f64
        };
        ClassificationMetrics {
            accuracy: ratio(correct, examples),
            macro_f1,
            labels: labels.to_vec(),
            confusion,
            per_class,
            examples,
        }
    }

    /// A plain-text report: accuracy and macro-F1, a table of per-class precision, recall, F1 and support,
    /// and the confusion matrix (rows: true class, columns: predicted).
    pub fn report(&self) -> String {
        let width = self
            .labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!(
            "accuracy {:.4}, macro-F1 {:.4} over {} examples\n\n",
            self.accuracy, self.macro_f1, self.examples
        );
        out.push_str(&format!(
            "{:<width$}  precision  recall      f1  support\n",
            "class"
        ));
        for m in &self.per_class {
            out.push_str(&format!(
                "{:<width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}\n",
                m.label, m.precision, m.recall, m.f1, m.support
            ));
        }
        out.push_str("\nconfusion (rows: true class, columns: predicted)\n");
        let cell = self
            .confusion
            .iter()
            .flatten()
            .map(|n| n.to_string().len())
            .max()
            .unwrap_or(1)
            .max(3);
        let names: Vec<String> = (0..self.labels.len())
            .map(|c| format!("{} {}", c + 1, self.labels[c]))
            .collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        out.push_str(&format!("{:<width$}", ""));
        for c in 0..self.labels.len() {
            out.push_str(&format!("  {:>cell$}", c + 1));
        }
        out.push('\n');
        for (name, row) in names.iter().zip(&self.confusion) {
            out.push_str(&format!("{name:<width$}"));
            for n in row {
                out.push_str(&format!("  {n:>cell$}"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_small_confusion() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // truth:     a a a b b c
        // predicted: a a b b b a
        let m = ClassificationMetrics::new(&labels, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 1, 0]);
        assert_eq!(m.confusion, [vec![2, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let a = &m.per_class[0];
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-12 && (a.recall - 2.0 / 3.0).abs() < 1e-12);
        let b = &m.per_class[1];
        assert!((b.precision - 2.0 / 3.0).abs() < 1e-12 && (b.recall - 1.0).abs() < 1e-12);
        assert_eq!(m.per_class[2].f1, 0.0);
        let f1_b = 2.0 * (2.0 / 3.0) / (2.0 / 3.0 + 1.0);
        assert!((m.macro_f1 - (2.0 / 3.0 + f1_b + 0.0) / 3.0).abs() < 1e-12);
        assert!(m.report().contains("accuracy 0.6667"));
    }

    #[test]
    fn classes_absent_from_truth_and_predictions_do_not_count_in_macro_f1() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let m = ClassificationMetrics::new(&labels, &[0, 1], &[0, 1]);
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.macro_f1, 1.0);
    }
}
