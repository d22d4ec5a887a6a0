//! Scoring captions: corpus BLEU-1..4 against every reference of each image (sacreBLEU's computation, from
//! [`crate::bleu`]), exact match, and the baseline that always writes the most frequent caption words.

use std::collections::HashMap;

use serde::Serialize;

use crate::bleu::{corpus_stats, tokenize_13a, Smoothing, Tokenize};

/// One image's generated caption and its references.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionedOutput {
    /// The image, as the captions file names it.
    pub image: String,
    /// The generated caption.
    pub caption: String,
    /// Every reference caption of the image.
    pub references: Vec<String>,
}

/// The scores of generated captions, on sacreBLEU's 0-100 scale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionEvaluation {
    /// Corpus BLEU with n-grams up to 1, 2, 3 and 4 (`bleu[3]` is the usual BLEU), all references of each
    /// image counted, 13a tokenization, exponential smoothing (sacreBLEU's defaults).
    pub bleu: [f64; 4],
    /// Brevity penalty (the same for every order).
    pub bp: f64,
    /// Fraction (0-1) of images whose caption equals one of its references, after the same tokenization
    /// and case folding as BLEU.
    pub exact_match: f64,
    /// Images scored.
    pub images: usize,
}

/// Tokenizes like BLEU (13a, lowercased when `lowercase`): the form exact match compares.
pub fn exact_match_normalise(text: &str, lowercase: bool) -> String {
    let text = if lowercase {
        text.to_lowercase()
    } else {
        text.to_string()
    };
    tokenize_13a(text.trim())
}

/// Corpus BLEU-1..4 and exact match of `outputs`. `lowercase` folds case first (sacreBLEU's `-lc`), as a
/// captioner trained on lowercased captions should be scored.
pub fn evaluate_captions(outputs: &[CaptionedOutput], lowercase: bool) -> CaptionEvaluation {
    let hyps: Vec<&str> = outputs.iter().map(|o| o.caption.as_str()).collect();
    let refs: Vec<Vec<&str>> = outputs
        .iter()
        .map(|o| o.references.iter().map(String::as_str).collect())
        .collect();
    let stats = corpus_stats(&hyps, &refs, Tokenize::ThirteenA, lowercase);
    let bleu = [1, 2, 3, 4].map(|n| stats.bleu(n, Smoothing::Exp).score);
    let exact = outputs
        .iter()
        .filter(|o| {
            let hyp = exact_match_normalise(&o.caption, lowercase);
            o.references
                .iter()
                .any(|r| exact_match_normalise(r, lowercase) == hyp)
        })
        .count();
    CaptionEvaluation {
        bleu,
        bp: stats.bleu(4, Smoothing::Exp).bp,
        exact_match: exact as f64 / outputs.len().max(1) as f64,
        images: outputs.len(),
    }
}

/// The caption a model that ignores the image would write: the most frequent words of `captions` (13a
/// tokens, lowercased when `lowercase`), most frequent first (ties: first seen), as many as the median
/// caption has words. The baseline a captioner must beat on BLEU-1.
pub fn baseline_caption<S: AsRef<str>>(captions: &[S], lowercase: bool) -> String {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    let mut lengths = Vec::with_capacity(captions.len());
    for caption in captions {
        let words = exact_match_normalise(caption.as_ref(), lowercase);
        let words: Vec<&str> = words.split_whitespace().collect();
        lengths.push(words.len());
        for word in words {
            let seen = counts.len();
            counts.entry(word.to_string()).or_insert((0, seen)).0 += 1;
        }
    }
    lengths.sort_unstable();
    let median = lengths.get(lengths.len() / 2).copied().unwrap_or(0);
    let mut words: Vec<(String, (usize, usize))> = counts.into_iter().collect();
    words.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
    words
        .into_iter()
        .take(median)
        .map(|(w, _)| w)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(caption: &str, refs: &[&str]) -> CaptionedOutput {
        CaptionedOutput {
            image: "x.png".into(),
            caption: caption.into(),
            references: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_caption_equal_to_any_reference_is_an_exact_match_and_scores_100() {
        let outputs = [
            output(
                "a red circle above a blue square",
                &[
                    "a blue square below a red circle",
                    "A red circle above a blue square",
                ],
            ),
            output("a dog", &["a cat"]),
        ];
        let eval = evaluate_captions(&outputs[..1], true);
        assert!((eval.bleu[3] - 100.0).abs() < 1e-9, "{eval:?}");
        assert_eq!(eval.exact_match, 1.0);
        let eval = evaluate_captions(&outputs, true);
        assert_eq!(eval.exact_match, 0.5);
        // "a dog" for "a cat": one unigram of 9 misses (the 3- and 4-grams all come from the exact match).
        assert!((eval.bleu[0] - 800.0 / 9.0).abs() < 1e-9, "{eval:?}");
        // Case matters without folding.
        assert_eq!(evaluate_captions(&outputs[..1], false).exact_match, 0.0);
    }

    #[test]
    fn the_baseline_is_the_median_length_of_most_frequent_words() {
        let caps = [
            "a red flag",
            "a blue flag",
            "a flag of France",
            "red",
            "flag a",
        ];
        // Counts: a 4, flag 4 (first seen later), red 2; median length 3.
        assert_eq!(baseline_caption(&caps, true), "a flag red");
    }
}
