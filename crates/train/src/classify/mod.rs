//! The classification pipeline: train on labelled text ([`train_classifier`]), load a model directory
//! ([`load_classifier`]), measure accuracy, macro-F1 and the confusion matrix ([`ClassificationMetrics`]),
//! predict ([`LoadedClassifier::predict`]).

mod dir;
mod metrics;
mod train;

pub use dir::{
    evaluate, load_classifier, probabilities, read_config, read_labels, write_labels,
    ClassifyDirConfig, ClassifyEvaluation, Encoded, LoadedClassifier,
};
pub use metrics::{ClassMetrics, ClassificationMetrics};
pub use train::{train_classifier, ClassifyTrainConfig, ClassifyTrainReport, ValidRecord};

/// The task of a classifier's directory.
pub const TASK: &str = "classify";
