//! The captioning pipeline: train a [`seqlab_models::Captioner`] on images with captions in the Flickr8k
//! layout ([`train_captioner`]), load its model directory ([`load_captioner`]), caption images
//! ([`LoadedCaptioner::caption`]) and score the captions against every reference of each image
//! ([`evaluate_captions`]: corpus BLEU-1..4 and exact match, from free-running decoding), and an HTML report
//! of images beside their captions ([`html_report`]).

mod dir;
mod eval;
mod report;
mod train;

pub use dir::{load_captioner, read_caption_config, CaptionDirConfig, Decoding, LoadedCaptioner};
pub use eval::{
    baseline_caption, evaluate_captions, exact_match_normalise, CaptionEvaluation, CaptionedOutput,
};
pub use report::html_report;
pub use train::{train_captioner, CaptionTrainConfig, CaptionTrainReport, Split};

/// The task of a captioner's directory.
pub const CAPTION_TASK: &str = "caption";
